"""Where extracted frames go: a local directory or an S3 bucket. Neither ever overwrites a key it already holds."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol


class FrameSink(Protocol):
    """Where frames go. ``put_frame`` returns False, writing nothing, when the key already exists."""

    def put_frame(self, key: str, body: bytes, content_type: str, metadata: Mapping[str, str]) -> bool: ...

    def describe(self) -> str: ...


class LocalDirectorySink:
    """Frames as files under ``root`` (the key is the relative path); metadata is not kept. Never overwrites."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def put_frame(self, key: str, body: bytes, content_type: str, metadata: Mapping[str, str]) -> bool:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            handle = path.open("xb")  # exclusive create: never overwrites
        except FileExistsError:
            return False
        try:
            with handle:
                handle.write(body)
        except BaseException:
            path.unlink(missing_ok=True)  # no partial frame left behind
            raise
        return True

    def describe(self) -> str:
        return str(self.root)


class S3Sink:
    """Frames as objects in ``bucket``; encryption is the bucket's default. ``IfNoneMatch`` keeps S3 from
    overwriting an existing key (S3 conditional writes)."""

    def __init__(self, bucket: str, client: Any = None) -> None:
        if client is None:
            import boto3

            client = boto3.client("s3")
        self.bucket, self.client = bucket, client

    def put_frame(self, key: str, body: bytes, content_type: str, metadata: Mapping[str, str]) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type,
                                   Metadata=dict(metadata), IfNoneMatch="*")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict"):
                return False
            raise
        return True

    def describe(self) -> str:
        return f"s3://{self.bucket}/"

