"""The quality gate measures what ships: for one source frame, the image PrepareServingValidation gives the batch
transform (training/serving.py) is byte-identical to what the ingest function uploads under async-input/, its
geometry is the one ingest records, and EvaluateModel maps a mask back exactly as the postprocess function does."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import boto3
import ingest
import numpy as np
import postprocess
import pytest
from lambda_testkit import (
    INFERENCE_BUCKET,
    RecordingRuntime,
    async_notification,
    camera_array,
    encode,
    mask_png,
    sns_event,
    sqs_event,
    upload_frame,
)
from roadseg_lambda import aws

from contracts.lambda_env import FRAME_PREPARATION_VARIABLES, PreprocessorEnvironment
from segcore.masks import decode_mask_png
from segcore.settings import get_settings
from training import serving
from training.evaluate import to_label_resolution


@pytest.fixture
def runtime(aws_env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> RecordingRuntime:
    recorder = RecordingRuntime(boto3.client("sagemaker-runtime"))
    monkeypatch.setattr(aws, "runtime_client", lambda: recorder)
    return recorder


def _configure(monkeypatch: pytest.MonkeyPatch, environment: PreprocessorEnvironment) -> dict[str, str]:
    """The frame-preparation variables, as the stack writes them for the functions and for the serving step."""
    variables = environment.frame_preparation_env()
    assert set(variables) == set(FRAME_PREPARATION_VARIABLES)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    return variables


@pytest.mark.parametrize(
    ("fmt", "roi", "quality"),
    [("JPEG", None, 90), ("JPEG", (0.0, 0.25, 1.0, 0.9), 85), ("PNG", (0.1, 0.0, 0.95, 0.88), 80)],
)
def test_gate_input_is_byte_identical_to_the_ingest_upload(aws_env, runtime, context, monkeypatch, tmp_path: Path,
                                                           fmt, roi, quality) -> None:
    environment = PreprocessorEnvironment(target_width=160, target_height=80, roi=roi, jpeg_quality=quality)
    variables = _configure(monkeypatch, environment)
    extension = "jpg" if fmt == "JPEG" else "png"
    source = encode(camera_array(640, 360, seed=21), fmt, **({"quality": 93} if fmt == "JPEG" else {}))

    # The service: ingest under moto uploads the inference JPEG under async-input/.
    records = upload_frame(aws_env, f"incoming/veh-1/front/2026-01-01T00:00:00.000Z.{extension}", source)
    assert ingest.handler(sqs_event(records), context) == {"batchItemFailures": []}
    [call] = runtime.calls
    input_key = call["InputLocation"].removeprefix(f"s3://{INFERENCE_BUCKET}/")
    assert input_key.startswith("async-input/")
    s3 = aws_env["s3"]
    uploaded = s3.get_object(Bucket=INFERENCE_BUCKET, Key=input_key)["Body"].read()
    meta = s3.head_object(Bucket=INFERENCE_BUCKET, Key=input_key)["Metadata"]

    # The gate: PrepareServingValidation's entry point on the same file, with the same variables.
    validation, out, geometry_dir = tmp_path / "validation", tmp_path / "serving", tmp_path / "geometry"
    validation.mkdir()
    (validation / f"frame.{extension}").write_bytes(source)
    argv = ["--input", str(validation), "--output", str(out), "--geometry-dir", str(geometry_dir), "--workers", "1"]
    assert serving.main(argv, environ=variables) == 0
    assert (out / "frame.jpg").read_bytes() == uploaded  # byte for byte what the endpoints receive

    frame = serving.read_geometry(geometry_dir / serving.GEOMETRY_FILE).frames["frame"]
    assert frame.original_size == (int(meta["original-width"]), int(meta["original-height"])) == (640, 360)
    assert frame.inference_size == (int(meta["inference-width"]), int(meta["inference-height"]))
    assert ",".join(map(str, frame.crop_box)) == meta["crop-box"]
    if roi is not None:
        assert frame.crop_box != (0, 0, 640, 360)

    # The endpoint answers a mask at the inference size; postprocess restores it to the frame (RESTORE_ORIGINAL_SIZE),
    # and the evaluation's mapping back gives the very same array.
    monkeypatch.setenv("RESTORE_ORIGINAL_SIZE", "true")
    get_settings.cache_clear()
    width, height = frame.inference_size
    mask = (np.add.outer(np.arange(height) // 7, np.arange(width) // 11) % 19).astype(np.uint8)
    output_key = f"async-output/{uuid.uuid4()}.out"
    s3.put_object(Bucket=INFERENCE_BUCKET, Key=output_key, Body=mask_png(mask))
    note = async_notification(inference_id=call["InferenceId"], input_location=call["InputLocation"],
                              output_location=f"s3://{INFERENCE_BUCKET}/{output_key}")
    assert postprocess.handler(sns_event(note), context) == {"outcomes": ["completed"]}
    result_keys = [o["Key"] for o in s3.list_objects_v2(Bucket=INFERENCE_BUCKET, Prefix="results/")["Contents"]]
    [result_key] = [k for k in result_keys if k.endswith(".json")]
    mask_uri = json.loads(s3.get_object(Bucket=INFERENCE_BUCKET, Key=result_key)["Body"].read())["mask_uri"]
    restored_by_service = decode_mask_png(
        s3.get_object(Bucket=INFERENCE_BUCKET, Key=mask_uri.removeprefix(f"s3://{INFERENCE_BUCKET}/"))["Body"].read())
    np.testing.assert_array_equal(to_label_resolution(mask, frame), restored_by_service)


def test_the_serving_step_refuses_what_ingest_would_quarantine(monkeypatch, tmp_path: Path) -> None:
    variables = _configure(monkeypatch, PreprocessorEnvironment(max_input_bytes=2000))
    validation = tmp_path / "validation"
    validation.mkdir()
    (validation / "big.jpg").write_bytes(encode(camera_array(320, 240, seed=1), "JPEG", quality=95))
    (validation / "small.png").write_bytes(encode(np.zeros((8, 8, 3), np.uint8), "PNG"))
    with pytest.raises(serving.ServingError, match=r"refuses 2 of 2 validation frames .*big: too_large_bytes.*small: "
                                                   r"too_small"):
        serving.prepare_serving_set(validation, tmp_path / "out", tmp_path / "geometry",
                                    serving.options_from_environment(variables))
    assert not (tmp_path / "geometry" / serving.GEOMETRY_FILE).exists()
