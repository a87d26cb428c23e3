"""Whole drives: the pure decisions and job requests (validated against botocore's SageMaker model with Stubber), the
launcher and completion handlers under moto + Stubber, and the extraction job's end-of-share update."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import boto3
import drives
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from roadseg_lambda import aws, drive_jobs

from contracts import drive_table as T
from contracts.drives import DriveId, DriveOutputs
from contracts.lambda_env import DrivesEnvironment, EnvironmentContractError
from contracts.layout import PROCESSING_ENTRYPOINT
from drivelogs import job

BUCKET = "roadseg-inference-test"
TABLE = "roadseg-test-drives"
DRIVE = DriveId("car-7", "2026-12-03")
ENV = DrivesEnvironment(
    drives_table=TABLE, inference_bucket=BUCKET, job_prefix="roadseg-test",
    extraction_role_arn="arn:aws:iam::123456789012:role/extract", builder_role_arn="arn:aws:iam::123456789012:role/b",
    processing_image="123456789012.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.6.0-cpu-py312",
    code_entry_uri="s3://assets/entry.py", code_package_uri="s3://assets/package.zip",
    drive_wheels_uri="s3://assets/wheels.zip", kms_key_arn="arn:aws:kms:us-east-1:123456789012:key/abc",
    extraction_max_instances=3, cameras={"/cam/front/compressed": "front"}, rate_hz=2.0)


def valid_for_botocore(request: dict[str, Any]) -> None:
    """Stubber validates the parameters against the CreateProcessingJob model (raises ParamValidationError)."""
    client = boto3.client("sagemaker")
    with Stubber(client) as stub:
        stub.add_response("create_processing_job", {"ProcessingJobArn": "arn:x"}, request)
        client.create_processing_job(**request)


# ------------------------------------------------------------------------------------------- decisions


DRIVE_IMAGE = {"item": "DRIVE", "drive_id": "car-7/d"}
COUNTER_IMAGE = {"item": "COUNTS#07", "drive_id": "car-7/d", "processed": 1}


@pytest.mark.parametrize(("trigger", "drive", "counters", "action"), [
    ({"item": "FRAME#incoming/x.jpg"}, None, {}, "ignore"),
    (DRIVE_IMAGE, {"status": "extracting"}, {"processed": 3}, "wait"),
    (COUNTER_IMAGE, {"status": "extracted", "extracted": 4}, {"processed": 3}, "wait"),
    (COUNTER_IMAGE, {"status": "extracted", "extracted": 4}, {"processed": 2, "quarantined": 1, "failed": 1}, "claim"),
    (DRIVE_IMAGE, {"status": "extracted", "extracted": 4}, {"processed": 2, "quarantined": 1, "failed": 1}, "claim"),
    (DRIVE_IMAGE, {"status": "extracted", "extracted": 0}, {}, "empty"),  # nothing to build
    (COUNTER_IMAGE, {"status": "extracted", "extracted": 1}, {"processed": 2}, "inconsistent"),
    ({**DRIVE_IMAGE, "status": "building"}, {"status": "building"}, {"processed": 1}, "launch"),
    (COUNTER_IMAGE, {"status": "building", "extracted": 1}, {"processed": 1}, "claimed_elsewhere"),
    (COUNTER_IMAGE, None, {"processed": 1}, "wait"),  # counted before the launcher's item exists
])
def test_decide_completion(trigger, drive, counters, action) -> None:
    assert drives.decide_completion(trigger, drive, counters).action == action


@pytest.mark.parametrize(("key", "drive"), [
    ("drives/car-7/2026-12-03.mcap", "car-7/2026-12-03"), ("drives/car-7/d1.bag", "car-7/d1"),
    ("drives/car-7/d2/metadata.yaml", "car-7/d2"), ("drives/car-7/d2/d2_0.mcap", None), ("drives/readme.txt", None)])
def test_decide_launch(key, drive) -> None:
    found = drives.decide_launch(key)
    assert (str(found) if found else None) == drive


# ------------------------------------------------------------------------------------------- requests


def test_single_log_extraction_request() -> None:
    request = drive_jobs.extraction_request(ENV, DRIVE, ["drives/car-7/2026-12-03.mcap"])
    valid_for_botocore(request)
    assert request["ProcessingJobName"] == drive_jobs.extraction_request(ENV, DRIVE, ["x.mcap"])["ProcessingJobName"]
    assert request["NetworkConfig"]["EnableNetworkIsolation"] is False
    assert request["ProcessingResources"]["ClusterConfig"]["InstanceCount"] == 1
    logs = request["ProcessingInputs"][-1]["S3Input"]
    assert logs["S3Uri"] == f"s3://{BUCKET}/drives/car-7/2026-12-03.mcap"
    # The entry script keeps its asset's hashed key name: the pipelines' entrypoint runs whichever .py arrived.
    assert request["AppSpecification"]["ContainerEntrypoint"] == list(PROCESSING_ENTRYPOINT)
    args = request["AppSpecification"]["ContainerArguments"]
    assert args[:4] == ["drive-job", "extract", "--drive-id", "car-7/2026-12-03"] and "--rate-hz" in args
    assert args[args.index("--manifest-key") + 1] == DriveOutputs(DRIVE).manifest


def test_ros2_directories_are_one_input_or_sharded_mcap_files() -> None:
    sqlite = ["drives/car-7/d/metadata.yaml", "drives/car-7/d/d_0.db3", "drives/car-7/d/d_1.db3"]
    request = drive_jobs.extraction_request(ENV, DriveId("car-7", "d"), sqlite)
    valid_for_botocore(request)
    assert request["ProcessingInputs"][-1]["S3Input"]["S3Uri"] == f"s3://{BUCKET}/drives/car-7/d/"
    mcaps = ["drives/car-7/d/metadata.yaml"] + [f"drives/car-7/d/d_{i}.mcap" for i in range(5)]
    assert drive_jobs.shard_keys(mcaps) == mcaps[1:]
    with pytest.raises(ValueError, match="manifest file"):
        drive_jobs.extraction_request(ENV, DriveId("car-7", "d"), mcaps)
    request = drive_jobs.extraction_request(ENV, DriveId("car-7", "d"), mcaps, shard_manifest_uri="s3://b/m")
    valid_for_botocore(request)
    logs = request["ProcessingInputs"][-1]["S3Input"]
    assert (logs["S3DataType"], logs["S3DataDistributionType"]) == ("ManifestFile", "ShardedByS3Key")
    assert request["ProcessingResources"]["ClusterConfig"]["InstanceCount"] == 3  # capped


def test_build_request_is_isolated_and_writes_drive_outputs_and_the_timeline() -> None:
    request = drive_jobs.build_request(ENV, DRIVE, f"s3://{BUCKET}/drive-outputs/car-7/2026-12-03/build.manifest")
    valid_for_botocore(request)
    assert request["NetworkConfig"] == {"EnableNetworkIsolation": True}
    assert request["ProcessingInputs"][-1]["S3Input"]["S3DataType"] == "ManifestFile"
    outputs = {o["OutputName"]: o["S3Output"]["S3Uri"] for o in request["ProcessingOutputConfig"]["Outputs"]}
    assert outputs == {"drive": f"s3://{BUCKET}/{DriveOutputs(DRIVE).prefix}",
                       "timeline": f"s3://{BUCKET}/drive-outputs/timeline/"}


def test_isolated_network_mode_places_both_jobs_in_the_vpc() -> None:
    env = dataclasses.replace(ENV, job_subnets=("subnet-0a1", "subnet-0b2"), job_security_groups=("sg-0c3",))
    assert DrivesEnvironment.from_env(env.to_env()) == env
    vpc = {"Subnets": ["subnet-0a1", "subnet-0b2"], "SecurityGroupIds": ["sg-0c3"]}
    extract = drive_jobs.extraction_request(env, DRIVE, ["drives/car-7/2026-12-03.mcap"])
    build = drive_jobs.build_request(env, DRIVE, f"s3://{BUCKET}/m")
    for request in (extract, build):
        valid_for_botocore(request)
        assert request["NetworkConfig"]["VpcConfig"] == vpc
    assert build["NetworkConfig"]["EnableNetworkIsolation"] is True
    with pytest.raises(EnvironmentContractError, match="JOB_SUBNETS"):
        DrivesEnvironment.from_env({**env.to_env(), "JOB_SUBNETS": "subnet 1"})


def test_input_manifest_lists_documents_not_quarantined_frames() -> None:
    keys = drive_jobs.build_input_keys(DRIVE, [{"result": "results/a.json", "mask": "async-output/a.out"},
                                               {"quarantine": "quarantine/incoming/b.jpg",
                                                "quarantine_reason": "quarantine/incoming/b.jpg.reason.json"}])
    assert drive_jobs.input_manifest(BUCKET, keys) == [
        {"prefix": f"s3://{BUCKET}/"}, "async-output/a.out", DriveOutputs(DRIVE).manifest,
        "quarantine/incoming/b.jpg.reason.json", "results/a.json"]


def test_partition_days_read_the_extractors_compact_stamps() -> None:
    manifest = {"cameras": {"front": {"extracted": 3, "first_stamp": "20261231T235959.900000000Z",
                                      "last_stamp": "20270101T000000.100000000Z"}}}
    assert [p["date"] for p in drive_jobs.timeline_partitions(DRIVE, manifest)] == ["2026-12-31", "2027-01-01"]


def test_timeline_partitions_span_each_cameras_days() -> None:
    manifest = {"cameras": {"front": {"extracted": 2, "first_stamp": "2026-12-03T23:59:00.000000000Z",
                                      "last_stamp": "2026-12-04T00:01:00.000000000Z"},
                            "rear": {"extracted": 0, "first_stamp": None, "last_stamp": None}}}
    assert drive_jobs.timeline_partitions(DRIVE, manifest) == [
        {"vehicle": "car-7", "camera": "front", "date": "2026-12-03"},
        {"vehicle": "car-7", "camera": "front", "date": "2026-12-04"}]


# ------------------------------------------------------------------------------------------- handlers


@pytest.fixture
def moto_aws(monkeypatch):
    from moto import mock_aws

    for name, value in ENV.to_env().items():
        monkeypatch.setenv(name, value)
    drives.environment.cache_clear()
    with mock_aws():
        s3, ddb = boto3.client("s3"), boto3.client("dynamodb")
        s3.create_bucket(Bucket=BUCKET)
        ddb.create_table(TableName=TABLE, BillingMode="PAY_PER_REQUEST",
                         **T.key_schema())
        aws.reset_clients()
        sagemaker = boto3.client("sagemaker")
        monkeypatch.setattr(aws, "sagemaker_client", lambda: sagemaker)
        yield {"s3": s3, "ddb": ddb, "sagemaker": sagemaker}
        aws.reset_clients()
    drives.environment.cache_clear()


def s3_event(key: str) -> dict:
    return {"Records": [{"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": BUCKET}, "object": {"key": key}}}]}


def drive_item(ddb) -> dict:
    return ddb.get_item(TableName=TABLE, Key={T.PARTITION_KEY: {"S": str(DRIVE)}, T.SORT_KEY: {"S": T.DRIVE_ITEM}})[
        "Item"]


def test_launch_creates_the_item_and_one_job_under_redelivery(moto_aws, context) -> None:
    stub = Stubber(moto_aws["sagemaker"])
    key = "drives/car-7/2026-12-03.mcap"
    expected = drive_jobs.extraction_request(ENV, DRIVE, [key])
    stub.add_response("create_processing_job", {"ProcessingJobArn": "arn:job"}, expected)
    stub.add_client_error("create_processing_job", "ResourceInUse", expected_params=expected)
    stub.add_response("describe_processing_job", described(expected),
                      {"ProcessingJobName": expected["ProcessingJobName"]})  # confirmed, not assumed
    with stub:
        assert drives.launch_handler(s3_event(key), context) == {"outcomes": ["launched"]}
        moto_aws["ddb"].update_item(TableName=TABLE, Key={T.PARTITION_KEY: {"S": str(DRIVE)},
                                                          T.SORT_KEY: {"S": T.DRIVE_ITEM}},
                                    UpdateExpression="ADD #p :one", ExpressionAttributeNames={"#p": "processed"},
                                    ExpressionAttributeValues={":one": {"N": "1"}})
        assert drives.launch_handler(s3_event(key), context) == {"outcomes": ["already_launched"]}
        assert drives.launch_handler(s3_event("drives/car-7/notes.txt"), context) == {"outcomes": ["ignored"]}
    item = drive_item(moto_aws["ddb"])
    assert item[T.STATUS] == {"S": T.EXTRACTING} and item["processed"] == {"N": "1"}  # not reset


def described(request: dict[str, Any], status: str = "InProgress") -> dict[str, Any]:
    """A DescribeProcessingJob answer for the job ``request`` created (valid for botocore's model)."""
    return {"ProcessingJobName": request["ProcessingJobName"], "ProcessingJobArn": "arn:job",
            "ProcessingResources": request["ProcessingResources"], "AppSpecification": request["AppSpecification"],
            "ProcessingJobStatus": status, "CreationTime": "2026-12-03T08:00:00Z"}


def test_a_failed_create_is_already_started_only_when_describe_finds_the_job(moto_aws) -> None:
    sagemaker = moto_aws["sagemaker"]
    request = drive_jobs.extraction_request(ENV, DRIVE, ["drives/car-7/2026-12-03.mcap"])
    name = {"ProcessingJobName": request["ProcessingJobName"]}
    stub = Stubber(sagemaker)
    # ResourceInUse for another reason (no such job): raised, not taken for "already started".
    stub.add_client_error("create_processing_job", "ResourceInUse", expected_params=request)
    stub.add_client_error("describe_processing_job", "ValidationException", "Could not find requested job",
                          expected_params=name)
    # A quota error: raised (the drive is not lost: the launcher's retries, then its DLQ).
    stub.add_client_error("create_processing_job", "ResourceLimitExceeded", expected_params=request)
    stub.add_client_error("describe_processing_job", "ValidationException", "Could not find requested job",
                          expected_params=name)
    # Any code, the job exists: already started.
    stub.add_client_error("create_processing_job", "ValidationException", "Job name must be unique",
                          expected_params=request)
    stub.add_response("describe_processing_job", described(request), name)
    with stub:
        with pytest.raises(ClientError, match="ResourceInUse"):
            drives.start_job(sagemaker, request)
        with pytest.raises(ClientError, match="ResourceLimitExceeded"):
            drives.start_job(sagemaker, request)
        assert drives.start_job(sagemaker, request) is False
        stub.assert_no_pending_responses()


def test_completion_claims_once_and_starts_the_builder(moto_aws, context) -> None:
    s3, ddb = moto_aws["s3"], moto_aws["ddb"]
    s3.put_object(Bucket=BUCKET, Key=DriveOutputs(DRIVE).manifest, Body=json.dumps({"cameras": {}}))
    ddb.put_item(TableName=TABLE, Item={T.PARTITION_KEY: {"S": str(DRIVE)}, T.SORT_KEY: {"S": T.DRIVE_ITEM},
                                        T.STATUS: {"S": "extracted"}, "extracted": {"N": "1"},
                                        "processed": {"N": "1"}})
    ddb.put_item(TableName=TABLE, Item={T.PARTITION_KEY: {"S": str(DRIVE)}, T.SORT_KEY: {"S": "FRAME#incoming/a.jpg"},
                                        T.DOCUMENTS: {"M": {"result": {"S": "results/a.json"}}}})
    image = {"dynamodb": {"NewImage": drive_item(ddb)}}
    manifest_uri = f"s3://{BUCKET}/{DriveOutputs(DRIVE).prefix}{drive_jobs.BUILD_INPUTS}"
    stub = Stubber(moto_aws["sagemaker"])
    stub.add_response("create_processing_job", {"ProcessingJobArn": "arn:job"},
                      drive_jobs.build_request(ENV, DRIVE, manifest_uri))
    with stub:
        assert drives.completion_handler({"Records": [image, image]}, context) == {
            "outcomes": ["built", "claimed_elsewhere"]}
    assert drive_item(ddb)[T.STATUS] == {"S": T.BUILDING}
    listed = json.loads(s3.get_object(Bucket=BUCKET, Key=manifest_uri.split("/", 3)[3])["Body"].read())
    assert listed == [{"prefix": f"s3://{BUCKET}/"}, DriveOutputs(DRIVE).manifest, "results/a.json"]


def test_a_drive_without_frames_is_marked_empty_and_not_built(moto_aws, context) -> None:
    ddb = moto_aws["ddb"]
    ddb.put_item(TableName=TABLE, Item={T.PARTITION_KEY: {"S": str(DRIVE)}, T.SORT_KEY: {"S": T.DRIVE_ITEM},
                                        T.STATUS: {"S": T.EXTRACTION_ENDED}, "extracted": {"N": "0"}})
    image = {"dynamodb": {"NewImage": drive_item(ddb)}}
    with Stubber(moto_aws["sagemaker"]) as stub:  # no CreateProcessingJob expected: the stub would refuse it
        assert drives.completion_handler({"Records": [image]}, context) == {"outcomes": ["empty"]}
        stub.assert_no_pending_responses()
    assert drive_item(ddb)[T.STATUS] == {"S": T.EMPTY} and T.BUILD_JOB not in drive_item(ddb)


def test_extraction_share_counts_once_per_host_and_ends_with_the_last(moto_aws) -> None:
    ddb = moto_aws["ddb"]
    ddb.put_item(TableName=TABLE, Item={T.PARTITION_KEY: {"S": str(DRIVE)}, T.SORT_KEY: {"S": T.DRIVE_ITEM},
                                        T.STATUS: {"S": T.EXTRACTING}})
    merged: list[list[str]] = []
    assert job.record_share(ddb, TABLE, str(DRIVE), "algo-1", 5, 2, before_end=merged.append) is False
    assert job.record_share(ddb, TABLE, str(DRIVE), "algo-1", 5, 2, before_end=merged.append) is False  # rerun
    assert merged == []  # not before every host has counted
    assert job.record_share(ddb, TABLE, str(DRIVE), "algo-2", 3, 2, before_end=merged.append) is True
    assert merged == [["algo-1", "algo-2"]]  # the drive's manifest is written before the extraction ends
    item = drive_item(ddb)
    assert item["extracted"] == {"N": "8"} and item[T.STATUS] == {"S": T.EXTRACTION_ENDED}
