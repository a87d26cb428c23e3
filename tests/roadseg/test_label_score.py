"""``roadseg label score`` against moto: the stack's LabelScoringJob output, the serving package's edge bundle, the
pool's frames in the inference bucket -> the manifest files and the CreateProcessingJob that SageMaker receives; with
--wait the job's summary and a local copy of the scores; bad input is one line and exit code 2."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import boto3
import pytest
from moto import mock_aws

from contracts import naming
from labelling import scoring_job
from labelling.scoring import SCORES_FILE, SUMMARY_FILE
from roadseg.commands import label_score

REGION = "us-east-1"
INFERENCE, ARTIFACTS = "dev-inference", "dev-artifacts"
BUNDLE = f"s3://{ARTIFACTS}/pipelines/roadseg-dev-training/exec1/bundle/"
ROLE = "arn:aws:iam::123456789012:role/RoadsegDevInference-LabelScoringRole"
DATA_KEY = "arn:aws:kms:us-east-1:123456789012:key/k"
# The value of the SSM parameter the inference stack's LabelScoringJob output names: the bucket and the key are the
# data stack's outputs (cfn-lint W6001).
SETTINGS_PARAMETER = naming.label_scoring_settings_parameter("roadseg-dev")
SETTINGS = {"prefix": "roadseg-dev", "role_arn": ROLE,
            "image_uri": "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.6.0-cpu-py312",
            "code_entry_uri": "s3://cdk-assets/entry.py", "code_package_uri": "s3://cdk-assets/package.zip",
            "wheels_uri": "s3://cdk-assets/wheels.zip",
            "volume_size_gb": 30, "max_runtime_seconds": 3600, "subnets": "", "security_group_ids": ""}
KEYS = ["incoming/car-1/d1/front/001.jpg", "incoming/car-1/d1/front/002.jpg", "incoming/car-2/d2/rear/003.jpg"]
NOW = datetime(2026, 12, 8, 4, 30, 0, tzinfo=UTC)


@pytest.fixture
def deployed(offline_aws_env, monkeypatch):
    class FixedClock(datetime):
        @classmethod
        def now(cls, tz=None):
            return NOW

    monkeypatch.setattr(label_score, "datetime", FixedClock)
    with mock_aws():
        cfn = boto3.client("cloudformation", region_name=REGION)
        outputs = {"RoadsegDevData": {naming.INFERENCE_BUCKET_NAME: INFERENCE, naming.ARTIFACTS_BUCKET_NAME: ARTIFACTS,
                                      naming.DATA_KEY_ARN: DATA_KEY},
                   "RoadsegDevInference": {naming.LABEL_SCORING_JOB: SETTINGS_PARAMETER,
                                           naming.LABEL_SCORING_JOB_PREFIX: "roadseg-dev-label-score-"}}
        for name, values in outputs.items():
            _deploy(cfn, name, values)
        boto3.client("ssm", region_name=REGION).put_parameter(Name=SETTINGS_PARAMETER, Value=json.dumps(SETTINGS),
                                                              Type="String")
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=INFERENCE)
        for key in KEYS[:2]:  # the third frame of the pool is not in the bucket
            s3.put_object(Bucket=INFERENCE, Key=key, Body=b"jpeg")
        yield s3


def _deploy(cfn, name: str, outputs: dict[str, str]) -> None:
    template = {"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
                "Outputs": {key: {"Value": value} for key, value in outputs.items()}}
    cfn.create_stack(StackName=name, TemplateBody=json.dumps(template))


def _approve(bundle: str | None = BUNDLE) -> str:
    sm = boto3.client("sagemaker", region_name=REGION)
    sm.create_model_package_group(ModelPackageGroupName="roadseg-dev-segmentation")
    extra = {"CustomerMetadataProperties": {"EdgeBundle": bundle}} if bundle else {}
    arn = sm.create_model_package(
        ModelPackageGroupName="roadseg-dev-segmentation", ModelApprovalStatus="Approved",
        InferenceSpecification={"Containers": [{"Image": "1.dkr.ecr.us-east-1.amazonaws.com/ss:1"}],
                                "SupportedContentTypes": ["image/jpeg"], "SupportedResponseMIMETypes": ["image/png"]},
        **extra)["ModelPackageArn"]
    boto3.client("ssm", region_name=REGION).put_parameter(
        Name=naming.serving_package_parameter("roadseg-dev"), Value=arn, Type="String")
    return arn


def _pool(tmp_path, keys=KEYS):
    path = tmp_path / "pool.txt"
    path.write_text("".join(k + "\n" for k in keys))
    return path


def _job_name() -> str:
    return scoring_job.job_name("roadseg-dev", KEYS, BUNDLE, NOW)


def test_score_starts_the_job_with_the_serving_bundle_and_the_frames_in_the_bucket(deployed, run, tmp_path):
    _approve()
    rc, out, err = run("label", "score", "--pool", _pool(tmp_path), "--json")
    assert rc == 0, err
    document = json.loads(out)
    name = _job_name()
    assert document["job_name"] == name and document["bundle"] == BUNDLE
    assert (document["pool"], document["sent"], document["absent"]) == (3, 2, 1)  # pool = sent + absent
    assert document["absent_keys"] == [KEYS[2]] and "1 of 3 pool frames are not in" in err

    def read(file):
        return deployed.get_object(Bucket=INFERENCE, Key=scoring_job.input_key(name, file))["Body"].read()

    assert read("pool.txt").decode().split() == KEYS[:2]
    assert json.loads(read("frames.manifest")) == [{"prefix": f"s3://{INFERENCE}/incoming/"},
                                                   "car-1/d1/front/001.jpg", "car-1/d1/front/002.jpg"]
    assert json.loads(read("bundle.manifest"))[0] == {"prefix": BUNDLE}
    job = boto3.client("sagemaker", region_name=REGION).describe_processing_job(ProcessingJobName=name)
    assert job["RoleArn"] == ROLE
    assert job["AppSpecification"]["ContainerArguments"][0] == "score"
    inputs = {i["InputName"]: i["S3Input"]["S3Uri"] for i in job["ProcessingInputs"]}
    assert inputs["frames"] == f"s3://{INFERENCE}/label-scores/{name}/input/frames.manifest"
    assert inputs["bundle"] == f"s3://{INFERENCE}/label-scores/{name}/input/bundle.manifest"
    assert job["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"] == \
        f"s3://{INFERENCE}/label-scores/{name}/output/"
    # The bucket and the key came from the data stack's outputs, not from LabelScoringJob.
    assert job["ProcessingOutputConfig"]["KmsKeyId"] == DATA_KEY


def test_wait_prints_the_counts_and_copies_the_scores(deployed, run, tmp_path):
    _approve()
    prefix = scoring_job.output_prefix(_job_name())
    summary = {"pool": 2, "scored": 1, "refused": {"too_small": 1}, "missing": 0, "provider": "CPUExecutionProvider",
               "frames_per_second": 0.3, "seconds": 6.6}
    deployed.put_object(Bucket=INFERENCE, Key=prefix + SUMMARY_FILE, Body=json.dumps(summary).encode())
    deployed.put_object(Bucket=INFERENCE, Key=prefix + SCORES_FILE, Body=b"PAR1 parquet bytes")
    rc, out, err = run("label", "score", "--pool", _pool(tmp_path), "--wait", "--output", tmp_path / "scores",
                       "--poll-interval", "0")
    assert rc == 0, err
    assert "Completed: scored 1 of 2 frames, refused 1, missing 0" in out
    assert (tmp_path / "scores" / SCORES_FILE).read_bytes() == b"PAR1 parquet bytes"
    assert json.loads((tmp_path / "scores" / SUMMARY_FILE).read_text()) == summary


def test_an_explicit_bundle_needs_no_approved_package(deployed, run, tmp_path):
    other = f"s3://{ARTIFACTS}/pipelines/roadseg-dev-tuning/exec9/bundle"
    rc, out, err = run("label", "score", "--pool", _pool(tmp_path), "--bundle", other, "--json")
    assert rc == 0, err
    assert json.loads(out)["bundle"] == other + "/"


@pytest.mark.parametrize(("setup", "argv", "message"), [
    (None, (), "no model package is approved for serving yet"),
    ("no-bundle", (), "records no EdgeBundle"),
    ("approved", ("--instance-type", "ml.g4dn.xlarge"), "ships no GPU scoring image"),
    ("approved", ("--output", "scores/"), "--output needs --wait"),
    ("approved", ("--bundle", "artifacts/bundle/"), "is not an s3://bucket/prefix/"),
    ("approved", ("--bundle", "s3://elsewhere/pipelines/p/e/bundle/"), "not an edge bundle of this environment"),
    ("approved", ("--bundle", f"s3://{ARTIFACTS}/models/bundle/"), "not an edge bundle of this environment"),
])
def test_bad_input_is_one_line_and_exit_code_2(deployed, run, tmp_path, setup, argv, message):
    if setup:
        _approve(None if setup == "no-bundle" else BUNDLE)
    rc, out, err = run("label", "score", "--pool", _pool(tmp_path), *argv)
    assert rc == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1
    assert boto3.client("sagemaker", region_name=REGION).list_processing_jobs()["ProcessingJobSummaries"] == []


def test_a_pool_of_other_keys_or_no_frames_in_the_bucket_is_refused(deployed, run, tmp_path):
    _approve()
    rc, _, err = run("label", "score", "--pool", _pool(tmp_path, ["results/car-1/d1/front/001.json"]))
    assert rc == 2 and "not frames under incoming/" in err
    rc, _, err = run("label", "score", "--pool", _pool(tmp_path, ["incoming/car-9/d9/front/1.jpg"]))
    assert rc == 2 and "none of the 1 pool frames is in" in err


def test_a_data_stack_without_the_data_key_output_is_one_line_and_exit_code_2(deployed, run, tmp_path):
    """A data stack deployed before the plain DataKeyArn output existed: redeploy it (nothing is started)."""
    _approve()
    cfn = boto3.client("cloudformation", region_name=REGION)
    cfn.delete_stack(StackName="RoadsegDevData")
    _deploy(cfn, "RoadsegDevData", {naming.INFERENCE_BUCKET_NAME: INFERENCE, naming.ARTIFACTS_BUCKET_NAME: ARTIFACTS})
    rc, _, err = run("label", "score", "--pool", _pool(tmp_path))
    assert rc == 2 and f"has no output {naming.DATA_KEY_ARN}" in err, err
    assert len(err.strip().splitlines()) == 1
    assert boto3.client("sagemaker", region_name=REGION).list_processing_jobs()["ProcessingJobSummaries"] == []


def test_a_missing_settings_parameter_is_one_line_and_exit_code_2(deployed, run, tmp_path):
    """The parameter the LabelScoringJob output names is gone (or the stack predates it): redeploy the inference
    stack; nothing is uploaded or started."""
    _approve()
    boto3.client("ssm", region_name=REGION).delete_parameter(Name=SETTINGS_PARAMETER)
    rc, _, err = run("label", "score", "--pool", _pool(tmp_path))
    assert rc == 2 and f"SSM parameter {SETTINGS_PARAMETER} (output LabelScoringJob) does not exist" in err, err
    assert len(err.strip().splitlines()) == 1
    assert deployed.list_objects_v2(Bucket=INFERENCE, Prefix="label-scores/")["KeyCount"] == 0
    assert boto3.client("sagemaker", region_name=REGION).list_processing_jobs()["ProcessingJobSummaries"] == []


def test_settings_that_are_not_json_name_the_parameter(deployed, run, tmp_path):
    _approve()
    boto3.client("ssm", region_name=REGION).put_parameter(Name=SETTINGS_PARAMETER, Value="not json", Type="String",
                                                          Overwrite=True)
    rc, _, err = run("label", "score", "--pool", _pool(tmp_path))
    assert rc == 2 and f"SSM parameter {SETTINGS_PARAMETER} (output LabelScoringJob) is not JSON" in err, err
    assert len(err.strip().splitlines()) == 1
