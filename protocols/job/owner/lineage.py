"""A job's model lineage, rebuilt from the ledger's round log, the job store and storage.

Each global model is content-addressed by its sha256; the ledger's log holds, per
round, the model, its parent (the model before it) and the Merkle root of the
updates it was made from. ``lineage`` lists the versions and, with ``verify``,
checks that:

- the log's rounds are the job store's rounds, in order, and each parent is the
  model before it (the initial model for the first);
- each root is the Merkle root of the round's used update hashes (so any trainer
  can prove its update is in round r with ``ledger.receipts.merkle_proof``);
- each model, the initial one included, read back from storage (and decrypted
  for an encrypted job), hashes to the committed sha256.
"""

from __future__ import annotations

import hashlib
from typing import Any

import trio

from distro_errors import DistroError
from protocols.job.objects import JobKey
from protocols.job.owner.config import OwnerEnv
from protocols.job.owner.prepare import model_key


async def lineage(env: OwnerEnv, job_id: str, *, verify: bool) -> dict[str, Any]:
    """The versions of ``job_id``'s model, each with its problems when ``verify``."""
    if env.market is None:
        raise DistroError("no [ledger] configured")
    log = await trio.to_thread.run_sync(env.market.market.round_log, job_id)
    records = {r["round"]: r for r in env.jobs.rounds(job_id)}
    problems: list[str] = []
    versions: list[dict[str, Any]] = []
    store = await env.get_store() if verify else None
    secret = env.jobs.job_key(job_id)
    job_key = JobKey(job_id, secret) if secret else None
    if verify and not log:
        problems.append("the ledger holds no round of this job")
    if verify and log and len(log) != len(records):
        problems.append(f"the ledger has {len(log)} rounds, the job store {len(records)}")
    for i, c in enumerate(log):
        rec = records.get(c.round, {})
        used = list(rec.get("used_updates", []))
        v = {"round": c.round, "model": c.model, "parent": c.parent,
             "updates_root": c.updates_root, "updates": len(used), "problems": []}
        if verify:
            v["problems"] = await _check(env, store, job_key, job_id, c, log[i - 1] if i else None,
                                         rec, used)
        versions.append(v)
    if verify and store is not None and log:
        initial = await _stored_sha(env, store, job_key, job_id, 0, log[0].parent)
        if initial != log[0].parent:
            problems.append(f"initial model in storage hashes to {initial[:16]}, "
                            f"not the committed parent {log[0].parent[:16]}")
    return {"job_id": job_id, "versions": versions, "problems": problems}


async def _check(env: OwnerEnv, store: Any, job_key: JobKey | None, job_id: str, c: Any,
                 prev: Any, rec: dict[str, Any], used: list[str]) -> list[str]:
    from ledger.receipts import merkle_root

    out = []
    if not rec:
        out.append("no such round in the job store")
    elif rec.get("model_sha256") != c.model:
        out.append(f"job store says model {str(rec.get('model_sha256'))[:16]}")
    if prev is not None and c.parent != prev.model:
        out.append("parent is not the previous round's model")
    if merkle_root(used).hex() != c.updates_root:
        out.append("Merkle root differs from the round's used updates")
    stored = await _stored_sha(env, store, job_key, job_id, c.round, c.model)
    if stored != c.model:
        out.append(f"model in storage hashes to {stored[:16]}")
    return out


async def _stored_sha(env: OwnerEnv, store: Any, job_key: JobKey | None, job_id: str,
                      round_no: int, sha: str) -> str:
    """sha256 of the stored (decrypted) model of ``round_no``, or a reason it has none."""
    name = job_key.blind(sha) if job_key else sha
    key = model_key(env.prefix(job_id), round_no, name)
    try:
        data = await trio.to_thread.run_sync(store.get_bytes, key)
        if job_key is not None:
            data = job_key.open_model(round_no, data, sha)
    except DistroError as exc:
        return f"unreadable ({exc.reason})"
    return hashlib.sha256(data).hexdigest()
