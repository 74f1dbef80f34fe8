"""Child processes in process groups of their own: start, wait for, stop. One copy.

It sits below every package (like ``distro_errors.py``) so that the embedded S3 server
(``storage/embedded.py``), the dev chain (``ledger/devchain.py``) and the harness of the
demo, the scenarios and the tests (``p2pnode/procs.py``) share one implementation.

Every child runs in a session (process group) of its own, with its output in a log
file. Stopping a child reaches its whole group: SIGTERM first, SIGKILL for what is
left after the stop timeout. Waits poll a condition under a deadline and can give up
early (a child died). Standard library only.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

STOP_TIMEOUT_S = 6.0
"""Default of how long children may take to exit after SIGTERM before their groups are killed."""
POLL_INTERVAL_S = 0.1
"""Default of how often :func:`wait_until` checks its condition."""


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free on ``host`` a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def spawn(
    argv: list[str],
    log: Path | None,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    stdout: int | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a new session, appending stderr (and stdout) to ``log``.

    ``log=None`` discards the output; ``stdout=subprocess.PIPE`` keeps stdout readable
    by the caller instead. ``env=None`` inherits this process's environment.
    """
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
    with (log or Path(os.devnull)).open("ab") as out:
        return subprocess.Popen(
            argv,
            env=None if env is None else dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out if stdout is None else stdout,
            stderr=out,
            start_new_session=True,
        )


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass  # already gone


def kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL ``proc``'s process group (a crash) and reap it."""
    if proc.poll() is None:
        _signal_group(proc, signal.SIGKILL)
    proc.wait()


def stop(
    procs: Iterable[subprocess.Popen[bytes]], timeout_s: float = STOP_TIMEOUT_S
) -> list[int]:
    """SIGTERM every group, SIGKILL those still running after ``timeout_s``; reap all.

    All children share one deadline, so stopping many takes ``timeout_s`` at most.
    Returns the exit codes in order.
    """
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            _signal_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            kill(proc)
    return [proc.returncode for proc in procs]


def wait_until(
    predicate: Callable[[], T | None],
    timeout_s: float,
    what: str,
    *,
    check: Callable[[], None] = lambda: None,
    interval_s: float = POLL_INTERVAL_S,
) -> T:
    """Poll ``predicate`` until it returns a truthy value, and return that value.

    ``check`` runs between polls; it raises to give up early (a child died).

    Raises:
        TimeoutError: Naming ``what``, after ``timeout_s`` seconds.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        check()
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(interval_s)


def exec_announced(argv: list[str], env: Mapping[str, str], log: Path | None,
                   announce: Callable[[int], int]) -> None:
    """Become ``argv`` (``os.execve``) while a short-lived helper runs ``announce(pid)``.

    For a foreground wrapper whose only job after start-up is to wait (``python -m
    storage.embedded``, ``python -m ledger.devchain``): staying alive as a Python
    parent kept ~20-25 MB resident for nothing (issue 17). The helper is a double
    fork (re-parented to init, so nobody has to reap it) that shares stdout: it
    waits for the server, finishes the set-up, prints what the caller reads and
    exits with ``announce``'s code; on failure it should stop ``pid``, the server.
    This process's stdout and stderr go to ``log`` (or /dev/null) before the exec,
    so the server's own output stays out of the caller's pipe. Never returns.
    """
    pid = os.getpid()
    child = os.fork()
    if child == 0:
        code = 1
        try:
            if os.fork() == 0:
                code = announce(pid)
            else:
                code = 0
        finally:
            os._exit(code)
    os.waitpid(child, 0)
    sink = os.open(str(log) if log else os.devnull, os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                   0o600)
    os.dup2(sink, 1)
    os.dup2(sink, 2)
    os.close(sink)
    os.execve(argv[0], argv, dict(env))
