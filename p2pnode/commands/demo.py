"""``distro-train demo``: the whole product on one machine, one process per role.

Starts an embedded S3 server (nanio), a bootstrap node, an owner daemon and N trainer
daemons, each its own OS process with its own data dir under a work folder; submits
a job to the owner over its control socket; shows live progress; writes the final
model, metrics and curve into ``--out``; and stops every process it started, also on
Ctrl-C. Trainer processes get no storage credentials in their environment.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from p2pnode.commands import demo_market
from p2pnode.commands.common import EXIT_USAGE, JSON_HELP, fail, print_json
from p2pnode.procs import Processes, start_embedded_s3
from training import catalogue as cat

READY_TIMEOUT_S = 60.0
CALL_TIMEOUT_S = 10.0
"""Longest wait for one control-socket answer from a demo daemon."""
"""Seconds for the bootstrap node, the owner and every trainer to come up."""
SECRET_ENV = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "DISTRO_TRAIN_S3_ENDPOINT",
    "DISTRO_TRAIN_S3_BUCKET",
    "DISTRO_TRAIN_S3_REGION",
    "DISTRO_TRAIN_HOME",
    "BOOTSTRAP_ADDR",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The demo's flags; defaults give the README's main job (MNIST, 2NN, non-IID, FedAvg)."""
    a = parser.add_argument
    a(
        "--job",
        type=Path,
        default=None,
        help="a job file (TOML/JSON, as for submit; e.g. examples/*.toml) to run instead of "
        "the flags below; its trainers count sets the trainer daemons",
    )
    a("--trainers", type=int, default=4, help="trainer daemons to start (default 4)")
    a("--rounds", type=int, default=20, help="federated rounds (default 20)")
    a("--dataset", default="mnist", choices=cat.BUNDLED_DATASETS, help="(default mnist)")
    a(
        "--model",
        default="mlp",
        choices=cat.JOB_MODELS,
        help="catalogue model (default mlp: McMahan's 2NN)",
    )
    a("--rule", default="fedavg", choices=cat.RULES, help="aggregation rule (default fedavg)")
    a(
        "--partition",
        default="dirichlet:0.5",
        help=f"{', '.join(cat.PARTITIONS)}; dirichlet[:ALPHA] (default dirichlet:0.5)",
    )
    a("--epochs", type=int, default=None, help="local epochs per round (default: per dataset)")
    a("--batch-size", type=int, default=None, help="local batch size (default: per dataset)")
    a("--lr", type=float, default=None, help="local learning rate (default: per dataset)")
    a("--momentum", type=float, default=None, help="local SGD momentum (default: per dataset)")
    a("--seed", type=int, default=0, help="seed for data split and training (default 0)")
    a(
        "--target-accuracy",
        type=float,
        default=0.0,
        help="stop once test accuracy reaches this (0..1; default: run every round)",
    )
    a("--out", type=Path, default=Path("out"), help="result folder (default ./out)")
    a(
        "--work-dir",
        type=Path,
        default=None,
        help="folder for the processes' data dirs and logs (default: a temp dir, removed)",
    )
    a(
        "--json",
        action="store_true",
        help=JSON_HELP + " (progress goes to stderr; the summary is the JSON document)",
    )
    demo_market.add_arguments(a)


def _partition(text: str) -> dict[str, Any]:
    kind, _, alpha = text.partition(":")
    if kind not in cat.PARTITIONS:
        raise ValueError(f"--partition: unknown kind {kind!r}")
    out: dict[str, Any] = {"partition": kind}
    if alpha:
        out["alpha"] = float(alpha)
    return out


DATASET_DEFAULTS: dict[str, dict[str, Any]] = {
    # MNIST: E=1, B=32 as in McMahan et al.'s 2NN runs, with SGD momentum 0.9; digits
    # has only ~1,400 training samples, so it takes more local steps per round.
    "mnist": {"epochs": 1, "batch_size": 32, "lr": 0.05, "momentum": 0.9},
    "fashion_mnist": {"epochs": 1, "batch_size": 32, "lr": 0.05, "momentum": 0.9},
    "digits": {"epochs": 5, "batch_size": 16, "lr": 0.1, "momentum": 0.0},
}


def _spec(args: argparse.Namespace) -> dict[str, Any]:
    tuned = DATASET_DEFAULTS[args.dataset]
    return {
        "model": args.model,
        "dataset": args.dataset,
        "trainers": args.trainers,
        "rounds": args.rounds,
        **{k: tuned[k] if getattr(args, k) is None else getattr(args, k) for k in tuned},
        "rule": args.rule,
        "seed": args.seed,
        "target_accuracy": args.target_accuracy,
        **_partition(args.partition),
    }


def _try_call(data_dir: Path, method: str, params: dict[str, Any] | None = None) -> Any:
    from p2pnode.control import call
    from p2pnode.errors import ControlError

    try:
        return call(data_dir, method, params or {}, timeout=CALL_TIMEOUT_S)
    except ControlError:
        return None


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM behaves like Ctrl-C: unwind, stopping every child process."""
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    """Run the demo; 0 when the job completed."""
    from protocols.job.spec import SpecError, from_mapping, read_file

    try:
        if args.job is not None:
            spec = read_file(args.job)
            args.trainers = from_mapping(spec).trainers
        else:
            spec = _spec(args)
            from_mapping(spec)
    except (ValueError, SpecError) as exc:
        return fail(str(exc), EXIT_USAGE)
    signal.signal(signal.SIGTERM, _interrupt)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="distro-train-demo-"))
    (work / "logs").mkdir(parents=True, exist_ok=True)
    procs = Processes(work)
    say = (lambda m: print(m, file=sys.stderr, flush=True)) if args.json else print
    try:
        summary = _run(args, spec, work, procs, say)
    except KeyboardInterrupt:
        say("interrupted: stopping every process")
        return 130
    except (RuntimeError, TimeoutError) as exc:
        return fail(str(exc))
    finally:
        procs.stop_all()
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    from p2pnode.commands.results import TASK_LABELS

    say(
        f"final test {TASK_LABELS[summary['task']][0]} {summary['accuracy']:.4f} "
        f"after {summary['rounds']} rounds "
        f"in {summary['seconds']:.1f}s; model, metrics.json and curve.png in {args.out}"
    )
    if args.json:
        print_json(summary)
    return 0 if summary["state"] == "done" else 1


def _run(
    args: argparse.Namespace, spec: dict[str, Any], work: Path, procs: Processes, say: Any
) -> dict[str, Any]:
    from p2pnode.commands.jobs import watch
    from p2pnode.commands.results import write_result
    from p2pnode.control import call

    started = time.monotonic()
    env = clean_env()
    storage = start_embedded_s3(procs, "s3", work / "s3", env)
    say(f"embedded S3 server at {storage['endpoint']}")
    chain = None if args.no_market else demo_market.start_chain(procs, env)
    owner_toml, trainer_toml = demo_market.tomls(chain, args.ask) if chain else ("", "")
    owner_dir = launch(work, procs, storage, args.trainers, say, owner_toml=owner_toml,
                       trainer_toml=trainer_toml).owner_dir
    trainer_dirs = [work / f"trainer-{i}" for i in range(args.trainers)]
    if chain:
        say(f"local chain (anvil) at {chain['rpc_url']}, market contract {chain['contract']}")
        demo_market.fund(chain, [owner_dir, *trainer_dirs])
        spec = {"price": demo_market.price(args), **spec}
    say(f"owner sees {args.trainers} trainers after {time.monotonic() - started:.1f}s; submitting")
    job_id = call(owner_dir, "jobs.submit", {"spec": spec})["job_id"]

    def get() -> Any:
        procs.check_alive()
        return call(owner_dir, "jobs.status", {"job_id": job_id}, timeout=CALL_TIMEOUT_S)

    watch(get, as_json=args.json, print_final=False)
    result = call(owner_dir, "jobs.result", {"job_id": job_id})
    if result["state"] != "done":
        status = get()
        raise RuntimeError(f"job {job_id} ended {result['state']}: {status.get('error')}")
    summary = write_result(result, args.out)
    # Each round's own duration (from its opening) and round 1's from the submission.
    rounds = result["rounds"]
    summary["round_seconds"] = [r.get("round_seconds") for r in rounds]
    summary["submit_to_round1_seconds"] = rounds[0]["seconds"] if rounds else None
    if chain:
        summary["market"] = demo_market.settle(chain, owner_dir, trainer_dirs, job_id, say)
    summary["wall_seconds"] = round(time.monotonic() - started, 3)
    summary["peak_rss_mib"] = peak = peak_rss_mib(procs)
    say("peak RSS (MiB): " + ", ".join(f"{k} {v:.0f}" for k, v in peak.items())
        + f"; sum {sum(peak.values()):.0f}")
    return summary


def peak_rss_bytes(pid: int) -> int | None:
    """Peak resident memory (VmHWM) of ``pid`` plus that of each of its live descendants.

    Each process's own peak is summed: an upper bound of what they held at once.
    None where the kernel does not report VmHWM (not Linux) or ``pid`` has exited.
    """
    import psutil

    try:
        family = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return None
    peaks = []
    for proc in family:
        try:
            status = Path(f"/proc/{proc.pid}/status").read_text()
        except OSError:
            continue
        peaks += [int(ln.split()[1]) * 1024 for ln in status.splitlines()
                  if ln.startswith("VmHWM:")]
    return sum(peaks) if peaks else None


def peak_rss_mib(procs: Processes) -> dict[str, float]:
    """Each running child's peak RSS in MiB (:func:`peak_rss_bytes`), by role name.

    Children that report none (exited, or not Linux) are left out.
    """
    peaks = {name: peak_rss_bytes(proc.pid) for name, proc in procs.children.items()}
    return {name: round(b / 2**20, 1) for name, b in peaks.items() if b is not None}


def clean_env() -> dict[str, str]:
    """This environment without storage credentials or daemon settings."""
    env = {k: v for k, v in os.environ.items() if k not in SECRET_ENV}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _toml_table(name: str, values: dict[str, Any]) -> str:
    return f"[{name}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items())


@dataclass
class Cluster:
    """What ``launch`` started: the owner's data dir and the argv to restart a daemon."""

    owner_dir: Path
    owner_argv: list[str]
    trainer_argv: list[list[str]]


def launch(
    work: Path,
    procs: Processes,
    storage: dict[str, Any],
    trainers: int,
    say: Any = print,
    trainer_programs: list[list[str]] | None = None,
    owner_toml: str = "",
    trainer_toml: str = "",
) -> Cluster:
    """Start a bootstrap node, an owner daemon using ``storage`` and ``trainers`` trainers.

    Only the owner's config file (mode 0600) holds the storage credentials; trainer
    processes get none, in files or environment. ``trainer_programs`` optionally gives
    each trainer's Python argv in place of ``-m p2pnode.cli daemon`` (tests run other
    trainer behaviours this way); ``owner_toml`` is appended to the owner's config file,
    ``trainer_toml`` to the trainers' (``[ledger]``, ``[market]``).
    Returns once the owner sees every trainer.
    """
    env = clean_env()
    maddr = procs.start_bootstrap(work / "bootstrap", env, READY_TIMEOUT_S)
    say(f"bootstrap node {maddr}")
    owner_cfg, trainer_cfg = _write_configs(work, storage, trainers, owner_toml, trainer_toml)
    owner_dir = owner_cfg.parent
    daemon = ["-m", "p2pnode.cli", "daemon"]
    flags = ["--bootstrap", maddr, "--listen", "/ip4/127.0.0.1/tcp/0"]
    programs = trainer_programs or [daemon] * trainers
    cluster = Cluster(
        owner_dir,
        [*daemon, *flags, "--data-dir", str(owner_dir), "--config", str(owner_cfg)],
        [[*programs[i], *flags, "--data-dir", str(work / f"trainer-{i}"),
          "--config", str(trainer_cfg)] for i in range(trainers)],
    )
    procs.start("owner", cluster.owner_argv, env)
    for i, argv in enumerate(cluster.trainer_argv):
        procs.start(f"trainer-{i}", argv, env)
    procs.wait(lambda: _try_call(owner_dir, "node.id"), "the owner daemon", READY_TIMEOUT_S)
    procs.wait(
        lambda: len(_try_call(owner_dir, "node.peers") or []) >= trainers,
        f"{trainers} trainers",
        READY_TIMEOUT_S,
    )
    return cluster


def _write_configs(work: Path, storage: dict[str, Any], trainers: int, owner_toml: str,
                   trainer_toml: str) -> tuple[Path, Path]:
    """The owner's config file (mode 0600: it holds the storage keys) and the trainers'."""
    # Presence every second notices a dead trainer fast, but each status is relayed
    # by every daemon: with many daemons on a small machine, space them out.
    interval = max(1.0, (trainers + 2) / 4)
    # The period is set here for the demo's size; the daemon's own stretching (N / 2 a
    # second) would slow it further, so its budget matches this one (4 a second).
    presence = _toml_table("presence", {"interval_s": interval, "silence_timeout_s": 10 * interval,
                                        "max_received_per_second": 4.0})
    owner_dir = work / "owner"
    owner_dir.mkdir(parents=True)
    owner_cfg = owner_dir / "config.toml"
    owner_cfg.touch(mode=0o600)
    owner_cfg.write_text(presence + _toml_table("storage", storage) + owner_toml)
    trainer_cfg = work / "trainer.toml"
    # Everything runs on this machine, storage included: trainers must be let reach
    # loopback, which they refuse by default (URLs come from strangers).
    local = {"train_threads": 1, "allow_networks": ["127.0.0.0/8", "::1/128"]}
    trainer_cfg.write_text(presence + _toml_table("trainer", local) + trainer_toml)
    return owner_cfg, trainer_cfg
