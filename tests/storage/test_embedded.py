"""The embedded nanio server: credentials kept private and reused, clean start and stop."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import distro_procs
from storage.embedded import CREDENTIALS_FILE, EmbeddedS3, load_or_create_credentials
from storage.errors import EmbeddedServerError
from storage.s3 import S3Store
from tests.conftest import wait_for

REPO = Path(__file__).resolve().parents[2]
#: Deadline for the foreground server to print its line or exit.
PROCESS_TIMEOUT_S = 30


def test_start_stop_restart_reuses_credentials(tmp_path: Path) -> None:
    server = EmbeddedS3(tmp_path / "d", bucket="emb-test")
    config = server.start()
    creds = tmp_path / "d" / CREDENTIALS_FILE
    assert stat.S_IMODE(creds.stat().st_mode) == 0o600
    assert config.endpoint is not None and config.endpoint.startswith("http://127.0.0.1:")
    S3Store(config).put_bytes("kept", b"across restarts")
    server.stop()
    server.stop()  # idempotent
    assert not server.running

    with EmbeddedS3(tmp_path / "d", bucket="emb-test") as again:
        assert (again.access_key, again.secret_key) == (config.access_key, config.secret_key)
        assert S3Store(again).get_bytes("kept") == b"across restarts"


def test_bad_credentials_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / CREDENTIALS_FILE).write_text("{not json")
    with pytest.raises(EmbeddedServerError) as info:
        load_or_create_credentials(tmp_path)
    assert info.value.reason == "bad credentials file"


def test_foreground_process_prints_endpoint_and_stops_on_sigterm(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # distro_procs.spawn, so that the server dies with a killed test run too.
    process = distro_procs.spawn(
        [sys.executable, "-m", "storage.embedded", "--data-dir", str(tmp_path / "fg")],
        tmp_path / "fg.log", env=env, cwd=tmp_path, stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = json.loads(process.stdout.readline())
        secret = json.loads((tmp_path / "fg" / CREDENTIALS_FILE).read_text())["secret_key"]
        assert secret not in json.dumps(line)
        assert line["bucket"] == "distro-train"
        port = int(line["endpoint"].rsplit(":", 1)[1])
        # The command has become the server (exec): SIGTERM's default action ends it
        # (stop sends SIGTERM to the group, SIGKILL only after the timeout).
        assert distro_procs.stop([process], PROCESS_TIMEOUT_S)[0] in (0, -signal.SIGTERM)
        # Nothing answers on the port any more.
        wait_for(lambda: not _answers(port), timeout=10, what="server port to close")
    finally:
        distro_procs.kill(process)
        if process.stdout is not None:
            process.stdout.close()


def _answers(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def test_bucket_request_is_signed_as_botocore_signs_it() -> None:
    """storage.bucket's hand-made SigV4 equals botocore's for the same request."""
    from datetime import UTC, datetime
    from unittest import mock

    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    from storage.bucket import signed_headers

    now = datetime(2026, 11, 30, 17, 30, 5, tzinfo=UTC)
    ours = signed_headers(host="127.0.0.1:9000", path="/distro-train", region="us-east-1",
                          access_key="AKID", secret_key="s3cr3t", now=now)
    request = AWSRequest(method="PUT", url="http://127.0.0.1:9000/distro-train", data=b"")
    with mock.patch("botocore.auth.get_current_datetime", return_value=now):
        S3SigV4Auth(Credentials("AKID", "s3cr3t"), "s3", "us-east-1").add_auth(request)
    assert ours["authorization"] == request.headers["Authorization"]


def test_foreground_wrapper_imports_neither_boto3_nor_pydantic() -> None:
    """The long-lived ``python -m storage.embedded`` stays small (issue 17)."""
    code = ("import sys, storage.embedded as e; e.EmbeddedS3.serve; "
            "print(sorted(m for m in ('boto3', 'pydantic') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=REPO).stdout
    assert out.strip() == "[]"
