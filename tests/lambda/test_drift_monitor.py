"""lambda/drift_monitor.py on moto (SSM, SageMaker model registry, S3, CloudWatch ListMetrics/PutMetricData) with
GetMetricData's percentile-rank statistics answered by tests/monitoring/cloudwatch_pr.py."""

from __future__ import annotations

import importlib.util
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import numpy as np
import pytest
from moto import mock_aws

from contracts.naming import NO_MODEL_PACKAGE, serving_package_parameter
from monitoring import simulate
from monitoring.job import DriftSettings
from monitoring.metrics import DRIFT_DETECTED, DRIFT_NAMESPACE, DRIFTED_SIGNALS, REFERENCE_MISSING, SIGNAL_PSI
from monitoring.reference import REFERENCE_PROFILE_METADATA_KEY
from segcore.signals import reference_profile

_spec = importlib.util.spec_from_file_location(
    "cloudwatch_pr", Path(__file__).resolve().parents[1] / "monitoring" / "cloudwatch_pr.py")
cloudwatch_pr = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cloudwatch_pr)

import drift_monitor  # noqa: E402  (lambda/ on pytest's pythonpath)

PREFIX = "roadseg-dev"
BUCKET = "roadseg-artifacts-test"
NOW = datetime(2026, 12, 8, 10, 17, tzinfo=UTC)
WINDOW_START = datetime(2026, 12, 8, 9, 0, tzinfo=UTC)
FRAMES = 1500


@pytest.fixture
def aws(monkeypatch):
    with mock_aws():
        settings = DriftSettings(PREFIX, serving_package_parameter(PREFIX), cameras=("front", "rear", "side"))
        for name, value in settings.to_env().items():
            monkeypatch.setenv(name, value)
        clients = {name: boto3.client(name, region_name="us-east-1") for name in ("ssm", "sagemaker", "s3")}
        clients["cloudwatch"] = cloudwatch_pr.PercentileRankCloudWatch(boto3.client("cloudwatch",
                                                                                    region_name="us-east-1"))
        yield clients


def _serve(aws, *, with_profile: bool = True) -> str:
    aws["s3"].create_bucket(Bucket=BUCKET)
    key = "pipelines/train/exec-1/evaluation/reference-profile.json"
    profile = reference_profile(simulate.reference_records(1, 2000), chunk_size=200, model_package_version="3")
    aws["s3"].put_object(Bucket=BUCKET, Key=key, Body=json.dumps(profile).encode())
    group = f"{PREFIX}-segmentation"
    aws["sagemaker"].create_model_package_group(ModelPackageGroupName=group)
    extra = {"DriftCheckBaselines": {"ModelDataQuality": {"Statistics": {
        "ContentType": "application/json", "S3Uri": f"s3://{BUCKET}/{key}"}}}} if with_profile else {}
    arn = aws["sagemaker"].create_model_package(
        ModelPackageGroupName=group, ModelApprovalStatus="Approved",
        InferenceSpecification={"Containers": [{"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/seg:1"}],
                                "SupportedContentTypes": ["image/jpeg"], "SupportedResponseMIMETypes": ["image/png"]},
        **extra)["ModelPackageArn"]
    aws["ssm"].put_parameter(Name=serving_package_parameter(PREFIX), Value=arn, Type="String")
    return arn


def _frames(aws, camera: str, drift: str | None) -> None:
    seed = {"front": 1, "rear": 2, "side": 3, "drive-0001": 4}[camera]
    rng = np.random.default_rng(seed)
    # The undrifted camera sees the reference mix itself (the statistics of varying mixes: tests/monitoring).
    signals = simulate.window(rng, 0, FRAMES, drift, 0).signals if drift else simulate.frames(
        rng, FRAMES, simulate.REFERENCE_MIX)
    for signal in simulate.PUBLISHED_SIGNALS:
        aws["cloudwatch"].record(PREFIX, camera, signal, WINDOW_START, signals[signal])


def _published(aws, name: str, camera: str, signal: str | None = None) -> list[float]:
    dims = [{"Name": "Environment", "Value": PREFIX}, {"Name": "Camera", "Value": camera}]
    if signal:
        dims.append({"Name": "Signal", "Value": signal})
    response = aws["cloudwatch"]._client.get_metric_data(
        MetricDataQueries=[{"Id": "m", "MetricStat": {"Metric": {"Namespace": DRIFT_NAMESPACE, "MetricName": name,
                                                                 "Dimensions": dims},
                                                      "Period": 3600, "Stat": "Maximum"}}],
        StartTime=NOW - timedelta(hours=3), EndTime=NOW + timedelta(hours=1))
    return response["MetricDataResults"][0]["Values"]


def test_a_night_camera_drifts_and_a_normal_one_does_not(aws) -> None:
    arn = _serve(aws)
    _frames(aws, "front", "night")
    _frames(aws, "rear", None)
    _frames(aws, "drive-0001", "night")  # an unconfigured name (a series from before METRICS_CAMERAS): not judged
    out = drift_monitor.handler({}, None, now=NOW, aws=aws)

    assert out["action"] == "judged"
    assert out["reference"]["model_package_arn"] == arn
    assert out["window"] == {"start": WINDOW_START.isoformat(), "end": (WINDOW_START + timedelta(hours=1)).isoformat()}
    verdicts = {c["camera"]: c for c in out["cameras"]}
    assert set(verdicts) == {"front", "rear", "side"}  # side: configured, no frames
    assert verdicts["front"]["status"] == "drift" and "brightness" in verdicts["front"]["drifted_signals"]
    assert verdicts["rear"]["status"] == "ok"
    assert verdicts["side"]["status"] == "insufficient-data"
    # 3 cameras x 251 queries: two requests of at most 500.
    assert out["requests"] == 2 and [len(r["MetricDataQueries"]) for r in aws["cloudwatch"].requests] == [500, 253]
    assert _published(aws, DRIFT_DETECTED, "front") == [1.0]
    assert _published(aws, DRIFT_DETECTED, "rear") == [0.0]
    assert _published(aws, DRIFT_DETECTED, "side") == []  # not judged: nothing published, the alarm stays quiet
    assert _published(aws, DRIFT_DETECTED, "drive-0001") == []
    assert _published_environment(aws, REFERENCE_MISSING) == [0.0]  # the ReferenceMissing alarm returns to OK
    assert _published(aws, DRIFTED_SIGNALS, "front")[0] >= 1
    assert _published(aws, SIGNAL_PSI, "front", "brightness")[0] > 1


def test_no_model_serving_publishes_nothing(aws) -> None:
    aws["ssm"].put_parameter(Name=serving_package_parameter(PREFIX), Value=NO_MODEL_PACKAGE, Type="String")
    _frames(aws, "front", "night")
    out = drift_monitor.handler({}, None, now=NOW, aws=aws)
    assert out["action"] == "skipped" and out["reference"] is None
    assert aws["cloudwatch"].requests == []
    assert _published(aws, DRIFT_DETECTED, "front") == []


def _published_environment(aws, name: str) -> list[float]:
    response = aws["cloudwatch"]._client.get_metric_data(
        MetricDataQueries=[{"Id": "m", "MetricStat": {"Metric": {
            "Namespace": DRIFT_NAMESPACE, "MetricName": name, "Dimensions": [{"Name": "Environment", "Value": PREFIX}]},
            "Period": 3600, "Stat": "Maximum"}}],
        StartTime=NOW - timedelta(hours=3), EndTime=NOW + timedelta(hours=1))
    return response["MetricDataResults"][0]["Values"]


def test_a_package_without_a_reference_profile_is_alarmed_not_raised(aws) -> None:
    """Packages registered before the gate wrote profiles: ReferenceMissing = 1 (its alarm), no exception (which
    would fail every hourly run, retry, dead-letter and alarm Errors until a new package is approved)."""
    arn = _serve(aws, with_profile=False)
    _frames(aws, "front", "night")
    out = drift_monitor.handler({}, None, now=NOW, aws=aws)
    assert out["action"] == "skipped" and out["reason"] == "reference missing"
    assert arn in out["reference_missing"] and "update-model-package" in out["reference_missing"]
    assert _published_environment(aws, REFERENCE_MISSING) == [1.0]
    assert aws["cloudwatch"].requests == []  # nothing judged
    assert _published(aws, DRIFT_DETECTED, "front") == []


def test_an_operator_attached_profile_is_used_for_an_old_package(aws) -> None:
    """UpdateModelPackage cannot add DriftCheckBaselines; CustomerMetadataProperties ReferenceProfile can."""
    arn = _serve(aws, with_profile=False)
    key = "pipelines/train/exec-1/evaluation/reference-profile.json"
    aws["sagemaker"].update_model_package(ModelPackageArn=arn, CustomerMetadataProperties={
        REFERENCE_PROFILE_METADATA_KEY: f"s3://{BUCKET}/{key}"})
    _frames(aws, "front", "night")
    out = drift_monitor.handler({}, None, now=NOW, aws=aws)
    assert out["action"] == "judged" and out["reference"]["profile"] == f"s3://{BUCKET}/{key}"
    assert {c["camera"]: c["status"] for c in out["cameras"]}["front"] == "drift"


def test_a_real_error_still_raises(aws) -> None:
    """Access, throttling and service errors are not a missing reference: they raise (retried by the next run, and
    the Errors alarm)."""
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError):  # the serving parameter does not exist
        drift_monitor.handler({}, None, now=NOW, aws=aws)


def test_missing_settings_name_the_variable(monkeypatch) -> None:
    monkeypatch.delenv("DRIFT_SERVING_PARAMETER", raising=False)
    monkeypatch.setenv("DRIFT_ENVIRONMENT", PREFIX)
    with pytest.raises(ValueError, match="DRIFT_SERVING_PARAMETER"):
        drift_monitor.handler({}, None, now=NOW, aws={})
    monkeypatch.setenv("DRIFT_SERVING_PARAMETER", "/x")
    monkeypatch.setenv("DRIFT_PSI_THRESHOLD", "high")
    with pytest.raises(ValueError, match="DRIFT_PSI_THRESHOLD='high'"):
        drift_monitor.handler({}, None, now=NOW, aws={})
