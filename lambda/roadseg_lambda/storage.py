"""Small S3 helpers shared by the handlers (the only S3 calls outside the handler modules)."""

from __future__ import annotations

from typing import Any

from segcore.results import to_json_bytes


class ObjectTooLarge(ValueError):
    def __init__(self, size: int, limit: int, metadata: dict[str, str] | None = None):
        super().__init__(f"object has more than {limit} bytes")
        self.size = size
        self.limit = limit
        self.metadata = metadata or {}  # the object's user metadata (from the same GetObject)


def read_object(s3: Any, bucket: str, key: str, *, version_id: str | None = None, limit: int | None = None) -> bytes:
    """The object's bytes; ``ObjectTooLarge`` when it has more than ``limit`` bytes (read stops early)."""
    return read_object_with_metadata(s3, bucket, key, version_id=version_id, limit=limit)[0]


def read_object_with_metadata(s3: Any, bucket: str, key: str, *, version_id: str | None = None,
                              limit: int | None = None) -> tuple[bytes, dict[str, str]]:
    """The object's bytes and user metadata (one GetObject); ``ObjectTooLarge`` as for :func:`read_object`."""
    kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if version_id and version_id != "null":
        kwargs["VersionId"] = version_id
    response = s3.get_object(**kwargs)
    body = response["Body"]
    metadata = dict(response.get("Metadata") or {})
    try:
        if limit is None:
            return body.read(), metadata
        length = response.get("ContentLength")
        if isinstance(length, int) and length > limit:
            raise ObjectTooLarge(length, limit, metadata)
        data = body.read(limit + 1)
        if len(data) > limit:
            raise ObjectTooLarge(len(data), limit, metadata)
        return data, metadata
    finally:
        body.close()


def put_json(s3: Any, bucket: str, key: str, document: dict) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=to_json_bytes(document), ContentType="application/json")


def put_bytes(s3: Any, bucket: str, key: str, data: bytes, content_type: str, metadata: dict | None = None) -> None:
    kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key, "Body": data, "ContentType": content_type}
    if metadata:
        kwargs["Metadata"] = metadata
    s3.put_object(**kwargs)


def object_tags(s3: Any, bucket: str, key: str) -> dict[str, str]:
    response = s3.get_object_tagging(Bucket=bucket, Key=key)
    return {tag["Key"]: tag["Value"] for tag in response.get("TagSet", [])}
