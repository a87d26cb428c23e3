"""``roadseg monitor status`` end to end on moto, with GetMetricData's PR statistics from cloudwatch_pr.py."""

from __future__ import annotations

import importlib.util
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import numpy as np
import pytest
from moto import mock_aws
from PIL import Image

from contracts.naming import serving_package_parameter
from envconfig.config import load_config
from monitoring import simulate
from monitoring.job import window_bounds
from roadseg import cli
from roadseg import session as session_module
from roadseg.commands.monitor import parse_window
from roadseg.session import UserError
from segcore.signals import reference_profile

_spec = importlib.util.spec_from_file_location("cloudwatch_pr", Path(__file__).with_name("cloudwatch_pr.py"))
cloudwatch_pr = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cloudwatch_pr)

PREFIX = load_config("dev").prefix
BUCKET = "roadseg-artifacts-cli"


@pytest.fixture
def aws(monkeypatch, tmp_path):
    # dev configures no camera (its frames are all "unknown"); these tests name two: the functions publish and the
    # drift check judges only configured cameras (METRICS_CAMERAS).
    configs = tmp_path / "config"
    configs.mkdir()
    (configs / "dev.yaml").write_text(Path(__file__).parents[2].joinpath("config", "dev.yaml").read_text()
                                      + "\nmonitoring:\n  cameras: [front, rear]\n")
    monkeypatch.setenv("ROADSEG_CONFIG_DIR", str(configs))
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1",
                       "AWS_CONFIG_FILE": str(tmp_path / "none"),
                       "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        clients = {name: boto3.client(name, region_name="us-east-1") for name in ("ssm", "sagemaker", "s3")}
        clients["cloudwatch"] = cloudwatch_pr.PercentileRankCloudWatch(boto3.client("cloudwatch",
                                                                                    region_name="us-east-1"))
        monkeypatch.setattr(session_module, "make_client", lambda service, region, **_: clients[service])
        yield clients


@pytest.fixture
def run(capsys):
    def _run(*argv):
        rc = cli.main([str(a) for a in argv])
        out, err = capsys.readouterr()
        assert "Traceback" not in out + err
        return rc, out, err
    return _run


def _serve(aws) -> None:
    aws["s3"].create_bucket(Bucket=BUCKET)
    profile = reference_profile(simulate.reference_records(1, 2000), chunk_size=200)
    aws["s3"].put_object(Bucket=BUCKET, Key="pipelines/p/e/reference-profile.json", Body=json.dumps(profile))
    group = f"{PREFIX}-segmentation"
    aws["sagemaker"].create_model_package_group(ModelPackageGroupName=group)
    arn = aws["sagemaker"].create_model_package(
        ModelPackageGroupName=group, ModelApprovalStatus="Approved",
        InferenceSpecification={"Containers": [{"Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/seg:1"}],
                                "SupportedContentTypes": ["image/jpeg"], "SupportedResponseMIMETypes": ["image/png"]},
        DriftCheckBaselines={"ModelDataQuality": {"Statistics": {
            "ContentType": "application/json", "S3Uri": f"s3://{BUCKET}/pipelines/p/e/reference-profile.json"}}},
    )["ModelPackageArn"]
    aws["ssm"].put_parameter(Name=serving_package_parameter(PREFIX), Value=arn, Type="String")


def _record(aws, camera: str, drift: str | None, hours: int) -> None:
    """Hourly periods covering the last ``hours`` whole hours (and the next one, should the hour turn mid-test)."""
    rng = np.random.default_rng(len(camera))
    _, end = window_bounds(datetime.now(UTC) + timedelta(minutes=5), 3600)
    for back in range(hours + 1):
        start = end - timedelta(hours=back + 1)
        # The undrifted camera sees the reference mix itself (the statistics of varying mixes are test_drift's).
        signals = simulate.window(rng, 0, 1500, drift, 0).signals if drift else simulate.frames(
            rng, 1500, simulate.REFERENCE_MIX)
        for signal in simulate.PUBLISHED_SIGNALS:
            values = signals[signal]
            aws["cloudwatch"].record(PREFIX, camera, signal, start, values)


def test_parse_window() -> None:
    assert parse_window("24h", 1) == 24 and parse_window("7d", 1) == 168 and parse_window(None, 6) == 6
    for bad in ("0h", "90m", "1.5h", "456d"):
        with pytest.raises(UserError):
            parse_window(bad, 1)


def test_status_names_the_drifted_camera_and_exits_1(aws, run, tmp_path) -> None:
    _serve(aws)
    _record(aws, "front", "night", 6)
    _record(aws, "rear", None, 6)
    plot = tmp_path / "drift.png"
    rc, out, err = run("--env", "dev", "monitor", "status", "--window", "6h", "--plot", plot)
    assert rc == 1, err
    assert "model package version 1" in out and "reference-profile.json" in out
    lines = {line.split()[0]: line for line in out.splitlines() if line.split() and line.split()[0] in
             ("front", "rear")}
    assert "drift" in lines["front"] and "brightness" in lines["front"]
    assert lines["rear"].split()[1] == "ok"
    with Image.open(plot) as image:
        assert image.format == "PNG" and image.size[0] == 1200 and image.size[1] > 800


def test_status_json_and_camera_filter(aws, run) -> None:
    _serve(aws)
    _record(aws, "front", "night", 1)
    _record(aws, "rear", None, 1)
    rc, out, _ = run("--env", "dev", "monitor", "status", "--camera", "rear", "--json")
    assert rc == 0
    doc = json.loads(out)
    assert [c["camera"] for c in doc["cameras"]] == ["rear"] and doc["cameras"][0]["status"] == "ok"
    assert doc["reference"]["model_package_version"] == "1"
    assert {f["signal"] for f in doc["cameras"][0]["findings"]} >= {"brightness", "frac_road"}
    start, end = datetime.fromisoformat(doc["window"]["start"]), datetime.fromisoformat(doc["window"]["end"])
    assert end - start == timedelta(hours=1) and end.minute == 0


def test_no_model_serving_exits_0(aws, run) -> None:
    aws["ssm"].put_parameter(Name=serving_package_parameter(PREFIX), Value="none", Type="String")
    rc, out, _ = run("--env", "dev", "monitor", "status")
    assert rc == 0 and "No model package is serving" in out


def test_only_configured_cameras_and_unknown_are_judged(aws, run) -> None:
    """A series of an unconfigured camera name (published before METRICS_CAMERAS existed) is not judged; the
    "unknown" catch-all is, once it has a series."""
    _serve(aws)
    _record(aws, "front", None, 1)
    _record(aws, "drive-0001", "night", 1)
    _record(aws, "unknown", "night", 1)
    rc, out, _ = run("--env", "dev", "monitor", "status", "--json")
    doc = json.loads(out)
    assert sorted(c["camera"] for c in doc["cameras"]) == ["front", "rear", "unknown"]
    assert {c["camera"]: c["status"] for c in doc["cameras"]}["unknown"] == "drift" and rc == 1


def test_bad_window_exits_2(aws, run) -> None:
    rc, _, err = run("--env", "dev", "monitor", "status", "--window", "90m")
    assert rc == 2 and "--window '90m'" in err
