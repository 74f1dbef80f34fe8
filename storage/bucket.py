"""Create a bucket with one SigV4-signed ``PUT /bucket``, without boto3.

The embedded server's wrapper (``python -m storage.embedded``) lives as long as the
demo; importing boto3 (and pydantic) only to create one bucket kept ~50 MB resident
in it for the whole run (issue 17). This is the plain S3 ``CreateBucket`` request,
path-style, signed with AWS Signature Version 4 over an empty body (the same request
boto3 sends to an endpoint in ``us-east-1``).
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

from storage.errors import StoreOperationFailed

#: The SHA-256 of an empty body, which the request signs.
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
#: Codes that mean the bucket is already there, ours (as ``ensure_bucket`` accepts).
_ALREADY = (b"BucketAlreadyOwnedByYou", b"BucketAlreadyExists")


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def signed_headers(*, host: str, path: str, region: str, access_key: str, secret_key: str,
                   now: datetime) -> dict[str, str]:
    """The headers of a SigV4-signed ``PUT path`` with an empty body (pure)."""
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    day = stamp[:8]
    headers = {"host": host, "x-amz-content-sha256": _EMPTY_SHA256, "x-amz-date": stamp}
    names = ";".join(sorted(headers))
    canonical = "\n".join([
        "PUT", path, "",
        *(f"{k}:{headers[k]}" for k in sorted(headers)), "",
        names, _EMPTY_SHA256,
    ])  # fmt: skip
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])
    key = _hmac(("AWS4" + secret_key).encode(), day)
    for part in (region, "s3", "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
                                f"SignedHeaders={names}, Signature={signature}")
    return headers


def create_bucket(endpoint: str, bucket: str, *, region: str, access_key: str,
                  secret_key: str, timeout_s: float) -> None:
    """Create ``bucket`` at the ``http://`` ``endpoint``; an existing one of ours is fine.

    Raises:
        StoreOperationFailed: ``create_bucket`` refused (``code``: the S3 error code or
            the HTTP status) or the server could not be reached (transient).
    """
    url = urlsplit(endpoint)
    if url.scheme != "http" or not url.hostname:
        raise StoreOperationFailed("create_bucket", "", "BadEndpoint",
                                   f"not a plain http endpoint: {endpoint!r}")
    path = "/" + quote(bucket, safe="")
    headers = signed_headers(host=url.netloc, path=path, region=region,
                             access_key=access_key, secret_key=secret_key,
                             now=datetime.now(UTC))
    conn = http.client.HTTPConnection(url.hostname, url.port or 80, timeout=timeout_s)
    try:
        conn.request("PUT", path, body=b"", headers=headers)
        response = conn.getresponse()
        body = response.read(64 * 1024)
    except OSError as exc:
        raise StoreOperationFailed("create_bucket", "", type(exc).__name__, str(exc),
                                   transient=True) from exc
    finally:
        conn.close()
    if response.status == 200 or any(code in body for code in _ALREADY):
        return
    code = body.split(b"<Code>", 1)[-1].split(b"</Code>", 1)[0][:64].decode(errors="replace")
    raise StoreOperationFailed("create_bucket", "", code if b"<Code>" in body
                               else str(response.status), f"HTTP {response.status}")
