"""Wire the job protocol into a daemon: owner and trainer roles, ``jobs.*`` routes.

Every daemon is both: it answers job announcements as a trainer, and it owns the
jobs submitted to it through the control socket. Storage is needed only by the
owner: with no ``[storage]`` table and no ``DISTRO_TRAIN_S3_ENDPOINT``, the daemon
starts an embedded S3 server (nanio) in ``D/s3`` on first use and stops it on exit.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import trio

import distro_schema
from p2pnode.errors import ConfigError
from p2pnode.jobstore import JobStore
from p2pnode.market import MarketParts
from p2pnode.market import add_routes as add_market_routes
from p2pnode.rpc import InvalidParams, RpcError
from p2pnode.stores import Stoppable, open_owner_store, reachable_host
from protocols.job import PROTOCOL_ID
from protocols.job.owner import Owner, OwnerConfig
from protocols.job.selection import ReputationConfig
from protocols.job.service import request_handler
from protocols.job.spec import SpecError, from_mapping, loads
from protocols.job.spec import schema as spec_json_schema
from protocols.job.trainer import Trainer
from protocols.job.trainerconfig import TrainerConfig

if TYPE_CHECKING:
    from p2pnode.node import Node

log = logging.getLogger("distro_train.jobs")
T = TypeVar("T")
JOB_NOT_FOUND = -32001
"""JSON-RPC application error: no job with that id on this daemon."""


def settings_from_table(cls: type[T], section: str, table: Mapping[str, Any]) -> T:
    """Build a frozen settings dataclass from a TOML table, naming any bad field.

    The dataclass's annotations are its schema (``distro_schema``). A nested settings
    dataclass (``OwnerConfig.reputation``) is its own table, never a key of this one.

    Raises:
        ConfigError: An unknown field, or a value of the wrong type or out of range.
    """
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in table and dataclasses.is_dataclass(f.default_factory):
            raise ConfigError(f"{section}.{f.name}", f"unknown field; use a [{f.name}] table")
    return distro_schema.load(cls, table, error=ConfigError, prefix=section)


def install(node: Node, trainer_cls: type[Trainer] = Trainer) -> tuple[Owner, Trainer]:
    """Add the owner and trainer roles and the ``jobs.*`` routes to ``node``."""
    jobs = JobStore(node.config.node.data_dir / "jobs.sqlite3")
    stack: list[Stoppable] = []
    extra = node.config.extra
    owner_cfg = dataclasses.replace(
        settings_from_table(OwnerConfig, "owner", extra.get("owner", {})),
        reputation=settings_from_table(ReputationConfig, "reputation", extra.get("reputation", {})),
    )
    trainer_cfg = settings_from_table(TrainerConfig, "trainer", extra.get("trainer", {}))
    data_dir = node.config.node.data_dir
    market = MarketParts(data_dir, extra)  # [ledger] and [market] (docs/ledger.md)
    owner = Owner(
        node, jobs,
        lambda: open_owner_store(extra.get("storage"), data_dir, stack,
                                 reachable_host(node.addrs())),
        owner_cfg,
        market.settlement,
    )
    if trainer_cfg.device == "cpu":  # advertise only a GPU tasks will train on
        node.sampler.gpu = ""

    def advertise(gpu: str) -> None:
        node.sampler.gpu = gpu

    trainer = trainer_cls(node, trainer_cfg, on_load=node.set_queue_length, on_device=advertise)
    trainer.market = market.trainer
    node.set_stream_handler(PROTOCOL_ID, request_handler(node.private_key, owner, trainer))

    async def run_owner(_node: Node, *, task_status: trio.TaskStatus[None]) -> None:
        try:
            await owner.run(task_status=task_status)
        finally:
            jobs.close()
            for server in stack:
                await trio.to_thread.run_sync(server.stop)

    async def run_trainer(_node: Node, *, task_status: trio.TaskStatus[None]) -> None:
        await trainer.run(task_status=task_status)

    node.add_service(run_owner)
    node.add_service(run_trainer)
    _add_routes(node, owner, trainer)
    add_market_routes(node.routes, market, owner)
    node.peer_extras.append(lambda peer: {"reputation": round(owner.reputation_of(peer), 2)})
    return owner, trainer


def _job_id(params: dict[str, Any]) -> str:
    job_id = params["job_id"]
    if not (0 < len(job_id) <= 64 and job_id.isalnum()):
        raise InvalidParams("job_id", "must be 1-64 letters and digits")
    return str(job_id)


def _add_routes(node: Node, owner: Owner, trainer: Trainer) -> None:
    async def submit(params: dict[str, Any]) -> dict[str, Any]:
        spec_in = params["spec"]
        try:
            spec = loads(spec_in) if isinstance(spec_in, str) else from_mapping(spec_in)
            if spec.price.paid and owner.market is None:
                raise InvalidParams("spec.price", "a paid job needs a [ledger] (docs/ledger.md)")
            summary = await owner.check(spec)
            out: dict[str, Any] = {"job_id": await owner.submit(spec, checked=True)}
            if summary is not None:  # the owner's own data or model: what it costs
                out["check"] = summary
            return out
        except SpecError as exc:
            raise InvalidParams(f"spec.{exc.field}", exc.detail) from None

    async def list_jobs(params: dict[str, Any]) -> list[dict[str, Any]]:
        return owner.list_jobs()

    async def status(params: dict[str, Any]) -> dict[str, Any]:
        out = owner.status(_job_id(params))
        if out is None:
            raise RpcError(JOB_NOT_FOUND, "no such job")
        return out

    async def result(params: dict[str, Any]) -> dict[str, Any]:
        out = await owner.result(_job_id(params))
        if out is None:
            raise RpcError(JOB_NOT_FOUND, "no such job")
        return out

    async def cancel(params: dict[str, Any]) -> dict[str, Any]:
        job_id = _job_id(params)
        if owner.status(job_id) is None:
            raise RpcError(JOB_NOT_FOUND, "no such job")
        return {"cancelled": await owner.cancel(job_id)}

    async def trainer_status(params: dict[str, Any]) -> dict[str, Any]:
        return trainer.status()

    async def spec_schema(params: dict[str, Any]) -> dict[str, Any]:
        return spec_json_schema()

    one_job = {"job_id": str}
    add = node.routes.add
    add("jobs.submit", submit, required={"spec": (str, dict)},
        doc="Submit a job spec (TOML/JSON text or an object); returns job_id.")
    add("jobs.list", list_jobs, doc="This daemon's jobs as owner, newest first.")
    add("jobs.status", status, required=one_job,
        doc="A job's state, rounds so far and per-trainer state.")
    add("jobs.result", result, required=one_job,
        doc="The latest model's presigned URL, sha256 and key (if encrypted), per-round metrics.")
    add("jobs.cancel", cancel, required=one_job, doc="Stop a running job.")
    add("trainer.status", trainer_status, doc="What this daemon's trainer role does.")
    add("jobs.schema", spec_schema, doc="The JSON Schema of a job spec.")
