"""A real daemon process whose owner points every task URL at a target of its choosing
(test and benchmark use only; never a production flag).

    python -m tests.job.malicious_owner_daemon BASE_URL <distro-train daemon flags>

The owner runs the production job protocol (announce, recruit, seal and send tasks),
but each task it sends has its model, chunk, upload and update URLs rewritten to
``BASE_URL/model``, ``BASE_URL/chunk/<i>``, ``BASE_URL/upload`` and ``BASE_URL/update``:
an owner trying to turn its trainers against their own network (a canary on a private
address, say). Trainers must refuse such a task without a single request.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from p2pnode.commands.daemon import add_arguments
from p2pnode.config import load_config
from p2pnode.runner import run_node
from protocols.job.owner.round import RoundRunner


def point_tasks_at(base_url: str) -> None:
    """Make every ``RoundRunner`` in this process send tasks whose URLs name ``base_url``."""
    honest_task = RoundRunner._task

    async def hostile_task(self: RoundRunner, ctx: Any, a: Any) -> Any:
        task = await honest_task(self, ctx, a)
        task.model_url = f"{base_url}/model"
        for i, chunk in enumerate(task.chunks):
            chunk.url = f"{base_url}/chunk/{i}"
        task.upload_url = f"{base_url}/upload"
        task.update_get_url = f"{base_url}/update"
        return task

    RoundRunner._task = hostile_task  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="malicious_owner_daemon")
    parser.add_argument("base_url", help="where every task URL points, e.g. http://127.0.0.2:80")
    add_arguments(parser)
    args = parser.parse_args(argv)
    point_tasks_at(args.base_url.rstrip("/"))
    config = load_config(args.config, overrides={
        "node.data_dir": args.data_dir, "node.listen": args.listen,
        "node.bootstrap": args.bootstrap,
    })
    return run_node(config, log_level=args.log_level)


if __name__ == "__main__":
    sys.exit(main())
