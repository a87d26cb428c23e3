"""S3 keys: event key decoding, the frame key pattern, inference ids and every derived object key.

Frame identity
    The key relative to ``incoming/`` without its image extension, made S3/URI-safe: each path segment
    keeps ``A-Z a-z 0-9 . _ - :``; other characters become ``_``. When that rewrite loses information
    (spaces, unicode, empty or dot-only segments) ``~`` plus 10 hex digits of the key's SHA-256 is
    appended, so two different keys never share an identity. Examples:
    ``incoming/veh-1/front/2024-05-01T10:00:00.123Z.jpg`` -> ``veh-1/front/2024-05-01T10:00:00.123Z``;
    ``incoming/veh 1/front/straße.jpg`` -> ``veh_1/front/stra_e~2c6dcab40f``.
    A key and its re-upload (new version) share the identity: the newest submission wins, and the
    postprocessor ignores notifications of superseded submissions (inference id mismatch).

Derived keys (prefixes from settings)
    async input  ``<ASYNC_INPUT_PREFIX><identity>.jpg``
    result       ``<RESULTS_PREFIX><identity>.json``      overlay ``<RESULTS_PREFIX><identity>.overlay.jpg``
    restored mask ``<RESULTS_PREFIX><identity>.mask.png`` failure ``<FAILURES_PREFIX><identity>.json``
    quarantine   ``<QUARANTINE_PREFIX><original key>`` and ``<QUARANTINE_PREFIX><original key>.reason.json``
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from urllib.parse import unquote_plus

from contracts.layout import INFERENCE

INCOMING_PREFIX = INFERENCE.incoming  # DATASETS.incoming, where frames also arrive, is the same prefix
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
INFERENCE_ID_LENGTH = 32  # hex digits (128 bits); InvokeEndpointAsync allows up to 64 characters
_UNSAFE = re.compile(r"[^A-Za-z0-9._:\-]+")
_MAX_IDENTITY = 800  # leaves room for prefixes and suffixes within S3's 1024-byte key limit


def decode_event_key(raw_key: str) -> str:
    """S3 event notifications URL-encode keys (spaces as '+', unicode as %XX UTF-8)."""
    return unquote_plus(raw_key)


@dataclass(frozen=True)
class FrameKey:
    key: str  # the full, decoded object key
    relative: str  # the key after "incoming/" (the whole key when it lies elsewhere)
    vehicle: str | None
    camera: str | None
    timestamp: str | None
    matched: bool  # whether KEY_PATTERN matched; unmatched keys still process, with null fields
    drive: str | None = None  # the drive segment of a drive's frame key (drivelogs.naming.frame_key), if any


def relative_key(key: str) -> str:
    return key[len(INCOMING_PREFIX) :] if key.startswith(INCOMING_PREFIX) else key


def parse_frame_key(key: str, pattern: re.Pattern[str]) -> FrameKey:
    rel = relative_key(key)
    match = pattern.search(rel)
    if match is None:
        return FrameKey(key=key, relative=rel, vehicle=None, camera=None, timestamp=None, matched=False)
    groups = match.groupdict()
    return FrameKey(
        key=key,
        relative=rel,
        vehicle=groups.get("vehicle"),
        camera=groups.get("camera"),
        timestamp=groups.get("timestamp"),
        matched=True,
        drive=groups.get("drive"),
    )


def derive_inference_id(bucket: str, key: str, version_id: str | None = None, etag: str | None = None) -> str:
    """Deterministic id of one object version: the same upload always maps to the same id.

    Uses the version id when the bucket is versioned, else the ETag (content hash for single-part
    uploads), so a re-delivered event yields the same id and a re-upload with new content a new one.
    """
    revision = f"v:{version_id}" if version_id and version_id != "null" else f"e:{(etag or '').strip(chr(34))}"
    digest = hashlib.sha256(f"{bucket}\n{key}\n{revision}".encode()).hexdigest()
    return digest[:INFERENCE_ID_LENGTH]


def content_inference_id(data: bytes) -> str:
    """Inference id of a request body (real-time path): the content hash."""
    return hashlib.sha256(data).hexdigest()[:INFERENCE_ID_LENGTH]


def frame_identity(key: str) -> str:
    rel = relative_key(key)
    lowered = rel.lower()
    for ext in IMAGE_EXTENSIONS:
        if lowered.endswith(ext) and len(rel) > len(ext):
            rel = rel[: -len(ext)]
            break
    lossy = False
    segments = []
    for segment in rel.split("/"):
        safe = _UNSAFE.sub("_", segment)
        if safe.strip(".") == "":  # "", ".", ".." would make confusing or unusable keys
            safe = "_"
        lossy |= safe != segment
        segments.append(safe)
    identity = "/".join(segments)
    if len(identity) > _MAX_IDENTITY:
        identity = identity[:_MAX_IDENTITY]
        lossy = True
    if lossy:
        identity += "~" + hashlib.sha256(key.encode()).hexdigest()[:10]
    return identity


@dataclass(frozen=True)
class ObjectKeys:
    identity: str
    async_input: str
    result: str
    overlay: str
    restored_mask: str
    failure: str


def object_keys(identity: str, *, async_input_prefix: str, results_prefix: str, failures_prefix: str) -> ObjectKeys:
    return ObjectKeys(
        identity=identity,
        async_input=f"{async_input_prefix}{identity}.jpg",
        result=f"{results_prefix}{identity}.json",
        overlay=f"{results_prefix}{identity}.overlay.jpg",
        restored_mask=f"{results_prefix}{identity}.mask.png",
        failure=f"{failures_prefix}{identity}.json",
    )


def identity_from_async_input_key(key: str, async_input_prefix: str) -> str | None:
    """Inverse of ``object_keys(...).async_input``; None for keys outside the prefix."""
    if not key.startswith(async_input_prefix) or not key.endswith(".jpg"):
        return None
    identity = key[len(async_input_prefix) : -len(".jpg")]
    return identity or None


def quarantine_keys(original_key: str, quarantine_prefix: str) -> tuple[str, str]:
    """(copy of the original, reason document) for a refused frame."""
    target = f"{quarantine_prefix}{original_key}"
    return target, f"{target}.reason.json"


def s3_uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """('bucket', 'key') of an s3:// URI. SageMaker notifications carry keys unencoded."""
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, sep, key = uri[5:].partition("/")
    if not bucket or not sep or not key:
        raise ValueError(f"an s3:// URI needs a bucket and a key: {uri!r}")
    return bucket, key
