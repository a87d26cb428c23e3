"""The roadseg command's AWS commands against moto (S3, SageMaker) and botocore's Stubber (sagemaker-runtime,
moto gaps), called through its entry point with explicit names (name resolution: test_names.py)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import boto3
import numpy as np
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber
from moto import mock_aws
from PIL import Image

from envconfig import config as envconfig_module
from roadseg import session
from roadseg.commands import data as data_commands
from roadseg.commands import endpoint as endpoint_commands
from segcore.classes import get_scheme
from segcore.imaging import PrepareOptions, prepare_frame
from segcore.recordio import encode_probabilities
from segcore.scenes import generate_scene

REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/roadseg-test"
BUCKET = "roadseg-test-bucket"
CITYSCAPES = get_scheme("cityscapes")
# config/dev.yaml's preprocessing (the defaults): what the ingest function does with a frame there.
DEV_OPTIONS = PrepareOptions(target_size=(1024, 512), roi=None, jpeg_quality=90)


@pytest.fixture
def aws(offline_aws_env, monkeypatch, tmp_path):
    with mock_aws():
        yield




@pytest.fixture
def sm(aws):
    return boto3.client("sagemaker", region_name=REGION)


@pytest.fixture
def s3(aws):
    client = boto3.client("s3", region_name=REGION)
    client.create_bucket(Bucket=BUCKET)
    return client


def _stub(monkeypatch, service: str) -> Stubber:
    """Replace the factory's client for one service with a stubbed one; other services stay on moto."""
    real = session.make_client
    client = boto3.client(service, region_name=REGION)
    stubber = Stubber(client)
    stubber.activate()
    monkeypatch.setattr(session, "make_client", lambda name, region: client if name == service else real(name, region))
    return stubber


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array.astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _jpeg_file(path: Path, width: int = 32, height: int = 16, colour=(100, 100, 100)) -> Path:
    Image.new("RGB", (width, height), colour).save(path, "JPEG", quality=95)
    return path


def _body(data: bytes) -> StreamingBody:
    return StreamingBody(io.BytesIO(data), len(data))


# ------------------------------------------------------------------------------------ pipelines


@pytest.fixture
def pipeline(sm):
    definition = {"Version": "2020-12-01", "Steps": [], "Parameters": [
        {"Name": "InstanceType", "Type": "String", "DefaultValue": "ml.g4dn.xlarge"},
        {"Name": "Epochs", "Type": "Integer", "DefaultValue": 10}]}
    sm.create_pipeline(PipelineName="roadseg-dev-training", PipelineDefinition=json.dumps(definition),
                       RoleArn=ROLE, ClientRequestToken="t" * 32)
    return "roadseg-dev-training"


def test_start_passes_parameters_and_prints_the_arn(run, sm, pipeline):
    rc, out, _ = run("pipeline", "start", "--pipeline", pipeline, "--param", "InstanceType=ml.g5.xlarge",
                     "--param", "Epochs=30")
    assert rc == 0
    arn = out.strip()
    assert arn.startswith(f"arn:aws:sagemaker:{REGION}:") and f"pipeline/{pipeline}/execution/" in arn
    params = sm.list_pipeline_parameters_for_execution(PipelineExecutionArn=arn)["PipelineParameters"]
    assert {p["Name"]: p["Value"] for p in params} == {"InstanceType": "ml.g5.xlarge", "Epochs": "30"}


def test_start_wait_reports_the_final_state(run, pipeline):
    rc, out, err = run("--region", REGION, "pipeline", "start", "--pipeline", pipeline, "--wait")
    assert rc == 0 and "execution Succeeded" in out and "Succeeded" in err


@pytest.mark.parametrize(("param", "message"), [
    ("Epoch=3", "has no parameter(s) Epoch; it takes: Epochs, InstanceType"),
    ("novalue", "--param 'novalue' is not Key=Value"),
    ("=x", "is not Key=Value"),
])
def test_start_rejects_bad_parameters(run, pipeline, param, message):
    rc, out, err = run("pipeline", "start", "--pipeline", pipeline, "--param", param)
    assert rc == 2 and out == "" and message in err


def test_start_of_a_missing_pipeline_prints_the_aws_error(run, aws):
    rc, _, err = run("pipeline", "start", "--pipeline", "nope", "--param", "A=1")
    assert rc == 2
    assert "AWS error ValidationException in DescribePipeline: Could not find pipeline" in err


def test_status_handles_the_missing_step_listing_of_moto(run, sm, pipeline):
    arn = sm.start_pipeline_execution(PipelineName=pipeline)["PipelineExecutionArn"]
    rc, out, _ = run("pipeline", "status", "--execution", arn)
    assert rc == 0
    assert "status:    Succeeded" in out
    assert "step details unavailable from this endpoint" in out and "has not been implemented" in out


def test_status_lists_steps_when_the_endpoint_has_them(run, monkeypatch, aws):
    stub = _stub(monkeypatch, "sagemaker")
    arn = f"arn:aws:sagemaker:{REGION}:123456789012:pipeline/p/execution/abc"
    stub.add_response("describe_pipeline_execution", {"PipelineExecutionArn": arn,
                                                      "PipelineExecutionStatus": "Failed",
                                                      "FailureReason": "Step Train failed"})
    stub.add_response("list_pipeline_execution_steps", {"PipelineExecutionSteps": [
        {"StepName": "Prepare", "StepStatus": "Succeeded"},
        {"StepName": "Train", "StepStatus": "Failed", "FailureReason": "ClientError: out of memory"}],
        "NextToken": "n"}, {"PipelineExecutionArn": arn, "SortOrder": "Ascending"})
    stub.add_response("list_pipeline_execution_steps", {"PipelineExecutionSteps": [
        {"StepName": "Evaluate", "StepStatus": "NotStarted"}]},
        {"PipelineExecutionArn": arn, "SortOrder": "Ascending", "NextToken": "n"})
    rc, out, _ = run("pipeline", "status", "--execution", arn)
    assert rc == 0
    assert "failure:   Step Train failed" in out
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("STEP"))
    assert [line.split()[0] for line in lines[header + 1:]] == ["Prepare", "Train", "Evaluate"]
    assert "out of memory" in out
    stub.assert_no_pending_responses()


@pytest.mark.parametrize(("code", "status", "expect_rc"), [
    ("500", 500, 0),  # what moto answers as a server
    ("UnknownOperationException", 400, 0),
    ("AccessDeniedException", 400, 3),  # a real error is not hidden: AWS access, exit 3
])
def test_status_step_listing_errors(run, monkeypatch, aws, code, status, expect_rc):
    stub = _stub(monkeypatch, "sagemaker")
    arn = f"arn:aws:sagemaker:{REGION}:123456789012:pipeline/p/execution/abc"
    stub.add_response("describe_pipeline_execution", {"PipelineExecutionStatus": "Executing"})
    stub.add_client_error("list_pipeline_execution_steps", service_error_code=code, service_message="nope",
                          http_status_code=status)
    rc, out, err = run("pipeline", "status", "--execution", arn)
    assert rc == expect_rc
    assert "status:    Executing" in out
    if expect_rc == 0:
        assert "step details unavailable from this endpoint" in out and code in out
    else:
        assert "AWS error AccessDeniedException in ListPipelineExecutionSteps: nope" in err


def test_status_of_an_unknown_execution_is_an_aws_error(run, pipeline):
    arn = f"arn:aws:sagemaker:{REGION}:123456789012:pipeline/x/execution/y"
    rc, out, err = run("pipeline", "status", "--execution", arn)
    assert rc == 2 and out == ""
    assert "AWS error ValidationException in DescribePipelineExecution: Could not find pipeline" in err


# ------------------------------------------------------------------------------- model registry

GROUP = "roadseg-dev-segmentation"


def _evaluation(miou: float, person: float | None) -> dict:
    per_class = {name: {"iou": 0.5, "status": "present"} for name in CITYSCAPES.names}
    per_class["person"] = {"iou": person, "status": "present" if person is not None else "absent"}
    return {"metrics": {"mIoU": miou}, "per_class": per_class,
            "gate": {"mIoU": miou, "person": -1.0 if person is None else person}}


@pytest.fixture
def packages(sm, s3):
    sm.create_model_package_group(ModelPackageGroupName=GROUP)
    arns = []
    for version, (miou, person) in enumerate([(0.61, 0.7), (0.55, None)], start=1):
        key = f"pipelines/v{version}/evaluation.json"
        s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(_evaluation(miou, person)).encode())
        arns.append(sm.create_model_package(
            ModelPackageGroupName=GROUP, ModelApprovalStatus="PendingManualApproval",
            InferenceSpecification={
                "Containers": [{"Image": "811284229777.dkr.ecr.us-east-1.amazonaws.com/semantic-segmentation:1",
                                "ModelDataUrl": f"s3://{BUCKET}/model-{version}.tar.gz"}],
                "SupportedContentTypes": ["image/jpeg"], "SupportedResponseMIMETypes": ["image/png"]},
            ModelMetrics={"ModelQuality": {"Statistics": {"ContentType": "application/json",
                                                          "S3Uri": f"s3://{BUCKET}/{key}"}}},
        )["ModelPackageArn"])
    return arns


def test_models_lists_packages_with_their_metrics_uri(run, packages):
    rc, out, _ = run("model", "list", "--group", GROUP)
    assert rc == 0
    lines = out.splitlines()
    assert lines[0].split() == ["VERSION", "APPROVAL", "STATUS", "CREATED", "METRICS", "ARN"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == {"1", "2"}
    assert "PendingManualApproval" in rows["1"] and f"s3://{BUCKET}/pipelines/v1/evaluation.json" in rows["1"]
    assert packages[0] in rows["1"]


def test_models_with_metrics_shows_miou_and_safety_classes(run, packages):
    rc, out, _ = run("model", "list", "--group", GROUP, "--with-metrics")
    assert rc == 0
    lines = out.splitlines()
    assert lines[0].split()[:5] == ["VERSION", "APPROVAL", "STATUS", "CREATED", "mIoU"]
    assert lines[0].split()[5:-1] == ["person", "rider", "bicycle", "motorcycle"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["1"][5:10] == ["0.610", "0.700", "0.500", "0.500", "0.500"]
    assert rows["2"][5:7] == ["0.550", "absent"]


def test_models_with_unreadable_metrics_warns_and_goes_on(run, packages, s3):
    s3.delete_object(Bucket=BUCKET, Key="pipelines/v2/evaluation.json")
    rc, out, err = run("model", "list", "--group", GROUP, "--with-metrics", "--safety-class", "person")
    assert rc == 0
    assert "version 2: cannot read metrics" in err and "NoSuchKey" in err
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert rows["2"][5:7] == ["-", "-"] and rows["1"][5:7] == ["0.610", "0.700"]


def test_models_of_an_empty_group(run, sm):
    sm.create_model_package_group(ModelPackageGroupName="empty")
    rc, out, _ = run("model", "list", "--group", "empty")
    assert rc == 0 and "has no model packages" in out


def test_approve_and_reject_update_the_registry(run, sm, packages):
    rc, out, _ = run("model", "approve", packages[0], "--note", "mIoU 0.61, safety floors met")
    assert rc == 0 and f"{packages[0]}: Approved" in out
    described = sm.describe_model_package(ModelPackageName=packages[0])
    assert described["ModelApprovalStatus"] == "Approved"
    assert described["ApprovalDescription"] == "mIoU 0.61, safety floors met"

    rc, out, _ = run("model", "reject", packages[1], "--note", "person absent from validation")
    assert rc == 0 and "Rejected" in out
    assert sm.describe_model_package(ModelPackageName=packages[1])["ModelApprovalStatus"] == "Rejected"


def test_reject_needs_a_note(run, packages):
    rc, _, err = run("model", "reject", packages[0])
    assert rc == 2 and "Missing option '--note'" in err
    rc, _, err = run("model", "reject", packages[0], "--note", "  ")
    assert rc == 2 and "needs a --note" in err


def test_approve_checks_the_arn_and_reports_aws_errors(run, packages):
    rc, _, err = run("model", "approve", "roadseg-dev-segmentation/1")
    assert rc == 2 and "is not a model package ARN" in err
    missing = packages[0].rsplit("/", 1)[0] + "/99"
    rc, _, err = run("model", "approve", missing)
    assert rc == 2 and "AWS error" in err and "UpdateModelPackage" in err


# -------------------------------------------------------------------------------------- upload


def test_upload_sends_every_file_under_the_default_prefix(run, s3, tmp_path):
    root = tmp_path / "mydata"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "images" / "a.jpg").write_bytes(b"\xff\xd8\xff" + b"x" * 1000)
    (root / "masks" / "a.png").write_bytes(b"png" * 10)
    (root / "split.json").write_text("{}")
    (root / ".DS_Store").write_bytes(b"junk")
    rc, out, _ = run("data", "upload", root, "--bucket", BUCKET)
    assert rc == 0 and "uploaded 3 files" in out and f"s3://{BUCKET}/raw/mydata/" in out
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert keys == {"raw/mydata/images/a.jpg", "raw/mydata/masks/a.png", "raw/mydata/split.json"}
    body = s3.get_object(Bucket=BUCKET, Key="raw/mydata/images/a.jpg")["Body"].read()
    assert body == (root / "images" / "a.jpg").read_bytes()


def test_upload_reports_progress_in_bytes(run, s3, tmp_path, monkeypatch):
    root = tmp_path / "d"
    root.mkdir()
    (root / "one.bin").write_bytes(b"1" * 3000)
    (root / "two.bin").write_bytes(b"2" * 5000)
    seen = {}

    class Bar:
        def __init__(self, total, **kwargs):
            seen["total"], seen["unit"], seen["done"] = total, kwargs.get("unit"), 0

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def update(self, n):
            seen["done"] += n

    monkeypatch.setattr(data_commands, "tqdm", Bar)
    rc, _, _ = run("data", "upload", root, "--bucket", BUCKET, "--prefix", "raw/custom")
    assert rc == 0
    assert seen == {"total": 8000, "unit": "B", "done": 8000}
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert keys == {"raw/custom/one.bin", "raw/custom/two.bin"}


def test_upload_errors(run, s3, tmp_path):
    rc, _, err = run("data", "upload", tmp_path / "missing", "--bucket", BUCKET)
    assert rc == 2 and "is not a directory" in err
    (tmp_path / "empty").mkdir()
    rc, _, err = run("data", "upload", tmp_path / "empty", "--bucket", BUCKET)
    assert rc == 2 and "holds no files" in err
    (tmp_path / "some").mkdir()
    (tmp_path / "some" / "f").write_text("x")
    rc, _, err = run("data", "upload", tmp_path / "some", "--bucket", "no-such-bucket")
    assert rc == 2 and "AWS error NoSuchBucket" in err


# -------------------------------------------------------------------------------------- invoke
# Both commands send what the ingest function sends (prepare_frame with the environment's preprocessing; dev: fitted
# into 1024x512, whole frame, JPEG quality 90) and restore the mask to the original frame (tests/lambda shows the
# ingest upload is the same bytes).


def _served(path: Path, options: PrepareOptions = DEV_OPTIONS) -> bytes:
    return prepare_frame(path.read_bytes(), options).jpeg


def _with_preprocessing(monkeypatch, **changes) -> None:
    """The dev environment with other ``preprocessing`` settings (what session.config loads)."""
    real = envconfig_module.load_config

    def load(env, *args, **kwargs):
        config = real(env, *args, **kwargs)
        return config.model_copy(update={"preprocessing": config.preprocessing.model_copy(update=changes)})

    monkeypatch.setattr(envconfig_module, "load_config", load)


def test_invoke_sends_the_ingest_frame_and_writes_mask_and_overlay(run, aws, monkeypatch, tmp_path):
    image = _jpeg_file(tmp_path / "frame.jpg")
    body = _served(image)
    assert body != image.read_bytes()  # re-encoded as the ingest function does, even a JPEG
    mask = np.zeros((16, 32), dtype=np.uint8)
    mask[:, 16:] = 11  # person
    mask[0, 0] = 255  # ignore: left as the image
    stub = _stub(monkeypatch, "sagemaker-runtime")
    stub.add_response(
        "invoke_endpoint", {"Body": _body(_png(mask)), "ContentType": "image/png"},
        {"EndpointName": "roadseg-dev-realtime", "ContentType": "image/jpeg", "Accept": "image/png", "Body": body})
    out_dir = tmp_path / "out"
    rc, out, err = run("endpoint", "invoke", image, "--endpoint", "roadseg-dev-realtime", "--out-dir", out_dir)
    assert rc == 0
    stub.assert_no_pending_responses()
    assert "frame.jpg: 32x16 sent as a 32x16 JPEG" in err
    assert str(out_dir / "frame_mask.png") in out and str(out_dir / "frame_overlay.png") in out
    with Image.open(out_dir / "frame_mask.png") as written:
        assert written.mode == "P"
        np.testing.assert_array_equal(np.asarray(written), mask)
        assert written.getpalette()[:3] == CITYSCAPES.palette()[:3]
    with Image.open(out_dir / "frame_overlay.png") as ov, Image.open(image) as src:
        overlay, source = np.asarray(ov.convert("RGB"), dtype=int), np.asarray(src.convert("RGB"), dtype=int)
    palette = np.asarray(CITYSCAPES.palette()).reshape(256, 3)
    np.testing.assert_allclose(overlay[1, 1], np.rint(source[1, 1] * 0.5 + palette[0] * 0.5), atol=1)
    np.testing.assert_allclose(overlay[2, 20], np.rint(source[2, 20] * 0.5 + palette[11] * 0.5), atol=1)
    np.testing.assert_array_equal(overlay[0, 0], source[0, 0])


def test_invoke_scales_and_crops_like_ingest_and_maps_the_mask_back(run, aws, monkeypatch, tmp_path):
    _with_preprocessing(monkeypatch, target_width=64, target_height=32, roi=(0.0, 0.25, 1.0, 1.0), jpeg_quality=80)
    image = tmp_path / "frame.jpg"
    Image.fromarray(generate_scene(128, 64, seed=3)[0]).save(image, quality=95)
    # 128x64 without its top quarter (128x48) fitted into 64x32: 64x24.
    body = _served(image, PrepareOptions(target_size=(64, 32), roi=(0.0, 0.25, 1.0, 1.0), jpeg_quality=80))
    assert Image.open(io.BytesIO(body)).size == (64, 24)
    mask = np.zeros((24, 64), dtype=np.uint8)
    mask[:, 32:] = 11
    stub = _stub(monkeypatch, "sagemaker-runtime")
    stub.add_response("invoke_endpoint", {"Body": _body(_png(mask)), "ContentType": "image/png"},
                      {"EndpointName": "e", "ContentType": "image/jpeg", "Accept": "image/png", "Body": body})
    rc, _, err = run("endpoint", "invoke", image, "--endpoint", "e", "--out-dir", tmp_path / "o")
    assert rc == 0
    stub.assert_no_pending_responses()
    assert "frame.jpg: 128x64 sent as a 64x24 JPEG" in err and "ROI [0, 16, 128, 64]" in err
    expected = np.full((64, 128), 255, dtype=np.uint8)  # outside the ROI: nothing predicted
    expected[16:, :64], expected[16:, 64:] = 0, 11  # each mask pixel back over the 2x2 it stood for
    with Image.open(tmp_path / "o" / "frame_mask.png") as written:
        np.testing.assert_array_equal(np.asarray(written), expected)
    with Image.open(tmp_path / "o" / "frame_overlay.png") as ov, Image.open(image) as src:
        assert ov.size == (128, 64)
        np.testing.assert_array_equal(np.asarray(ov.convert("RGB"))[:16], np.asarray(src.convert("RGB"))[:16])


def test_invoke_sends_png_frames_as_ingest_does(run, aws, monkeypatch, tmp_path):
    image = tmp_path / "frame.png"
    Image.new("RGB", (32, 16), (10, 200, 10)).save(image)
    stub = _stub(monkeypatch, "sagemaker-runtime")
    stub.add_response("invoke_endpoint", {"Body": _body(_png(np.ones((16, 32))))},
                      {"EndpointName": "e", "ContentType": "image/jpeg", "Accept": "image/png", "Body": _served(image)})
    rc, _, err = run("endpoint", "invoke", image, "--endpoint", "e", "--out-dir", tmp_path / "o")
    assert rc == 0 and "frame.png: 32x16 sent as a 32x16 JPEG" in err
    assert (tmp_path / "o" / "frame_mask.png").is_file()


def _no_clients(monkeypatch) -> None:
    def no_client(service, region):
        raise AssertionError(f"no {service} client may be created for a refused frame")

    monkeypatch.setattr(session, "make_client", no_client)


def test_invoke_refuses_what_ingest_would_quarantine_before_calling(run, aws, monkeypatch, tmp_path):
    _no_clients(monkeypatch)
    small = _jpeg_file(tmp_path / "small.jpg", width=8, height=4)
    rc, out, err = run("endpoint", "invoke", small, "--endpoint", "e", "--out-dir", tmp_path)
    assert rc == 2 and out == ""
    assert "small.jpg: the ingest preprocessing refuses this frame (too_small)" in err
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff" + b"\0" * 100)
    rc, _, err = run("endpoint", "invoke", broken, "--endpoint", "e", "--out-dir", tmp_path)
    assert rc == 2 and "refuses this frame (unreadable)" in err


def test_invoke_refuses_payloads_over_the_limit_before_calling(run, aws, monkeypatch, tmp_path):
    _no_clients(monkeypatch)
    image = _jpeg_file(tmp_path / "big.jpg")
    size = len(_served(image))
    monkeypatch.setattr(endpoint_commands, "REALTIME_PAYLOAD_LIMIT", size - 1)
    rc, out, err = run("endpoint", "invoke", image, "--endpoint", "e", "--out-dir", tmp_path)
    assert rc == 2 and out == ""
    assert f"{size:,} bytes after the ingest preprocessing, over the real-time limit of {size - 1:,} bytes" in err
    assert "roadseg endpoint submit" in err


def test_invoke_at_exactly_the_limit_is_sent(run, aws, monkeypatch, tmp_path):
    image = _jpeg_file(tmp_path / "exact.jpg")
    monkeypatch.setattr(endpoint_commands, "REALTIME_PAYLOAD_LIMIT", len(_served(image)))
    stub = _stub(monkeypatch, "sagemaker-runtime")
    stub.add_client_error("invoke_endpoint", service_error_code="ModelError", service_message="bad image",
                          http_status_code=424)
    rc, _, err = run("endpoint", "invoke", image, "--endpoint", "e", "--out-dir", tmp_path)
    assert rc == 2 and "AWS error ModelError in InvokeEndpoint: bad image" in err


def test_invoke_rejects_a_non_png_answer(run, aws, monkeypatch, tmp_path):
    image = _jpeg_file(tmp_path / "f.jpg")
    stub = _stub(monkeypatch, "sagemaker-runtime")
    stub.add_response("invoke_endpoint", {"Body": _body(b'{"error": "x"}'), "ContentType": "application/json"})
    rc, _, err = run("endpoint", "invoke", image, "--endpoint", "e", "--out-dir", tmp_path / "o")
    assert rc == 2 and "answered application/json, not image/png" in err


def test_invoke_of_a_missing_file(run, aws, tmp_path):
    rc, _, err = run("endpoint", "invoke", tmp_path / "nope.jpg", "--endpoint", "e", "--out-dir", tmp_path)
    assert rc == 2 and "does not exist" in err


# -------------------------------------------------------------------------------------- submit


def _async_response(inference_id: str) -> dict:
    return {"InferenceId": inference_id, "OutputLocation": f"s3://{BUCKET}/async-output/{inference_id}.out",
            "FailureLocation": f"s3://{BUCKET}/async-failures/{inference_id}-error.out"}


def _expect_async(stub: Stubber, name: str, inference_id: str, accept: str = "image/png") -> None:
    stub.add_response("invoke_endpoint_async", _async_response(inference_id), {
        "EndpointName": "roadseg-dev-async", "InputLocation": f"s3://{BUCKET}/async-input/{name}",
        "ContentType": "image/jpeg", "Accept": accept})


def test_submit_uploads_invokes_and_collects_png_masks(run, s3, monkeypatch, tmp_path):
    images = [_jpeg_file(tmp_path / "a.jpg"), _jpeg_file(tmp_path / "b.jpg", colour=(0, 0, 250))]
    stub = _stub(monkeypatch, "sagemaker-runtime")
    _expect_async(stub, "a.jpg", "id-a")
    _expect_async(stub, "b.jpg", "id-b")
    masks = {"id-a": np.full((16, 32), 13, dtype=np.uint8), "id-b": np.full((16, 32), 0, dtype=np.uint8)}
    for inference_id, mask in masks.items():  # the endpoint already answered
        s3.put_object(Bucket=BUCKET, Key=f"async-output/{inference_id}.out", Body=_png(mask))
    out_dir = tmp_path / "out"
    rc, out, _ = run("endpoint", "submit", "--endpoint", "roadseg-dev-async", "--bucket", BUCKET, *images,
                     "--out-dir", out_dir)
    assert rc == 0
    stub.assert_no_pending_responses()
    # The async input is what the ingest function would upload under async-input/ for this file.
    assert s3.get_object(Bucket=BUCKET, Key="async-input/a.jpg")["Body"].read() == _served(images[0])
    for stem, inference_id in (("a", "id-a"), ("b", "id-b")):
        with Image.open(out_dir / f"{stem}_mask.png") as written:
            np.testing.assert_array_equal(np.asarray(written), masks[inference_id])
        assert (out_dir / f"{stem}_overlay.png").is_file()
        assert str(out_dir / f"{stem}_mask.png") in out


def test_submit_sends_png_frames_scaled_and_cropped_like_ingest_and_maps_masks_back(run, s3, monkeypatch, tmp_path):
    _with_preprocessing(monkeypatch, target_width=64, target_height=32, roi=(0.0, 0.25, 1.0, 1.0))
    image = tmp_path / "cam.png"
    Image.fromarray(generate_scene(128, 64, seed=8)[0]).save(image)
    stub = _stub(monkeypatch, "sagemaker-runtime")
    _expect_async(stub, "cam.jpg", "id-c")  # a JPEG now, named as ingest names its inputs
    mask = np.full((24, 64), 13, dtype=np.uint8)
    s3.put_object(Bucket=BUCKET, Key="async-output/id-c.out", Body=_png(mask))
    rc, _, err = run("endpoint", "submit", "--endpoint", "roadseg-dev-async", "--bucket", BUCKET, image,
                     "--out-dir", tmp_path / "out")
    assert rc == 0 and "cam.png: 128x64 sent as a 64x24 JPEG" in err
    stub.assert_no_pending_responses()
    sent = s3.get_object(Bucket=BUCKET, Key="async-input/cam.jpg")["Body"].read()
    assert sent == _served(image, PrepareOptions(target_size=(64, 32), roi=(0.0, 0.25, 1.0, 1.0)))
    expected = np.full((64, 128), 255, dtype=np.uint8)
    expected[16:] = 13
    with Image.open(tmp_path / "out" / "cam_mask.png") as written:
        np.testing.assert_array_equal(np.asarray(written), expected)


def test_submit_probabilities_decodes_recordio(run, s3, monkeypatch, tmp_path):
    image = _jpeg_file(tmp_path / "frame.jpg")
    probs = np.random.default_rng(1).random((19, 16, 32), dtype=np.float32)
    stub = _stub(monkeypatch, "sagemaker-runtime")
    _expect_async(stub, "frame.jpg", "p1", accept="application/x-recordio-protobuf")
    s3.put_object(Bucket=BUCKET, Key="async-output/p1.out", Body=encode_probabilities(probs))
    out_dir = tmp_path / "out"
    rc, _, _ = run("endpoint", "submit", "--endpoint", "roadseg-dev-async", "--bucket", BUCKET, image,
                   "--out-dir", out_dir, "--probabilities")
    assert rc == 0
    np.testing.assert_array_equal(np.load(out_dir / "frame_probs.npy"), probs)
    with Image.open(out_dir / "frame_mask.png") as written:
        np.testing.assert_array_equal(np.asarray(written), probs.argmax(axis=0))
    assert (out_dir / "frame_overlay.png").is_file()


def test_submit_reports_failures_and_corrupt_output(run, s3, monkeypatch, tmp_path):
    images = [_jpeg_file(tmp_path / "bad.jpg"), _jpeg_file(tmp_path / "corrupt.jpg")]
    stub = _stub(monkeypatch, "sagemaker-runtime")
    _expect_async(stub, "bad.jpg", "f1", accept="application/x-recordio-protobuf")
    _expect_async(stub, "corrupt.jpg", "f2", accept="application/x-recordio-protobuf")
    s3.put_object(Bucket=BUCKET, Key="async-failures/f1-error.out", Body=b"ModelError: image too small")
    s3.put_object(Bucket=BUCKET, Key="async-output/f2.out", Body=encode_probabilities(np.ones((2, 2, 2)))[:30])
    rc, _, err = run("endpoint", "submit", "--endpoint", "roadseg-dev-async", "--bucket", BUCKET, *images,
                     "--out-dir", tmp_path / "out", "--probabilities")
    assert rc == 1
    assert "bad.jpg: inference failed: ModelError: image too small" in err
    assert "corrupt.jpg: cannot decode" in err and "truncated input" in err


def test_submit_times_out_with_the_pending_locations(run, s3, monkeypatch, tmp_path):
    image = _jpeg_file(tmp_path / "slow.jpg")
    stub = _stub(monkeypatch, "sagemaker-runtime")
    _expect_async(stub, "slow.jpg", "s1")
    sleeps = []
    monkeypatch.setattr(endpoint_commands.time, "sleep", sleeps.append)
    rc, _, err = run("endpoint", "submit", "--endpoint", "roadseg-dev-async", "--bucket", BUCKET, image,
                     "--out-dir", tmp_path / "out", "--timeout", "0")
    assert rc == 1 and sleeps == []
    assert f"slow.jpg: no result after 0 s; it will appear at s3://{BUCKET}/async-output/s1.out" in err


def test_submit_polls_until_the_output_appears(run, s3, monkeypatch, tmp_path):
    image = _jpeg_file(tmp_path / "late.jpg")
    stub = _stub(monkeypatch, "sagemaker-runtime")
    _expect_async(stub, "late.jpg", "l1")
    sleeps = []

    def sleep(seconds):  # the endpoint finishes while we wait
        sleeps.append(seconds)
        s3.put_object(Bucket=BUCKET, Key="async-output/l1.out", Body=_png(np.zeros((16, 32))))

    monkeypatch.setattr(endpoint_commands.time, "sleep", sleep)
    rc, _, _ = run("endpoint", "submit", "--endpoint", "roadseg-dev-async", "--bucket", BUCKET, image,
                   "--out-dir", tmp_path / "out")
    assert rc == 0 and sleeps == [5.0]
    assert (tmp_path / "out" / "late_mask.png").is_file()


def test_submit_refuses_colliding_names(run, s3, tmp_path):
    (tmp_path / "x").mkdir()
    a, b = _jpeg_file(tmp_path / "f.jpg"), _jpeg_file(tmp_path / "x" / "f.jpg")
    rc, _, err = run("endpoint", "submit", "--endpoint", "e", "--bucket", BUCKET, a, b, "--out-dir", tmp_path)
    assert rc == 2 and "have the same name" in err


# ---------------------------------------------------------------------------- prepare, region


def test_prepare_runs_locally(run, generic_tree, tmp_path):
    root, names = generic_tree
    rc, out, _ = run("data", "prepare", "--layout", "generic", "--input", root, "--output", tmp_path / "prepared",
                     "--workers", "2")
    assert rc == 0
    assert f"prepared {len(names['train'])} train and {len(names['validation'])} validation pairs" in out
    assert len(list((tmp_path / "prepared" / "train").iterdir())) == len(names["train"])


def test_prepare_errors_exit_2(run, tmp_path):
    rc, _, err = run("data", "prepare", "--layout", "generic", "--input", tmp_path / "none", "--output", tmp_path / "o")
    assert rc == 2 and "does not exist" in err


def test_no_region_is_an_aws_access_error(run, aws, monkeypatch):
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    rc, _, err = run("pipeline", "status", "--execution", "arn:x")
    assert rc == 3 and "no AWS region: pass --region" in err


def test_region_flag_reaches_the_client_factory(run, monkeypatch, aws):
    seen = []
    real = session.make_client

    def factory(service, region):
        seen.append((service, region))
        return real(service, region)

    monkeypatch.setattr(session, "make_client", factory)
    rc, _, _ = run("--region", "eu-west-1", "model", "list", "--group", "g")
    assert rc == 0 and seen == [("sagemaker", "eu-west-1")]


def test_status_against_moto_server_mode(run, monkeypatch, tmp_path):
    """As a server, moto answers the unimplemented ListPipelineExecutionSteps with an HTTP 500 page."""
    from botocore.config import Config
    from moto.server import ThreadedMotoServer

    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        url = f"http://{host}:{port}"
        monkeypatch.setattr(session, "make_client", lambda service, region: boto3.client(
            service, region_name=region, endpoint_url=url, config=Config(retries={"max_attempts": 1})))
        sm = session.make_client("sagemaker", REGION)
        sm.create_pipeline(PipelineName="p", RoleArn=ROLE, ClientRequestToken="s" * 32,
                           PipelineDefinition=json.dumps({"Version": "2020-12-01", "Steps": []}))
        arn = sm.start_pipeline_execution(PipelineName="p")["PipelineExecutionArn"]
        rc, out, _ = run("--region", REGION, "pipeline", "status", "--execution", arn)
    finally:
        server.stop()
    assert rc == 0
    assert "status:    Succeeded" in out and "step details unavailable from this endpoint" in out
