"""Postprocess: SageMaker async notifications (SNS, success and error topics) -> result documents.

Handler string ``postprocess.handler``. For each SNS record:

- Completed: read the async input object's metadata (source key, original size, crop box, upload time),
  read the mask PNG at ``outputLocation``, compute the summary, write ``<RESULTS_PREFIX><identity>.json``
  (plus ``<identity>.mask.png`` at original size when RESTORE_ORIGINAL_SIZE, and
  ``<identity>.overlay.jpg`` when WRITE_OVERLAY)
- Failed: write ``<FAILURES_PREFIX><identity>.json`` with the endpoint's failure reason
- a notification of a superseded submission (the async input now carries another inference id because
  the frame was re-uploaded) is skipped and counted
- malformed (not JSON, missing fields) or foreign (another endpoint, another bucket/prefix)
  notifications are logged and counted, never raised
- an invalid mask (not a single-channel PNG) becomes a failure document

Signals (issue 23): the result document carries the frame's signals under ``signals``
(contracts.signals.RESULT_SIGNALS_KEY): the input signals ingest put in the async input's metadata (null for inputs
written without them) and the output signals of the mask (segcore.signals.output_signals_from_fractions over the
mask statistics' class fractions: no second pass over the mask). The numeric ones are published per frame in
embedded metric format with the dimensions {Environment, Camera} (contracts.signal_metrics,
roadseg_lambda.signal_metrics) when METRICS_ENVIRONMENT is set; the operational metrics above keep their own
namespace and dimensions.

AWS errors (throttling, permissions) ARE raised: Lambda's asynchronous invocation retries the event and
then hands it to the function's on-failure destination / DLQ configured by the stack.

IAM needed on the inference bucket: s3:GetObject (async input and output prefixes), s3:PutObject
(results and failures prefixes). Drives: a frame whose async input names a drive (ingest copies the id) is counted
as processed or failed exactly once (roadseg_lambda.drive_counts) when DRIVES_TABLE is set: dynamodb:PutItem and
dynamodb:UpdateItem on that table.
"""

from __future__ import annotations

import os
import time
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes.sns_event import SNSEventRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError
from roadseg_lambda import aws, drive_counts, signal_metrics
from roadseg_lambda.notifications import FAILED, AsyncNotification, NotificationError, parse_async_notification
from roadseg_lambda.storage import ObjectTooLarge, put_bytes, put_json, read_object

from contracts.drive_table import FAILED as DRIVE_FAILED
from contracts.drive_table import PROCESSED
from contracts.lambda_env import METRICS_NAMESPACE
from segcore.keys import FrameKey, object_keys, parse_frame_key, parse_s3_uri, s3_uri
from segcore.masks import (
    Geometry,
    MaskError,
    decode_mask_png,
    encode_mask_png,
    mask_statistics,
    overlay_jpeg,
    restore_to_original,
)
from segcore.metadata import AsyncInputMetadata, parse_async_input_metadata
from segcore.results import (
    build_failure_document,
    build_result_document,
    iso8601,
    parse_iso8601,
    utc_now,
)
from segcore.settings import Settings, get_settings
from segcore.signals import frame_signals, output_signals_from_fractions

REQUIRED = ("INFERENCE_BUCKET", "ASYNC_ENDPOINT_NAME", "CLASS_NAMES")
MAX_MASK_BYTES = 64 * 1024 * 1024

logger = Logger()
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", METRICS_NAMESPACE))


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event: dict, context: LambdaContext) -> dict:
    settings = get_settings(*REQUIRED)
    records = event.get("Records") if isinstance(event, dict) else None
    if not isinstance(records, list) or not records:
        _count("MalformedNotifications")
        logger.error("event is not an SNS event (no Records)")
        return {"outcomes": ["malformed"]}
    outcomes = [handle_record(SNSEventRecord(record), settings) for record in records if isinstance(record, dict)]
    return {"outcomes": outcomes}


def handle_record(record: SNSEventRecord, settings: Settings) -> str:
    try:
        message = record.sns.message
        topic = record.sns.topic_arn
    except (KeyError, TypeError, AttributeError):
        message, topic = None, None
    try:
        note = parse_async_notification(
            message,
            endpoint_name=settings.async_endpoint_name,
            inference_bucket=settings.inference_bucket,
            async_input_prefix=settings.async_input_prefix,
        )
    except NotificationError as exc:
        _count("ForeignNotifications" if exc.kind == "foreign" else "MalformedNotifications")
        logger.warning("notification ignored", extra={"kind": exc.kind, "reason": exc.reason, "topic_arn": topic})
        return exc.kind
    with logger.append_context_keys(inference_id=note.inference_id, identity=note.identity, topic_arn=topic):
        try:
            return process_notification(note, settings)
        finally:
            logger.remove_keys(["frame_key"])


def process_notification(note: AsyncNotification, settings: Settings) -> str:
    s3 = aws.s3_client()
    keys = object_keys(
        note.identity,
        async_input_prefix=settings.async_input_prefix,
        results_prefix=settings.results_prefix,
        failures_prefix=settings.failures_prefix,
    )
    meta = _input_metadata(s3, note)
    if meta is not None and meta.inference_id != note.inference_id:
        _count("SupersededNotifications")
        logger.info(
            "notification of a superseded submission ignored", extra={"current_inference_id": meta.inference_id}
        )
        return "superseded"
    frame = parse_frame_key(meta.source_key, settings.key_pattern) if meta else None
    if frame is not None:
        logger.append_keys(frame_key=frame.key)

    if note.status == FAILED:
        _count("InferenceFailures")
        reason = note.failure_reason or "the endpoint reported a failure without a reason"
        logger.warning("async inference failed", extra={"failure_reason": reason})
        _write_failure(s3, settings, keys.failure, note, meta, frame, "inference_failed", reason)
        _count_drive_frame(settings, meta, DRIVE_FAILED, {"failure": keys.failure})
        return "failed"
    if meta is None:
        _count("MissingAsyncInputs")
        logger.error("async input object or its metadata is missing: cannot map the mask to its frame")
        _write_failure(
            s3, settings, keys.failure, note, None, None, "async_input_missing", "the async input object is gone"
        )
        return "failed"

    out_bucket, out_key = parse_s3_uri(note.output_location)
    try:
        mask = decode_mask_png(read_object(s3, out_bucket, out_key, limit=MAX_MASK_BYTES))
    except (MaskError, ObjectTooLarge) as exc:
        code = exc.code if isinstance(exc, MaskError) else "mask_too_large"
        _count("InvalidMasks")
        logger.error("endpoint output is not a usable mask", extra={"code": code, "error": str(exc)})
        _write_failure(s3, settings, keys.failure, note, meta, frame, code, str(exc))
        _count_drive_frame(settings, meta, DRIVE_FAILED, {"failure": keys.failure})
        return "failed"

    geometry = Geometry(original_size=meta.original_size, crop_box=meta.crop_box)
    stats = mask_statistics(
        mask,
        settings.class_names,
        ignore_index=settings.ignore_index,
        vru_min_pixels=settings.vru_min_pixels,
        geometry=geometry,
        vru_classes=settings.vru_classes,
    )
    # From the statistics' class fractions, not a second pass over the mask: the same shares up to their rounding
    # (1e-6), and vru_present by the same rule (a VRU class with at least VRU_MIN_PIXELS pixels).
    signals = frame_signals(input=_input_signals(meta), output=output_signals_from_fractions(
        stats.class_fractions, vru_classes=settings.vru_classes, vru_present=stats.vru_present))
    mask_uri = note.output_location
    if settings.restore_original_size:
        restored = restore_to_original(mask, geometry, settings.ignore_index)
        put_bytes(s3, settings.inference_bucket, keys.restored_mask, encode_mask_png(restored), "image/png")
        mask_uri = s3_uri(settings.inference_bucket, keys.restored_mask)
    overlay_uri = None
    if settings.write_overlay:
        frame_jpeg = read_object(s3, note.input_bucket, note.input_key)
        overlay = overlay_jpeg(frame_jpeg, mask, settings.class_colors, ignore_index=settings.ignore_index)
        put_bytes(s3, settings.inference_bucket, keys.overlay, overlay, "image/jpeg")
        overlay_uri = s3_uri(settings.inference_bucket, keys.overlay)

    completed_at = utc_now()
    document = build_result_document(
        inference_id=note.inference_id,
        mode="async",
        source_bucket=meta.source_bucket,
        frame=frame,
        original_size=meta.original_size,
        inference_size=meta.inference_size,
        crop_box=meta.crop_box,
        stats=stats,
        model_package_version=settings.model_package_version,
        endpoint_name=note.endpoint_name,
        uploaded_at=parse_iso8601(meta.uploaded_at),
        completed_at=completed_at,
        mask_uri=mask_uri,
        overlay_uri=overlay_uri,
        endpoint_latency_ms=note.endpoint_latency_ms,
        signals=signals,
    )
    put_json(s3, settings.inference_bucket, keys.result, document)
    _count_drive_frame(settings, meta, PROCESSED, {"result": keys.result, "mask": _key_of(mask_uri),
                                                   "overlay": _key_of(overlay_uri)})
    _count("ResultsWritten")
    if stats.vru_present:
        _count("FramesWithVulnerableRoadUsers")
    if document["latency_ms"] is not None:
        metrics.add_metric(name="EndToEndLatency", unit=MetricUnit.Milliseconds, value=document["latency_ms"])
    if note.endpoint_latency_ms is not None:
        metrics.add_metric(name="EndpointLatency", unit=MetricUnit.Milliseconds, value=note.endpoint_latency_ms)
    if settings.metrics_environment:
        signal_metrics.emit(signal_metrics.signal_document(
            signals, environment=settings.metrics_environment, camera=frame.camera if frame else None,
            timestamp_ms=int(time.time() * 1000), cameras=settings.metrics_cameras or ()))
    logger.info(
        "result written",
        extra={
            "result_key": keys.result,
            "latency_ms": document["latency_ms"],
            "vru_present": stats.vru_present,
            "drivable_area_fraction": stats.drivable_area_fraction,
        },
    )
    return "completed"


def _input_signals(meta: AsyncInputMetadata) -> dict[str, float | str] | None:
    """The input signals ingest computed (None for an input written without them, or with an unreadable value:
    logged and counted, the result is written with null input signals)."""
    try:
        return meta.input_signals()
    except ValueError as exc:
        _count("UnreadableInputSignals")
        logger.warning("async input's signals metadata unreadable: input signals null", extra={"error": str(exc)})
        return None


def _input_metadata(s3: Any, note: AsyncNotification) -> AsyncInputMetadata | None:
    try:
        head = s3.head_object(Bucket=note.input_bucket, Key=note.input_key)
    except ClientError as exc:
        if aws.is_not_found(exc):
            return None
        raise
    try:
        return parse_async_input_metadata(head.get("Metadata", {}))
    except ValueError as exc:
        logger.error("async input metadata unusable", extra={"error": str(exc)})
        return None


def _write_failure(
    s3: Any,
    settings: Settings,
    key: str,
    note: AsyncNotification,
    meta: AsyncInputMetadata | None,
    frame: FrameKey | None,
    code: str,
    reason: str,
) -> None:
    document = build_failure_document(
        inference_id=note.inference_id,
        source_bucket=meta.source_bucket if meta else None,
        frame=frame,
        code=code,
        reason=reason,
        endpoint_name=note.endpoint_name,
        input_location=note.input_location,
        failure_location=note.failure_location,
        uploaded_at=parse_iso8601(meta.uploaded_at) if meta else None,
        failed_at=utc_now(),
        model_package_version=settings.model_package_version,
    )
    put_json(s3, settings.inference_bucket, key, document)
    logger.info("failure document written", extra={"failure_key": key, "code": code})


def _key_of(uri: str | None) -> str | None:
    return parse_s3_uri(uri)[1] if uri else None


def _count_drive_frame(settings: Settings, meta: AsyncInputMetadata | None, outcome: str,
                       documents: dict[str, str | None]) -> None:
    """Count the outcome of a drive's frame exactly once (roadseg_lambda.drive_counts); no call for a frame without
    a drive, or without DRIVES_TABLE. A notification whose async input is gone names no frame and no drive."""
    if meta is None:
        return
    counted = drive_counts.count_frame(settings.drives_table, meta.drive_id, meta.source_key, outcome,
                                       client=aws.dynamodb_client, documents=documents,
                                       recorded_at=iso8601(utc_now()))
    if counted != drive_counts.UNTRACKED:
        logger.info("drive frame outcome", extra={"drive_id": meta.drive_id, "outcome": outcome, "counted": counted})


def _count(name: str) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)
