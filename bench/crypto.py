"""What encryption at rest costs: throughput, streaming memory, and the demo's round time.

1. Throughput of ``storage.crypto`` (AES-256-GCM, 1 MiB segments) encrypting and
   decrypting an in-memory object, against a plain copy of the same bytes and a
   sha256 of them (what every transfer already does), measured in this run.
2. Streaming: a file of ``--stream-mib`` encrypted and decrypted file to file; the
   peak of Python allocations (tracemalloc) stays near one segment whatever the size
   (``--stream-mib 1024`` for a 1 GB model).
3. The cryptographic work on one round's critical path of the demo's job, timed on
   the job's real chunks and model (``jobdata.prepare`` of the same spec): the owner
   encrypting the new model, the slowest trainer decrypting the model and its
   chunks and hashing them, encrypting its update, and the owner decrypting and
   hashing every update one after the other. ``crypto_critical_path_s``.
4. The demo's processes (bootstrap, trainer daemons, embedded S3 server) with two
   owners on the same trainers, one with ``[owner] encrypt = false`` and one with
   the default (encrypted), running the demo's job (MNIST, the 2NN, non-IID) one
   after the other, alternating which goes first, ``--pairs`` times: the jobs meet
   the same warm trainers under the same load. For rounds after the first: the
   median round time, and the median time outside training (round time minus the
   slowest accepted trainer's training time), where encryption's cost lands;
   training time is the noisiest part on a shared machine and encryption does not
   touch it.

The last line is ``encrypted_round_overhead=X``: the difference of the two owners'
median time outside training, over the clear owner's median round time (target <
0.05 for the MNIST demo). On a small, busy machine a figure within the printed
noise says "no measurable cost", not a precise one; the critical-path figure of
step 3 (``crypto_critical_path_fraction``) is the noise-free bound to read beside it.

    .venv/bin/python bench/crypto.py [--mib 64] [--stream-mib 256] [--dataset mnist]
        [--trainers 4] [--rounds 6] [--pairs 2] [--skip-demo]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

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
    enc_s, enc_peak = _file_to_file(crypto.encrypt_stream, key, plain, sealed)
    dec_s, dec_peak = _file_to_file(crypto.decrypt_stream, key, sealed, back)
    tracemalloc.stop()
    same = _file_sha(plain) == _file_sha(back)
    print(f"streaming, {mib} MiB file to file (disk included):")
    print(f"  encrypt {mib / enc_s:7.0f} MiB/s, peak allocations {enc_peak / MIB:.1f} MiB")
    print(f"  decrypt {mib / dec_s:7.0f} MiB/s, peak allocations {dec_peak / MIB:.1f} MiB")
    print(f"  round trip identical: {same}")
    print(f"stream_peak_mib={max(enc_peak, dec_peak) / MIB:.1f} (object {mib} MiB)")
    for p in (plain, sealed, back):
        p.unlink()


def _file_to_file(
    stream: Callable[[bytes, ObjectId, BinaryIO, BinaryIO], object], key: bytes, src: Path,
    dst: Path,
) -> tuple[float, int]:
    """Run ``stream`` from file ``src`` to file ``dst``: (seconds, peak traced bytes)."""
    tracemalloc.reset_peak()
    start = time.perf_counter()
    with src.open("rb") as reader, dst.open("wb") as writer:
        stream(key, OID, reader, writer)
    seconds = time.perf_counter() - start
    return seconds, tracemalloc.get_traced_memory()[1]


def _file_sha(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while piece := f.read(4 * MIB):
            h.update(piece)
    return h.hexdigest()


def demo_spec(args: argparse.Namespace) -> dict[str, Any]:
    """The demo's job (``distro-train demo`` defaults, fewer rounds)."""
    from p2pnode.commands.demo import DATASET_DEFAULTS

    return {
        "model": "mlp",
        "dataset": args.dataset,
        "trainers": args.trainers,
        "rounds": args.rounds,
        "partition": "dirichlet",
        "alpha": 0.5,
        "seed": 0,
        **DATASET_DEFAULTS[args.dataset],
    }


def critical_path(args: argparse.Namespace) -> float:
    """Seconds of encryption work on one round's critical path (see the module)."""
    from protocols.job import compute, jobdata
    from protocols.job.objects import JobKey, chunk_id, update_id
    from protocols.job.spec import from_mapping

    prepared = jobdata.prepare(from_mapping(demo_spec(args)))
    job = JobKey("bench", crypto.new_key())
    model, model_sha = prepared.initial, compute.sha256(prepared.initial)
    sealed_model = job.seal_model(1, model, model_sha)
    slots = [
        [(job.seal_chunk(c, compute.sha256(c)), compute.sha256(c)) for c, _ in slot]
        for slot in prepared.slots
    ]

    def owner_model() -> None:
        compute.sha256(job.seal_model(1, model, model_sha))

    def trainer(slot: list[tuple[bytes, str]]) -> None:
        hashlib.sha256(job.open_model(1, sealed_model, model_sha)).digest()
        for sealed, sha in slot:
            hashlib.sha256(sealed).digest()  # transport hash, of the ciphertext now
            hashlib.sha256(crypto.decrypt(job.chunk_key(sha), chunk_id("bench", sha), sealed))
        update = crypto.encrypt(crypto.new_key(), update_id("bench", 1, "p"), model)
        hashlib.sha256(update).digest()

    key, oid = crypto.new_key(), update_id("bench", 1, "p")
    update = crypto.encrypt(key, oid, model)

    def owner_updates() -> None:
        for _ in prepared.slots:
            hashlib.sha256(crypto.decrypt(key, oid, update)).digest()

    owner_s = best_of(3, owner_model) + best_of(3, owner_updates)
    trainer_s = max(best_of(3, lambda slot=slot: trainer(slot)) for slot in slots)
    data_mib = sum(len(s) for slot in slots for s, _ in slot) / MIB
    print(
        f"critical path of one round: {len(slots)} slots, {data_mib:.1f} MiB of chunks, "
        f"model {len(model) / MIB:.2f} MiB: owner {owner_s * 1000:.1f} ms, "
        f"slowest trainer {trainer_s * 1000:.1f} ms"
    )
    return owner_s + trainer_s


def job_rounds(procs: Any, owner: Path, args: argparse.Namespace, label: str) -> list[Any]:
    """Run the demo's job on ``owner``; (round time, time outside training) after round 1."""
    from localrun import run_job

    status = run_job(procs, owner, demo_spec(args), timeout_s=300.0 * args.rounds + 120)
    if status["state"] != "done":
        raise RuntimeError(f"{label} job ended {status['state']}: {status.get('error')}")
    print(f"job ({label}): {args.dataset}, {args.trainers} trainers, {args.rounds} rounds")
    out = []
    for rec in status["history"]:
        wall, slowest = rec["round_seconds"], max(rec["train_seconds"], default=0.0)
        print(
            f"  round {rec['round']:>2}  {wall:7.3f}s  outside training {wall - slowest:6.3f}s"
            f"  accuracy {rec['test_accuracy']:.4f}"
        )
        if rec["round"] > 1:  # round 1 also waits for every process's first imports
            out.append((wall, wall - slowest))
    return out


def demo_pairs(args: argparse.Namespace) -> tuple[list[Any], list[Any]]:
    """The demo's processes with two owners, one encrypting and one not, sharing the
    trainers; their jobs run one after the other, alternating, ``--pairs`` times.

    Returns:
        (clear rounds, encrypted rounds): (round time, time outside training) each.
    """
    from localrun import start_storage

    from p2pnode.commands.demo import clean_env, launch
    from p2pnode.control import call

    procs, storage = start_storage("bench-crypto-")
    work = procs.work
    try:
        env = clean_env()
        cluster = launch(work, procs, storage, args.trainers, say=lambda m: None)
        sealed_owner = cluster.owner_dir
        # The second owner: the same daemon and config, with encryption off.
        clear_owner = work / "owner-clear"
        clear_owner.mkdir()
        config = clear_owner / "config.toml"
        config.touch(mode=0o600)
        config.write_text(
            (sealed_owner / "config.toml").read_text() + "\n[owner]\nencrypt = false\n"
        )
        argv = list(cluster.owner_argv)
        argv[argv.index("--data-dir") + 1] = str(clear_owner)
        argv[argv.index("--config") + 1] = str(config)
        procs.start("owner-clear", argv, env)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            procs.check_alive()
            try:
                if len(call(clear_owner, "node.peers")) >= args.trainers:
                    break
            except Exception:  # noqa: BLE001 - not listening yet
                pass
            time.sleep(0.5)
        clear: list[Any] = []
        sealed: list[Any] = []
        for i in range(args.pairs):
            # Alternate which goes first, so a drift in the machine's load cancels.
            order = [("clear", clear_owner, clear), ("encrypted", sealed_owner, sealed)]
            for label, owner, into in order if i % 2 == 0 else order[::-1]:
                into += job_rounds(procs, owner, args, label)
        return clear, sealed
    finally:
        procs.stop_all()
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=64, help="in-memory object size")
    parser.add_argument("--stream-mib", type=int, default=256, help="streamed file size")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--trainers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--pairs", type=int, default=2, help="clear/encrypted job pairs")
    parser.add_argument("--skip-demo", action="store_true", help="crypto figures only")
    args = parser.parse_args()
    throughput(args.mib)
    with tempfile.TemporaryDirectory(prefix="bench-crypto-") as tmp:
        streaming(args.stream_mib, Path(tmp))
    crypto_s = critical_path(args)
    print(f"crypto_critical_path_s={crypto_s:.4f}")
    if args.skip_demo:
        return 0
    clear, sealed = demo_pairs(args)
    c_wall = statistics.median(w for w, _ in clear)
    s_wall = statistics.median(w for w, _ in sealed)
    c_out = statistics.median(o for _, o in clear)
    s_out = statistics.median(o for _, o in sealed)
    noise = statistics.pstdev([o for _, o in clear]) / c_wall if len(clear) > 1 else float("nan")
    print(f"median round: clear {c_wall:.3f}s, encrypted {s_wall:.3f}s")
    print(f"median outside training: clear {c_out:.3f}s, encrypted {s_out:.3f}s")
    print(f"run-to-run noise (stdev of clear rounds' time outside training / round): {noise:.3f}")
    print(f"crypto_critical_path_fraction={crypto_s / c_wall:.4f}")
    print(f"load average: {os.getloadavg()}")
    print(f"encrypted_round_overhead={(s_out - c_out) / c_wall:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
