"""S3 objects named by ``s3://bucket/key`` URIs, as the commands read them (a bad URI is the user's error)."""

from __future__ import annotations

from typing import Any

from roadseg.session import UserError
from segcore import keys

MISSING_OBJECT_CODES = frozenset({"404", "NoSuchKey", "NotFound"})


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """(bucket, key) of ``s3://bucket/key`` (segcore.keys.parse_s3_uri), a bad URI the user's error."""
    try:
        return keys.parse_s3_uri(uri)
    except ValueError:
        raise UserError(f"'{uri}' is not an s3://bucket/key URI") from None


def object_exists(s3: Any, uri: str) -> bool:
    """Whether an s3:// URI names an object (HeadObject; missing codes answer False, other errors raise)."""
    from botocore.exceptions import ClientError

    bucket, key = parse_s3_uri(uri)
    try:
        s3.head_object(Bucket=bucket, Key=key)
        return True
    except ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code")) in MISSING_OBJECT_CODES:
            return False
        raise


def read_object(s3: Any, uri: str) -> bytes:
    bucket, key = parse_s3_uri(uri)
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
