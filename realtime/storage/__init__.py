"""Where attachment bytes live: one interface, a directory on disk or an S3-compatible store."""

from __future__ import annotations

from realtime.storage.base import BlobStore, blob_key
from realtime.storage.directory import DirectoryStore

__all__ = ["BlobStore", "DirectoryStore", "blob_key", "open_blob_store"]


def open_blob_store(settings: object) -> BlobStore:
    """The configured store (``storage_backend``)."""
    from realtime.config import Settings

    assert isinstance(settings, Settings)
    if settings.storage_backend == "s3":
        from realtime.storage.s3 import S3Store

        return S3Store(
            settings.s3_endpoint,
            settings.s3_bucket,
            settings.s3_access_key,
            settings.s3_secret_key,
            settings.s3_region,
        )
    return DirectoryStore(settings.storage_dir)
