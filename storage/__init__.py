"""The data plane: object stores, presigned URLs, chunks, by-URL transfers.

Import from the modules: ``storage.config``, ``storage.store``, ``storage.s3``,
``storage.chunks``, ``storage.transfer``, ``storage.embedded``, ``storage.errors``.
The trainer side needs only ``storage.transfer`` (no boto3, no credentials).
"""
