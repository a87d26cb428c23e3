"""postprocess.handler under moto: success (overlay, restored mask), failures, bad and foreign notifications."""

from __future__ import annotations

import io
import json
import re
import uuid
from typing import Any

import numpy as np
import postprocess
import pytest
from lambda_testkit import (
    INFERENCE_BUCKET,
    INGEST_BUCKET,
    async_notification,
    camera_array,
    emitted_metrics,
    encode,
    mask_png,
    sns_event,
)
from PIL import Image

from segcore.imaging import PreparedFrame, PrepareOptions, prepare_frame
from segcore.keys import derive_inference_id, frame_identity, parse_frame_key
from segcore.metadata import build_async_input_metadata
from segcore.settings import DEFAULT_KEY_PATTERN, get_settings

FRAME_KEY = "incoming/veh-2/rear/2026-02-02T12:00:00.000Z.png"


def seed_async_input(s3: Any, *, roi: tuple[float, float, float, float] | None = None) -> dict[str, Any]:
    """What ingest leaves behind: the async input JPEG with its metadata (frame 320x240 -> 160x120)."""
    prepared: PreparedFrame = prepare_frame(
        encode(camera_array(320, 240, seed=5), "PNG"), PrepareOptions(target_size=(160, 120), roi=roi)
    )
    inference_id = derive_inference_id(INGEST_BUCKET, FRAME_KEY, "v1")
    identity = frame_identity(FRAME_KEY)
    input_key = f"async-input/{identity}.jpg"
    metadata = build_async_input_metadata(
        inference_id=inference_id,
        source_bucket=INGEST_BUCKET,
        frame=parse_frame_key(FRAME_KEY, re.compile(DEFAULT_KEY_PATTERN)),
        source_version_id="v1",
        prepared=prepared,
        uploaded_at="2026-02-02T12:00:00.000Z",
        submitted_at="2026-02-02T12:00:00.200Z",
    )
    s3.put_object(Bucket=INFERENCE_BUCKET, Key=input_key, Body=prepared.jpeg, Metadata=metadata)
    return {
        "prepared": prepared,
        "inference_id": inference_id,
        "identity": identity,
        "input_uri": f"s3://{INFERENCE_BUCKET}/{input_key}",
    }


def put_mask(s3: Any, data: bytes) -> str:
    key = f"async-output/{uuid.uuid4()}.out"
    s3.put_object(Bucket=INFERENCE_BUCKET, Key=key, Body=data)
    return f"s3://{INFERENCE_BUCKET}/{key}"


def read_json(s3: Any, key: str) -> dict:
    return json.loads(s3.get_object(Bucket=INFERENCE_BUCKET, Key=key)["Body"].read())


def written(s3: Any, prefix: str) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=INFERENCE_BUCKET, Prefix=prefix).get("Contents", [])]


def test_success_with_roi_overlay_and_restored_mask(aws_env, context, capsys, monkeypatch) -> None:
    monkeypatch.setenv("WRITE_OVERLAY", "true")
    monkeypatch.setenv("RESTORE_ORIGINAL_SIZE", "true")
    get_settings.cache_clear()
    s3 = aws_env["s3"]
    seeded = seed_async_input(s3, roi=(0.0, 0.5, 1.0, 1.0))  # bottom half: 320x120 -> 160x60
    assert seeded["prepared"].output_size == (160, 60)
    mask = np.zeros((60, 160), dtype=np.uint8)
    mask[10:30, 100:110] = 12  # rider, 200 px
    output = put_mask(s3, mask_png(mask))
    note = async_notification(
        inference_id=seeded["inference_id"], input_location=seeded["input_uri"], output_location=output
    )
    assert postprocess.handler(sns_event(note), context) == {"outcomes": ["completed"]}

    identity = seeded["identity"]
    result = read_json(s3, f"results/{identity}.json")
    assert result["frame_key"] == FRAME_KEY and result["vehicle"] == "veh-2" and result["camera"] == "rear"
    assert result["crop_box"] == [0, 120, 320, 240]
    assert result["vulnerable_road_users"]["objects"][0]["bbox"] == [200, 140, 220, 180]  # x*2, 120 + y*2
    assert result["mask_uri"] == f"s3://{INFERENCE_BUCKET}/results/{identity}.mask.png"
    assert result["overlay_uri"] == f"s3://{INFERENCE_BUCKET}/results/{identity}.overlay.jpg"

    restored = np.asarray(
        Image.open(
            io.BytesIO(s3.get_object(Bucket=INFERENCE_BUCKET, Key=f"results/{identity}.mask.png")["Body"].read())
        )
    )
    assert restored.shape == (240, 320)
    assert (restored[:120] == 255).all()  # outside the ROI: ignore
    assert (restored[140:180, 200:220] == 12).all() and (restored[120:140] == 0).all()
    overlay = Image.open(
        io.BytesIO(s3.get_object(Bucket=INFERENCE_BUCKET, Key=f"results/{identity}.overlay.jpg")["Body"].read())
    )
    assert overlay.format == "JPEG" and overlay.size == (160, 60)
    assert emitted_metrics(capsys.readouterr().out)["ResultsWritten"] == [1.0]


def test_failure_notification_writes_failure_document(aws_env, context, capsys) -> None:
    s3 = aws_env["s3"]
    seeded = seed_async_input(s3)
    note = async_notification(
        inference_id=seeded["inference_id"],
        input_location=seeded["input_uri"],
        status="Failed",
        failure_reason='ClientError: Received server error (500) from primary with message "OOM".',
    )
    assert postprocess.handler(sns_event(note, topic="arn:aws:sns:us-east-1:123456789012:roadseg-error"), context) == {
        "outcomes": ["failed"]
    }
    doc = read_json(s3, f"failures/{seeded['identity']}.json")
    assert doc["status"] == "failed" and doc["code"] == "inference_failed"
    assert "OOM" in doc["reason"] and doc["frame_key"] == FRAME_KEY and doc["source_bucket"] == INGEST_BUCKET
    assert doc["inference_id"] == seeded["inference_id"] and doc["input_location"] == seeded["input_uri"]
    assert written(s3, "results/") == []
    assert emitted_metrics(capsys.readouterr().out)["InferenceFailures"] == [1.0]


@pytest.mark.parametrize(
    ("message", "metric"),
    [
        ("this is not json", "MalformedNotifications"),
        ('{"invocationStatus": "Completed"}', "MalformedNotifications"),
        ("[]", "MalformedNotifications"),
        (
            async_notification(
                inference_id="x",
                input_location=f"s3://{INFERENCE_BUCKET}/async-input/a.jpg",
                endpoint="another-endpoint",
                output_location=f"s3://{INFERENCE_BUCKET}/o.out",
            ),
            "ForeignNotifications",
        ),
        (
            async_notification(
                inference_id="x", input_location="s3://someone-elses-bucket/in/a.jpg", output_location="s3://b/o.out"
            ),
            "ForeignNotifications",
        ),
    ],
)
def test_malformed_and_foreign_notifications_never_raise(aws_env, context, capsys, message, metric) -> None:
    outcome = postprocess.handler(sns_event(message), context)
    assert outcome["outcomes"][0] in ("malformed", "foreign")
    assert emitted_metrics(capsys.readouterr().out)[metric] == [1.0]
    assert written(aws_env["s3"], "results/") == [] and written(aws_env["s3"], "failures/") == []


@pytest.mark.parametrize("event", [{}, {"Records": "nope"}, {"Records": [{"Sns": {}}]}])
def test_events_that_are_not_sns_never_raise(aws_env, context, capsys, event) -> None:
    outcome = postprocess.handler(event, context)
    assert outcome["outcomes"] == ["malformed"]
    assert emitted_metrics(capsys.readouterr().out)["MalformedNotifications"] == [1.0]


def test_superseded_submission_is_skipped(aws_env, context, capsys) -> None:
    s3 = aws_env["s3"]
    seeded = seed_async_input(s3)
    output = put_mask(s3, mask_png(np.zeros((120, 160), np.uint8)))
    note = async_notification(
        inference_id="an-older-submission", input_location=seeded["input_uri"], output_location=output
    )
    assert postprocess.handler(sns_event(note), context) == {"outcomes": ["superseded"]}
    assert written(s3, "results/") == []
    assert emitted_metrics(capsys.readouterr().out)["SupersededNotifications"] == [1.0]


def test_invalid_mask_becomes_a_failure_document(aws_env, context, capsys) -> None:
    s3 = aws_env["s3"]
    seeded = seed_async_input(s3)
    output = put_mask(s3, encode(Image.new("RGB", (160, 120)), "PNG"))
    note = async_notification(
        inference_id=seeded["inference_id"], input_location=seeded["input_uri"], output_location=output
    )
    assert postprocess.handler(sns_event(note), context) == {"outcomes": ["failed"]}
    assert read_json(s3, f"failures/{seeded['identity']}.json")["code"] == "mask_not_single_channel"
    assert emitted_metrics(capsys.readouterr().out)["InvalidMasks"] == [1.0]


def test_missing_async_input_becomes_a_failure_document(aws_env, context, capsys) -> None:
    s3 = aws_env["s3"]
    output = put_mask(s3, mask_png(np.zeros((10, 10), np.uint8)))
    note = async_notification(
        inference_id="abc", input_location=f"s3://{INFERENCE_BUCKET}/async-input/gone/frame.jpg", output_location=output
    )
    assert postprocess.handler(sns_event(note), context) == {"outcomes": ["failed"]}
    assert read_json(s3, "failures/gone/frame.json")["code"] == "async_input_missing"
    assert emitted_metrics(capsys.readouterr().out)["MissingAsyncInputs"] == [1.0]
