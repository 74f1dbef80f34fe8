"""The command line's conventions: --version, option order, init, config show, --json, exits."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest

from p2pnode.cli import GLOBAL_OPTIONS, SUBCOMMANDS, build_parser, hoist_global_options, main
from p2pnode.commands.common import (
    EXIT_FAILED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    JSON_HELP,
)
from p2pnode.config import Config, load_config

BOOT = "/ip4/127.0.0.1/tcp/4412/p2p/12D3KooWDzpVNmq32sN8YuoWTCQRPBGg764m5abgzD3NbvyRzhfC"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for var in ("DISTRO_TRAIN_HOME", "BOOTSTRAP_ADDR", "DISTRO_TRAIN_LOG_LEVEL",
                "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "DISTRO_TRAIN_S3_ENDPOINT",
                "DISTRO_TRAIN_S3_BUCKET", "DISTRO_TRAIN_S3_REGION"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


def test_version_comes_from_package_metadata(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"distro-train {version('distro-train')}"


def test_hoist_moves_only_global_options_before_the_command() -> None:
    assert hoist_global_options(["--data-dir", "D", "--json", "id"]) == [
        "id", "--data-dir", "D", "--json"]
    assert hoist_global_options(["--log-level=DEBUG", "daemon", "--listen", "X"]) == [
        "daemon", "--listen", "X", "--log-level=DEBUG"]
    assert hoist_global_options(["status", "JOB", "--watch"]) == ["status", "JOB", "--watch"]
    assert hoist_global_options(["--bogus", "id"]) == ["--bogus", "id"]


@pytest.mark.parametrize("argv", [
    ["--data-dir", "{d}", "id"],
    ["id", "--data-dir", "{d}"],
    ["--json", "--data-dir", "{d}", "peers"],
    ["peers", "--json", "--data-dir", "{d}"],
])
def test_global_options_before_or_after_the_command(
    clean_env: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    d = clean_env / "nobody"
    assert main([a.format(d=d) for a in argv]) == EXIT_UNREACHABLE
    assert f"no daemon running at {d}" in capsys.readouterr().err


def test_a_global_option_the_command_does_not_take_is_a_usage_error(clean_env: Path) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--json", "daemon"])
    assert info.value.code == EXIT_USAGE


def test_json_means_one_thing_everywhere() -> None:
    """Every command that takes --json says the same, and every global option is real."""
    parser = build_parser()
    subs = next(a for a in parser._actions if a.choices and "id" in a.choices)  # noqa: SLF001
    with_json = []
    for name, sub in subs.choices.items():
        parsers = [sub]
        for action in sub._actions:  # noqa: SLF001 - nested `config show`
            if isinstance(action.choices, dict):
                parsers += list(action.choices.values())
        for p in parsers:
            for action in p._actions:  # noqa: SLF001
                if "--json" in action.option_strings:
                    assert action.help is not None and action.help.startswith(JSON_HELP), name
                    with_json.append(name)
    assert {"id", "peers", "status", "submit", "jobs", "result", "cancel", "demo", "doctor",
            "config", "init", "schema"} <= set(with_json)
    assert set(GLOBAL_OPTIONS) == {"--data-dir", "--config", "--log-level", "--log-format",
                                   "--json"}
    assert set(SUBCOMMANDS) >= {"init", "config", "doctor", "completion"}


def test_exit_codes_are_documented(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for code, word in ((1, "failed"), (2, "usage"), (4, "daemon unreachable"), (5, "refused")):
        assert re.search(rf"^\s+{code}\s+{word}", out, re.MULTILINE), (code, word)


def test_status_watch_without_a_job_is_a_usage_error(
    clean_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "--watch", "--data-dir", str(clean_env)]) == EXIT_USAGE
    assert "--watch needs a JOB" in capsys.readouterr().err


def test_init_writes_a_commented_config_that_is_the_defaults(
    clean_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = clean_env / "data"
    assert main(["init", "--data-dir", str(d)]) == 0
    path = d / "config.toml"
    assert capsys.readouterr().out.strip() == str(path)
    assert (d.stat().st_mode & 0o777) == 0o700 and (path.stat().st_mode & 0o777) == 0o600
    text = path.read_text()
    assert tomllib.loads(text) == {}  # every value commented out
    # Uncommenting every value of the daemon's own tables gives exactly the defaults.
    own = text.split("# [storage]")[0]
    live = "\n".join(
        re.sub(r"^# (\[\w+\]|\w+ = .*)$", r"\1", line).split("  # ")[0]
        for line in own.splitlines() if "data_dir" not in line
    )
    (d / "live.toml").write_text(live)
    loaded = load_config(d / "live.toml", env={}, overrides={"node.data_dir": d})
    defaults = Config()
    defaults.node.data_dir = d
    assert loaded == defaults
    assert "[trainer]" in text and "[owner]" in text and "[storage]" in text
    # A second init refuses to overwrite; --force does.
    assert main(["init", "--data-dir", str(d)]) == EXIT_USAGE
    assert main(["init", "--data-dir", str(d), "--force"]) == 0


def test_unknown_table_is_refused_naming_it(
    clean_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = clean_env / "data"
    d.mkdir()
    (d / "config.toml").write_text("[metric]\nenabled = true\n")
    assert main(["config", "show", "--data-dir", str(d)]) == EXIT_USAGE
    assert "config metric: unknown table" in capsys.readouterr().err
    assert main(["daemon", "--data-dir", str(d)]) == EXIT_USAGE
    assert "config metric: unknown table" in capsys.readouterr().err


def test_config_show_names_each_source_and_masks_secrets(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    d = clean_env / "data"
    d.mkdir()
    (d / "config.toml").write_text(
        '[presence]\ninterval_s = 2.0\n'
        '[storage]\nendpoint = "http://127.0.0.1:9"\nbucket = "bkt"\n'
        'access_key = "AKIAFILEKEY"\nsecret_key = "file-secret-value"\n'
        '[trainer]\nslots = 3\n')
    monkeypatch.setenv("BOOTSTRAP_ADDR", BOOT)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret-value")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAENVKEY")
    argv = ["--json", "config", "show", "--listen", "/ip4/127.0.0.1/tcp/0"]
    assert main([*argv, "--data-dir", str(d)]) == 0
    out = capsys.readouterr().out
    shown = json.loads(out)
    v = shown["values"]
    assert shown["file"] == str(d / "config.toml")
    assert v["node.listen"] == {"value": ["/ip4/127.0.0.1/tcp/0"], "source": "flag"}
    assert v["node.data_dir"] == {"value": str(d), "source": "flag"}
    assert v["node.bootstrap"] == {"value": [BOOT], "source": "env"}
    assert v["presence.interval_s"] == {"value": 2.0, "source": "file"}
    assert v["presence.silence_timeout_s"]["source"] == "default"
    assert v["trainer.slots"] == {"value": 3, "source": "file"}
    assert v["storage.endpoint"] == {"value": "http://127.0.0.1:9", "source": "file"}
    assert v["storage.secret_key"] == {"value": "<redacted>", "source": "env"}
    assert v["storage.access_key"] == {"value": "<redacted>", "source": "env"}
    for secret in ("env-secret-value", "file-secret-value", "AKIAENVKEY", "AKIAFILEKEY"):
        assert secret not in out
    # The text form says the same.
    assert main(["config", "show", "--data-dir", str(d)]) == 0
    text = capsys.readouterr().out
    assert re.search(r"^presence\.interval_s\s+= 2\.0  # file$", text, re.MULTILINE)
    assert "env-secret-value" not in text and "file-secret-value" not in text


def test_config_show_of_a_bootstrap_node_uses_its_own_defaults(
    clean_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["config", "show", "--bootstrap", "--json"]) == 0
    v = json.loads(capsys.readouterr().out)["values"]
    assert v["node.data_dir"]["value"] == str(clean_env / "home" / ".distro-train" / "bootstrap")
    assert v["node.listen"]["value"] == ["/ip4/0.0.0.0/tcp/4412"]
    assert main(["config", "show", "--json"]) == 0
    v = json.loads(capsys.readouterr().out)["values"]
    assert v["node.listen"]["value"] != ["/ip4/0.0.0.0/tcp/4412"]
    assert "4001" not in v["node.listen"]["value"][0]


@pytest.mark.parametrize("shell", ["bash", "zsh"])
def test_completion_scripts(shell: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["completion", shell]) == 0
    script = capsys.readouterr().out
    for word in ("daemon", "submit", "doctor", "--data-dir", "--log-format"):
        assert word in script
    binary = shutil.which(shell)
    if binary is None:
        pytest.skip(f"{shell} not installed: script generated but not syntax-checked")
    path = tmp_path / f"completion.{shell}"
    path.write_text(script)
    checked = subprocess.run([binary, "-n", str(path)], capture_output=True, text=True,
                             check=False)
    assert checked.returncode == 0, checked.stderr


def test_result_failure_is_failed_not_usage(clean_env: Path) -> None:
    """Distinct codes: a daemon that is not there is 4, never the generic 1."""
    assert main(["result", "abc", "--out", str(clean_env / "o"),
                 "--data-dir", str(clean_env)]) == EXIT_UNREACHABLE
    assert EXIT_FAILED == 1
