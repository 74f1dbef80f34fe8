"""A trainer process with no AWS variables (and no AWS config files) works by URL alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from storage.chunks import upload_chunks
from storage.s3 import S3Store
from storage.store import job_prefix

REPO = Path(__file__).resolve().parents[2]
#: Deadline for the trainer-side process (it starts python, fetches and uploads).
TRAINER_TIMEOUT_S = 60


def test_credential_free_trainer_downloads_and_uploads(any_store: S3Store, tmp_path: Path) -> None:
    prefix = job_prefix("owner", "job-trainer")
    chunks = [(os.urandom(200_000), 10) for _ in range(5)]
    manifest = upload_chunks(any_store, prefix, chunks)
    update_key = f"{prefix}updates/trainer-1/round-0.bin"
    job = {
        "items": [
            {"url": any_store.presign_get(e.key), "sha256": e.sha256, "max_bytes": e.size}
            for e in manifest.entries
        ],
        "put_url": any_store.presign_put(update_key, "application/x-update"),
        "content_type": "application/x-update",
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["HOME"] = str(tmp_path)  # no ~/.aws either
    env["PYTHONPATH"] = str(REPO)
    result = subprocess.run(
        [sys.executable, "-m", "tests.storage.trainer_side", json.dumps(job)],
        cwd=tmp_path, env=env, capture_output=True, timeout=TRAINER_TIMEOUT_S, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    report = json.loads(result.stdout.decode().strip().splitlines()[-1])
    expected = b"".join(data for data, _ in chunks)
    assert report == {"fetched_bytes": len(expected), "uploaded_bytes": len(expected)}
    assert any_store.get_bytes(update_key) == expected[::-1]
