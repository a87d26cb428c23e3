"""segcore.results and roadseg_lambda.notifications: documents and the SageMaker notification."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from lambda_testkit import ASYNC_ENDPOINT, CITYSCAPES, async_notification
from roadseg_lambda.notifications import NotificationError, parse_async_notification

from contracts.documents import validate_failure, validate_quarantine, validate_result
from segcore.keys import parse_frame_key
from segcore.masks import Geometry, mask_statistics
from segcore.results import (
    build_failure_document,
    build_quarantine_document,
    build_result_document,
    iso8601,
    latency_ms,
    parse_iso8601,
    to_json_bytes,
)
from segcore.settings import DEFAULT_KEY_PATTERN

BUCKET = "inference"
INPUT = f"s3://{BUCKET}/async-input/veh-1/front/2026-01-01T00:00:00Z.jpg"
OUTPUT = f"s3://{BUCKET}/async-output/abc.out"


def parse(note: dict | str) -> object:
    text = note if isinstance(note, str) else json.dumps(note)
    return parse_async_notification(
        text, endpoint_name=ASYNC_ENDPOINT, inference_bucket=BUCKET, async_input_prefix="async-input/"
    )


def test_iso8601_roundtrip_and_latency() -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    assert iso8601(moment) == "2026-01-02T03:04:05.678Z"
    assert parse_iso8601("2026-01-02T03:04:05.678Z") == moment.replace(microsecond=678000)
    assert parse_iso8601("garbage") is None and parse_iso8601(None) is None
    assert latency_ms(moment, moment + timedelta(seconds=1.5)) == 1500
    assert latency_ms(None, moment) is None


def test_result_document() -> None:
    mask = np.zeros((60, 80), dtype=np.uint8)
    mask[:20] = 10
    mask[30:40, 10:20] = 11
    stats = mask_statistics(mask, CITYSCAPES, vru_min_pixels=50, geometry=Geometry((160, 120), (0, 0, 160, 120)))
    frame = parse_frame_key("incoming/veh-1/front/2026-01-01T00:00:00Z.jpg", re.compile(DEFAULT_KEY_PATTERN))
    uploaded = datetime(2026, 1, 1, tzinfo=UTC)
    doc = build_result_document(
        inference_id="abc",
        mode="async",
        source_bucket="ingest",
        frame=frame,
        original_size=(160, 120),
        inference_size=(80, 60),
        crop_box=(0, 0, 160, 120),
        stats=stats,
        model_package_version="3",
        endpoint_name="ep",
        uploaded_at=uploaded,
        completed_at=uploaded + timedelta(milliseconds=2500),
        mask_uri=OUTPUT,
        overlay_uri=None,
        endpoint_latency_ms=750,
    )
    assert doc["schema_version"] == "1.0" and doc["frame_key"] == frame.key
    assert (doc["vehicle"], doc["camera"], doc["timestamp"]) == ("veh-1", "front", "2026-01-01T00:00:00Z")
    assert doc["original_size"] == {"width": 160, "height": 120}
    assert doc["latency_ms"] == 2500 and doc["endpoint_latency_ms"] == 750
    assert doc["class_fractions"] == {
        "road": round(3100 / 4800, 6),
        "sky": round(1600 / 4800, 6),
        "person": round(100 / 4800, 6),
    }
    assert doc["drivable_area_fraction"] == round(3100 / 4800, 6)
    assert doc["vulnerable_road_users"] == {
        "present": True,
        "min_pixels": 50,
        "objects": [
            {
                "class": "person",
                "class_index": 11,
                "pixels": 100,
                "bbox": [20, 60, 40, 80],
                "bbox_inference": [10, 30, 20, 40],
            }
        ],
    }
    assert doc["mask_uri"] == OUTPUT and doc["overlay_uri"] is None
    assert json.loads(to_json_bytes(doc)) == doc
    assert validate_result(json.loads(to_json_bytes(doc))) == doc


def test_quarantine_and_failure_documents() -> None:
    when = datetime(2026, 1, 1, tzinfo=UTC)
    doc = build_quarantine_document(
        source_bucket="ingest",
        source_key="incoming/v/c/été.gif",
        code="unsupported_format",
        reason="only JPEG and PNG",
        detected_format="gif",
        size_bytes=123,
        quarantined_at=when,
    )
    assert {"source_bucket", "source_key", "code", "reason", "detected_format", "size_bytes", "quarantined_at"} <= set(
        doc
    )
    assert doc["quarantined_at"] == "2026-01-01T00:00:00.000Z" and doc["schema_version"] == "1.0"
    assert validate_quarantine(json.loads(to_json_bytes(doc))) == doc
    assert "été" in to_json_bytes(doc).decode("utf-8")
    failure = build_failure_document(
        inference_id="abc",
        source_bucket=None,
        frame=None,
        code="inference_failed",
        reason="ClientError: boom",
        endpoint_name="ep",
        input_location=INPUT,
        failed_at=when,
    )
    assert failure["status"] == "failed" and failure["reason"] == "ClientError: boom" and failure["frame_key"] is None
    assert validate_failure(json.loads(to_json_bytes(failure))) == failure


def test_parse_success_notification() -> None:
    note = parse(async_notification(inference_id="abc", input_location=INPUT, output_location=OUTPUT))
    assert note.status == "Completed" and note.inference_id == "abc"
    assert note.identity == "veh-1/front/2026-01-01T00:00:00Z"
    assert note.input_key == "async-input/veh-1/front/2026-01-01T00:00:00Z.jpg"
    assert note.output_location == OUTPUT and note.endpoint_latency_ms == 750


def test_parse_failure_notification() -> None:
    raw = async_notification(inference_id="abc", input_location=INPUT, status="Failed", failure_reason="ClientError: x")
    note = parse(raw)
    assert note.status == "Failed" and note.failure_reason == "ClientError: x" and note.output_location is None


def _mutated(**changes: object) -> dict:
    note = async_notification(inference_id="abc", input_location=INPUT, output_location=OUTPUT)
    for path, value in changes.items():
        target = note
        parts = path.split("__")
        for part in parts[:-1]:
            target = target[part]
        if value is None:
            target.pop(parts[-1], None)
        else:
            target[parts[-1]] = value
    return note


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("", "malformed"),
        ("not json", "malformed"),
        ("[1, 2]", "malformed"),
        (_mutated(invocationStatus="Pending"), "malformed"),
        (_mutated(inferenceId=None), "malformed"),
        (_mutated(requestParameters=None), "malformed"),
        (_mutated(requestParameters__endpointName=None), "malformed"),
        (_mutated(requestParameters__inputLocation="not-a-uri"), "malformed"),
        (_mutated(responseParameters=None), "malformed"),
        (_mutated(responseParameters__outputLocation="s3://bucket-only"), "malformed"),
        (_mutated(requestParameters__endpointName="someone-else"), "foreign"),
        (_mutated(requestParameters__inputLocation="s3://other-bucket/async-input/a.jpg"), "foreign"),
        (_mutated(requestParameters__inputLocation=f"s3://{BUCKET}/elsewhere/a.jpg"), "foreign"),
        (_mutated(eventSource="aws:s3"), "foreign"),
    ],
)
def test_bad_notifications(message: dict | str, kind: str) -> None:
    with pytest.raises(NotificationError) as info:
        parse(message)
    assert info.value.kind == kind and info.value.reason
