"""The one process-group helper (distro_procs.py): stop reaches the whole group."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import distro_procs

# A child that ignores SIGTERM and starts a grandchild that ignores it too, then prints
# the grandchild's pid: only SIGKILL to the group ends both.
STUBBORN = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
grandchild = subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
print(grandchild.pid, flush=True)
time.sleep(600)
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")


def test_stop_kills_the_group_after_the_timeout_and_logs_go_to_the_file(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "child.log"
    proc = distro_procs.spawn([sys.executable, "-c", STUBBORN], log, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    grandchild = int(proc.stdout.readline())
    proc.stdout.close()
    assert alive(grandchild)
    assert distro_procs.stop([proc], timeout_s=0.5) == [-signal.SIGKILL]
    distro_procs.wait_until(lambda: not alive(grandchild), 10.0, "the grandchild to die")
    assert log.exists()


def test_wait_until_returns_the_value_gives_up_early_or_names_what_timed_out() -> None:
    assert distro_procs.wait_until(lambda: 7, 1.0, "seven") == 7

    def died() -> None:
        raise RuntimeError("child exited")

    with pytest.raises(RuntimeError, match="child exited"):
        distro_procs.wait_until(lambda: None, 10.0, "never", check=died)
    with pytest.raises(TimeoutError, match="waiting for nothing"):
        distro_procs.wait_until(lambda: None, 0.05, "nothing", interval_s=0.01)
