"""The one process-group helper (distro_procs.py): stop, and a SIGKILLed parent, end the group."""

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
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        return not Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except FileNotFoundError:
        return False


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


# Spawns STUBBORN from a thread that has exited by the time it prints the pids: the
# child must outlive that thread (PR_SET_PDEATHSIG would have killed it) but not us.
PARENT = f"""
import subprocess, sys, threading, time
import distro_procs
box = []
spawner = threading.Thread(target=lambda: box.append(
    distro_procs.spawn([sys.executable, "-c", {STUBBORN!r}], None, stdout=subprocess.PIPE)))
spawner.start()
spawner.join()
print(box[0].pid, int(box[0].stdout.readline()), flush=True)
time.sleep(600)
"""


def test_a_sigkilled_parent_takes_its_childs_group_along(tmp_path: Path) -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE,
                              cwd=Path(distro_procs.__file__).parent)
    pids: list[int] = []
    try:
        assert parent.stdout is not None
        pids = [int(pid) for pid in parent.stdout.readline().split()]
        assert len(pids) == 2 and all(map(alive, pids))
        parent.kill()
        parent.wait()
        distro_procs.wait_until(lambda: not any(map(alive, pids)), 10.0,
                                "the child and grandchild of a SIGKILLed parent to die")
    finally:
        parent.kill()
        parent.wait()
        if parent.stdout is not None:
            parent.stdout.close()
        for pid in filter(alive, pids):  # only after a failure: do not leak them
            os.kill(pid, signal.SIGKILL)
