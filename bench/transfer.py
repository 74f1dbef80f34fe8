"""Throughput of the by-URL client against curl, on the same presigned URLs, same run.

Starts SeaweedFS (``weed mini``) on loopback, uploads a 256 MiB object, then in
interleaved rounds downloads it and uploads it through ``storage.transfer`` (download
includes sha256 verification) and through ``curl``. Prints each measurement, the
medians, and as its last line ``download_ratio_vs_curl=X upload_ratio_vs_curl=Y``
(project median MB/s divided by curl median MB/s; target >= 0.8).

Usage: .venv/bin/python bench/transfer.py [--size-mib 256] [--rounds 3]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio

# tests/ is not an installed package: its harness is imported from the checkout.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from storage.s3 import S3Store
from storage.transfer import fetch, fetch_to_file, new_client, upload
from tests.s3servers import start_seaweedfs

MIB = 1024 * 1024
CONTENT_TYPE = "application/octet-stream"
CURL_TIMEOUT_S = 600


def make_object(path: Path, size: int) -> str:
    hasher = hashlib.sha256()
    with path.open("wb") as handle:
        left = size
        while left:
            block = os.urandom(min(16 * MIB, left))
            handle.write(block)
            hasher.update(block)
            left -= len(block)
    return hasher.hexdigest()


def timed(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def project_download(url: str, sha256: str, size: int) -> None:
    async def run() -> None:
        async with new_client() as client:
            data = await fetch(url, sha256=sha256, max_bytes=size, client=client)
        assert len(data) == size

    trio.run(run)


def project_download_to_file(url: str, sha256: str, size: int, target: Path) -> None:
    async def run() -> None:
        async with new_client() as client:
            written = await fetch_to_file(url, target, sha256=sha256, max_bytes=size, client=client)
        assert written == size

    trio.run(run)
    target.unlink()


def project_upload(url: str, data: bytes) -> None:
    async def run() -> None:
        async with new_client() as client:
            await upload(url, data, content_type=CONTENT_TYPE, client=client)

    trio.run(run)


def curl(*args: str) -> None:
    subprocess.run(
        ["curl", "-sS", "-f", "-o", "/dev/null", *args], check=True, timeout=CURL_TIMEOUT_S
    )


def curl_file(url: str, target: Path) -> None:
    subprocess.run(
        ["curl", "-sS", "-f", "-o", str(target), url], check=True, timeout=CURL_TIMEOUT_S
    )
    target.unlink()


def curl_sha256sum(url: str, sha256: str) -> None:
    """curl piped into sha256sum: what verifying with standard tools costs."""
    pipeline = f"curl -sS -f {shlex.quote(url)} | sha256sum"
    out = subprocess.run(
        ["bash", "-o", "pipefail", "-c", pipeline],
        check=True, capture_output=True, text=True, timeout=CURL_TIMEOUT_S,
    )  # fmt: skip
    assert out.stdout.split()[0] == sha256


def one_round(
    store: S3Store, round_no: int, path: Path, data: bytes, sha256: str, tmp_path: Path
) -> dict[str, float]:
    """Time every method once on the same URLs; return MiB/s by method."""
    size = len(data)
    get_url = store.presign_get("bench/object.bin", expires_s=3600)
    put_url = store.presign_put(f"bench/up-{round_no}.bin", CONTENT_TYPE, expires_s=3600)
    target = tmp_path / "download.bin"
    put_args = [
        "-X",
        "PUT",
        "-T",
        str(path),
        "-H",
        f"Content-Type: {CONTENT_TYPE}",
        "-H",
        "Expect:",
    ]
    runs = {
        "dl_project": lambda: project_download(get_url, sha256, size),
        "dl_curl": lambda: curl(get_url),
        "dl_curl_sha": lambda: curl_sha256sum(get_url, sha256),
        "file_project": lambda: project_download_to_file(get_url, sha256, size, target),
        "file_curl": lambda: curl_file(get_url, target),
        "ul_project": lambda: project_upload(put_url, data),
        "ul_curl": lambda: curl(*put_args, put_url),
    }
    rates: dict[str, float] = {}
    for name, action in runs.items():
        rates[name] = size / MIB / timed(action)
        print(f"round {round_no}: {name:<12} {rates[name]:8.0f} MiB/s", flush=True)
    assert store.head(f"bench/up-{round_no}.bin").size == size
    return rates


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("curl") is None:
        print("curl not found", file=sys.stderr)
        return 1
    size = args.size_mib * MIB
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-storage-") as tmp:
        tmp_path = Path(tmp)
        server = start_seaweedfs(tmp_path, bucket="bench")
        try:
            store = S3Store(server.config)
            path = tmp_path / "object.bin"
            sha256 = make_object(path, size)
            took = timed(lambda: store.put_file("bench/object.bin", path, CONTENT_TYPE))
            print(f"setup: boto3 multipart put {args.size_mib} MiB: {size / MIB / took:.0f} MiB/s")
            data = path.read_bytes()
            for round_no in range(args.rounds):
                for name, rate in one_round(store, round_no, path, data, sha256, tmp_path).items():
                    results.setdefault(name, []).append(rate)
        finally:
            server.stop()
    med = {name: statistics.median(rates) for name, rates in results.items()}
    for name, rate in med.items():
        print(f"median {name:<12} {rate:8.0f} MiB/s")
    print(
        "dl_project = fetch() into memory with sha256 check, vs curl -o /dev/null "
        "(dl_curl_sha: curl | sha256sum); file_project = fetch_to_file() vs curl -o FILE"
    )
    print(f"download_ratio_vs_curl_sha256sum={med['dl_project'] / med['dl_curl_sha']:.2f}")
    print(f"download_to_file_ratio_vs_curl={med['file_project'] / med['file_curl']:.2f}")
    print(
        f"download_ratio_vs_curl={med['dl_project'] / med['dl_curl']:.2f} "
        f"upload_ratio_vs_curl={med['ul_project'] / med['ul_curl']:.2f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
