"""Byzantine trainers against the whole owner pipeline (validation, robust rule,
reputation): 10 trainers of which 3 are adversarial, in-process network, real storage
and training. The same scenario over real processes runs in bench/scenarios.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from protocols.job.selection import ReputationConfig
from protocols.job.trainer import Trainer
from tests.job.adversaries import GaussianNoise, LabelFlip, Replayer, SignFlip
from tests.job.test_job_inprocess import run_job, start
from tests.jobspecs import DIGITS_JOB
from tests.s3servers import ServerHandle

JOB: dict[str, Any] = {**DIGITS_JOB, "trainers": 10, "rounds": 6}


HONEST: list[dict[str, Any]] = []
# How far below the all-honest run a robust run may end. Digits' test split has 360
# samples, so one accuracy's standard error is about 0.014; the robust run under noise
# ended 0.022 below the honest one in one CI run and 0.003-0.014 below in four runs
# here, the rule dropping a fair share of honest updates each round. An unchecked
# attack costs more than 0.2 (the sign-flip case below).
MARGIN = 0.05
# An owner that checks nothing (no re-runs, no quarantine: docs/verification.md).
NAIVE_OWNER = {"spot_check_rate": 0.0, "probation_checks": 0, "quarantine_contributions": 0}


async def scenario(
    tmp: Path, server: ServerHandle, kinds: list[type[Trainer]],
    owner: dict[str, Any] | None = None, **job: Any,
) -> tuple[dict[str, Any], dict[str, float], list[str]]:
    await trio.Path(tmp).mkdir(parents=True)
    async with trio.open_nursery() as nursery:
        c = await start(nursery, tmp, server, kinds, **(owner or {}))
        status = await run_job(c, **{**JOB, **job})
        rep = {p: s for p, (s, _) in c.owner.jobs.reputation().items()}
        bad = [t.node.peer_id.to_base58() for t in c.trainers if type(t) is not Trainer]
        nursery.cancel_scope.cancel()
    return status, rep, bad


@pytest.mark.parametrize(
    "adversary",
    [SignFlip, GaussianNoise, LabelFlip, Replayer],
    ids=["sign_flip", "noise", "label_flip", "replay"],
)
async def test_three_of_ten_adversaries_robust_vs_fedavg(
    tmp_path: Path, nanio_server: ServerHandle, adversary: type[Trainer]
) -> None:
    if not HONEST:  # one all-honest baseline for every adversary
        HONEST.append((await scenario(tmp_path / "honest", nanio_server, [Trainer] * 10))[0])
    honest = HONEST[0]
    kinds = [adversary] * 3 + [Trainer] * 7
    robust, rep, bad = await scenario(
        tmp_path / "robust", nanio_server, kinds, rule="multi_krum", rule_params={"f": 3}
    )
    assert honest["state"] == "done" and robust["state"] == "done"
    acc_honest = honest["history"][-1]["test_accuracy"]
    acc_robust = robust["history"][-1]["test_accuracy"]
    assert acc_robust >= acc_honest - MARGIN, (acc_honest, acc_robust)
    floor = ReputationConfig().floor
    assert all(rep.get(p, 0.0) < floor for p in bad), rep  # no longer selected
    assert not set(bad) & set(robust["history"][-1]["trainers"])
    if adversary is Replayer:  # detected, not merely survived
        reasons = [r for rec in robust["history"] for r in rec["rejected_reasons"].values()]
        assert "replayed" in reasons, robust["history"]
    if adversary is SignFlip:
        naive, _, _ = await scenario(
            tmp_path / "naive", nanio_server, kinds, rule="fedavg", validate_updates=False,
            owner=NAIVE_OWNER,
        )
        acc_naive = naive["history"][-1]["test_accuracy"]
        assert acc_naive < acc_honest - 0.2, (acc_honest, acc_naive)
