"""drivelogs/job.py as the extraction job runs it: the very arguments of the launcher's CreateProcessingJob
request (roadseg_lambda.drive_jobs), the log in the job's input folder, moto for S3 and the drives table."""

from __future__ import annotations

import dataclasses
import json

import boto3
import pytest
from moto import mock_aws
from roadseg_lambda import drive_jobs

from contracts import drive_table as T
from contracts.drives import DRIVE_ID_METADATA, DriveId, DriveOutputs
from contracts.lambda_env import DrivesEnvironment
from drivelogs import job

BUCKET, TABLE = "roadseg-dev-inference", "roadseg-dev-drives"
DRIVE = DriveId("car-7", "2026-12-03")


@pytest.fixture
def aws(monkeypatch):
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        dynamodb = boto3.client("dynamodb")
        dynamodb.create_table(
            TableName=TABLE, BillingMode="PAY_PER_REQUEST",
            **T.key_schema())
        dynamodb.put_item(TableName=TABLE, Item={T.PARTITION_KEY: {"S": str(DRIVE)}, T.SORT_KEY: {"S": T.DRIVE_ITEM},
                                                 T.STATUS: {"S": T.EXTRACTING}})
        yield s3, dynamodb


def _env() -> DrivesEnvironment:
    return DrivesEnvironment(
        drives_table=TABLE, inference_bucket=BUCKET, job_prefix="roadseg-dev",
        extraction_role_arn="arn:aws:iam::123456789012:role/e", builder_role_arn="arn:aws:iam::123456789012:role/b",
        processing_image="img", code_entry_uri="s3://a/e.py", code_package_uri="s3://a/p.zip",
        drive_wheels_uri="s3://a/w.zip", kms_key_arn="arn:aws:kms:us-east-1:123456789012:key/k")


def test_the_launchers_request_runs_the_extraction_and_ends_it(aws, tmp_path, drive_logs, camera_messages, monkeypatch):
    s3, dynamodb = aws
    request = drive_jobs.extraction_request(_env(), DRIVE, [f"drives/{DRIVE}.mcap"])
    arguments = request["AppSpecification"]["ContainerArguments"]
    assert arguments[0] == "drive-job"  # processing_entry's module; job.main gets the rest
    # The job's folders, here: the log where SageMaker puts the input, the manifest where the output is collected.
    log_dir, manifest = tmp_path / "logs", tmp_path / "manifest" / "manifest.json"
    log_dir.mkdir()
    drive_logs.write_mcap(log_dir / f"{DRIVE.drive}.mcap", camera_messages)
    local = {drive_jobs.LOGS_DIR: str(log_dir), f"{drive_jobs.MANIFEST_OUTPUT_DIR}/manifest.json": str(manifest)}
    monkeypatch.setattr(job, "RESOURCE_CONFIG", tmp_path / "no-resourceconfig.json")  # one instance: algo-1
    assert job.main([local.get(a, a) for a in arguments[1:]]) == 0

    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="incoming/")["Contents"]]
    assert len(keys) == 20
    assert s3.head_object(Bucket=BUCKET, Key=keys[0])["Metadata"] == {DRIVE_ID_METADATA: str(DRIVE)}
    document = json.loads(s3.get_object(Bucket=BUCKET, Key=DriveOutputs(DRIVE).manifest)["Body"].read())
    assert document["totals"]["extracted"] == 20
    item = dynamodb.get_item(TableName=TABLE, Key={T.PARTITION_KEY: {"S": str(DRIVE)},
                                                   T.SORT_KEY: {"S": T.DRIVE_ITEM}})["Item"]
    assert (item[T.EXTRACTED]["N"], item[T.STATUS]["S"]) == ("20", T.EXTRACTION_ENDED)

    # The step run again (a retried job): nothing is counted twice, the drive stays ended.
    assert job.main([local.get(a, a) for a in arguments[1:]]) == 0
    item = dynamodb.get_item(TableName=TABLE, Key={T.PARTITION_KEY: {"S": str(DRIVE)},
                                                   T.SORT_KEY: {"S": T.DRIVE_ITEM}})["Item"]
    assert item[T.EXTRACTED]["N"] == "20"
    again = json.loads(s3.get_object(Bucket=BUCKET, Key=DriveOutputs(DRIVE).manifest)["Body"].read())
    assert again["totals"]["extracted"] == 20  # the first run's share, not the retry's "key_exists" one


def test_the_completion_functions_request_parses_as_the_builders_command_line():
    from drivelogs import build
    from envconfig.config import SceneThresholds

    thresholds = SceneThresholds(collapse_below=0.25, min_frames=3, touch_px=2)
    env = dataclasses.replace(_env(), builder_arguments={"--scheme": "cityscapes", **thresholds.builder_arguments()})
    arguments = drive_jobs.build_request(env, DRIVE, f"s3://{BUCKET}/m")["AppSpecification"]["ContainerArguments"]
    assert arguments[:2] == ["drive-job", "build"]
    parsed = build._parser().parse_args(arguments[2:])
    assert (parsed.drive_id, parsed.scheme, parsed.collapse_below, parsed.min_frames, parsed.touch_px) == (
        str(DRIVE), "cityscapes", 0.25, 3, 2)
    assert str(parsed.manifest).endswith(DriveOutputs(DRIVE).manifest)
