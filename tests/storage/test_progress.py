"""Progress reporting: events for the daemon, a rich bar for people."""

from __future__ import annotations

import io

from rich.console import Console

from storage.progress import ProgressEvent, RichProgress


def event(done: int, skipped: bool = False) -> ProgressEvent:
    return ProgressEvent(
        phase="upload", key=f"k{done}", skipped=skipped, done_items=done, total_items=3,
        done_bytes=done * 1024 * 1024,
    )  # fmt: skip


def test_rich_progress_renders_items_and_bytes() -> None:
    out = io.StringIO()
    console = Console(file=out, width=120, force_terminal=False)
    with RichProgress("uploading chunks", console=console) as bar:
        for done in (1, 2, 3):
            bar(event(done, skipped=done == 2))
    text = out.getvalue()
    assert "uploading chunks" in text and "3/3" in text and "3.0 MiB" in text
    assert bar.skipped == 1
