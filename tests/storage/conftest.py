"""Real S3 servers for the storage tests (shared launchers live in tests/s3servers.py)."""

from tests.s3servers import (  # noqa: F401  (pytest finds fixtures by name)
    any_store,
    nanio_server,
    nanio_store,
    seaweed_server,
    seaweed_store,
)
