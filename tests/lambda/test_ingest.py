"""ingest.handler under moto: real S3 -> SQS notifications, async submission, dedup, quarantine, retries."""

from __future__ import annotations

import io
import json
import math
import threading
import time
import uuid
from typing import Any

import boto3
import ingest
import numpy as np
import postprocess
import pytest
from lambda_testkit import (
    ASYNC_ENDPOINT,
    INFERENCE_BUCKET,
    INGEST_BUCKET,
    RecordingRuntime,
    async_notification,
    camera_array,
    client_error,
    drain_queue,
    emf_documents,
    emitted_metrics,
    encode,
    log_records,
    mask_png,
    sns_event,
    sqs_event,
    upload_frame,
)
from PIL import Image
from roadseg_lambda import aws

from contracts.documents import validate_quarantine, validate_result
from contracts.signal_metrics import SIGNAL_METRICS_NAMESPACE
from contracts.signals import INPUT_SIGNALS, INPUT_SIGNALS_METADATA_KEY
from segcore.keys import derive_inference_id, frame_identity
from segcore.metadata import parse_async_input_metadata
from segcore.settings import SettingsError, get_settings
from segcore.signals import input_signals

KEY = "incoming/veh-1/front cam/2026-01-01T00:00:00.000Z.jpg"


@pytest.fixture
def runtime(aws_env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> RecordingRuntime:
    recorder = RecordingRuntime(boto3.client("sagemaker-runtime"))
    monkeypatch.setattr(aws, "runtime_client", lambda: recorder)
    return recorder


def _event_inference_id(record: dict) -> str:
    s3 = json.loads(record["body"])["Records"][0]["s3"]
    key = s3["object"]["key"]
    from segcore.keys import decode_event_key

    return derive_inference_id(
        s3["bucket"]["name"], decode_event_key(key), s3["object"].get("versionId"), s3["object"]["eTag"]
    )


def _tags(s3: Any, key: str) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket=INFERENCE_BUCKET, Key=key)["TagSet"]}


def _keys(s3: Any, prefix: str = "") -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=INFERENCE_BUCKET, Prefix=prefix).get("Contents", [])]


def test_end_to_end_frame_to_result(aws_env, runtime, context, capsys) -> None:
    s3 = aws_env["s3"]
    frame = encode(camera_array(320, 240, seed=11), "JPEG", quality=92)
    records = upload_frame(aws_env, KEY, frame)
    assert len(records) == 1 and "front+cam" in json.loads(records[0]["body"])["Records"][0]["s3"]["object"]["key"]

    response = ingest.handler(sqs_event(records), context)
    assert response == {"batchItemFailures": []}

    # one async invocation with the deterministic id and the async input location
    identity = frame_identity(KEY)
    assert identity.startswith("veh-1/front_cam/2026-01-01T00:00:00.000Z~")
    input_key = f"async-input/{identity}.jpg"
    assert len(runtime.calls) == 1
    call = runtime.calls[0]
    assert call["InferenceId"] == _event_inference_id(records[0])
    assert call["InputLocation"] == f"s3://{INFERENCE_BUCKET}/{input_key}"
    assert (call["EndpointName"], call["ContentType"], call["Accept"]) == (ASYNC_ENDPOINT, "image/jpeg", "image/png")
    assert call["RequestTTLSeconds"] == 21600

    # the async input: inference-size JPEG with metadata, tagged as submitted
    head = s3.head_object(Bucket=INFERENCE_BUCKET, Key=input_key)
    meta = head["Metadata"]
    assert head["ContentType"] == "image/jpeg"
    assert meta["inference-id"] == call["InferenceId"] and meta["source-bucket"] == INGEST_BUCKET
    assert meta["source-key"] == "incoming/veh-1/front%20cam/2026-01-01T00:00:00.000Z.jpg"  # ASCII
    assert (meta["vehicle"], meta["camera"], meta["timestamp"]) == ("veh-1", "front%20cam", "2026-01-01T00:00:00.000Z")
    assert (meta["original-width"], meta["original-height"]) == ("320", "240")
    assert (meta["inference-width"], meta["inference-height"], meta["crop-box"]) == ("107", "80", "0,0,320,240")
    assert meta["uploaded-at"] == json.loads(records[0]["body"])["Records"][0]["eventTime"]
    body = s3.get_object(Bucket=INFERENCE_BUCKET, Key=input_key)["Body"].read()
    assert Image.open(io.BytesIO(body)).size == (107, 80)
    assert _tags(s3, input_key) == {ingest.SUBMITTED_TAG: call["InferenceId"]}
    out = capsys.readouterr().out
    assert emitted_metrics(out)["FramesSubmitted"] == [1.0]
    submitted = [r for r in log_records(out) if r["message"] == "async inference submitted"]
    assert submitted and submitted[0]["frame_key"] == KEY and submitted[0]["inference_id"] == call["InferenceId"]

    # the endpoint answers: a class-index mask at inference size, then the success notification
    mask = np.full((80, 107), 0, dtype=np.uint8)  # road
    mask[:30] = 10  # sky
    mask[40:60, 20:30] = 11  # a person, 200 px
    output_key = f"async-output/{uuid.uuid4()}.out"
    s3.put_object(Bucket=INFERENCE_BUCKET, Key=output_key, Body=mask_png(mask))
    note = async_notification(
        inference_id=call["InferenceId"],
        input_location=call["InputLocation"],
        output_location=f"s3://{INFERENCE_BUCKET}/{output_key}",
    )
    assert postprocess.handler(sns_event(note), context) == {"outcomes": ["completed"]}

    result = json.loads(s3.get_object(Bucket=INFERENCE_BUCKET, Key=f"results/{identity}.json")["Body"].read())
    validate_result(result)
    total = 80 * 107
    assert result["inference_id"] == call["InferenceId"] and result["mode"] == "async"
    assert result["frame_key"] == KEY and result["source_bucket"] == INGEST_BUCKET
    assert (result["vehicle"], result["camera"], result["timestamp"]) == (
        "veh-1",
        "front cam",
        "2026-01-01T00:00:00.000Z",
    )
    assert result["original_size"] == {"width": 320, "height": 240}
    assert result["inference_size"] == {"width": 107, "height": 80}
    assert result["model_package_version"] == "7"
    assert result["class_fractions"] == {
        "road": round((total - 30 * 107 - 200) / total, 6),
        "sky": round(30 * 107 / total, 6),
        "person": round(200 / total, 6),
    }
    assert result["drivable_area_fraction"] == result["class_fractions"]["road"]
    sx, sy = 320 / 107, 240 / 80
    expected_box = [math.floor(20 * sx), math.floor(40 * sy), math.ceil(30 * sx), math.ceil(60 * sy)]
    assert result["vulnerable_road_users"]["present"] is True
    assert result["vulnerable_road_users"]["objects"] == [
        {"class": "person", "class_index": 11, "pixels": 200, "bbox": expected_box, "bbox_inference": [20, 40, 30, 60]}
    ]
    assert result["mask_uri"] == f"s3://{INFERENCE_BUCKET}/{output_key}" and result["overlay_uri"] is None
    assert isinstance(result["latency_ms"], int) and result["latency_ms"] >= 0
    assert result["endpoint_latency_ms"] == 750
    metrics = emitted_metrics(capsys.readouterr().out)
    assert metrics["ResultsWritten"] == [1.0] and metrics["FramesWithVulnerableRoadUsers"] == [1.0]


def test_redelivered_event_invokes_once(aws_env, runtime, context, capsys) -> None:
    records = upload_frame(aws_env, KEY, encode(camera_array(160, 120), "JPEG"))
    assert ingest.handler(sqs_event(records), context) == {"batchItemFailures": []}
    assert ingest.handler(sqs_event(records), context) == {"batchItemFailures": []}
    assert len(runtime.calls) == 1
    out = capsys.readouterr().out
    assert emitted_metrics(out)["FramesAlreadySubmitted"] == [1.0]
    assert any(r["message"] == "already submitted, skipping" for r in log_records(out))


def test_reupload_with_new_content_is_submitted_again(aws_env, runtime, context) -> None:
    first = upload_frame(aws_env, KEY, encode(camera_array(160, 120, seed=1), "JPEG"))
    ingest.handler(sqs_event(first), context)
    second = upload_frame(aws_env, KEY, encode(camera_array(160, 120, seed=2), "JPEG"))
    ingest.handler(sqs_event(second), context)
    assert len(runtime.calls) == 2 and runtime.calls[0]["InferenceId"] != runtime.calls[1]["InferenceId"]
    meta = aws_env["s3"].head_object(Bucket=INFERENCE_BUCKET, Key=runtime.calls[1]["InputLocation"].split("/", 3)[3])
    assert meta["Metadata"]["inference-id"] == runtime.calls[1]["InferenceId"]


@pytest.mark.parametrize(
    "error",
    [
        client_error("ThrottlingException", "Rate exceeded", 429),
        client_error("ServiceUnavailable", "try later", 503),
        client_error("ValidationError", "Endpoint roadseg-async of account 123456789012 not found."),
    ],
    ids=["throttling", "unavailable", "endpoint-not-found"],
)
def test_transient_error_reports_item_failure_then_resumes(aws_env, runtime, context, capsys, error) -> None:
    records = upload_frame(aws_env, KEY, encode(camera_array(160, 120), "JPEG"))
    runtime.failures["*"] = [error]
    response = ingest.handler(sqs_event(records), context)
    assert response == {"batchItemFailures": [{"itemIdentifier": records[0]["messageId"]}]}
    input_key = runtime.calls[0]["InputLocation"].split("/", 3)[3]
    assert _tags(aws_env["s3"], input_key) == {}  # uploaded, not yet submitted
    assert emitted_metrics(capsys.readouterr().out)["TransientErrors"] == [1.0]

    # the retry (same message) invokes again without re-preparing, and marks the input submitted
    assert ingest.handler(sqs_event(records), context) == {"batchItemFailures": []}
    assert len(runtime.calls) == 2 and runtime.calls[1]["InferenceId"] == runtime.calls[0]["InferenceId"]
    assert _tags(aws_env["s3"], input_key) == {ingest.SUBMITTED_TAG: runtime.calls[0]["InferenceId"]}
    assert any(r["message"].startswith("async input already uploaded") for r in log_records(capsys.readouterr().out))


def test_partial_batch_failure(aws_env, runtime, context) -> None:
    good = upload_frame(aws_env, "incoming/veh-1/front/a.jpg", encode(camera_array(160, 120, seed=1), "JPEG"))
    bad = upload_frame(aws_env, "incoming/veh-1/front/b.jpg", encode(camera_array(160, 120, seed=2), "JPEG"))
    runtime.failures[_event_inference_id(bad[0])] = [client_error("ThrottlingException", "slow down", 429)]
    response = ingest.handler(sqs_event(good + bad), context)
    assert response == {"batchItemFailures": [{"itemIdentifier": bad[0]["messageId"]}]}
    assert len(runtime.calls) == 2


class _OverlapRuntime(RecordingRuntime):
    """Holds each invocation 50 ms and records how many were in flight at once."""

    def __init__(self, real: Any):
        super().__init__(real)
        self.in_flight = self.peak = 0
        self.lock = threading.Lock()

    def invoke_endpoint_async(self, **kwargs: Any) -> dict:
        with self.lock:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        try:
            time.sleep(0.05)
            return super().invoke_endpoint_async(**kwargs)
        finally:
            with self.lock:
                self.in_flight -= 1


def test_records_of_a_batch_overlap_and_each_frame_is_submitted_once(aws_env, context, monkeypatch, capsys) -> None:
    recorder = _OverlapRuntime(boto3.client("sagemaker-runtime"))
    monkeypatch.setattr(aws, "runtime_client", lambda: recorder)
    monkeypatch.setenv("INGEST_RECORD_CONCURRENCY", "4")
    get_settings.cache_clear()
    records = []
    for i in range(8):
        records += upload_frame(aws_env, f"incoming/veh-1/front/{i}.jpg", encode(camera_array(96, 64, seed=i), "JPEG"))
    response = ingest.handler(sqs_event(records), context)
    assert response == {"batchItemFailures": []}
    assert recorder.peak == 4  # no more than configured, and really side by side
    assert sorted(c["InferenceId"] for c in recorder.calls) == sorted(_event_inference_id(r) for r in records)
    # Each record's log lines carry its own frame key, whichever thread handled it.
    submitted = [r for r in log_records(capsys.readouterr().out) if r["message"] == "async inference submitted"]
    assert sorted(r["frame_key"] for r in submitted) == sorted(f"incoming/veh-1/front/{i}.jpg" for i in range(8))


def test_one_record_at_a_time_when_configured(aws_env, context, monkeypatch) -> None:
    recorder = _OverlapRuntime(boto3.client("sagemaker-runtime"))
    monkeypatch.setattr(aws, "runtime_client", lambda: recorder)
    monkeypatch.setenv("INGEST_RECORD_CONCURRENCY", "1")
    get_settings.cache_clear()
    records = []
    for i in range(3):
        records += upload_frame(aws_env, f"incoming/veh-1/side/{i}.jpg", encode(camera_array(96, 64, seed=i), "JPEG"))
    assert ingest.handler(sqs_event(records), context) == {"batchItemFailures": []}
    assert recorder.peak == 1 and len(recorder.calls) == 3


def _bad_inputs() -> dict[str, tuple[bytes, str, str]]:
    jpeg = encode(camera_array(160, 120), "JPEG")
    return {
        "text": (b"this is a log file, not a frame\n", "unsupported_format", "text"),
        "gif": (encode(Image.fromarray(camera_array(64, 48)), "GIF"), "unsupported_format", "gif"),
        "tiff": (encode(Image.fromarray(camera_array(64, 48)), "TIFF"), "unsupported_format", "tiff"),
        "truncated-jpeg": (jpeg[: len(jpeg) // 2], "truncated", "jpeg"),
        "empty": (b"", "empty", "empty"),
    }


@pytest.mark.parametrize("name", list(_bad_inputs()))
def test_bad_frames_are_quarantined(aws_env, runtime, context, capsys, name) -> None:
    data, code, detected = _bad_inputs()[name]
    key = f"incoming/veh-1/front/bad é {name}.jpg"
    records = upload_frame(aws_env, key, data)
    assert ingest.handler(sqs_event(records), context) == {"batchItemFailures": []}
    s3 = aws_env["s3"]
    copy = s3.get_object(Bucket=INFERENCE_BUCKET, Key=f"quarantine/{key}")["Body"].read()
    assert copy == data
    reason = json.loads(s3.get_object(Bucket=INFERENCE_BUCKET, Key=f"quarantine/{key}.reason.json")["Body"].read())
    validate_quarantine(reason)
    assert reason["source_bucket"] == INGEST_BUCKET and reason["source_key"] == key
    assert reason["code"] == code and reason["detected_format"] == detected and reason["reason"]
    assert reason["size_bytes"] == len(data) and reason["quarantined_at"].endswith("Z")
    assert runtime.calls == [] and _keys(s3, "async-input/") == []
    out = capsys.readouterr().out
    assert emitted_metrics(out)["FramesQuarantined"] == [1.0]
    assert emitted_metrics(out)["FramesQuarantinedByReason"] == [1.0]


def test_oversized_frame_quarantined_from_event_size(aws_env, runtime, context, monkeypatch) -> None:
    monkeypatch.setenv("MAX_INPUT_BYTES", "1000")
    get_settings.cache_clear()
    data = encode(camera_array(160, 120), "JPEG")
    records = upload_frame(aws_env, KEY, data)
    assert ingest.handler(sqs_event(records), context) == {"batchItemFailures": []}
    reason = json.loads(
        aws_env["s3"].get_object(Bucket=INFERENCE_BUCKET, Key=f"quarantine/{KEY}.reason.json")["Body"].read()
    )
    assert reason["code"] == "too_large_bytes" and reason["size_bytes"] == len(data)
    assert runtime.calls == []


def test_deleted_object_is_logged_not_retried(aws_env, runtime, context, capsys) -> None:
    records = upload_frame(aws_env, KEY, encode(camera_array(160, 120), "JPEG"))
    aws_env["s3"].delete_object(Bucket=INGEST_BUCKET, Key=KEY)
    assert ingest.handler(sqs_event(records), context) == {"batchItemFailures": []}
    out = capsys.readouterr().out
    assert emitted_metrics(out)["FramesMissing"] == [1.0]
    assert any("no longer exists" in r["message"] for r in log_records(out))
    assert runtime.calls == [] and _keys(aws_env["s3"]) == []


def test_s3_test_event_is_ignored(aws_env, runtime, context, capsys) -> None:
    records = drain_queue(aws_env)  # configuring the notification sent an s3:TestEvent
    assert records and json.loads(records[0]["body"])["Event"] == "s3:TestEvent"
    assert ingest.handler(sqs_event(records), context) == {"batchItemFailures": []}
    assert emitted_metrics(capsys.readouterr().out)["S3TestEvents"] == [1.0]


def test_malformed_message_is_a_batch_item_failure(aws_env, runtime, context, capsys) -> None:
    records = upload_frame(aws_env, KEY, encode(camera_array(160, 120), "JPEG"))
    broken = dict(records[0], messageId="broken-1", body="{not json")
    response = ingest.handler(sqs_event([broken, records[0]]), context)
    assert response == {"batchItemFailures": [{"itemIdentifier": "broken-1"}]}
    assert len(runtime.calls) == 1
    assert emitted_metrics(capsys.readouterr().out)["MalformedMessages"] == [1.0]


def test_key_outside_pattern_still_processed(aws_env, runtime, context, capsys) -> None:
    key = "incoming/loose-frame.png"
    records = upload_frame(aws_env, key, encode(camera_array(160, 120), "PNG"))
    assert ingest.handler(sqs_event(records), context) == {"batchItemFailures": []}
    meta = aws_env["s3"].head_object(Bucket=INFERENCE_BUCKET, Key="async-input/loose-frame.jpg")["Metadata"]
    assert "vehicle" not in meta and meta["source-key"] == key and meta["source-format"] == "png"
    assert any("does not match KEY_PATTERN" in r["message"] for r in log_records(capsys.readouterr().out))


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
def test_missing_configuration_fails_loudly(aws_env, runtime, context, monkeypatch) -> None:
    monkeypatch.delenv("ASYNC_ENDPOINT_NAME")
    get_settings.cache_clear()
    with pytest.raises(SettingsError, match="ASYNC_ENDPOINT_NAME"):
        ingest.handler(sqs_event([]), context)


# ------------------------------------------------------------------------------------------ signals (issue 23)


def _camera_counts(out: str) -> list[tuple[str, dict[str, str], float]]:
    """(metric, dimensions, value) of every per-camera count the ingest published."""
    counts = []
    for doc in emf_documents(out, SIGNAL_METRICS_NAMESPACE):
        directive = doc["_aws"]["CloudWatchMetrics"][0]
        (names,) = directive["Dimensions"]
        for metric in directive["Metrics"]:
            counts.append((metric["Name"], {n: doc[n] for n in names}, doc[metric["Name"]]))
    return counts


def test_input_signals_travel_in_the_async_input_metadata(aws_env, runtime, context, capsys, monkeypatch) -> None:
    monkeypatch.setenv("METRICS_ENVIRONMENT", "roadseg-dev")
    monkeypatch.setenv("METRICS_CAMERAS", "front,rear")
    get_settings.cache_clear()
    key = "incoming/veh-1/front/2026-01-01T00:00:00.000Z.jpg"
    records = upload_frame(aws_env, key, encode(camera_array(320, 240, seed=3), "JPEG", quality=92))
    assert ingest.handler(sqs_event(records), context) == {"batchItemFailures": []}

    s3 = aws_env["s3"]
    input_key = f"async-input/{frame_identity(key)}.jpg"
    meta = parse_async_input_metadata(s3.head_object(Bucket=INFERENCE_BUCKET, Key=input_key)["Metadata"])
    carried = meta.input_signals()
    # exactly the signals of the pixels the model receives: the inference JPEG, decoded
    body = s3.get_object(Bucket=INFERENCE_BUCKET, Key=input_key)["Body"].read()
    expected = input_signals(np.asarray(Image.open(io.BytesIO(body)).convert("RGB")))
    assert set(carried) == set(INPUT_SIGNALS) and carried["dhash"] == expected["dhash"]
    for name in ("brightness", "contrast", "saturation"):
        assert math.isclose(carried[name], expected[name], abs_tol=5e-5), name
    assert math.isclose(carried["sharpness"], expected["sharpness"], abs_tol=0.05)
    assert _camera_counts(capsys.readouterr().out) == [
        ("FramesReceived", {"Environment": "roadseg-dev", "Camera": "front"}, 1.0)]


def test_quarantine_is_counted_per_camera_and_reason(aws_env, runtime, context, capsys, monkeypatch) -> None:
    monkeypatch.setenv("METRICS_ENVIRONMENT", "roadseg-dev")
    monkeypatch.setenv("METRICS_CAMERAS", "front,rear")
    get_settings.cache_clear()
    records = upload_frame(aws_env, "incoming/veh-1/rear/2026-01-01T00:00:00.000Z.jpg", b"not a frame\n")
    assert ingest.handler(sqs_event(records), context) == {"batchItemFailures": []}
    dims = {"Environment": "roadseg-dev", "Camera": "rear"}
    assert _camera_counts(capsys.readouterr().out) == [
        ("FramesReceived", dims, 1.0), ("FramesQuarantinedByCamera", {**dims, "Reason": "unsupported_format"}, 1.0)]


def test_a_loose_upload_s_drive_is_counted_as_the_unknown_camera(aws_env, runtime, context, capsys,
                                                                 monkeypatch) -> None:
    """veh/drive-0001/frame.jpg matches KEY_PATTERN with the drive as camera: not a configured camera, so
    "unknown" (a new Camera value per stray drive would be 14 metrics and 251 drift queries an hour)."""
    monkeypatch.setenv("METRICS_ENVIRONMENT", "roadseg-dev")
    monkeypatch.setenv("METRICS_CAMERAS", "front,rear")
    get_settings.cache_clear()
    records = upload_frame(aws_env, "incoming/veh-1/drive-0001/frame.jpg", encode(camera_array(160, 120), "JPEG"))
    assert ingest.handler(sqs_event(records), context) == {"batchItemFailures": []}
    assert _camera_counts(capsys.readouterr().out) == [
        ("FramesReceived", {"Environment": "roadseg-dev", "Camera": "unknown"}, 1.0)]


def test_redelivery_and_unset_environment_publish_no_camera_counts(aws_env, runtime, context, capsys) -> None:
    records = upload_frame(aws_env, KEY, encode(camera_array(160, 120), "JPEG"))
    assert ingest.handler(sqs_event(records), context) == {"batchItemFailures": []}
    assert ingest.handler(sqs_event(records), context) == {"batchItemFailures": []}
    assert _camera_counts(capsys.readouterr().out) == []  # METRICS_ENVIRONMENT unset


def test_a_frame_too_thin_for_signals_is_submitted_without_them(aws_env, runtime, context, capsys,
                                                                 monkeypatch) -> None:
    monkeypatch.setenv("TARGET_WIDTH", "1024")
    monkeypatch.setenv("TARGET_HEIGHT", "512")
    get_settings.cache_clear()
    # sent as 1024x16: a working image of 4 rows, too few for the signals, and never a reason to refuse the frame
    records = upload_frame(aws_env, KEY, encode(camera_array(1024, 16), "PNG"))
    assert ingest.handler(sqs_event(records), context) == {"batchItemFailures": []}
    input_key = f"async-input/{frame_identity(KEY)}.jpg"
    meta = aws_env["s3"].head_object(Bucket=INFERENCE_BUCKET, Key=input_key)["Metadata"]
    assert INPUT_SIGNALS_METADATA_KEY not in meta and len(runtime.calls) == 1
    assert emitted_metrics(capsys.readouterr().out)["InputSignalsFailed"] == [1.0]
