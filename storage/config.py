"""Object-store configuration: the ``[storage]`` TOML table, env vars and presets.

Precedence (highest first): environment variables, the TOML table, the preset of
the chosen ``kind``, the dataclass defaults. Types and ranges are the annotations,
checked by :mod:`distro_schema`; ``validate()`` adds the rules between fields and
names the first bad field. :func:`schema` prints the table's JSON Schema.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field

import distro_schema
from storage.errors import StorageConfigError

MIB = 1024 * 1024
#: SigV4 presigned URLs cannot live longer than 7 days.
PRESIGN_EXPIRY_CAP_S = 604_800
#: S3 multipart parts other than the last must be at least 5 MiB, at most 5 GiB.
MIN_PART_SIZE = 5 * MIB
MAX_PART_SIZE = 5 * 1024 * MIB

AKAVE_ENDPOINT = "https://o3-rc2.akave.xyz"
AKAVE_REGION = "akave-network"

Kind = Literal["s3", "akave", "embedded"]
#: Environment variables read by ``from_mapping(..., env=...)``, mapped to config fields.
ENV_VARS: dict[str, str] = {
    "AWS_ACCESS_KEY_ID": "access_key",
    "AWS_SECRET_ACCESS_KEY": "secret_key",
    "DISTRO_TRAIN_S3_ENDPOINT": "endpoint",
    "DISTRO_TRAIN_S3_REGION": "region",
    "DISTRO_TRAIN_S3_BUCKET": "bucket",
}

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_PREFIX_RE = re.compile(r"^[A-Za-z0-9!_.*'()/-]*$")


@dataclass(frozen=True)
class StoreConfig:
    """Where objects live and how to talk to the store.

    Attributes:
        kind: ``s3`` (any S3-compatible endpoint), ``akave`` (Akave O3 preset) or
            ``embedded`` (a local nanio server started by ``storage.embedded``).
        endpoint: base URL; None means AWS's default endpoint for ``region``.
        region: SigV4 signing region.
        bucket: bucket name (S3 naming rules).
        prefix: prepended to every key, e.g. ``team-a/``; "" for none.
        access_key: access key id; None (with ``secret_key`` None) uses boto3's chain.
        secret_key: secret access key; never shown in ``repr``.
        addressing: ``path`` (``host/bucket/key``) or ``virtual`` (``bucket.host/key``).
        presign_expiry_s: default lifetime of presigned URLs, 1..604800.
        multipart_threshold: files at least this large are uploaded in parts.
        multipart_part_size: part size, 5 MiB..5 GiB.
        connect_timeout_s: TCP connect timeout for store calls.
        read_timeout_s: socket read timeout for store calls.
        max_attempts: boto3 attempts per call (standard retry mode).
        checksum_mode: boto3 ``request_checksum_calculation`` and
            ``response_checksum_validation``; ``when_required`` suits most
            S3-compatible servers (objects are verified by sha256 anyway).
    """

    kind: Kind = "s3"
    endpoint: str | None = None
    region: Annotated[str, Field(min_length=1)] = "us-east-1"
    bucket: str = ""
    prefix: str = ""
    access_key: str | None = None
    secret_key: str | None = field(default=None, repr=False)
    addressing: Literal["path", "virtual"] = "path"
    presign_expiry_s: Annotated[int, Field(ge=1, le=PRESIGN_EXPIRY_CAP_S)] = 900
    multipart_threshold: Annotated[int, Field(ge=MIN_PART_SIZE)] = 64 * MIB
    multipart_part_size: Annotated[int, Field(ge=MIN_PART_SIZE, le=MAX_PART_SIZE)] = 16 * MIB
    connect_timeout_s: Annotated[float, Field(gt=0)] = 10.0
    read_timeout_s: Annotated[float, Field(gt=0)] = 60.0
    max_attempts: Annotated[int, Field(ge=1)] = 3
    checksum_mode: Literal["when_required", "when_supported"] = "when_required"

    @classmethod
    def akave(cls, bucket: str, **overrides: Any) -> StoreConfig:
        """Return the Akave O3 preset for ``bucket`` (fields may be overridden)."""
        return cls.from_mapping({"kind": "akave", "bucket": bucket, **overrides})

    @classmethod
    def from_mapping(
        cls, table: Mapping[str, Any], *, env: Mapping[str, str] | None = None
    ) -> StoreConfig:
        """Build a validated config from a ``[storage]`` table, then ``env`` overrides.

        Args:
            table: field name -> value, as parsed from TOML.
            env: environment to read ``ENV_VARS`` from; None reads nothing.

        Raises:
            StorageConfigError: an unknown field, a wrong type or an invalid value.
        """
        values = dict(table)
        for var, name in ENV_VARS.items():
            if env is not None and env.get(var):
                values[name] = env[var]
        kind = values.get("kind", "s3")
        if kind == "akave":
            values.setdefault("endpoint", AKAVE_ENDPOINT)
            values.setdefault("region", AKAVE_REGION)
            values.setdefault("addressing", "path")
            values.setdefault("checksum_mode", "when_required")
        config = distro_schema.load(cls, values, error=StorageConfigError)
        config.validate()
        return config

    def key(self, key: str) -> str:
        """Return the full object key: ``prefix + key``."""
        return self.prefix + key

    def validate(self) -> None:
        """Check every field: its annotation, then the rules between fields.

        Raises:
            StorageConfigError: naming the first bad field and why.
        """
        distro_schema.check(self, error=StorageConfigError)
        if self.endpoint is not None:
            parts = urlsplit(self.endpoint)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise StorageConfigError("endpoint", "must be an http(s) URL with a host")
            if parts.query or parts.fragment or parts.username:
                raise StorageConfigError("endpoint", "must not carry credentials or a query")
        elif self.kind != "s3":
            raise StorageConfigError("endpoint", f"required for kind {self.kind!r}")
        if not _BUCKET_RE.fullmatch(self.bucket) or ".." in self.bucket:
            raise StorageConfigError("bucket", "3-63 chars of a-z, 0-9, '.', '-'")
        if self.prefix and (
            not _PREFIX_RE.fullmatch(self.prefix)
            or self.prefix.startswith("/")
            or not self.prefix.endswith("/")
            or ".." in self.prefix.split("/")
        ):
            raise StorageConfigError("prefix", "safe characters, no leading '/', ends with '/'")
        if (self.access_key is None) != (self.secret_key is None):
            raise StorageConfigError("secret_key", "access_key and secret_key come together")
        if self.access_key == "" or self.secret_key == "":
            raise StorageConfigError("access_key", "must not be empty when given")


def schema() -> dict[str, Any]:
    """The JSON Schema of the ``[storage]`` table."""
    return distro_schema.schema(StoreConfig)
