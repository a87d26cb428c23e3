"""`roadseg pipeline start` fills the incumbent the gate compares with (issue 22 s.5): the latest Approved model package
of the group, or nothing for a first model; against moto's SageMaker."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from contracts import naming
from roadseg.commands.pipeline import MAX_INCUMBENT_MODEL_URI, incumbent_parameters
from roadseg.session import UserError

REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/roadseg-test"
GROUP = naming.model_package_group_name("roadseg-dev")  # config/dev.yaml's prefix
IMAGE = "811284229777.dkr.ecr.us-east-1.amazonaws.com/semantic-segmentation:1"


@pytest.fixture
def sm(offline_aws_env):
    with mock_aws():
        yield boto3.client("sagemaker", region_name=REGION)


@pytest.fixture
def pipeline(sm):
    definition = {"Version": "2020-12-01", "Steps": [], "Parameters": [
        {"Name": "Epochs", "Type": "Integer", "DefaultValue": 10},
        {"Name": "IncumbentModelS3Uri", "Type": "String", "DefaultValue": ""},
        {"Name": "IncumbentModelPackageArn", "Type": "String", "DefaultValue": ""}]}
    sm.create_pipeline(PipelineName="roadseg-dev-training", PipelineDefinition=json.dumps(definition),
                       RoleArn=ROLE, ClientRequestToken="t" * 32)
    return "roadseg-dev-training"


def _register(sm, model_data: str, status: str) -> str:
    return sm.create_model_package(
        ModelPackageGroupName=GROUP, ModelApprovalStatus=status,
        InferenceSpecification={"Containers": [{"Image": IMAGE, "ModelDataUrl": model_data}],
                                "SupportedContentTypes": ["image/jpeg"], "SupportedResponseMIMETypes": ["image/png"]},
    )["ModelPackageArn"]


def _started(sm, out: str) -> dict[str, str]:
    arn = out.strip().splitlines()[0]
    listed = sm.list_pipeline_parameters_for_execution(PipelineExecutionArn=arn)["PipelineParameters"]
    return {p["Name"]: p["Value"] for p in listed}


def test_a_first_model_is_started_without_an_incumbent(run, sm, pipeline):
    rc, out, err = run("pipeline", "start", "--pipeline", pipeline)
    assert rc == 0, err
    assert _started(sm, out) == {"IncumbentModelS3Uri": "", "IncumbentModelPackageArn": ""}
    assert f"no Approved model package in {GROUP}: a first model, gated by the floors alone" in err


def test_the_latest_approved_package_is_the_incumbent(run, sm, pipeline):
    sm.create_model_package_group(ModelPackageGroupName=GROUP)
    _register(sm, "s3://artifacts/pipelines/p/old/model.tar.gz", "Approved")
    approved = _register(sm, "s3://artifacts/pipelines/p/new/model.tar.gz", "Approved")
    _register(sm, "s3://artifacts/pipelines/p/pending/model.tar.gz", "PendingManualApproval")
    _register(sm, "s3://artifacts/pipelines/p/rejected/model.tar.gz", "Rejected")
    rc, out, err = run("pipeline", "start", "--pipeline", pipeline, "--param", "Epochs=3")
    assert rc == 0, err
    assert _started(sm, out) == {"Epochs": "3", "IncumbentModelS3Uri": "s3://artifacts/pipelines/p/new/model.tar.gz",
                                 "IncumbentModelPackageArn": approved}
    assert f"incumbent: {GROUP} version 2 ({approved})" in err


def test_an_explicit_incumbent_is_not_looked_up(run, sm, pipeline):
    sm.create_model_package_group(ModelPackageGroupName=GROUP)
    _register(sm, "s3://artifacts/pipelines/p/new/model.tar.gz", "Approved")
    rc, out, err = run("pipeline", "start", "--pipeline", pipeline, "--param", "IncumbentModelS3Uri=")
    assert rc == 0, err
    assert _started(sm, out) == {"IncumbentModelS3Uri": ""}  # gated as a first model, on request
    assert "incumbent" not in err


def test_incumbent_parameters_refuse_a_package_that_cannot_be_run():
    with pytest.raises(UserError, match="names no ModelDataUrl"):
        incumbent_parameters({"ModelPackageArn": "arn:x", "InferenceSpecification": {"Containers": [{}]}})
    long = "s3://b/" + "k" * MAX_INCUMBENT_MODEL_URI
    with pytest.raises(UserError, match=f"is {len(long)} characters, more than the {MAX_INCUMBENT_MODEL_URI}"):
        incumbent_parameters({"ModelPackageArn": "arn:x",
                              "InferenceSpecification": {"Containers": [{"ModelDataUrl": long}]}})
    assert incumbent_parameters(None) == [{"Name": "IncumbentModelS3Uri", "Value": ""},
                                          {"Name": "IncumbentModelPackageArn", "Value": ""}]
