"""Transfer progress: events for the daemon, a rich progress bar for people.

Producers (``upload_chunks``, ``fetch_many``) call a ``Callable[[ProgressEvent], None]``
after each object. The daemon passes a callback that forwards events (e.g. into a
bounded channel); a person's CLI wraps the work in ``RichProgress``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)


@dataclass(frozen=True)
class ProgressEvent:
    """One object finished.

    Attributes:
        phase: ``upload`` or ``download``.
        key: the object key (uploads) or the URL without its query (downloads).
        skipped: True when the object was already stored (dedup) and not sent.
        done_items: objects finished so far, this one included.
        total_items: total objects, or None if unknown.
        done_bytes: payload bytes finished so far (skipped chunks count).
    """

    phase: Literal["upload", "download"]
    key: str
    skipped: bool
    done_items: int
    total_items: int | None
    done_bytes: int


ProgressCallback = Callable[[ProgressEvent], None]


class RichProgress:
    """A terminal progress bar fed by ``ProgressEvent`` s; use as a context manager.

    Example::

        with RichProgress("uploading chunks", total_items=len(chunks)) as bar:
            upload_chunks(store, prefix, chunks, progress=bar)

    Args:
        description: the label shown left of the bar.
        total_items: items expected, if known (else taken from the events).
        console: where to draw; default stderr.
    """

    def __init__(
        self, description: str, total_items: int | None = None, console: Console | None = None
    ) -> None:
        self._description = description
        self._total = total_items
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[mib]:.1f} MiB"),
            TimeElapsedColumn(),
            console=console or Console(stderr=True),
            transient=False,
        )
        self._task: TaskID | None = None
        self._skipped = 0

    def __enter__(self) -> RichProgress:
        self._progress.start()
        self._task = self._progress.add_task(self._description, total=self._total, mib=0.0)
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    @property
    def skipped(self) -> int:
        """How many events reported an object already stored."""
        return self._skipped

    def __call__(self, event: ProgressEvent) -> None:
        """Advance the bar to ``event``."""
        if self._task is None:
            return
        self._skipped += int(event.skipped)
        self._progress.update(
            self._task,
            completed=event.done_items,
            total=event.total_items if event.total_items is not None else self._total,
            mib=event.done_bytes / (1024 * 1024),
        )
