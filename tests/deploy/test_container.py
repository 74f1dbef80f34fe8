"""The container recipe's promises, read from the files (no container engine in CI).

deploy/container/smoke.sh builds and runs it where an engine answers.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

from p2pnode.cli import build_parser, hoist_global_options

HERE = Path(__file__).resolve().parents[2] / "deploy" / "container"


def test_containerfile_is_multi_stage_non_root_with_a_data_volume() -> None:
    text = (HERE / "Containerfile").read_text()
    stages = re.findall(r"^FROM (\S+)(?: AS (\w+))?", text, re.MULTILINE)
    assert len(stages) == 2 and stages[0][1] == "build"
    final = text.split("\nFROM ")[-1]
    assert "COPY --from=build /opt/distro-train /opt/distro-train" in final
    assert re.search(r"^USER distro-train$", final, re.MULTILINE)
    assert 'VOLUME ["/data"]' in final and "DISTRO_TRAIN_HOME=/data" in final
    assert "download.pytorch.org/whl/cpu" in text  # the CPU build of torch
    cmd = re.search(r"^CMD (\[.*\])$", final, re.MULTILINE)
    assert cmd is not None
    args = build_parser().parse_args(hoist_global_options(yaml.safe_load(cmd.group(1))))
    assert args.command == "daemon"


def test_compose_runs_one_bootstrap_and_daemons_that_join_it() -> None:
    spec = yaml.safe_load((HERE / "compose.yaml").read_text())
    services = spec["services"]
    boot = services["boot"]
    args = build_parser().parse_args(hoist_global_options(boot["command"]))
    assert args.command == "bootstrap" and str(args.data_dir) == "/data"
    daemons = [s for name, s in services.items() if name.startswith("daemon-")]
    assert len(daemons) >= 2
    for d in daemons:
        assert "boot-data:/boot:ro" in d["volumes"]
        line = d["command"][0].replace("$$(", "$(")
        argv = shlex.split(line.removeprefix("exec "))
        assert argv[:2] == ["distro-train", "daemon"]
        assert any(a.startswith("/dns4/boot/tcp/4412/p2p/") for a in argv)
        assert d["depends_on"]["boot"]["condition"] == "service_healthy"
