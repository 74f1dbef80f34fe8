"""The systemd units: what they promise, a command line the CLI accepts, systemd's verdict."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from p2pnode.cli import build_parser, hoist_global_options

UNITS = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
NAMES = ["distro-train.service", "distro-train-bootstrap.service"]


def service(name: str) -> dict[str, list[str]]:
    """Each key of [Service] with all its values (keys repeat in unit files)."""
    out: dict[str, list[str]] = {}
    section = ""
    for line in (UNITS / name).read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


@pytest.mark.parametrize("name", NAMES)
def test_unit_promises(name: str) -> None:
    s = service(name)
    assert s["Type"] == ["notify"] and s["Restart"] == ["on-failure"]
    assert s["User"] == ["distro-train"]  # the dedicated user (distro-train.sysusers)
    assert s["RestartPreventExitStatus"] == ["2"]  # a bad config does not restart-loop
    for key, value in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"),
                       ("ProtectHome", "yes"), ("PrivateTmp", "yes"),
                       ("CapabilityBoundingSet", "")):
        assert s[key] == [value], key
    assert "u distro-train " in (UNITS / "distro-train.sysusers").read_text()


@pytest.mark.parametrize("name", NAMES)
def test_exec_start_is_a_command_line_the_cli_accepts(name: str) -> None:
    argv = shlex.split(service(name)["ExecStart"][0])
    assert argv[0].endswith("/bin/distro-train")
    args = build_parser().parse_args(hoist_global_options(argv[1:]))
    assert args.command == ("bootstrap" if "bootstrap" in name else "daemon")
    assert args.log_format == "json"
    data_dir = str(args.data_dir)
    assert service(name)["StateDirectory"] == [data_dir.removeprefix("/var/lib/")]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_analyze_verify(tmp_path: Path) -> None:
    binary = str(Path(sys.executable).parent / "distro-train")  # must exist to verify
    for name in NAMES:
        text = (UNITS / name).read_text().replace("/opt/distro-train/bin/distro-train", binary)
        (tmp_path / name).write_text(text)
    result = subprocess.run(["systemd-analyze", "verify", *(str(tmp_path / n) for n in NAMES)],
                            capture_output=True, text=True, timeout=60, check=False)
    ours = [line for line in (result.stdout + result.stderr).splitlines()
            if any(n in line for n in NAMES)]
    assert result.returncode == 0 and not ours, result.stdout + result.stderr
