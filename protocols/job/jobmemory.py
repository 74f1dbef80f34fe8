"""What a trainer remembers of a job between its tasks: a bounded, in-memory table.

Two things per job, both bytes: the error-feedback residual of compressed updates
(what earlier rounds did not transmit; ``training.compress``) and the last global
model it trained from, the base a model delta applies to (``training.modeldelta``).
Neither is ever written to disk. The table is bounded in jobs and in bytes: the
least recently used job is forgotten first, and a job is dropped when its last
round's task is done. A forgotten residual only costs accuracy (the next update
starts afresh); a forgotten base, a whole-model download.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from collections import OrderedDict

_LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
_TRIM = getattr(_LIBC, "malloc_trim", None)  # glibc only


_FREEZE = [False]


def freeze_after_warm_up() -> None:
    """Have :func:`heap_warmed` freeze the long-lived heap: for a daemon's own process.

    Not for a process that hosts other things (a test run with in-process daemons),
    whose objects would then never be collected if they became cyclic garbage.
    """
    _FREEZE[0] = True


def heap_warmed() -> None:
    """The training stack is imported: freeze every object alive now (once, if enabled).

    torch brings ~250k objects that live as long as the daemon. ``gc.freeze`` takes
    them out of the cyclic collector's sight, so a full collection costs milliseconds
    instead of ~0.13 s, and :func:`return_free_memory` can afford one per task.
    """
    if _FREEZE[0] and not gc.get_freeze_count():
        gc.freeze()


def return_free_memory() -> None:
    """Hand the C heap's free pages back to the system (glibc's ``malloc_trim``).

    A task frees tens of MB (its chunks, the decoded samples, the batches), which
    glibc keeps mapped; trimming them before the next task's data arrives keeps the
    trainer's resident set (and its peak) to what it really holds. It takes well
    under a millisecond. The last tasks' cyclic garbage goes first (``gc.collect()``)
    only once the long-lived heap is frozen (:func:`heap_warmed`): otherwise a full
    collection holds the interpreter for ~0.1 s per call (seven times slower
    in-process tests with ten trainers). Trimming is a no-op where the C library has
    no ``malloc_trim``.
    """
    if _FREEZE[0] and gc.get_freeze_count():  # frozen: a collection of milliseconds
        gc.collect()
    if _TRIM is not None:
        _TRIM(0)


RESIDUAL = "residual"
BASE = "base"


class JobMemory:
    """Per-job residuals and base models, least recently used forgotten first.

    Args:
        max_bytes: Most bytes held in all; an entry larger than this is not kept.
        max_jobs: Most jobs remembered.
    """

    def __init__(self, max_bytes: int, max_jobs: int = 16) -> None:
        self.max_bytes, self.max_jobs = max_bytes, max_jobs
        self._jobs: OrderedDict[str, dict[str, tuple[str, bytes]]] = OrderedDict()
        self.size = 0

    def get(self, job_id: str, what: str, tag: str = "") -> bytes | None:
        """The ``what`` (:data:`RESIDUAL` or :data:`BASE`) kept for ``job_id``.

        ``tag`` (e.g. the base model's sha256): only an entry kept with this tag
        answers; "" takes any.
        """
        entry = self._jobs.get(job_id, {}).get(what)
        if entry is None or (tag and entry[0] != tag):
            return None
        self._jobs.move_to_end(job_id)
        return entry[1]

    def put(self, job_id: str, what: str, data: bytes, tag: str = "") -> None:
        """Keep ``data`` as ``job_id``'s ``what``, forgetting older jobs to make room."""
        self._discard(job_id, what)
        if len(data) > self.max_bytes:
            return
        self._jobs.setdefault(job_id, {})[what] = (tag, data)
        self._jobs.move_to_end(job_id)
        self.size += len(data)
        while self.size > self.max_bytes or len(self._jobs) > self.max_jobs:
            oldest = next(iter(self._jobs))
            self.drop(oldest)

    def drop(self, job_id: str) -> None:
        """Forget everything kept for ``job_id`` (its last task is done)."""
        for what in list(self._jobs.get(job_id, {})):
            self._discard(job_id, what)
        self._jobs.pop(job_id, None)

    def _discard(self, job_id: str, what: str) -> None:
        entry = self._jobs.get(job_id, {}).pop(what, None)
        if entry is not None:
            self.size -= len(entry[1])

    def __contains__(self, job_id: str) -> bool:
        """Whether anything is kept for ``job_id``."""
        return bool(self._jobs.get(job_id))
