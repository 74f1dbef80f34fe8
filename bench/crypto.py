"""What encryption at rest costs: throughput, streaming memory, and the demo's round time.

1. Throughput of ``storage.crypto`` (AES-256-GCM, 1 MiB segments) encrypting and
   decrypting an in-memory object, against a plain copy of the same bytes and a
   sha256 of them (what every transfer already does), measured in this run.
2. Streaming: a file of ``--stream-mib`` encrypted and decrypted file to file; the
   peak of Python allocations (tracemalloc) stays near one segment whatever the size
   (``--stream-mib 1024`` for a 1 GB model).
3. The demo (bootstrap, owner and trainer daemons as processes, embedded S3 server)
   run twice on the same spec, once with ``[owner] encrypt = false`` and once with
   the default (encrypted): the median round time (rounds after the first) of each.

The last line is ``encrypted_round_overhead=X``: (encrypted - clear) / clear median
round time (target < 0.05 for the MNIST demo). The two runs share a small, busy
machine: a figure within the run-to-run noise (printed, from the rounds' spread)
says "no measurable cost", not a precise one.

    .venv/bin/python bench/crypto.py [--mib 64] [--stream-mib 256] [--dataset mnist]
        [--trainers 4] [--rounds 6] [--skip-demo]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from storage import crypto
from storage.crypto import ObjectId

MIB = 1024 * 1024
OID = ObjectId("model", "bench", 1, "0" * 64)


def best_of(n: int, fn: Callable[[], object]) -> float:
    """The fastest of ``n`` runs of ``fn``, in seconds."""
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def throughput(mib: int) -> dict[str, float]:
    data = os.urandom(mib * MIB)
    key = crypto.new_key()
    sealed = crypto.encrypt(key, OID, data)
    assert crypto.decrypt(key, OID, sealed) == data
    figures = {
        "copy": best_of(3, lambda: bytearray(data)),
        "sha256": best_of(3, lambda: hashlib.sha256(data).digest()),
        "encrypt": best_of(3, lambda: crypto.encrypt(key, OID, data)),
        "decrypt": best_of(3, lambda: crypto.decrypt(key, OID, sealed)),
    }
    rates = {name: mib / s for name, s in figures.items()}
    print(f"in memory, {mib} MiB (best of 3):")
    for name, rate in rates.items():
        print(f"  {name:8s} {rate:9.0f} MiB/s   ({rate / rates['copy']:.3f} x copy)")
    return rates


def streaming(mib: int, work: Path) -> None:
    plain, sealed, back = work / "plain.bin", work / "sealed.bin", work / "back.bin"
    with plain.open("wb") as out:
        for _ in range(mib):
            out.write(os.urandom(MIB))
    key = crypto.new_key()
    tracemalloc.start()
    start = time.perf_counter()
    with plain.open("rb") as src, sealed.open("wb") as dst:
        crypto.encrypt_stream(key, OID, src, dst)
    enc_s = time.perf_counter() - start
    _, enc_peak = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    start = time.perf_counter()
    with sealed.open("rb") as src, back.open("wb") as dst:
        crypto.decrypt_stream(key, OID, src, dst)
    dec_s = time.perf_counter() - start
    _, dec_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    same = _file_sha(plain) == _file_sha(back)
    print(f"streaming, {mib} MiB file to file (disk included):")
    print(f"  encrypt {mib / enc_s:7.0f} MiB/s, peak allocations {enc_peak / MIB:.1f} MiB")
    print(f"  decrypt {mib / dec_s:7.0f} MiB/s, peak allocations {dec_peak / MIB:.1f} MiB")
    print(f"  round trip identical: {same}")
    print(f"stream_peak_mib={max(enc_peak, dec_peak) / MIB:.1f} (object {mib} MiB)")
    for p in (plain, sealed, back):
        p.unlink()


def _file_sha(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while piece := f.read(4 * MIB):
            h.update(piece)
    return h.hexdigest()


def demo_rounds(args: argparse.Namespace, encrypt: bool) -> list[float]:
    """Run the demo's job once; the round times (seconds) of rounds after the first."""
    from p2pnode.commands.demo import DATASET_DEFAULTS, clean_env, launch
    from p2pnode.control import call
    from p2pnode.procs import Processes, start_embedded_s3

    work = Path(tempfile.mkdtemp(prefix="bench-crypto-"))
    (work / "logs").mkdir()
    procs = Processes(work)
    owner_toml = "" if encrypt else "[owner]\nencrypt = false\n"
    try:
        storage = start_embedded_s3(procs, "s3", work / "s3", clean_env())
        owner = launch(
            work, procs, storage, args.trainers, say=lambda m: None, owner_toml=owner_toml
        ).owner_dir
        spec: dict[str, Any] = {
            "model": "mlp",
            "dataset": args.dataset,
            "trainers": args.trainers,
            "rounds": args.rounds,
            "partition": "dirichlet",
            "alpha": 0.5,
            "seed": 0,
            **DATASET_DEFAULTS[args.dataset],
        }
        job = call(owner, "jobs.submit", {"spec": spec})["job_id"]
        while True:
            status = call(owner, "jobs.status", {"job_id": job})
            if status["state"] not in ("preparing", "running"):
                break
            procs.check_alive()
            time.sleep(0.5)
        if status["state"] != "done":
            raise RuntimeError(f"job ended {status['state']}: {status.get('error')}")
        history = status["history"]
        label = "encrypted" if encrypt else "clear"
        print(f"demo ({label}): {args.dataset}, {args.trainers} trainers, {args.rounds} rounds")
        for rec in history:
            print(
                f"  round {rec['round']:>2}  {rec['round_seconds']:7.3f}s"
                f"  accuracy {rec['test_accuracy']:.4f}"
            )
        return [rec["round_seconds"] for rec in history if rec["round"] > 1]
    finally:
        procs.stop_all()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=64, help="in-memory object size")
    parser.add_argument("--stream-mib", type=int, default=256, help="streamed file size")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--trainers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--skip-demo", action="store_true", help="crypto figures only")
    args = parser.parse_args()
    throughput(args.mib)
    with tempfile.TemporaryDirectory(prefix="bench-crypto-") as tmp:
        streaming(args.stream_mib, Path(tmp))
    if args.skip_demo:
        return 0
    clear = demo_rounds(args, encrypt=False)
    sealed = demo_rounds(args, encrypt=True)
    c, s = statistics.median(clear), statistics.median(sealed)
    noise = statistics.pstdev(clear) / c if len(clear) > 1 else float("nan")
    print(f"median round: clear {c:.3f}s, encrypted {s:.3f}s")
    print(f"run-to-run noise (stdev/median of clear rounds): {noise:.3f}")
    print(f"load average: {os.getloadavg()}")
    print(f"encrypted_round_overhead={(s - c) / c:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
