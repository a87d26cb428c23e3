"""Lists travel as files: the drive jobs read the camera map and the custom class list from the job settings that
the stack stages (contracts.job_settings), through the very arguments of the functions' requests, after the entry
script unpacks the settings zip where SageMaker puts the ``settings`` input."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import zipfile
from pathlib import Path

import boto3
import pytest
from moto import mock_aws
from roadseg_lambda import drive_jobs

from contracts import drive_table as T
from contracts.drives import DriveId
from contracts.job_settings import SETTINGS_DIR, SETTINGS_INPUT, settings_files
from contracts.lambda_env import DrivesEnvironment
from contracts.service_limits import RequestLimitError
from drivelogs import build, job
from stacks.code_assets import PROCESSING_ENTRY
from stacks.drive_processing import extraction_arguments, scheme_arguments

BUCKET, TABLE = "roadseg-dev-inference", "roadseg-dev-drives"
DRIVE = DriveId("car-7", "2026-12-03")
FRONT = "/cam/front/image_raw/compressed"
CLASSES = [{"name": f"custom class {i}", "color": [i, 2 * i, 3 * i]} for i in range(25)]


def _env(files: dict[str, str]) -> DrivesEnvironment:
    return DrivesEnvironment(
        drives_table=TABLE, inference_bucket=BUCKET, job_prefix="roadseg-dev",
        extraction_role_arn="arn:aws:iam::123456789012:role/e", builder_role_arn="arn:aws:iam::123456789012:role/b",
        processing_image="img", code_entry_uri="s3://a/e.py", code_package_uri="s3://a/p.zip",
        drive_wheels_uri="s3://a/w.zip", kms_key_arn="arn:aws:kms:us-east-1:123456789012:key/k",
        settings_uri="s3://a/settings.zip", extraction_arguments=extraction_arguments(files) or None,
        builder_arguments=scheme_arguments("custom" if "classes.json" in files else "cityscapes", files))


def _entry():
    spec = importlib.util.spec_from_file_location("processing_entry_settings", PROCESSING_ENTRY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _arrive(files: dict[str, str], into: Path) -> Path:
    """What SageMaker downloads for the settings input (the CDK directory asset: one zip), unpacked by the entry
    script as it is before any step runs."""
    into.mkdir(parents=True)
    with zipfile.ZipFile(into / "0a1b2c3d.zip", "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    assert sorted(_entry().unpack_settings(into)) == sorted(files)
    return into


def _local(arguments: list[str], mapping: dict[str, str]) -> list[str]:
    out = []
    for argument in arguments:
        for container, local in mapping.items():
            argument = argument.replace(container, local)
        out.append(argument)
    return out


@pytest.fixture
def aws(monkeypatch):
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        dynamodb = boto3.client("dynamodb")
        dynamodb.create_table(TableName=TABLE, BillingMode="PAY_PER_REQUEST", **T.key_schema())
        dynamodb.put_item(TableName=TABLE, Item={T.PARTITION_KEY: {"S": str(DRIVE)}, T.SORT_KEY: {"S": T.DRIVE_ITEM},
                                                 T.STATUS: {"S": T.EXTRACTING}})
        yield s3


def test_the_extraction_reads_the_camera_map_from_its_file(aws, tmp_path, drive_logs, camera_messages, monkeypatch):
    files = settings_files(None, {FRONT: "front"})
    request = drive_jobs.extraction_request(_env(files), DRIVE, [f"drives/{DRIVE}.mcap"])
    assert {i["InputName"]: i["S3Input"]["LocalPath"] for i in request["ProcessingInputs"]}[SETTINGS_INPUT] == \
        SETTINGS_DIR
    arguments = request["AppSpecification"]["ContainerArguments"]
    assert arguments[arguments.index("--cameras-json") + 1] == f"@{SETTINGS_DIR}/cameras.json"
    assert not any(FRONT in a for a in arguments)  # the map itself never travels inline

    settings = _arrive(files, tmp_path / "settings")
    logs, manifest = tmp_path / "logs", tmp_path / "manifest" / "manifest.json"
    logs.mkdir()
    drive_logs.write_mcap(logs / f"{DRIVE.drive}.mcap", camera_messages)
    monkeypatch.setattr(job, "RESOURCE_CONFIG", tmp_path / "no-resourceconfig.json")
    mapping = {SETTINGS_DIR: str(settings), drive_jobs.LOGS_DIR: str(logs),
               f"{drive_jobs.MANIFEST_OUTPUT_DIR}/manifest.json": str(manifest)}
    assert job.main(_local(arguments[1:], mapping)) == 0
    keys = [o["Key"] for o in aws.list_objects_v2(Bucket=BUCKET, Prefix="incoming/")["Contents"]]
    assert len(keys) == 10 and all("/front/" in k for k in keys)  # the rear camera is not in the map
    assert set(json.loads(manifest.read_text())["cameras"]) == {"front"}


def test_the_builder_reads_the_custom_class_list_from_its_file(tmp_path):
    files = settings_files(CLASSES, None)
    assert len(json.dumps(CLASSES)) > 1000  # four times what one argument may hold
    request = drive_jobs.build_request(_env(files), DRIVE, f"s3://{BUCKET}/m")
    arguments = request["AppSpecification"]["ContainerArguments"]
    settings = _arrive(files, tmp_path / "settings")
    parsed = build._parser().parse_args(_local(arguments[2:], {SETTINGS_DIR: str(settings)}))
    from segcore.classes import scheme_from_arguments

    scheme = scheme_from_arguments(parsed)
    assert scheme.names == tuple(c["name"] for c in CLASSES)


def test_an_inline_camera_map_that_does_not_fit_is_refused_with_one_line():
    """Runs without the settings asset may still pass a small map inline; one beyond 256 characters is refused before
    anything is created, naming the limit (no ValidationException from SageMaker after the DRIVE item exists)."""
    cameras = {f"/sensors/vehicle/camera_{i}/image_rect_color/compressed": f"camera-{i}" for i in range(6)}
    env = dataclasses.replace(_env({}), settings_uri=None, extraction_arguments=None, cameras=cameras)
    with pytest.raises(RequestLimitError) as raised:
        drive_jobs.extraction_request(env, DRIVE, [f"drives/{DRIVE}.mcap"])
    message = str(raised.value)
    assert "\n" not in message and "the limit is 256" in message and "API_AppSpecification" in message
    small = dataclasses.replace(env, cameras={FRONT: "front"})
    assert "--cameras-json" in drive_jobs.extraction_request(small, DRIVE, ["drives/x.mcap"])[
        "AppSpecification"]["ContainerArguments"]


def test_a_step_without_settings_unpacks_nothing_and_two_zips_are_refused(tmp_path):
    entry = _entry()
    assert entry.unpack_settings(tmp_path / "absent") == []
    (tmp_path / "s").mkdir()
    for name in ("a.zip", "b.zip"):
        with zipfile.ZipFile(tmp_path / "s" / name, "w") as archive:
            archive.writestr("settings.json", "{}")
    with pytest.raises(SystemExit, match="expected one job settings zip"):
        entry.unpack_settings(tmp_path / "s")
    assert entry.SETTINGS_DIR == Path(SETTINGS_DIR)  # the stdlib-only copy agrees with the contract
