"""``submit``, ``jobs``, ``status [JOB]``, ``result JOB``, ``cancel JOB``: the owner's CLI."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from p2pnode.commands.common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    add_client_flags,
    data_dir_of,
    fail,
    fail_control,
    print_json,
)

MAX_SPEC_FILE = 64 * 1024
WATCH_INTERVAL_S = 0.5


def _common(parser: argparse.ArgumentParser) -> None:
    add_client_flags(parser)


def add_submit_arguments(parser: argparse.ArgumentParser) -> None:
    """``submit SPEC``."""
    parser.add_argument("spec", type=Path, help="job spec file (TOML or JSON)")
    _common(parser)


def add_list_arguments(parser: argparse.ArgumentParser) -> None:
    """``jobs``."""
    _common(parser)


def add_status_arguments(parser: argparse.ArgumentParser) -> None:
    """``status [JOB] [--watch]``."""
    parser.add_argument("job", nargs="?", help="a job id; without it, the daemon's status")
    parser.add_argument("--watch", action="store_true",
                        help="follow the job live until it ends")
    _common(parser)


def add_result_arguments(parser: argparse.ArgumentParser) -> None:
    """``result JOB --out DIR``."""
    parser.add_argument("job", help="job id")
    parser.add_argument("--out", type=Path, required=True,
                        help="folder for model.safetensors, metrics.json, curve.png")
    _common(parser)


def add_cancel_arguments(parser: argparse.ArgumentParser) -> None:
    """``cancel JOB``."""
    parser.add_argument("job", help="job id")
    _common(parser)


def _call(args: argparse.Namespace, method: str, params: dict[str, Any]) -> Any:
    from p2pnode.control import call

    return call(data_dir_of(args), method, params, timeout=args.timeout)


def _guard(fn: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        from p2pnode.errors import ControlError

        try:
            code: int = fn(args)
            return code
        except ControlError as exc:
            return fail_control(exc)
        except KeyboardInterrupt:
            return EXIT_INTERRUPTED

    run.__doc__ = fn.__doc__
    return run


@_guard
def run_submit(args: argparse.Namespace) -> int:
    """Submit a job spec file; print the job id."""
    try:
        if args.spec.stat().st_size > MAX_SPEC_FILE:
            return fail(f"{args.spec}: larger than {MAX_SPEC_FILE} bytes", EXIT_USAGE)
        text = args.spec.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return fail(f"cannot read {args.spec}: {exc}", EXIT_USAGE)
    from protocols.job.spec import for_submit  # data.path is relative to the job file

    result = _call(args, "jobs.submit", {"spec": for_submit(text, args.spec)})
    if args.json:
        print_json(result)
    else:
        print(result["job_id"])
        seen = result.get("check")
        if seen:  # the owner's own data or model, as read: on stderr, stdout is the id
            adapters = seen.get("adapter_parameters") or 0
            lora = f" + {adapters:,} LoRA adapter parameters (trained)" if adapters else ""
            print(f"data: {seen['train']} training, {seen['validation']} validation, "
                  f"{seen['test']} test samples; model: {seen['parameters']:,} parameters"
                  f"{lora}, {seen['flops_per_sample']:,} FLOPs and "
                  f"{seen['activation_bytes_per_sample']:,} activation bytes per sample",
                  file=sys.stderr)
    return 0


def _eth(wei: str | None) -> str:
    return "-" if wei is None else f"{int(wei) / 10**18:.6f}"


@_guard
def run_list(args: argparse.Namespace) -> int:
    """List this daemon's jobs."""
    jobs = _call(args, "jobs.list", {})
    if args.json:
        print_json(jobs)
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table("job", "state", "rounds done", "created", "model sha256",
                  "max price ETH", "budget left ETH")
    for j in jobs:
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(j["created_ms"] / 1000))
        m = j.get("market") or {}  # a paid job's terms (docs/ledger.md)
        table.add_row(j["job_id"], j["state"], str(j["completed_round"]), created,
                      (j["model_sha256"] or "")[:16], _eth(m.get("max_price")),
                      _eth(m.get("budget_left")))
    Console().print(table)
    return 0


@_guard
def run_status(args: argparse.Namespace) -> int:
    """Show a job's status (or, without JOB, the daemon's)."""
    if args.job is None:
        if args.watch:
            return fail("status --watch needs a JOB to follow", EXIT_USAGE)
        from p2pnode.commands.query import run_status as node_status

        code: int = node_status(args)
        return code
    if not args.watch:
        status = _call(args, "jobs.status", {"job_id": args.job})
        if args.json:
            print_json(status)
        else:
            from rich.console import Console

            Console().print(render_status(status))
        return 0
    return watch(lambda: _call(args, "jobs.status", {"job_id": args.job}), args.json)


def watch(get: Any, as_json: bool, print_final: bool = True) -> int:
    """Follow a job live until it ends; return 0 when it is done.

    With ``as_json`` the live view goes to stderr and, if ``print_final``, the final
    status is printed as JSON on stdout.
    """
    from rich.console import Console
    from rich.live import Live

    console = Console(stderr=as_json)
    status = get()
    with Live(render_status(status), console=console, refresh_per_second=4) as live:
        while status["state"] in ("preparing", "running"):
            time.sleep(WATCH_INTERVAL_S)
            status = get()
            live.update(render_status(status))
    if not console.is_terminal:
        console.print()  # rich leaves the last frame unterminated when not on a terminal
    if as_json and print_final:
        print_json(status)
    return 0 if status["state"] == "done" else EXIT_FAILED


def render_status(status: dict[str, Any]) -> Any:
    """A rich renderable: round progress bar, metrics so far, per-trainer state."""
    from rich.console import Group
    from rich.progress import BarColumn, Progress, TextColumn
    from rich.table import Table

    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                   TextColumn("round {task.completed}/{task.total}"))
    bar.add_task(f"job {status['job_id']} {status['phase']}",
                 total=status["rounds"], completed=status["completed_round"])
    head = Table.grid(padding=(0, 2))
    from p2pnode.commands.results import TASK_LABELS, metric_rows, task_of

    acc, loss = status.get("test_accuracy"), status.get("test_loss")
    past = status.get("history", [])
    score_label, loss_label = TASK_LABELS[task_of(past)]
    head.add_row("model", f"{status['model']} on {status['dataset']}, rule {status['rule']}")
    metrics = past[-1].get("metrics", {}) if past else {}
    for label, value in metric_rows(metrics) if metrics else []:
        head.add_row(label, value)
    if acc is not None and not metrics:
        head.add_row(f"test {score_label}", f"{acc:.4f}")
        head.add_row(f"test {loss_label}", f"{loss:.4f}")
    if status.get("market"):
        m = status["market"]
        head.add_row("price", f"at most {_eth(m['max_price'])} ETH per {m['unit']}, "
                     f"budget {_eth(m['budget'])} ETH, left {_eth(m['budget_left'])} ETH "
                     f"({m['receipts']} receipts)")
    if status.get("error"):
        head.add_row("error", str(status["error"]))
    trainers = Table("trainer", "state", title="trainers")
    for peer, state in sorted(status.get("trainers", {}).items()):
        trainers.add_row(peer[-12:], state)
    history = Table("round", "seconds", score_label, loss_label, "accepted", "rejected",
                    title="rounds")
    for r in status.get("history", [])[-8:]:
        history.add_row(str(r["round"]), f"{r['seconds']:.1f}", f"{r['test_accuracy']:.4f}",
                        f"{r['test_loss']:.4f}", str(r["accepted"]), str(r["rejected"]))
    return Group(bar, head, history, trainers)


@_guard
def run_result(args: argparse.Namespace) -> int:
    """Download the job's model and write model.safetensors, metrics.json, curve.png."""
    from p2pnode.commands.results import write_result
    from p2pnode.stores import StorageError

    result = _call(args, "jobs.result", {"job_id": args.job})
    try:
        summary = write_result(result, args.out)
    except (StorageError, ValueError) as exc:
        return fail(str(exc), EXIT_FAILED)
    if args.json:
        print_json(summary)
    else:
        print(f"job {summary['job_id']} ({summary['state']}): accuracy {summary['accuracy']}"
              f" after {summary['rounds']} rounds; written to {summary['out']}")
    return 0


@_guard
def run_cancel(args: argparse.Namespace) -> int:
    """Cancel a running job."""
    result = _call(args, "jobs.cancel", {"job_id": args.job})
    if args.json:
        print_json(result)
    else:
        print("cancelled" if result["cancelled"] else "not running")
    return 0
