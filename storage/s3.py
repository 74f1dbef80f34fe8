"""``S3Store``: the ``ObjectStore`` over any S3-compatible endpoint, through boto3.

Always SigV4 (boto3 would otherwise sign SigV2 for some custom endpoints), addressing
style and checksum mode from the config. Every boto3/botocore failure is turned into a
``StoreOperationFailed`` (or ``ObjectNotFound``) naming the operation and key.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from storage.config import PRESIGN_EXPIRY_CAP_S, StoreConfig
from storage.errors import InvalidKey, ObjectNotFound, StorageConfigError, StoreOperationFailed
from storage.store import (
    DEFAULT_CONTENT_TYPE,
    ObjectInfo,
    ObjectStore,
    UploadTarget,
    check_key,
    check_prefix,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
#: S3 error codes worth asking again (besides any 5xx status).
_TRANSIENT_CODES = frozenset({"SlowDown", "RequestTimeout", "InternalError", "ServiceUnavailable"})
_DELETE_BATCH = 1000


def make_client(config: StoreConfig) -> S3Client:
    """Return a boto3 S3 client for ``config`` (no network traffic happens here)."""
    config.validate()
    botocore_config = Config(
        signature_version="s3v4",
        s3={"addressing_style": config.addressing},
        connect_timeout=config.connect_timeout_s,
        read_timeout=config.read_timeout_s,
        retries={"max_attempts": config.max_attempts, "mode": "standard"},
        request_checksum_calculation=config.checksum_mode,
        response_checksum_validation=config.checksum_mode,
        max_pool_connections=16,
    )
    session = boto3.session.Session()
    return session.client(
        "s3",
        endpoint_url=config.endpoint,
        region_name=config.region,
        aws_access_key_id=config.access_key,
        aws_secret_access_key=config.secret_key,
        config=botocore_config,
    )


@contextmanager
def _wrap(op: str, key: str) -> Iterator[None]:
    """Translate boto errors raised inside the block into storage errors."""
    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "ClientError"))
        if code in _MISSING_CODES:
            raise ObjectNotFound(op, key) from exc
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        transient = status >= 500 or code in _TRANSIENT_CODES
        raise StoreOperationFailed(
            op, key, code, str(error.get("Message", exc)), transient=transient
        ) from exc
    except BotoCoreError as exc:
        transient = isinstance(exc, (BotoConnectionError, HTTPClientError))
        raise StoreOperationFailed(
            op, key, type(exc).__name__, str(exc), transient=transient
        ) from exc


class S3Store(ObjectStore):
    """An ``ObjectStore`` on an S3-compatible bucket.

    Args:
        config: validated on construction.
        client: an already built client (tests); default ``make_client(config)``.
    """

    def __init__(self, config: StoreConfig, *, client: S3Client | None = None) -> None:
        config.validate()
        self.config = config
        self.client: S3Client = client if client is not None else make_client(config)
        self._transfer = TransferConfig(
            multipart_threshold=config.multipart_threshold,
            multipart_chunksize=config.multipart_part_size,
            max_concurrency=4,
        )
        self._lock = threading.Lock()

    def _full(self, key: str) -> str:
        return self.config.key(check_key(key))

    def _expiry(self, expires_s: int | None) -> int:
        value = self.config.presign_expiry_s if expires_s is None else expires_s
        if not 1 <= value <= PRESIGN_EXPIRY_CAP_S:
            raise StorageConfigError("expires_s", f"must be 1..{PRESIGN_EXPIRY_CAP_S}")
        return value

    def put_bytes(self, key: str, data: bytes, content_type: str = DEFAULT_CONTENT_TYPE) -> None:
        """See ``ObjectStore.put_bytes``."""
        full = self._full(key)
        with _wrap("put", key):
            self.client.put_object(
                Bucket=self.config.bucket, Key=full, Body=data, ContentType=content_type
            )

    def put_file(self, key: str, path: Path, content_type: str = DEFAULT_CONTENT_TYPE) -> None:
        """See ``ObjectStore.put_file`` (boto3's managed transfer does the multipart)."""
        full = self._full(key)
        with _wrap("put_file", key):
            self.client.upload_file(
                str(path),
                self.config.bucket,
                full,
                ExtraArgs={"ContentType": content_type},
                Config=self._transfer,
            )

    def get_bytes(self, key: str) -> bytes:
        """See ``ObjectStore.get_bytes``."""
        full = self._full(key)
        with _wrap("get", key):
            response = self.client.get_object(Bucket=self.config.bucket, Key=full)
            return response["Body"].read()

    def head(self, key: str) -> ObjectInfo:
        """See ``ObjectStore.head``."""
        full = self._full(key)
        with _wrap("head", key):
            response = self.client.head_object(Bucket=self.config.bucket, Key=full)
        return ObjectInfo(
            key=key,
            size=int(response["ContentLength"]),
            etag=str(response.get("ETag", "")).strip('"'),
            content_type=str(response.get("ContentType", "")),
        )

    def exists(self, key: str) -> bool:
        """See ``ObjectStore.exists``."""
        try:
            self.head(key)
        except ObjectNotFound:
            return False
        return True

    def delete(self, key: str) -> None:
        """See ``ObjectStore.delete``."""
        full = self._full(key)
        with _wrap("delete", key):
            self.client.delete_object(Bucket=self.config.bucket, Key=full)

    def delete_prefix(self, prefix: str) -> int:
        """See ``ObjectStore.delete_prefix``; deletes in batches of 1000 keys.

        Raises:
            InvalidKey: ``prefix`` is "" while the config has no prefix either (that
                would empty the whole bucket).
        """
        full = self.config.key(check_prefix(prefix))
        if not full:
            raise InvalidKey(prefix, "refusing to delete every object in the bucket")
        deleted = 0
        with _wrap("delete_prefix", prefix):
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.config.bucket, Prefix=full):
                keys = [obj["Key"] for obj in page.get("Contents", []) if "Key" in obj]
                for start in range(0, len(keys), _DELETE_BATCH):
                    batch = keys[start : start + _DELETE_BATCH]
                    response = self.client.delete_objects(
                        Bucket=self.config.bucket,
                        Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
                    )
                    errors = response.get("Errors", [])
                    if errors:
                        first = errors[0]
                        raise StoreOperationFailed(
                            "delete_prefix",
                            str(first.get("Key", prefix)),
                            str(first.get("Code", "DeleteError")),
                            str(first.get("Message", "")),
                        )
                    deleted += len(batch)
        return deleted

    def _presign(self, method: str, params: dict[str, Any], expires_s: int | None) -> str:
        sign: Callable[..., str] = self.client.generate_presigned_url
        with _wrap("presign", str(params.get("Key", ""))):
            return sign(method, Params=params, ExpiresIn=self._expiry(expires_s))

    def presign_get(self, key: str, expires_s: int | None = None) -> str:
        """See ``ObjectStore.presign_get``."""
        params = {"Bucket": self.config.bucket, "Key": self._full(key)}
        return self._presign("get_object", params, expires_s)

    def presign_put(
        self, key: str, content_type: str = DEFAULT_CONTENT_TYPE, expires_s: int | None = None
    ) -> str:
        """See ``ObjectStore.presign_put``; Content-Type is part of the signature."""
        params = {"Bucket": self.config.bucket, "Key": self._full(key), "ContentType": content_type}
        return self._presign("put_object", params, expires_s)

    def presign_upload(
        self, key: str, *, max_bytes: int, expires_s: int, content_type: str = DEFAULT_CONTENT_TYPE
    ) -> UploadTarget:
        """See ``ObjectStore.presign_upload``.

        A presigned POST whose policy fixes the key, the Content-Type and a
        ``content-length-range`` of ``0..max_bytes``: AWS S3 and SeaweedFS refuse a
        larger body with 400 EntityTooLarge. The embedded nanio server does not
        implement POST uploads (it answers 403 MissingAuthenticationToken), so for
        ``kind = "embedded"`` this is a presigned PUT that the owner checks with
        ``check_upload``.
        """
        if max_bytes < 0:
            raise StorageConfigError("max_bytes", "must be >= 0")
        if self.config.kind == "embedded":
            return UploadTarget(self.presign_put(key, content_type, expires_s), {}, False)
        full = self._full(key)
        with _wrap("presign", key):
            post = self.client.generate_presigned_post(
                self.config.bucket,
                full,
                Fields={"Content-Type": content_type},
                Conditions=[
                    {"Content-Type": content_type},
                    ["content-length-range", 0, max_bytes],
                ],
                ExpiresIn=self._expiry(expires_s),
            )
        fields = {str(k): str(v) for k, v in post["fields"].items()}
        return UploadTarget(str(post["url"]), fields, True)

    def ensure_bucket(self) -> None:
        """See ``ObjectStore.ensure_bucket``; safe to call concurrently and repeatedly."""
        bucket = self.config.bucket
        with self._lock:
            try:
                with _wrap("head_bucket", ""):
                    self.client.head_bucket(Bucket=bucket)
                return
            except ObjectNotFound:
                pass
            except StoreOperationFailed as exc:
                if exc.code not in ("NoSuchBucket", "404"):
                    raise
            try:
                with _wrap("create_bucket", ""):
                    if self.config.endpoint is None and self.config.region != "us-east-1":
                        self.client.create_bucket(
                            Bucket=bucket,
                            CreateBucketConfiguration={
                                "LocationConstraint": self.config.region  # type: ignore[typeddict-item]
                            },
                        )
                    else:
                        self.client.create_bucket(Bucket=bucket)
            except StoreOperationFailed as exc:
                if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                    raise
