"""The trainer role's settings: ``[trainer]`` in the daemon's config."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, fields
from typing import Annotated, Literal

from pydantic import Field

from training import budget


@dataclass(frozen=True)
class TrainerConfig:
    """Limits and timeouts of the trainer role.

    Attributes:
        slots: Assignments worked on at once; more are refused as ``busy``.
        max_data_bytes: Largest total of chunks one assignment may bring.
        max_model_bytes: Largest model or update accepted.
        max_chunks: Most chunks in one assignment.
        request_timeout_s: Wait for an owner's answer to an offer or refusal.
        train_threads: torch threads per training run (0 = torch's default).
        known_jobs: Announced jobs remembered; only jobs merely offered for are
            forgotten to make room, oldest first.
        jobs_per_owner: Announced jobs remembered per owner key.
        reoffer_after_s: Offer again for a known job announced after this long.
        allow_networks: CIDR networks a task's URLs may reach besides public
            addresses. Empty (the default) refuses loopback, link-local, private,
            multicast, reserved and unspecified addresses; a single-machine run
            allows ``["127.0.0.0/8"]``.
        max_task_s: Longest a task may run when its own deadline is later or absent.
        max_params: Largest model (trainable parameters) a task may train.
        max_activation_bytes: Largest estimated activation memory of one batch.
        max_sample_epochs: Most samples x epochs in one task.
        max_threads: Most torch threads a task may ask for.
        max_flops: Most floating-point operations of one task (forward and backward,
            every sample and epoch; ``training.budget``).
        device: Where tasks train: ``cpu``, ``cuda``, or ``auto`` (CUDA when torch
            sees it). The presence status advertises the GPU only when tasks train
            on it (known once torch is loaded, at the first announcement). Tasks the
            owner marks deterministic (replicas it compares) train on the CPU.
    """

    slots: int = 1
    max_data_bytes: int = 512 * 1024 * 1024
    max_model_bytes: int = 64 * 1024 * 1024
    max_chunks: int = 4096
    request_timeout_s: float = 30.0
    train_threads: int = 0
    known_jobs: int = 256
    jobs_per_owner: int = 8
    reoffer_after_s: float = 8.0
    # A TOML array arrives as a list; lax mode lets it become the tuple.
    allow_networks: Annotated[tuple[str, ...], Field(strict=False)] = ()
    max_task_s: float = 3600.0
    max_params: int = budget.Limits.max_params
    max_activation_bytes: int = budget.Limits.max_activation_bytes
    max_sample_epochs: int = budget.Limits.max_sample_epochs
    max_threads: int = budget.Limits.max_threads
    max_flops: int = budget.Limits.max_flops
    device: Literal["auto", "cpu", "cuda"] = "auto"
    chunk_cache_bytes: Annotated[int, Field(ge=0)] = 1024 * 1024 * 1024
    """Chunks kept on disk (DATA_DIR/chunk-cache) by hash across rounds and jobs; 0: off."""
    job_memory_bytes: Annotated[int, Field(ge=0)] = 256 * 1024 * 1024
    """Memory for what a job's next task reuses (error-feedback residuals, the last
    global model as a delta's base; ``protocols.job.jobmemory``); 0: none kept."""

    def __post_init__(self) -> None:
        """Check ``allow_networks`` (a bad network raises ValueError at start)."""
        for net in self.allow_networks:
            ipaddress.ip_network(net, strict=False)

    @property
    def limits(self) -> budget.Limits:
        """The compute and memory budget of one task: our fields of the same names."""
        return budget.Limits(**{f.name: getattr(self, f.name) for f in fields(budget.Limits)})
