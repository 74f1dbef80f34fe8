"""Process logging: text or JSON lines on stderr, levels per logger, secrets redacted.

``--log-format json`` writes one JSON object per line::

    {"ts": "2026-11-30T13:31:27.123Z", "level": "INFO", "component": "distro_train.jobs",
     "event": "job 3f2a... round 2 done", "fields": {"round": 2}}

``fields`` holds whatever a call passes as ``extra={...}``. In both formats every
message and field goes through :func:`redact` first: a URL's query string (where a
presigned URL carries its signature) becomes ``?<redacted>``, and a field whose name
says it is a secret (``secret``, ``password``, ``token``, ``credential``,
``access_key``) is masked.

Levels: ``LEVEL[,LOGGER=LEVEL...]``, e.g. ``INFO,libp2p=DEBUG``, from ``--log-level``
or ``$DISTRO_TRAIN_LOG_LEVEL``. py-libp2p logs at WARNING unless named.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any, TextIO

from p2pnode.host import quiet_libp2p_logs

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
URL_QUERY = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s?#'\"]*)\?[^\s'\"]*")
SECRET_NAMES = re.compile(r"secret|password|passwd|token|credential|access_key|signature",
                          re.IGNORECASE)
MASK = "<redacted>"
# Attributes every LogRecord has; anything else came from ``extra=``.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class LogLevelError(ValueError):
    """A ``--log-level`` value that names no level."""


def parse_levels(spec: str) -> tuple[int, dict[str, int]]:
    """``"INFO,libp2p=DEBUG"`` -> ``(INFO, {"libp2p": DEBUG})``.

    Raises:
        LogLevelError: An unknown level name or an empty logger name.
    """
    default = logging.INFO
    per_logger: dict[str, int] = {}
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        name, _, level = part.rpartition("=")
        if level.upper() not in LEVELS or (part.count("=") and not name.strip()):
            raise LogLevelError(f"bad log level {part!r}: use {', '.join(LEVELS)}, "
                                "optionally LOGGER=LEVEL")
        value = getattr(logging, level.upper())
        if name:
            per_logger[name.strip()] = value
        else:
            default = value
    return default, per_logger


def redact(text: str) -> str:
    """``text`` with every URL's query string replaced by ``?<redacted>``."""
    return URL_QUERY.sub(rf"\1?{MASK}", text)


def _clean(name: str, value: Any) -> Any:
    if SECRET_NAMES.search(name):
        return MASK
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {str(k): _clean(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(name, v) for v in value]
    if isinstance(value, int | float | bool) or value is None:
        return value
    return redact(str(value))


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: _clean(k, v) for k, v in vars(record).items() if k not in _STANDARD}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, component, event, fields (and error)."""

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as one line of JSON, secrets redacted."""
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        out: dict[str, Any] = {
            "ts": f"{ts}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "component": record.name,
            "event": redact(record.getMessage()),
            "fields": _fields(record),
        }
        if record.exc_info:
            out["error"] = redact(self.formatException(record.exc_info))
        return json.dumps(out, default=str)


class TextFormatter(logging.Formatter):
    """``time LEVEL component: event key=value...``, secrets redacted."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """Return the record as one text line (plus a traceback), secrets redacted."""
        line = redact(super().format(record))
        extra = _fields(record)
        if extra:
            line += " " + " ".join(f"{k}={v}" for k, v in extra.items())
        return line


def setup_logging(level: str = "INFO", fmt: str = "text", stream: TextIO | None = None) -> None:
    """Send every log record to ``stream`` (stderr) in ``fmt`` at the levels ``level`` names.

    Raises:
        LogLevelError: ``level`` names no level.
    """
    default, per_logger = parse_levels(level)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(default)
    quiet_libp2p_logs(per_logger.get("libp2p", max(default, logging.WARNING)))
    # httpx logs every request URL at INFO; presigned URLs are bearer credentials.
    logging.getLogger("httpx").setLevel(per_logger.get("httpx", max(default, logging.WARNING)))
    for name, value in per_logger.items():
        logging.getLogger(name).setLevel(value)
