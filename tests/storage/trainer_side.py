"""A trainer-side process: fetch and upload by URL only, with no credentials at all.

Usage: python -m tests.storage.trainer_side '<json job>'; prints one JSON result line.
"""

from __future__ import annotations

import json
import sys

import trio

from storage.transfer import FetchItem, fetch_many, upload


async def run(job: dict[str, object]) -> dict[str, object]:
    raw_items = job["items"]
    assert isinstance(raw_items, list)
    items = [FetchItem(i["url"], i["sha256"], i["max_bytes"]) for i in raw_items]
    chunks = await fetch_many(items, max_connections=4)
    # The "update": the concatenated chunks reversed, so the owner can check it.
    update = b"".join(chunks)[::-1]
    await upload(str(job["put_url"]), update, content_type=str(job["content_type"]))
    return {"fetched_bytes": sum(len(c) for c in chunks), "uploaded_bytes": len(update)}


if __name__ == "__main__":
    print(json.dumps(trio.run(run, json.loads(sys.argv[1]))), flush=True)
