"""What the bench scripts share: real processes on this machine, a job run to its end,
and a table of named checks run one after the other.

The scripts run as ``.venv/bin/python bench/<name>.py``, so they import this sibling
module as ``localrun``.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from p2pnode.commands.demo import clean_env
from p2pnode.control import call
from p2pnode.procs import Processes, start_embedded_s3

T = TypeVar("T")

#: A job in one of these states has not ended yet.
UNFINISHED = ("preparing", "running")


def start_storage(prefix: str) -> tuple[Processes, dict[str, str]]:
    """A fresh work dir (``procs.work``, with ``logs/``) and the embedded S3 server in it.

    The server is child ``s3`` of the returned ``Processes``, with its data in
    ``work/s3``; the second value is its ``[storage]`` table. The caller stops the
    processes (``procs.stop_all()`` in a ``finally``); if the server fails to start,
    this does.
    """
    work = Path(tempfile.mkdtemp(prefix=prefix))
    (work / "logs").mkdir()
    procs = Processes(work)
    try:
        return procs, start_embedded_s3(procs, "s3", work / "s3", clean_env())
    except BaseException:
        procs.stop_all()
        raise


def job_end(procs: Processes, owner: Path, job_id: str, timeout_s: float) -> dict[str, Any]:
    """Wait for ``owner``'s job to end (in any state) and return its last status.

    Raises:
        RuntimeError: A child of ``procs`` exited meanwhile.
        TimeoutError: The job still runs after ``timeout_s``.
    """

    def ended() -> dict[str, Any] | None:
        status: dict[str, Any] = call(owner, "jobs.status", {"job_id": job_id})
        return status if status["state"] not in UNFINISHED else None

    return procs.wait(ended, f"job {job_id} to end", timeout_s)


def run_job(
    procs: Processes, owner: Path, spec: dict[str, Any], timeout_s: float
) -> dict[str, Any]:
    """Submit ``spec`` to ``owner`` and return the job's status once it has ended."""
    job_id: str = call(owner, "jobs.submit", {"spec": spec})["job_id"]
    return job_end(procs, owner, job_id, timeout_s)


def run_each(
    table: Sequence[tuple[str, Callable[[], T]]],
    only: str | None,
    failed: Callable[[str, Exception], T],
) -> Iterator[tuple[str, T, float]]:
    """Run the checks of ``table`` in order; yield each one's name, result and seconds.

    Only the checks whose name contains ``only`` run (all when it is None). A check
    that raises yields ``failed(name, error)`` and the next one runs.
    """
    for name, check in table:
        if only and only not in name:
            continue
        started = time.monotonic()
        try:
            result = check()
        except Exception as exc:
            result = failed(name, exc)
        yield name, result, time.monotonic() - started
