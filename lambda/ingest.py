"""Ingest: SQS batch of S3 "ObjectCreated" notifications for frames under incoming/ -> async inference.

Per S3 record (handler string ``ingest.handler``):

1. decode the key, derive the inference id (bucket + key + version id, else ETag)
2. skip frames already submitted: the async input object carries the inference id in its metadata and,
   once InvokeEndpointAsync succeeded, the tag ``roadseg-submitted=<inference id>``. Same id + tag ->
   "already submitted" (a re-delivered event never causes a second inference); same id without the tag
   -> the earlier attempt uploaded but did not invoke, so only the invocation is repeated.
3. read the frame (with its version id), ``prepare_frame``; a ``BadFrame`` is copied to
   ``<QUARANTINE_PREFIX><key>`` with ``<key>.reason.json`` next to it and the record SUCCEEDS
4. put the inference JPEG to ``<ASYNC_INPUT_PREFIX><identity>.jpg`` with metadata, invoke the async
   endpoint, tag the input as submitted

A missing object (deleted before we got to it) is logged and counted, not retried. Every other error
(throttling, endpoint not ready, network, permissions) is raised so the message is reported in
``batchItemFailures`` and retried; the queue's redrive policy moves it to the DLQ after N attempts.

Inside one invocation, the records of a frame version (the same notification twice in a batch) run one after the
other (roadseg_lambda.batch.KeyedLocks on the inference id): the second finds the first's tag and sends nothing, so
InvokeEndpointAsync is called once per frame version however the records are spread over threads. Decoding waits
for the invocation's memory budget (roadseg_lambda.batch.MemoryBudget: the function's memory minus a reserve,
each frame's cost estimated from its header by imaging.decode_cost); reads, uploads and invocations do not.

Powertools Idempotency is not used: it needs a DynamoDB table, and the deterministic inference id plus
the S3 metadata/tag check above already make re-deliveries harmless.

IAM needed on the inference bucket: s3:GetObject, s3:PutObject, s3:GetObjectTagging, s3:PutObjectTagging
(async input prefix), s3:PutObject (quarantine prefix); on the ingest bucket s3:GetObject and
s3:GetObjectVersion; sagemaker:InvokeEndpointAsync on the async endpoint.

Signals (issue 23): the prepared frame's input signals (segcore.metadata.prepared_input_signals: brightness,
contrast, sharpness, saturation, dhash of the inference JPEG) travel to the postprocess function in the async input's
user metadata (contracts.signals.INPUT_SIGNALS_METADATA_KEY); a frame whose signals cannot be computed or do not fit
the metadata is submitted without them. Per camera, every frame decided here (submitted or quarantined) is counted
as FramesReceived and a quarantined one as FramesQuarantinedByCamera (by reason), in embedded metric format with the
dimensions of contracts.signal_metrics (roadseg_lambda.signal_metrics), when METRICS_ENVIRONMENT is set.

Drives: a frame whose S3 user metadata names a drive (contracts.drives.DRIVE_ID_METADATA) carries the id on into the
async input's metadata (postprocess counts its outcome); a quarantined one is counted here, exactly once
(roadseg_lambda.drive_counts), when DRIVES_TABLE is set: dynamodb:PutItem and dynamodb:UpdateItem on that table.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.utilities.batch import EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.s3_event import S3Event, S3EventRecord
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import ClientError
from roadseg_lambda import aws, drive_counts, signal_metrics
from roadseg_lambda.batch import ConcurrentBatchProcessor, KeyedLocks, MemoryBudget, decode_budget_bytes
from roadseg_lambda.storage import ObjectTooLarge, object_tags, put_bytes, put_json, read_object_with_metadata

from contracts.drive_table import QUARANTINED
from contracts.lambda_env import METRICS_NAMESPACE
from contracts.signals import INPUT_SIGNALS_METADATA_KEY
from segcore.imaging import BadFrame, decode_cost, prepare_frame, sniff_format
from segcore.keys import (
    decode_event_key,
    derive_inference_id,
    frame_identity,
    object_keys,
    parse_frame_key,
    quarantine_keys,
    s3_uri,
)
from segcore.metadata import (
    MetadataTooLarge,
    build_async_input_metadata,
    drive_of_metadata,
    prepared_input_signals,
)
from segcore.results import build_quarantine_document, iso8601, utc_now
from segcore.settings import Settings, get_settings

REQUIRED = ("INFERENCE_BUCKET", "ASYNC_ENDPOINT_NAME")
SUBMITTED_TAG = "roadseg-submitted"

logger = Logger()
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", METRICS_NAMESPACE))
_metrics_lock = threading.Lock()
_frames_in_flight = KeyedLocks()  # once per frame version inside this process, whatever thread gets the record
_budget_lock = threading.Lock()
_budgets: dict[tuple[int, int], MemoryBudget] = {}


def decode_budget(settings: Settings) -> MemoryBudget:
    """The process's decoding budget for these settings (one per process: the records of every batch share it)."""
    shape = (settings.ingest_record_concurrency, settings.max_input_bytes)
    with _budget_lock:
        if shape not in _budgets:
            _budgets[shape] = MemoryBudget(decode_budget_bytes(os.environ, records_in_flight=shape[0],
                                                               max_input_bytes=shape[1]))
        return _budgets[shape]


class MalformedMessage(ValueError):
    """The SQS message is not an S3 event notification (it goes to the DLQ after the retries)."""


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
def handler(event: dict, context: LambdaContext) -> dict:
    settings = get_settings(*REQUIRED)  # a configuration error fails the whole invocation, loudly
    # Clients before the threads: creating them from the default session in several threads at once is not safe.
    aws.s3_client(), aws.runtime_client()
    if settings.drives_table:
        aws.dynamodb_client()
    # A drive's burst fills whole batches: the records' S3 and SageMaker calls overlap (roadseg_lambda.batch).
    processor = ConcurrentBatchProcessor(event_type=EventType.SQS, max_workers=settings.ingest_record_concurrency,
                                         raise_on_entire_batch_failure=False)
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)


def _count(name: str) -> None:
    """One more of ``name`` in this invocation's metrics (records run in threads; Metrics is not thread-safe)."""
    with _metrics_lock:
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)


def record_handler(record: SQSRecord) -> None:
    try:
        body = json.loads(record.body)
    except (TypeError, ValueError):
        body = None
    if isinstance(body, dict) and body.get("Event") == "s3:TestEvent":
        logger.info("ignoring s3:TestEvent", extra={"bucket": body.get("Bucket")})
        _count("S3TestEvents")
        return
    if not isinstance(body, dict) or not isinstance(body.get("Records"), list):
        _count("MalformedMessages")
        logger.error("SQS message is not an S3 event notification", extra={"message_id": record.message_id})
        raise MalformedMessage(f"message {record.message_id} is not an S3 event notification")
    for s3_record in S3Event(body).records:
        if not str(s3_record.get("eventName", "")).startswith("ObjectCreated"):
            logger.info("ignoring S3 event", extra={"event_name": s3_record.get("eventName")})
            continue
        process_s3_record(s3_record)


def process_s3_record(s3_record: S3EventRecord) -> None:
    settings = get_settings(*REQUIRED)
    bucket = s3_record.s3.bucket.name
    obj = s3_record.s3.get_object
    key = decode_event_key(obj.key)
    version_id = obj.get("versionId") or None
    inference_id = derive_inference_id(bucket, key, version_id, obj.get("eTag"))
    # Per-thread log keys (append_context_keys changes keys every thread shares).
    logger.thread_safe_append_keys(frame_key=key, inference_id=inference_id, source_bucket=bucket)
    try:
        with _frames_in_flight.hold(inference_id):  # a repeated notification waits, then finds it submitted
            submit_frame(
                settings,
                bucket=bucket,
                key=key,
                version_id=version_id,
                size=obj.get("size"),
                inference_id=inference_id,
                uploaded_at=s3_record.get("eventTime"),
            )
    except Exception as exc:
        if aws.is_transient(exc):
            _count("TransientErrors")
            logger.warning("transient error, the message will be retried", extra={"error": repr(exc)})
        else:
            _count("ProcessingErrors")
            logger.exception("frame processing failed, the message will be retried")
        raise
    finally:
        logger.thread_safe_remove_keys(["frame_key", "inference_id", "source_bucket"])


def submit_frame(
    settings: Settings,
    *,
    bucket: str,
    key: str,
    version_id: str | None,
    size: Any,
    inference_id: str,
    uploaded_at: str | None,
) -> str:
    """Submit one frame; returns the outcome ("submitted", "already_submitted", "quarantined", "missing")."""
    s3 = aws.s3_client()
    out_bucket = settings.inference_bucket
    frame = parse_frame_key(key, settings.key_pattern)
    if not frame.matched:
        logger.info("key does not match KEY_PATTERN: vehicle, camera and timestamp will be null")
    keys = object_keys(
        frame_identity(key),
        async_input_prefix=settings.async_input_prefix,
        results_prefix=settings.results_prefix,
        failures_prefix=settings.failures_prefix,
    )

    state = _submission_state(s3, out_bucket, keys.async_input, inference_id)
    if state == "submitted":
        logger.info("already submitted, skipping", extra={"async_input_key": keys.async_input})
        _count("FramesAlreadySubmitted")
        return "already_submitted"

    if state == "absent":
        if isinstance(size, int) and size > settings.max_input_bytes:
            bad = BadFrame("too_large_bytes", f"{size} bytes exceeds the limit of {settings.max_input_bytes} bytes")
            return _quarantine(settings, bucket, key, version_id, inference_id, bad, size=size,
                               drive_id=_drive_id(settings, lambda: _head_metadata(s3, bucket, key, version_id)))
        try:
            data, source_metadata = read_object_with_metadata(s3, bucket, key, version_id=version_id,
                                                              limit=settings.max_input_bytes)
        except ObjectTooLarge as too_large:
            bad = BadFrame("too_large_bytes", f"more than {too_large.limit} bytes")
            return _quarantine(settings, bucket, key, version_id, inference_id, bad, size=too_large.size,
                               drive_id=_drive_id(settings, too_large.metadata.copy))
        except ClientError as exc:
            return _object_gone(exc, "process")
        drive_id = _drive_id(settings, lambda: source_metadata)
        try:
            options = settings.prepare_options()
            with decode_budget(settings).reserve(decode_cost(data, options)):  # the network calls go on meanwhile
                prepared = prepare_frame(data, options)
            signals_text = _input_signals(prepared)
            metadata = build_async_input_metadata(
                inference_id=inference_id,
                source_bucket=bucket,
                frame=frame,
                source_version_id=version_id,
                prepared=prepared,
                uploaded_at=uploaded_at,
                submitted_at=iso8601(utc_now()),
                drive_id=drive_id,  # postprocess counts the frame's outcome for its drive
                input_signals_text=signals_text,
            )
            if signals_text and INPUT_SIGNALS_METADATA_KEY not in metadata:
                _count("InputSignalsLeftOut")
                logger.warning("input signals left out: the frame key leaves no room in S3's 2 KB user metadata")
        except BadFrame as bad:
            return _quarantine(settings, bucket, key, version_id, inference_id, bad, size=len(data), drive_id=drive_id)
        except MetadataTooLarge as exc:
            bad = BadFrame("key_too_long", str(exc), sniff_format(data))
            return _quarantine(settings, bucket, key, version_id, inference_id, bad, size=len(data), drive_id=drive_id)
        put_bytes(s3, out_bucket, keys.async_input, prepared.jpeg, "image/jpeg", metadata)
        logger.info(
            "frame prepared",
            extra={
                "original_size": prepared.original_size,
                "inference_size": prepared.output_size,
                "conversions": prepared.conversions,
                "jpeg_bytes": len(prepared.jpeg),
            },
        )
    else:
        logger.info("async input already uploaded but not invoked: invoking again")

    response = aws.runtime_client().invoke_endpoint_async(
        EndpointName=settings.async_endpoint_name,
        InputLocation=s3_uri(out_bucket, keys.async_input),
        InferenceId=inference_id,
        ContentType="image/jpeg",
        Accept="image/png",
        RequestTTLSeconds=settings.async_request_ttl_seconds,
    )
    s3.put_object_tagging(
        Bucket=out_bucket,
        Key=keys.async_input,
        Tagging={"TagSet": [{"Key": SUBMITTED_TAG, "Value": inference_id}]},
    )
    _count("FramesSubmitted")
    _count_camera_frame(settings, frame.camera, None)
    logger.info(
        "async inference submitted",
        extra={"async_input_key": keys.async_input, "output_location": response.get("OutputLocation")},
    )
    return "submitted"


def _submission_state(s3: Any, bucket: str, key: str, inference_id: str) -> str:
    """'absent' (nothing, or an older version's input), 'uploaded' (ours, not invoked) or 'submitted'."""
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if aws.is_not_found(exc):
            return "absent"
        raise
    if head.get("Metadata", {}).get("inference-id") != inference_id:
        return "absent"
    return "submitted" if object_tags(s3, bucket, key).get(SUBMITTED_TAG) == inference_id else "uploaded"


def _quarantine(
    settings: Settings,
    bucket: str,
    key: str,
    version_id: str | None,
    inference_id: str,
    bad: BadFrame,
    *,
    size: int | None,
    drive_id: str | None = None,
) -> str:
    s3 = aws.s3_client()
    target, reason_key = quarantine_keys(key, settings.quarantine_prefix)
    source: dict[str, str] = {"Bucket": bucket, "Key": key}
    if version_id and version_id != "null":
        source["VersionId"] = version_id
    try:
        s3.copy(source, settings.inference_bucket, target)  # managed copy: multipart above 5 GB
    except ClientError as exc:
        return _object_gone(exc, "quarantine")
    document = build_quarantine_document(
        source_bucket=bucket,
        source_key=key,
        source_version_id=version_id,
        inference_id=inference_id,
        code=bad.code,
        reason=bad.reason,
        detected_format=bad.detected_format,
        size_bytes=size,
        quarantined_at=utc_now(),
    )
    put_json(s3, settings.inference_bucket, reason_key, document)
    _count_drive_frame(settings, drive_id, key, documents={"quarantine": target, "quarantine_reason": reason_key})
    _count("FramesQuarantined")
    _count_camera_frame(settings, parse_frame_key(key, settings.key_pattern).camera, bad.code)
    with single_metric(
        name="FramesQuarantinedByReason", unit=MetricUnit.Count, value=1, namespace=metrics.namespace
    ) as reason_metric:
        reason_metric.add_dimension(name="Reason", value=bad.code)
    logger.warning(
        "frame quarantined",
        extra={
            "code": bad.code,
            "reason": bad.reason,
            "quarantine_key": target,
            "detected_format": bad.detected_format,
        },
    )
    return "quarantined"


def _input_signals(prepared: Any) -> str | None:
    """The prepared frame's input signals as metadata text; None (logged and counted) when they cannot be computed
    (a strip too thin for the signals' working image): the frame is submitted without them."""
    try:
        return prepared_input_signals(prepared)
    except ValueError as exc:
        _count("InputSignalsFailed")
        logger.warning("input signals not computed: the frame is submitted without them", extra={"error": str(exc)})
        return None


def _count_camera_frame(settings: Settings, camera: str | None, quarantine_code: str | None) -> None:
    """FramesReceived (and FramesQuarantinedByCamera, by reason) for the frame's camera (contracts.signal_metrics)."""
    if not settings.metrics_environment:
        return
    for document in signal_metrics.frame_count_documents(environment=settings.metrics_environment, camera=camera,
                                                         quarantine_code=quarantine_code,
                                                         timestamp_ms=int(time.time() * 1000),
                                                         cameras=settings.metrics_cameras or ()):
        signal_metrics.emit(document)


def _drive_id(settings: Settings, metadata: Any) -> str | None:
    """The frame's drive (its S3 user metadata, ``metadata()``) when drives are tracked; None otherwise, or when the
    value is not a drive id (logged: the frame is then processed like any other)."""
    if not settings.drives_table:
        return None
    try:
        return drive_of_metadata(metadata())
    except ValueError as exc:
        logger.warning("frame metadata names no valid drive: not counted for a drive", extra={"error": str(exc)})
        return None


def _head_metadata(s3: Any, bucket: str, key: str, version_id: str | None) -> dict[str, str]:
    kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if version_id and version_id != "null":
        kwargs["VersionId"] = version_id
    try:
        return dict(s3.head_object(**kwargs).get("Metadata") or {})
    except ClientError as exc:
        if aws.is_not_found(exc):
            return {}
        raise


def _count_drive_frame(settings: Settings, drive_id: str | None, key: str, *, documents: dict[str, str]) -> None:
    """Count a quarantined drive frame exactly once (roadseg_lambda.drive_counts); no call without a drive."""
    counted = drive_counts.count_frame(settings.drives_table, drive_id, key, QUARANTINED, client=aws.dynamodb_client,
                                       documents=documents, recorded_at=iso8601(utc_now()))
    if counted != drive_counts.UNTRACKED:
        logger.info("drive frame outcome", extra={"drive_id": drive_id, "outcome": QUARANTINED, "counted": counted})


def _object_gone(exc: ClientError, task: str) -> str:
    """A frame deleted between its event and our read is logged and counted, not retried; other errors raise."""
    if not aws.is_not_found(exc):
        raise exc
    logger.warning(f"frame object no longer exists, nothing to {task}", extra={"error_code": aws.error_code(exc)})
    _count("FramesMissing")
    return "missing"
