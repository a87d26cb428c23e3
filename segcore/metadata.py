"""User metadata of the async input object: how ingest tells postprocess where a mask comes from.

S3 user metadata travels as HTTP headers, so every value is ASCII: free-text values (keys and the
parts parsed from them) are percent-encoded (UTF-8) and decoded on read. S3 limits user metadata to
2 KB in total (contracts.service_limits.MAX_S3_USER_METADATA_BYTES); ``build_async_input_metadata`` raises
``MetadataTooLarge`` beyond that (only possible with very long keys) instead of letting PutObject fail.

The prepared frame's input signals (contracts.signals.INPUT_SIGNALS: brightness, contrast, sharpness, saturation,
dhash) travel under ``INPUT_SIGNALS_METADATA_KEY`` as segcore.signals.encode_input_signals' text (at most 160
characters). They are optional: async inputs written before them have none, and a frame whose key leaves no room for
them is submitted without them rather than quarantined (its result then has null input signals).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from urllib.parse import quote, unquote

import numpy as np
from PIL import Image

from contracts.drives import DRIVE_ID_METADATA, DriveId, DriveKeyError
from contracts.service_limits import MAX_S3_USER_METADATA_BYTES, S3_USER_METADATA_DOC, s3_user_metadata_bytes
from contracts.signals import INPUT_SIGNALS_METADATA_KEY

from .imaging import PreparedFrame
from .keys import FrameKey
from .signals import decode_input_signals, encode_input_signals, input_signals

S3_USER_METADATA_LIMIT = MAX_S3_USER_METADATA_BYTES
_QUOTED = ("source-key", "vehicle", "camera", "timestamp")


class MetadataTooLarge(ValueError):
    pass


@dataclass(frozen=True)
class AsyncInputMetadata:
    inference_id: str
    source_bucket: str
    source_key: str
    source_version_id: str | None
    vehicle: str | None
    camera: str | None
    timestamp: str | None
    original_size: tuple[int, int]
    inference_size: tuple[int, int]
    crop_box: tuple[int, int, int, int]
    scale: float
    uploaded_at: str | None  # when the frame reached the ingest bucket (S3 event time)
    submitted_at: str | None  # when ingest submitted the async inference
    source_format: str | None
    drive_id: str | None = None  # the frame's drive (contracts.drives.DRIVE_ID_METADATA), when it came from one
    input_signals_text: str | None = None  # INPUT_SIGNALS_METADATA_KEY's value; None: an input without signals

    def input_signals(self) -> dict[str, float | str] | None:
        """The prepared frame's input signals (None when the input carries none); ValueError naming the bad part
        when the value is not segcore.signals.encode_input_signals' text."""
        return decode_input_signals(self.input_signals_text) if self.input_signals_text else None


def prepared_input_signals(prepared: PreparedFrame) -> str:
    """The ``INPUT_SIGNALS_METADATA_KEY`` value of a prepared frame: segcore.signals.input_signals of its inference
    JPEG decoded in full, i.e. of exactly the pixels the model receives, so anyone holding the async input (the
    gate's serving step, a drive rebuild) computes the same numbers from the same bytes."""
    with Image.open(io.BytesIO(prepared.jpeg)) as image:
        rgb = np.asarray(image.convert("RGB"))
    return encode_input_signals(input_signals(rgb))


def drive_of_metadata(meta: dict[str, str] | None) -> str | None:
    """The drive id in an object's user metadata (a frame the extraction job wrote); None when absent.
    ValueError when present but not a drive id."""
    value = {k.lower(): v for k, v in (meta or {}).items()}.get(DRIVE_ID_METADATA)
    if not value:
        return None
    try:
        return str(DriveId.parse(value))
    except DriveKeyError as exc:
        raise ValueError(f"metadata '{DRIVE_ID_METADATA}': {exc}") from None


def build_async_input_metadata(
    *,
    inference_id: str,
    source_bucket: str,
    frame: FrameKey,
    source_version_id: str | None,
    prepared: PreparedFrame,
    uploaded_at: str | None,
    submitted_at: str,
    drive_id: str | None = None,
    input_signals_text: str | None = None,
) -> dict[str, str]:
    """The async input's user metadata. ``MetadataTooLarge`` when it breaks S3's 2 KB limit even without the
    optional input signals; with them it would not fit, they are left out (``INPUT_SIGNALS_METADATA_KEY`` absent)."""
    meta = {
        "inference-id": inference_id,
        "source-bucket": source_bucket,
        "source-key": frame.key,
        "original-width": str(prepared.original_size[0]),
        "original-height": str(prepared.original_size[1]),
        "inference-width": str(prepared.output_size[0]),
        "inference-height": str(prepared.output_size[1]),
        "crop-box": ",".join(str(v) for v in prepared.crop_box),
        "scale": f"{prepared.scale:.8g}",
        "source-format": prepared.source_format,
        "submitted-at": submitted_at,
    }
    optional = {
        "source-version-id": source_version_id,
        "vehicle": frame.vehicle,
        "camera": frame.camera,
        "timestamp": frame.timestamp,
        "uploaded-at": uploaded_at,
        DRIVE_ID_METADATA: drive_id,
    }
    meta.update({k: v for k, v in optional.items() if v})
    for name in _QUOTED:
        if name in meta:
            meta[name] = quote(meta[name], safe="/:@+,;=-_.~")
    size = s3_user_metadata_bytes(meta)
    if size > S3_USER_METADATA_LIMIT:
        raise MetadataTooLarge(
            f"the async input metadata would be {size} bytes (S3 allows {S3_USER_METADATA_LIMIT}, "
            f"{S3_USER_METADATA_DOC}): the frame key is too long"
        )
    if input_signals_text:
        with_signals = {**meta, INPUT_SIGNALS_METADATA_KEY: input_signals_text}
        if s3_user_metadata_bytes(with_signals) <= S3_USER_METADATA_LIMIT:
            return with_signals
    return meta


def parse_async_input_metadata(meta: dict[str, str]) -> AsyncInputMetadata:
    """Inverse of ``build_async_input_metadata``. Raises ValueError naming the missing or bad field."""
    lowered = {k.lower(): v for k, v in meta.items()}

    def need(name: str) -> str:
        value = lowered.get(name)
        if not value:
            raise ValueError(f"async input metadata lacks '{name}'")
        return value

    def text(name: str) -> str | None:
        value = lowered.get(name)
        return unquote(value) if value else None

    try:
        original = (int(need("original-width")), int(need("original-height")))
        inference = (int(need("inference-width")), int(need("inference-height")))
        crop_parts = [int(v) for v in need("crop-box").split(",")]
        scale = float(need("scale"))
    except ValueError as exc:
        if "lacks" in str(exc):
            raise
        raise ValueError(f"async input metadata has a malformed size field: {exc}") from None
    if len(crop_parts) != 4:
        raise ValueError("async input metadata 'crop-box' must hold four integers")
    return AsyncInputMetadata(
        inference_id=need("inference-id"),
        source_bucket=need("source-bucket"),
        source_key=unquote(need("source-key")),
        source_version_id=lowered.get("source-version-id") or None,
        vehicle=text("vehicle"),
        camera=text("camera"),
        timestamp=text("timestamp"),
        original_size=original,
        inference_size=inference,
        crop_box=(crop_parts[0], crop_parts[1], crop_parts[2], crop_parts[3]),
        scale=scale,
        uploaded_at=lowered.get("uploaded-at") or None,
        submitted_at=lowered.get("submitted-at") or None,
        source_format=lowered.get("source-format") or None,
        drive_id=lowered.get(DRIVE_ID_METADATA) or None,
        input_signals_text=lowered.get(INPUT_SIGNALS_METADATA_KEY) or None,
    )
