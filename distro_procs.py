"""Child processes in process groups of their own: start, wait for, stop. One copy.

It sits below every package (like ``distro_errors.py``) so that the embedded S3 server
(``storage/embedded.py``), the dev chain (``ledger/devchain.py``) and the harness of the
demo, the scenarios and the tests (``p2pnode/procs.py``) share one implementation.

Every child runs in a session (process group) of its own, with its output in a log
file. Stopping a child reaches its whole group: SIGTERM first, SIGKILL for what is
left after the stop timeout. A child's group is SIGKILLed too when the process that
spawned it dies in any way, SIGKILL included (see :func:`spawn`). Waits poll a
condition under a deadline and can give up early (a child died). Standard library only.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import socket
import subprocess
import threading
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


# Children die with their parent, however it ends (a SIGKILLed owner daemon left its
# embedded S3 server running, and tests and benches leaked servers the same way).
# /bin/sh starts each child: it forks a watcher, then execs the child, which keeps the
# pid, the group and the exit status a plain Popen would give it. The watcher blocks
# reading this process's lifeline, a pipe whose write end only this process holds: the
# kernel closes that end when this process exits, whatever the cause, the read sees
# EOF and the watcher SIGKILLs the child's whole process group, itself included. It is
# one idle dash (RSS 0.6 MB, 0.2 MB of it private, measured) and goes with the group
# when stop or kill end it; a child that exits by itself leaves it waiting until its
# parent exits or stops the child.
#
# Why a pipe and not prctl(PR_SET_PDEATHSIG): that signal fires when the *thread* that
# forked exits, not the process, and the owner starts its server from a trio worker
# thread that trio retires after 10 idle seconds, so the server would die with its
# owner alive (tried: a `sleep` spawned so from trio.to_thread died after 10.1 s)
# (spawning from the main thread or a dedicated long-lived thread would bind every
# caller to that discipline); setting it needs preexec_fn, which can deadlock in a
# threaded parent, or a native helper (anvil and weed are not Python); a parent that
# dies before the prctl leaves a race that only an os.getppid() check can close; it
# is cleared by a set-uid exec; and it reaches one process, not the group (nanio
# --workers N, a daemon's own children). A pipe's EOF belongs to the process rather
# than a thread, is sticky (a parent that died before the watcher started still
# reads as EOF: no race) and works for any program. What keeps the write end in one
# process: os.pipe() makes both ends close-on-exec, Popen closes every other fd in
# its children anyway, and a fork without exec (os.fork, multiprocessing) closes the
# inherited copy in _forget_lifeline.
_WATCH = ('exec 3<&0 </dev/null; '
          '(while read -r _; do :; done <&3; kill -s KILL 0) >/dev/null 2>&1 & '
          'exec "$@" 3<&-')
_lifeline_lock = threading.Lock()
_lifeline: tuple[int, int] | None = None
"""This process's lifeline pipe (read end, write end), made at the first spawn."""


def _lifeline_reader() -> int:
    """The read end of this process's lifeline; its write end stays open until we exit."""
    global _lifeline
    with _lifeline_lock:
        if _lifeline is None:
            _lifeline = os.pipe()
        return _lifeline[0]


def _forget_lifeline() -> None:
    """In a forked child: close the parent's lifeline (its children watch the parent)."""
    global _lifeline, _lifeline_lock
    _lifeline_lock = threading.Lock()  # another thread of the parent may have held it
    pipe, _lifeline = _lifeline, None
    for fd in pipe or ():
        os.close(fd)


os.register_at_fork(after_in_child=_forget_lifeline)


def _check_program(program: str, env: Mapping[str, str] | None, cwd: Path | None) -> None:
    """Raise what Popen would for a missing program (the shell would only exit 127)."""
    if os.sep in program:
        path = Path(cwd or ".") / program
        found = os.access(path, os.X_OK) and path.is_file()
    else:
        found = shutil.which(program, path=(os.environ if env is None else env).get(
            "PATH", os.defpath)) is not None
    if not found:
        raise FileNotFoundError(errno.ENOENT, "no such executable", program)


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
    by the caller instead. ``env=None`` inherits this process's environment. stdin is
    /dev/null. The child's process group is SIGKILLed when this process dies without
    stopping it (SIGKILL, a crash): see the comment above.

    Raises:
        FileNotFoundError: ``argv[0]`` is not an executable program.
    """
    _check_program(argv[0], env, cwd)
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
    with (log or Path(os.devnull)).open("ab") as out:
        return subprocess.Popen(
            ["/bin/sh", "-c", _WATCH, "sh", *argv],
            env=None if env is None else dict(env),
            cwd=cwd,
            stdin=_lifeline_reader(),
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
    if proc.returncode is None:  # see stop
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
        # Not yet reaped, even if exited: its zombie holds the pid, so the group id is
        # still ours, and the signal ends what the leader left (its lifeline watcher).
        if proc.returncode is None:
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
