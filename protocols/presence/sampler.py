"""Local machine figures for this daemon's presence status (no torch, no subprocess)."""

from __future__ import annotations

import os
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import psutil

from protocols.pb import distro_pb2 as pb
from protocols.presence.codec import health_score

MIN_HEALTH_TO_WORK = 20.0


def software_version() -> str:
    """Return the installed distro-train version, or ``0+unknown``."""
    try:
        return version("distro-train")
    except PackageNotFoundError:
        return "0+unknown"


def detect_gpu() -> str:
    """Return the first NVIDIA GPU model named by the kernel driver, or ""."""
    root = Path("/proc/driver/nvidia/gpus")
    try:
        for info in sorted(root.iterdir()):
            for line in (info / "information").read_text().splitlines():
                if line.startswith("Model:"):
                    return line.split(":", 1)[1].strip()[:64]
    except OSError:
        pass
    return ""


class Sampler:
    """Builds successive Presence statuses with an increasing ``seq``.

    ``cpu_percent`` is measured between two calls (psutil's non-blocking mode), so the
    first status reports 0 % until the second sample.
    """

    def __init__(self, queue_capacity: int, min_health_to_work: float = MIN_HEALTH_TO_WORK):
        self.queue_capacity = queue_capacity
        self.min_health_to_work = min_health_to_work
        self.queue_length = 0
        self._seq = 0
        self.gpu = detect_gpu()
        """The GPU advertised; the trainer clears it when tasks do not train there."""
        self._version = software_version()
        psutil.cpu_percent(interval=None)

    def sample(self, addrs: list[str]) -> pb.Presence:
        """Return the next status, advertising ``addrs``."""
        self._seq += 1
        mem = psutil.virtual_memory()
        cpu = float(psutil.cpu_percent(interval=None))
        health = health_score(cpu, float(mem.percent), self.queue_length, self.queue_capacity)
        return pb.Presence(
            version=self._version,
            cpu_count=os.cpu_count() or 1,
            mem_total=mem.total,
            mem_available=mem.available,
            gpu=self.gpu,
            cpu_percent=cpu,
            mem_percent=float(mem.percent),
            queue_length=self.queue_length,
            queue_capacity=self.queue_capacity,
            health=health,
            addrs=addrs[:16],
            seq=self._seq,
            accepting=health >= self.min_health_to_work,
        )
