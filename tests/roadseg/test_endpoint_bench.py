"""``roadseg endpoint bench`` end to end under moto (SageMaker, S3, the runtime) and botocore's Stubber (errors
and throttles): the result file, the frames on the wire, and the cost table that reads the result."""

from __future__ import annotations

import base64
import io
import json
import re
from datetime import datetime
from pathlib import Path

import boto3
import numpy as np
import pytest
import requests
from botocore.awsrequest import AWSResponse
from botocore.response import StreamingBody
from botocore.stub import Stubber
from moto import mock_aws
from PIL import Image

from envconfig.config import load_config
from envconfig.costs import Measurement, cost_table, endpoint_costs, load_prices
from roadseg import endpoint_bench, session
from segcore.imaging import PrepareOptions, prepare_frame
from segcore.scenes import generate_scene

ROLE = "arn:aws:iam::123456789012:role/roadseg-test"
BUCKET = "roadseg-bench-test"
RESULT_NAME = re.compile(r"^endpoint-(dev|prod)-(realtime|async)-\d{8}T\d{6}Z\.json$")
DOCUMENTED_KEYS = {"schema_version", "env", "kind", "endpoint", "instance_type", "head", "resolution", "roi",
                   "concurrency", "duration", "counts", "latency_ms", "frames_per_second",
                   "frames_per_second_per_instance", "measured_at", "errors_by_code", "instances", "target_size",
                   "source_resolution"}
FAST = ["--concurrency", "2", "--poll-interval", "0.02", "--instance-poll", "0.2"]


@pytest.fixture
def aws(offline_aws_env, monkeypatch, tmp_path):
    with mock_aws():
        yield




def _endpoint(region: str, name: str, kind: str, *, instances: int = 1, instance_type: str = "ml.g4dn.xlarge") -> str:
    """Model, endpoint config and endpoint in moto (InService at once, CurrentInstanceCount = instances)."""
    sm = boto3.client("sagemaker", region_name=region)
    sm.create_model(ModelName=f"{name}-model", ExecutionRoleArn=ROLE,
                    PrimaryContainer={"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/semseg:1"})
    config = {"EndpointConfigName": f"{name}-config", "ProductionVariants": [{
        "VariantName": "AllTraffic", "ModelName": f"{name}-model", "InitialInstanceCount": instances,
        "InstanceType": instance_type}]}
    if kind == "async":
        config["AsyncInferenceConfig"] = {"OutputConfig": {"S3OutputPath": f"s3://{BUCKET}/async-output/"}}
    sm.create_endpoint_config(**config)
    sm.create_endpoint(EndpointName=name, EndpointConfigName=f"{name}-config")
    return name


def _expected_frames(env: str, count: int, size: tuple[int, int]) -> list[bytes]:
    """What the ingest function would send for scenes 0..count-1, built here without the bench's helpers."""
    pre = load_config(env).preprocessing
    options = PrepareOptions(target_size=(pre.target_width, pre.target_height), roi=pre.roi,
                             max_bytes=pre.max_input_bytes, max_pixels=pre.max_input_pixels,
                             jpeg_quality=pre.jpeg_quality)
    frames = []
    for seed in range(count):
        rgb, _ = generate_scene(*size, seed)
        camera = io.BytesIO()
        Image.fromarray(rgb).save(camera, format="JPEG", quality=95)
        frames.append(prepare_frame(camera.getvalue(), options).jpeg)
    return frames


def _capture_realtime_bodies(monkeypatch) -> list[bytes]:
    """Record every InvokeEndpoint body as sent, then hand moto base64 text (binary bodies crash its parser)."""
    sent: list[bytes] = []
    real = session.make_client

    def before_send(request, **_):
        body = request.body if isinstance(request.body, bytes) else request.body.read()
        sent.append(body)
        request.body = base64.b64encode(body)
        request.headers["Content-Length"] = str(len(request.body))

    def factory(service, region):
        client = real(service, region)
        if service == "sagemaker-runtime":
            client.meta.events.register("before-send.sagemaker-runtime.InvokeEndpoint", before_send)
        return client

    monkeypatch.setattr(session, "make_client", factory)
    return sent


def _queue_png_answers(region: str, count: int) -> None:
    """moto answers each distinct request with the next queued result (the default is not image/png)."""
    requests.post("http://motoapi.amazonaws.com/moto-api/static/sagemaker/endpoint-results", json={
        "region": region, "results": [{"Body": "mask", "ContentType": "image/png"} for _ in range(count)]})


def _result(tmp_path: Path) -> tuple[Path, dict]:
    files = sorted(tmp_path.glob("*.json"))
    assert len(files) == 1, files
    return files[0], json.loads(files[0].read_text())


def _check_sane(doc: dict, *, env: str, kind: str, endpoint: str, instance_type: str = "ml.g4dn.xlarge") -> None:
    assert DOCUMENTED_KEYS <= set(doc)
    assert (doc["schema_version"], doc["env"], doc["kind"], doc["endpoint"]) == ("1.0", env, kind, endpoint)
    assert doc["instance_type"] == instance_type and doc["head"] == "deeplab"
    counts = doc["counts"]
    assert counts["ok"] > 0 and counts["errors"] == 0 and counts["requests"] == counts["ok"]
    assert counts["throttled"] == counts["throttled_attempts"] == 0 and doc["errors_by_code"] == {}
    latency = doc["latency_ms"]
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]
    assert doc["frames_per_second"] == pytest.approx(counts["ok"] / doc["elapsed_s"], rel=0.01)
    assert doc["instances"]["mean"] == 1 and doc["instances"]["samples"] >= 2
    assert doc["frames_per_second_per_instance"] == pytest.approx(doc["frames_per_second"])
    assert doc["concurrency"] == 2 and doc["duration"] == 1.0 and doc["source_resolution"] == [2048, 1024]
    assert datetime.fromisoformat(doc["measured_at"]).tzinfo is not None
    Measurement.model_validate(doc)  # what the cost table reads


def test_realtime_sends_the_ingest_frames_and_writes_the_result(run, aws, monkeypatch, tmp_path):
    endpoint = _endpoint("us-east-1", "roadseg-dev-realtime", "realtime")
    sent = _capture_realtime_bodies(monkeypatch)
    _queue_png_answers("us-east-1", 2)
    rc, out, err = run("endpoint", "bench", "--endpoint", endpoint, "--duration", "1", "--frames", "2",
                       "--out", tmp_path, "--json", *FAST)
    assert rc == 0, err
    path, doc = _result(tmp_path)
    assert RESULT_NAME.match(path.name) and path.name.startswith("endpoint-dev-realtime-")
    assert json.loads(out) == {**doc, "file": str(path)}
    _check_sane(doc, env="dev", kind="realtime", endpoint=endpoint)
    assert doc["resolution"] == [1024, 512] and doc["target_size"] == [1024, 512] and doc["roi"] is None
    # On the wire: exactly what prepare_frame makes of the same scenes, byte for byte, round robin.
    expected = _expected_frames("dev", 2, (2048, 1024))
    assert sent[0] in expected and set(sent) == set(expected)
    assert len(sent) == doc["counts"]["requests"]
    assert doc["request_bytes_mean"] == round(sum(map(len, expected)) / 2)

    prices = load_prices(measurements_dir=tmp_path)
    realtime, async_ = endpoint_costs(load_config("dev"), prices)
    assert realtime.frames_per_second == doc["frames_per_second_per_instance"]
    assert realtime.frames_per_second_label == f"measured {doc['measured_at'][:10]}"
    assert async_.frames_per_second_label == "assumed"


def test_async_uploads_invokes_polls_and_writes_the_result(run, aws, monkeypatch, tmp_path):
    """prod (eu-west-1) cuts an ROI off: the frames are 1024x451, uploaded with the ingest metadata."""
    s3 = boto3.client("s3", region_name="eu-west-1")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    endpoint = _endpoint("eu-west-1", "roadseg-prod-async", "async", instance_type="ml.g4dn.2xlarge")
    rc, out, err = run("--env", "prod", "endpoint", "bench", "--kind", "async", "--endpoint", endpoint,
                       "--bucket", BUCKET, "--duration", "1", "--frames", "2", "--out", tmp_path, *FAST)
    assert rc == 0, err
    path, doc = _result(tmp_path)
    assert path.name.startswith("endpoint-prod-async-") and f"wrote {path}" in out and "warning" not in err
    _check_sane(doc, env="prod", kind="async", endpoint=endpoint, instance_type="ml.g4dn.2xlarge")
    assert doc["resolution"] == [1024, 451] and doc["roi"] == [0.0, 0.0, 1.0, 0.88]
    assert doc["input_prefix"].startswith(f"s3://{BUCKET}/async-input/bench/")
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="async-input/bench/")["Contents"])
    assert len(keys) == doc["counts"]["requests"]
    first = s3.get_object(Bucket=BUCKET, Key=keys[0])
    assert first["Body"].read() == _expected_frames("prod", 1, (2048, 1024))[0]
    meta = first["Metadata"]  # what the postprocess function reads to place the mask
    assert (meta["inference-width"], meta["inference-height"], meta["crop-box"]) == ("1024", "451", "0,0,2048,902")

    table = cost_table([load_config("prod")], load_prices(measurements_dir=tmp_path))
    rows = {line.split(" | ")[1]: line for line in table.splitlines() if line.startswith("| prod |")}
    assert rows["async"].endswith(f"| measured {doc['measured_at'][:10]} |")
    assert "| 1024x512 (ROI 0,0,1,0.88) | deeplab |" in rows["async"]
    assert rows["real-time"].endswith("| assumed |")


def _stub_runtime(monkeypatch) -> Stubber:
    real = session.make_client
    client = boto3.client("sagemaker-runtime", region_name="us-east-1")
    stubber = Stubber(client)
    stubber.activate()
    monkeypatch.setattr(session, "make_client",
                        lambda service, region: client if service == "sagemaker-runtime" else real(service, region))
    return stubber


def _png_answer() -> dict:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((4, 8), dtype=np.uint8)).save(buf, "PNG")
    return {"Body": StreamingBody(io.BytesIO(buf.getvalue()), len(buf.getvalue())), "ContentType": "image/png"}


def test_errors_and_throttles_are_counted_by_code(run, aws, monkeypatch, tmp_path):
    endpoint = _endpoint("us-east-1", "roadseg-dev-realtime", "realtime", instances=2)
    stub = _stub_runtime(monkeypatch)
    for _ in range(3):
        stub.add_response("invoke_endpoint", _png_answer())
    stub.add_client_error("invoke_endpoint", service_error_code="ThrottlingException", http_status_code=400)
    stub.add_client_error("invoke_endpoint", service_error_code="ThrottlingException", http_status_code=400)
    stub.add_client_error("invoke_endpoint", service_error_code="", http_status_code=429)
    stub.add_client_error("invoke_endpoint", service_error_code="ModelError", http_status_code=424)
    rc, _, err = run("endpoint", "bench", "--endpoint", endpoint, "--duration", "30", "--requests", "7",
                     "--frames", "1", "--source-size", "64x32", "--out", tmp_path, *FAST)
    assert rc == 0, err
    stub.assert_no_pending_responses()
    _, doc = _result(tmp_path)
    assert doc["counts"] == {"requests": 7, "ok": 3, "errors": 4, "throttled": 3, "throttled_attempts": 3,
                             "retries": 0}
    assert doc["errors_by_code"] == {"429": 1, "ModelError": 1, "ThrottlingException": 2}
    assert doc["max_requests"] == 7 and doc["resolution"] == [64, 32]  # never upscaled
    assert doc["instances"]["mean"] == 2
    assert doc["frames_per_second_per_instance"] == pytest.approx(doc["frames_per_second"] / 2, rel=1e-3)


def test_a_retried_throttle_is_counted_once_the_request_succeeds(run, aws, monkeypatch, tmp_path):
    """The SDK retries a throttled attempt; the bench still counts it (throttled_attempts, retries)."""
    endpoint = _endpoint("us-east-1", "roadseg-dev-realtime", "realtime")
    sent = _capture_realtime_bodies(monkeypatch)
    _queue_png_answers("us-east-1", 1)
    real = session.make_client
    throttled = []

    def throttle_once(request, **_):
        if not throttled:
            throttled.append(request.url)
            return AWSResponse(request.url, 400, {"x-amzn-ErrorType": "ThrottlingException"},
                               _Raw(b'{"message": "Rate exceeded"}'))
        return None

    def factory(service, region):
        client = real(service, region)
        if service == "sagemaker-runtime":  # registered after the capture hook: runs before moto answers
            client.meta.events.register_first("before-send.sagemaker-runtime.InvokeEndpoint", throttle_once)
        return client

    monkeypatch.setattr(session, "make_client", factory)
    rc, _, err = run("endpoint", "bench", "--endpoint", endpoint, "--duration", "30", "--requests", "1",
                     "--frames", "1", "--source-size", "64x32", "--out", tmp_path, *FAST)
    assert rc == 0, err
    _, doc = _result(tmp_path)
    assert doc["counts"] == {"requests": 1, "ok": 1, "errors": 0, "throttled": 0, "throttled_attempts": 1,
                             "retries": 1}
    assert len(throttled) == 1 and sent[0] == sent[1] and len(sent) == 2  # the retry carried the same frame


class _Raw(io.BytesIO):
    def stream(self, **_):
        yield self.read()


def test_every_request_failing_exits_1_without_a_result(run, aws, monkeypatch, tmp_path):
    endpoint = _endpoint("us-east-1", "roadseg-dev-realtime", "realtime")
    stub = _stub_runtime(monkeypatch)
    for _ in range(2):
        stub.add_client_error("invoke_endpoint", service_error_code="ModelError", http_status_code=424)
    rc, _, err = run("endpoint", "bench", "--endpoint", endpoint, "--requests", "2", "--frames", "1",
                     "--source-size", "64x32", "--out", tmp_path, *FAST)
    assert rc == 1
    assert "every request failed (2: ModelError 2); no result file written" in err
    assert not list(tmp_path.glob("*.json"))


def test_a_refused_endpoint_stops_the_run(run, aws, monkeypatch, tmp_path):
    """An error no retry can fix (access denied, endpoint gone) ends the run instead of repeating for 30 s."""
    endpoint = _endpoint("us-east-1", "roadseg-dev-realtime", "realtime")
    stub = _stub_runtime(monkeypatch)
    stub.add_client_error("invoke_endpoint", service_error_code="AccessDeniedException", http_status_code=400)
    rc, _, err = run("endpoint", "bench", "--endpoint", endpoint, "--duration", "30", "--concurrency", "1",
                     "--frames", "1", "--source-size", "64x32", "--out", tmp_path)
    assert rc == 1 and "AccessDeniedException 1" in err


def test_wrong_kind_unknown_endpoint_and_bad_size_exit_2(run, aws, tmp_path):
    _endpoint("us-east-1", "roadseg-dev-realtime", "realtime")
    rc, _, err = run("endpoint", "bench", "--kind", "async", "--endpoint", "roadseg-dev-realtime", "--bucket", BUCKET,
                     "--out", tmp_path)
    assert rc == 2 and "is a real-time endpoint: use --kind realtime" in err
    rc, _, err = run("endpoint", "bench", "--endpoint", "nowhere", "--out", tmp_path)
    assert rc == 2 and "endpoint nowhere does not exist" in err
    rc, _, err = run("endpoint", "bench", "--endpoint", "roadseg-dev-realtime", "--source-size", "big",
                     "--out", tmp_path)
    assert rc == 2 and "is not WIDTHxHEIGHT" in err
    assert not list(tmp_path.glob("*.json"))


def test_bench_frames_are_distinct_scenes_at_the_serving_resolution():
    frames = endpoint_bench.bench_frames(load_config("dev"), 3, (2048, 1024), seed=0)
    assert [f.output_size for f in frames] == [(1024, 512)] * 3
    assert len({f.jpeg for f in frames}) == 3
    assert [f.jpeg for f in frames] == _expected_frames("dev", 3, (2048, 1024))


@pytest.mark.parametrize("quiet", [False, True])
def test_progress_bar_on_stderr_unless_quiet(run, aws, monkeypatch, tmp_path, quiet):
    endpoint = _endpoint("us-east-1", "roadseg-dev-realtime", "realtime")
    stub = _stub_runtime(monkeypatch)
    stub.add_response("invoke_endpoint", _png_answer())
    bars = []

    class Bar:
        def __init__(self, **kwargs):
            bars.append(kwargs)
            self.total, self.n = kwargs["total"], 0

        def set_postfix_str(self, text):
            pass

        def close(self):
            pass

    monkeypatch.setattr(endpoint_bench, "tqdm", Bar)
    rc, _, err = run(*(["-q"] if quiet else []), "endpoint", "bench", "--endpoint", endpoint, "--requests", "1",
                     "--frames", "1", "--source-size", "64x32", "--out", tmp_path)
    assert rc == 0 and len(bars) == 1
    assert bars[0]["disable"] is (True if quiet else None)  # None: tqdm shows it when stderr is a terminal
    assert ("preparing 1 frame(s)" in err) is not quiet
