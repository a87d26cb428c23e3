"""The JSON documents the pipeline writes: results, failures and quarantine reasons.

Their shapes and schema versions are the contract in ``contracts.documents`` (readers validate against it).
All timestamps are ISO 8601 UTC with milliseconds and a ``Z`` suffix. ``latency_ms`` is the time from
the frame's upload (the S3 event time; for real-time requests the API request time) to the moment the
result document was built. Bounding boxes follow ``masks`` (exclusive x1/y1, original frame pixels).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from contracts.documents import FAILURE_SCHEMA_VERSION, QUARANTINE_SCHEMA_VERSION, RESULT_SCHEMA_VERSION
from contracts.signals import RESULT_SIGNALS_KEY

from .keys import FrameKey
from .masks import MaskStats


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso8601(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.astimezone(UTC).microsecond // 1000:03d}Z"


def parse_iso8601(text: str | None) -> datetime | None:
    """Parse S3/SageMaker event times ('2024-05-01T10:00:00.123Z'); None when absent or malformed."""
    if not text or not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def latency_ms(start: datetime | None, end: datetime | None) -> int | None:
    if start is None or end is None:
        return None
    return max(0, round((end - start).total_seconds() * 1000))


def build_result_document(
    *,
    inference_id: str,
    mode: str,
    source_bucket: str | None,
    frame: FrameKey | None,
    original_size: tuple[int, int],
    inference_size: tuple[int, int],
    crop_box: tuple[int, int, int, int],
    stats: MaskStats,
    model_package_version: str | None,
    endpoint_name: str | None,
    uploaded_at: datetime | None,
    completed_at: datetime,
    mask_uri: str | None,
    overlay_uri: str | None,
    endpoint_latency_ms: int | None = None,
    signals: Mapping[str, Any] | None = None,
) -> dict:
    """``signals``: the frame's signals (contracts.signals, segcore.signals.frame_signals: every name, None where not
    computed), written under ``RESULT_SIGNALS_KEY``; None leaves the optional key out."""
    document = {
        "schema_version": RESULT_SCHEMA_VERSION,
        "inference_id": inference_id,
        "mode": mode,  # "async" | "realtime"
        "source_bucket": source_bucket,
        "frame_key": frame.key if frame else None,
        "vehicle": frame.vehicle if frame else None,
        "camera": frame.camera if frame else None,
        "timestamp": frame.timestamp if frame else None,
        "original_size": {"width": original_size[0], "height": original_size[1]},
        "inference_size": {"width": inference_size[0], "height": inference_size[1]},
        "crop_box": list(crop_box),
        "model_package_version": model_package_version,
        "endpoint_name": endpoint_name,
        "uploaded_at": iso8601(uploaded_at) if uploaded_at else None,
        "completed_at": iso8601(completed_at),
        "latency_ms": latency_ms(uploaded_at, completed_at),
        "endpoint_latency_ms": endpoint_latency_ms,
        "pixels": {
            "mask_width": stats.width,
            "mask_height": stats.height,
            "total": stats.total_pixels,
            "ignored": stats.ignored_pixels,
            "unknown": stats.unknown_pixels,
        },
        "class_fractions": stats.class_fractions,
        "drivable_area_fraction": stats.drivable_area_fraction,
        "vulnerable_road_users": {
            "present": stats.vru_present,
            "min_pixels": stats.vru_min_pixels,
            "objects": [obj.to_dict() for obj in stats.vru_objects],
        },
        "mask_uri": mask_uri,
        "overlay_uri": overlay_uri,
    }
    if signals is not None:
        document[RESULT_SIGNALS_KEY] = dict(signals)
    return document


def build_failure_document(
    *,
    inference_id: str | None,
    source_bucket: str | None,
    frame: FrameKey | None,
    code: str,
    reason: str,
    endpoint_name: str | None,
    input_location: str | None,
    failure_location: str | None = None,
    uploaded_at: datetime | None = None,
    failed_at: datetime,
    model_package_version: str | None = None,
) -> dict:
    return {
        "schema_version": FAILURE_SCHEMA_VERSION,
        "status": "failed",
        "inference_id": inference_id,
        "source_bucket": source_bucket,
        "frame_key": frame.key if frame else None,
        "vehicle": frame.vehicle if frame else None,
        "camera": frame.camera if frame else None,
        "timestamp": frame.timestamp if frame else None,
        "code": code,
        "reason": reason,
        "endpoint_name": endpoint_name,
        "model_package_version": model_package_version,
        "input_location": input_location,
        "failure_location": failure_location,
        "uploaded_at": iso8601(uploaded_at) if uploaded_at else None,
        "failed_at": iso8601(failed_at),
        "latency_ms": latency_ms(uploaded_at, failed_at),
    }


def build_quarantine_document(
    *,
    source_bucket: str,
    source_key: str,
    code: str,
    reason: str,
    detected_format: str | None,
    size_bytes: int | None,
    quarantined_at: datetime,
    source_version_id: str | None = None,
    inference_id: str | None = None,
) -> dict:
    return {
        "schema_version": QUARANTINE_SCHEMA_VERSION,
        "source_bucket": source_bucket,
        "source_key": source_key,
        "code": code,
        "reason": reason,
        "detected_format": detected_format,
        "size_bytes": size_bytes,
        "quarantined_at": iso8601(quarantined_at),
        "source_version_id": source_version_id,
        "inference_id": inference_id,
    }


def to_json_bytes(document: dict) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
