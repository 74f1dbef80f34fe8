"""The embedded default store: a local nanio S3 server in a child process.

``EmbeddedS3(data_dir).start()`` runs ``python -m nanio serve`` on 127.0.0.1 (or the
``host`` given: an address the trainers can reach, which presigned URLs then name) with a
free port, credentials generated once and kept in ``data_dir/s3-credentials.json``
(mode 0600, reused on restart), waits until it answers, creates the bucket and
returns the ``StoreConfig`` to use. ``stop()`` ends the whole process group; if this
process dies without stopping it (SIGKILL, a crash), the server dies too
(``distro_procs.spawn``).

Run on its own (the demo does)::

    python -m storage.embedded --data-dir D [--bucket NAME]

prints one JSON line ``{"endpoint", "bucket", "region", "credentials_file"}`` (never
the secret) and serves until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import distro_procs
from distro_procs import free_port
from storage.bucket import create_bucket
from storage.errors import EmbeddedServerError, StorageError

if TYPE_CHECKING:
    from storage.config import StoreConfig

CREDENTIALS_FILE = "s3-credentials.json"
DEFAULT_BUCKET = "distro-train"
DEFAULT_REGION = "us-east-1"
#: How long the server may take to answer its first request.
STARTUP_TIMEOUT_S = 30.0
#: The bucket-creating request's HTTP timeout.
BUCKET_TIMEOUT_S = 10.0
#: How long a stopping server may take before it is killed.
STOP_TIMEOUT_S = 5.0
#: How often start-up checks whether the server answers, and each check's TCP connect.
_POLL_INTERVAL_S = 0.05
_PROBE_TIMEOUT_S = 0.5
_SPAWN_ATTEMPTS = 3


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, readable only by this user."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def load_or_create_credentials(data_dir: Path) -> tuple[str, str]:
    """Return ``(access_key, secret_key)`` from ``data_dir``, generating them once.

    Raises:
        EmbeddedServerError: the credentials file exists but is malformed.
    """
    path = data_dir / CREDENTIALS_FILE
    if path.exists():
        try:
            body = json.loads(path.read_text())
            access, secret = body["access_key"], body["secret_key"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise EmbeddedServerError("bad credentials file", f"{path}: {exc}") from exc
        if not (isinstance(access, str) and isinstance(secret, str) and access and secret):
            raise EmbeddedServerError("bad credentials file", f"{path}: empty or non-string keys")
        os.chmod(path, 0o600)
        return access, secret
    access = "DT" + secrets.token_hex(9).upper()
    secret = secrets.token_urlsafe(30)
    _write_private(path, json.dumps({"access_key": access, "secret_key": secret}))
    return access, secret


def _answers(host: str, port: int) -> bool:
    """Return whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=_PROBE_TIMEOUT_S):
            return True
    except OSError:
        return False


class EmbeddedS3:
    """A nanio server owned by this process.

    Args:
        data_dir: holds credentials, the options file, the log and ``objects/``.
        bucket: the bucket to create.
        host: interface to bind; loopback by default.
        startup_timeout_s: deadline for the server to answer.
        port: TCP port to listen on; 0 picks a free one (a restart with the port of
            a previous run keeps its presigned URLs valid).
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        bucket: str = DEFAULT_BUCKET,
        host: str = "127.0.0.1",
        startup_timeout_s: float = STARTUP_TIMEOUT_S,
        port: int = 0,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.port = port
        self.bucket = bucket
        self.host = host
        self.startup_timeout_s = startup_timeout_s
        self.config: StoreConfig | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        """The server's combined stdout/stderr log."""
        return self.data_dir / "nanio.log"

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self) -> StoreConfig:
        """Start the server (if not running), create the bucket, return its config.

        Raises:
            EmbeddedServerError: the server exited or did not answer in time.
            StorageError: the bucket could not be created.
        """
        if self.config is not None:
            return self.config
        from storage.config import StoreConfig

        endpoint, access, secret = self.serve()
        self.config = StoreConfig(
            kind="embedded",
            endpoint=endpoint,
            region=DEFAULT_REGION,
            bucket=self.bucket,
            access_key=access,
            secret_key=secret,
        )
        return self.config

    def serve(self) -> tuple[str, str, str]:
        """Start the server and create the bucket; ``(endpoint, access_key, secret_key)``.

        What :meth:`start` does without building a ``StoreConfig``, so that
        ``python -m storage.embedded`` imports neither boto3 nor pydantic.

        Raises:
            EmbeddedServerError: the server exited or did not answer in time.
            StorageError: the bucket could not be created.
        """
        options, access, secret = self.prepare()
        for attempt in range(_SPAWN_ATTEMPTS):
            port = self.port or free_port(self.host)
            self._spawn(options, port)
            try:
                self._wait_ready(port)
                break
            except EmbeddedServerError:
                self.stop()
                # Another process may have taken the port between probe and bind.
                if attempt == _SPAWN_ATTEMPTS - 1:
                    raise
        endpoint = f"http://{self.host}:{port}"
        try:
            create_bucket(endpoint, self.bucket, region=DEFAULT_REGION, access_key=access,
                          secret_key=secret, timeout_s=BUCKET_TIMEOUT_S)
        except StorageError:
            self.stop()
            raise
        return endpoint, access, secret

    def prepare(self) -> tuple[Path, str, str]:
        """Make the data dir and the server's options file; ``(options, access, secret)``.

        Raises:
            EmbeddedServerError: a malformed credentials file.
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.data_dir, 0o700)
        access, secret = load_or_create_credentials(self.data_dir)
        options = self.data_dir / "nanio-options.toml"
        _write_private(
            options,
            f'[[users]]\naccess_key = "{access}"\nsecret_key = "{secret}"\n',
        )
        (self.data_dir / "objects").mkdir(exist_ok=True)
        return options, access, secret

    def command(self, options: Path, port: int) -> tuple[list[str], dict[str, str]]:
        """The server's command line and environment (no ``NANIO_``/``AWS_`` variables)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NANIO_", "AWS_"))}
        command = [
            sys.executable, "-m", "nanio", "serve",
            "--options", str(options),
            "--data-dir", str(self.data_dir / "objects"),
            "--host", self.host,
            "--port", str(port),
            "--region", DEFAULT_REGION,
            "--log-level", "warning",
            "--no-access-log",
        ]  # fmt: skip
        return command, env

    def _spawn(self, options: Path, port: int) -> None:
        command, env = self.command(options, port)
        self._process = distro_procs.spawn(command, self.log_path, env=env)

    def _wait_ready(self, port: int) -> None:
        def exited() -> None:
            if not self.running:
                raise EmbeddedServerError("server exited during startup", self._log_tail())

        try:
            distro_procs.wait_until(lambda: _answers(self.host, port), self.startup_timeout_s,
                                    "the embedded S3 server", check=exited,
                                    interval_s=_POLL_INTERVAL_S)
        except TimeoutError:
            raise EmbeddedServerError(
                f"no answer within {self.startup_timeout_s}s", self._log_tail()) from None

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def stop(self) -> None:
        """Stop the server and its children; safe to call twice or before ``start``."""
        process, self._process = self._process, None
        self.config = None
        if process is not None:
            distro_procs.stop([process], STOP_TIMEOUT_S)

    def __enter__(self) -> StoreConfig:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    """Become the server (``exec``) after a helper has seen it answer and made the bucket.

    The helper prints the JSON line once the bucket exists; the server then serves
    until SIGINT/SIGTERM, and its exit status is this command's. No Python parent
    stays behind (issue 17: it kept ~20 MB resident for the whole demo). Unlike
    :meth:`EmbeddedS3.start`, a port taken between probe and bind is not retried:
    the server exits and so does this command.

    Returns:
        1 if the set-up failed before the exec (on success it never returns).
    """
    parser = argparse.ArgumentParser(prog="python -m storage.embedded")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--bucket", default=DEFAULT_BUCKET)
    parser.add_argument("--port", type=int, default=0, help="TCP port (default: a free one)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind and to presign URLs for: one the trainers "
                             "can reach (default 127.0.0.1)")
    args = parser.parse_args(argv)
    server = EmbeddedS3(args.data_dir, bucket=args.bucket, port=args.port, host=args.host)
    try:
        options, access, secret = server.prepare()
    except StorageError as exc:
        print(f"embedded S3 server failed to start: {exc}", file=sys.stderr)
        return 1
    port = args.port or free_port(args.host)
    endpoint = f"http://{args.host}:{port}"

    def announce(pid: int) -> int:
        try:
            distro_procs.wait_until(lambda: _answers(args.host, port), server.startup_timeout_s,
                                    "the embedded S3 server", interval_s=_POLL_INTERVAL_S)
            create_bucket(endpoint, args.bucket, region=DEFAULT_REGION, access_key=access,
                          secret_key=secret, timeout_s=BUCKET_TIMEOUT_S)
        except (TimeoutError, StorageError) as exc:
            print(f"embedded S3 server failed to start: {exc}; see {server.log_path}",
                  file=sys.stderr, flush=True)
            os.kill(pid, signal.SIGTERM)
            return 1
        line = {"endpoint": endpoint, "bucket": args.bucket, "region": DEFAULT_REGION,
                "credentials_file": str(server.data_dir / CREDENTIALS_FILE)}
        print(json.dumps(line), flush=True)
        return 0

    command, env = server.command(options, port)
    distro_procs.exec_announced(command, env, server.log_path, announce)
    return 1  # not reached: exec_announced replaces this process


if __name__ == "__main__":
    raise SystemExit(main())
