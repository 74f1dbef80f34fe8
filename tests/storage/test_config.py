"""Config validation and the Akave O3 preset (no network)."""

from __future__ import annotations

import dataclasses
from urllib.parse import parse_qs, urlsplit

import pytest

from storage.config import AKAVE_ENDPOINT, AKAVE_REGION, StoreConfig
from storage.errors import InvalidKey, StorageConfigError
from storage.s3 import S3Store, make_client
from storage.store import check_key, job_prefix

GOOD = {"endpoint": "http://127.0.0.1:9000", "bucket": "my-bucket"}


def test_defaults_are_valid() -> None:
    config = StoreConfig.from_mapping(GOOD)
    assert config.presign_expiry_s == 900 and config.addressing == "path"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("kind", "ftp"),
        ("endpoint", "ftp://host"),
        ("endpoint", "http://user:pw@host"),
        ("bucket", "No_Caps"),
        ("bucket", "ab"),
        ("prefix", "/abs/"),
        ("prefix", "no-slash"),
        ("prefix", "a/../"),
        ("addressing", "dns"),
        ("presign_expiry_s", 0),
        ("presign_expiry_s", 604_801),
        ("multipart_part_size", 4 * 1024 * 1024),
        ("multipart_threshold", 1024),
        ("connect_timeout_s", 0),
        ("read_timeout_s", -1.0),
        ("max_attempts", 0),
        ("checksum_mode", "always"),
        ("region", ""),
    ],
)
def test_bad_values_name_their_field(field: str, value: object) -> None:
    with pytest.raises(StorageConfigError) as info:
        StoreConfig.from_mapping({**GOOD, field: value})
    assert info.value.field == field


def test_wrong_types_and_unknown_fields() -> None:
    with pytest.raises(StorageConfigError) as info:
        StoreConfig.from_mapping({**GOOD, "presign_expiry_s": "900"})
    assert info.value.field == "presign_expiry_s"
    with pytest.raises(StorageConfigError) as info:
        StoreConfig.from_mapping({**GOOD, "bucket_name": "x"})
    assert info.value.field == "bucket_name"
    with pytest.raises(StorageConfigError) as info:
        StoreConfig.from_mapping({**GOOD, "access_key": "only-half"})
    assert info.value.field == "secret_key"


def test_expiry_cap_is_seven_days() -> None:
    assert StoreConfig.from_mapping({**GOOD, "presign_expiry_s": 604_800}).presign_expiry_s


def test_env_overrides_the_table() -> None:
    env = {
        "AWS_ACCESS_KEY_ID": "AKENV",
        "AWS_SECRET_ACCESS_KEY": "secret-env",
        "DISTRO_TRAIN_S3_ENDPOINT": "https://s3.example.org",
        "DISTRO_TRAIN_S3_REGION": "eu-west-3",
        "DISTRO_TRAIN_S3_BUCKET": "env-bucket",
        "UNRELATED": "x",
    }
    config = StoreConfig.from_mapping(GOOD, env=env)
    assert (config.access_key, config.secret_key) == ("AKENV", "secret-env")
    assert (config.endpoint, config.region, config.bucket) == (
        "https://s3.example.org",
        "eu-west-3",
        "env-bucket",
    )
    assert "secret-env" not in repr(config)


def test_s3_kind_may_use_aws_default_endpoint() -> None:
    assert StoreConfig.from_mapping({"bucket": "aws-bucket"}).endpoint is None
    with pytest.raises(StorageConfigError) as info:
        StoreConfig.from_mapping({"kind": "embedded", "bucket": "b-1"})
    assert info.value.field == "endpoint"


def test_akave_preset_client_and_presigned_url_shape() -> None:
    config = StoreConfig.from_mapping(
        {"kind": "akave", "bucket": "my-data", "access_key": "AKAVEKEY", "secret_key": "s"}
    )
    assert config == StoreConfig.akave("my-data", access_key="AKAVEKEY", secret_key="s")
    assert (config.endpoint, config.region, config.addressing) == (
        AKAVE_ENDPOINT,
        AKAVE_REGION,
        "path",
    )
    client = make_client(config)
    meta = client.meta.config
    assert meta.signature_version == "s3v4"
    assert meta.s3 is not None and meta.s3["addressing_style"] == "path"
    assert meta.request_checksum_calculation == "when_required"
    assert meta.response_checksum_validation == "when_required"
    assert client.meta.region_name == AKAVE_REGION

    store = S3Store(config, client=client)
    url = store.presign_put("jobs/o/j/chunks/abc", "application/octet-stream", expires_s=600)
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == AKAVE_ENDPOINT
    assert parts.path == "/my-data/jobs/o/j/chunks/abc"  # path-style: bucket in the path
    query = parse_qs(parts.query)
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert query["X-Amz-Credential"][0].split("/")[2:4] == [AKAVE_REGION, "s3"]
    assert query["X-Amz-Expires"] == ["600"]
    assert "content-type" in query["X-Amz-SignedHeaders"][0].split(";")


def test_presign_expiry_over_cap_refused() -> None:
    store = S3Store(StoreConfig.from_mapping({**GOOD, "access_key": "a", "secret_key": "b"}))
    with pytest.raises(StorageConfigError) as info:
        store.presign_get("k", expires_s=604_801)
    assert info.value.field == "expires_s"
    assert "X-Amz-Expires=604800" in store.presign_get("k", expires_s=604_800)


def test_virtual_addressing_puts_bucket_in_host() -> None:
    config = dataclasses.replace(
        StoreConfig.from_mapping({**GOOD, "access_key": "a", "secret_key": "b"}),
        endpoint="https://s3.example.org",
        addressing="virtual",
    )
    assert urlsplit(S3Store(config).presign_get("k")).netloc == "my-bucket.s3.example.org"


def test_prefix_is_prepended_to_keys() -> None:
    config = StoreConfig.from_mapping(
        {**GOOD, "prefix": "team-a/", "access_key": "a", "secret_key": "b"}
    )
    assert urlsplit(S3Store(config).presign_get("k")).path == "/my-bucket/team-a/k"


def test_job_prefix_namespaces_and_refuses_escapes() -> None:
    assert job_prefix("12D3KooWabc", "job-7") == "jobs/12D3KooWabc/job-7/"
    assert job_prefix("a", "b") != job_prefix("a", "c") != job_prefix("c", "b")
    for owner, job in [("..", "j"), ("o", "a/b"), ("", "j"), ("o", "j\n"), ("o", "x" * 129)]:
        with pytest.raises(InvalidKey):
            job_prefix(owner, job)
    for key in ["", "/abs", "a/../b", "a\x00b"]:
        with pytest.raises(InvalidKey):
            check_key(key)


def test_delete_prefix_never_empties_the_whole_bucket() -> None:
    store = S3Store(StoreConfig.from_mapping({**GOOD, "access_key": "a", "secret_key": "b"}))
    with pytest.raises(InvalidKey):
        store.delete_prefix("")  # refused before any request is made
