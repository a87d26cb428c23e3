"""postprocess.handler under moto: success (overlay, restored mask), failures, bad and foreign notifications."""

from __future__ import annotations

import io
import json
import math
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
    emf_documents,
    emitted_metrics,
    encode,
    mask_png,
    sns_event,
)
from PIL import Image

from contracts.documents import validate_result
from contracts.signal_metrics import PUBLISHED_SIGNALS, SIGNAL_DIMENSIONS, SIGNAL_METRICS, SIGNAL_METRICS_NAMESPACE
from contracts.signals import INPUT_SIGNALS, RESULT_SIGNALS_KEY, SIGNALS
from segcore.imaging import PreparedFrame, PrepareOptions, prepare_frame
from segcore.keys import derive_inference_id, frame_identity, parse_frame_key
from segcore.metadata import build_async_input_metadata
from segcore.settings import DEFAULT_KEY_PATTERN, get_settings

FRAME_KEY = "incoming/veh-2/rear/2026-02-02T12:00:00.000Z.png"


def seed_async_input(s3: Any, *, roi: tuple[float, float, float, float] | None = None,
                     input_signals_text: str | None = None) -> dict[str, Any]:
    """What ingest leaves behind: the async input JPEG with its metadata (frame 320x240 -> 160x120); without
    ``input_signals_text``, an input written before the signals existed."""
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
        input_signals_text=input_signals_text,
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


# ------------------------------------------------------------------------------------------ signals (issue 23)

SIGNALS_TEXT = "b=0.4123;c=0.2011;s=123.4;sat=0.3012;h=0123456789abcdef"


def _signal_mask() -> np.ndarray:
    """160x120: 60 rows of road, 30 of sky, 20 of vegetation, 10 ignored; a 10x10 person on the road."""
    mask = np.zeros((120, 160), dtype=np.uint8)  # road
    mask[:30] = 10  # sky
    mask[30:50] = 8  # vegetation
    mask[110:] = 255  # ignored
    mask[80:90, 50:60] = 11  # person, 100 px (>= VRU_MIN_PIXELS 50)
    return mask


def _near(value: float, exact: float) -> bool:
    return math.isclose(value, exact, abs_tol=2e-6)


def _complete(aws_env: dict[str, Any], context: Any, **seed: Any) -> dict[str, Any]:
    s3 = aws_env["s3"]
    seeded = seed_async_input(s3, **seed)
    output = put_mask(s3, mask_png(_signal_mask()))
    note = async_notification(inference_id=seeded["inference_id"], input_location=seeded["input_uri"],
                              output_location=output)
    assert postprocess.handler(sns_event(note), context) == {"outcomes": ["completed"]}
    return read_json(s3, f"results/{seeded['identity']}.json")


def test_result_carries_input_and_output_signals_and_emits_them_per_camera(aws_env, context, capsys,
                                                                           monkeypatch) -> None:
    monkeypatch.setenv("METRICS_ENVIRONMENT", "roadseg-dev")
    monkeypatch.setenv("METRICS_CAMERAS", "front,rear")
    get_settings.cache_clear()
    result = validate_result(_complete(aws_env, context, input_signals_text=SIGNALS_TEXT))

    signals = result[RESULT_SIGNALS_KEY]
    assert set(signals) == set(SIGNALS)  # every frame signal, null where the serving path computes none
    assert (signals["brightness"], signals["contrast"], signals["sharpness"], signals["saturation"],
            signals["dhash"]) == (0.4123, 0.2011, 123.4, 0.3012, "0123456789abcdef")
    labelled = 160 * 110  # shares of the labelled pixels, from the statistics' fractions (rounded to 1e-6)
    assert _near(signals["frac_sky"], 30 * 160 / labelled)
    assert _near(signals["frac_vegetation"], 20 * 160 / labelled)
    assert _near(signals["frac_road"], (60 * 160 - 100) / labelled)
    assert signals["drivable_fraction"] == signals["frac_road"]
    assert _near(signals["frac_vru"], 100 / labelled) and signals["vru_present"] == 1
    assert signals["frac_vehicles"] == 0.0 and signals["frac_sidewalk"] == 0.0
    assert signals["flicker"] is None and signals["mean_entropy"] is None

    out = capsys.readouterr().out
    documents = emf_documents(out, SIGNAL_METRICS_NAMESPACE)
    assert len(documents) == 1
    doc = documents[0]
    directive = doc["_aws"]["CloudWatchMetrics"][0]
    assert directive["Dimensions"] == [list(SIGNAL_DIMENSIONS)] == [["Environment", "Camera"]]
    assert (doc["Environment"], doc["Camera"]) == ("roadseg-dev", "rear")
    assert "service" not in doc and "vehicle" not in doc  # low cardinality: never the vehicle, drive or frame
    published = {m["Name"]: doc[m["Name"]] for m in directive["Metrics"]}
    assert published == {SIGNAL_METRICS[name]: float(signals[name]) for name in PUBLISHED_SIGNALS}
    assert published["Brightness"] == 0.4123 and published["VruPresent"] == 1.0
    # the operational metrics keep their namespace and dimension set (alarms depend on them)
    operational = emf_documents(out, "roadseg-test")
    assert operational and all(d["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service"]] for d in operational)
    assert emitted_metrics(out)["ResultsWritten"] == [1.0]


def test_an_input_written_before_signals_existed_still_completes(aws_env, context, capsys, monkeypatch) -> None:
    monkeypatch.setenv("METRICS_ENVIRONMENT", "roadseg-dev")
    get_settings.cache_clear()
    result = validate_result(_complete(aws_env, context))
    signals = result[RESULT_SIGNALS_KEY]
    assert all(signals[name] is None for name in ("brightness", "contrast", "sharpness", "saturation", "dhash"))
    assert _near(signals["frac_sky"], 30 * 160 / (160 * 110))
    (doc,) = emf_documents(capsys.readouterr().out, SIGNAL_METRICS_NAMESPACE)
    names = {m["Name"] for m in doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert names == {SIGNAL_METRICS[name] for name in PUBLISHED_SIGNALS if name not in INPUT_SIGNALS}


def test_unreadable_signals_metadata_is_counted_and_the_result_written(aws_env, context, capsys) -> None:
    result = validate_result(_complete(aws_env, context, input_signals_text="b=bright;c=0.1"))
    assert result[RESULT_SIGNALS_KEY]["brightness"] is None and result[RESULT_SIGNALS_KEY]["frac_sky"] is not None
    out = capsys.readouterr().out
    assert emitted_metrics(out)["UnreadableInputSignals"] == [1.0]
    assert emf_documents(out, SIGNAL_METRICS_NAMESPACE) == []  # METRICS_ENVIRONMENT unset: no signal metrics
