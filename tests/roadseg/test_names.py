"""The roadseg command finds names in the deployed stacks' outputs (moto CloudFormation), prints stable JSON, and
keeps its exit codes, version and start-up time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from moto import mock_aws
from PIL import Image

REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/roadseg-test"
OUTPUTS = {
    "RoadsegDevData": {"DatasetsBucketName": "dev-datasets", "ArtifactsBucketName": "dev-artifacts",
                       "InferenceBucketName": "dev-inference"},
    "RoadsegDevTraining": {"TrainingPipelineName": "roadseg-dev-training", "TuningPipelineName": "roadseg-dev-tuning",
                           "ModelPackageGroupName": "roadseg-dev-segmentation"},
    "RoadsegDevInference": {"ServingStatus": "No approved model package yet: endpoints are not deployed."},
}


@pytest.fixture
def aws(monkeypatch, tmp_path):
    for key, value in {"AWS_DEFAULT_REGION": REGION, "AWS_REGION": REGION,
                       "AWS_CONFIG_FILE": str(tmp_path / "no-config"),
                       "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-credentials")}.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        yield


def _deploy(stacks: dict[str, dict[str, str]]) -> None:
    cfn = boto3.client("cloudformation", region_name=REGION)
    for name, outputs in stacks.items():
        template = {"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
                    "Outputs": {key: {"Value": value} for key, value in outputs.items()}}
        cfn.create_stack(StackName=name, TemplateBody=json.dumps(template))


@pytest.fixture
def deployed(aws):
    _deploy(OUTPUTS)
    s3 = boto3.client("s3", region_name=REGION)
    for bucket in ("dev-datasets", "dev-inference"):
        s3.create_bucket(Bucket=bucket)
    sm = boto3.client("sagemaker", region_name=REGION)
    definition = json.dumps({"Version": "2020-12-01", "Steps": [],
                             "Parameters": [{"Name": "Epochs", "Type": "Integer", "DefaultValue": 10},
                                            {"Name": "InputDataS3Uri", "Type": "String"}]})
    for name in ("roadseg-dev-training", "roadseg-dev-tuning"):
        sm.create_pipeline(PipelineName=name, PipelineDefinition=definition, RoleArn=ROLE,
                           ClientRequestToken=name.ljust(32, "x"))
    sm.create_model_package_group(ModelPackageGroupName="roadseg-dev-segmentation")
    return s3, sm




def test_upload_finds_the_datasets_bucket_in_the_data_stack(run, deployed, tmp_path):
    s3, _ = deployed
    (tmp_path / "cityscapes").mkdir()
    (tmp_path / "cityscapes" / "a.txt").write_text("frame")
    rc, out, _ = run("-q", "data", "upload", tmp_path / "cityscapes")
    assert rc == 0 and "s3://dev-datasets/raw/cityscapes/" in out
    assert s3.get_object(Bucket="dev-datasets", Key="raw/cityscapes/a.txt")["Body"].read() == b"frame"


def test_pipeline_start_and_list_use_the_training_stacks_pipelines(run, deployed):
    rc, out, _ = run("pipeline", "start", "--param", "Epochs=3", "--json")
    assert rc == 0
    started = json.loads(out)
    assert set(started) == {"execution_arn", "status"} and "pipeline/roadseg-dev-training/" in started["execution_arn"]
    rc, out, _ = run("pipeline", "start", "--pipeline", "tuning", "--dataset", "cityscapes")
    assert rc == 0 and "pipeline/roadseg-dev-tuning/" in out
    params = sm_params(out.strip())
    assert params == {"InputDataS3Uri": "s3://dev-datasets/raw/cityscapes/"}
    rc, out, _ = run("pipeline", "list", "--json")
    rows = json.loads(out)
    assert rc == 0 and {r["pipeline"] for r in rows} == {"roadseg-dev-training", "roadseg-dev-tuning"}
    assert all(set(r) == {"pipeline", "execution_arn", "status", "started"} for r in rows)


def sm_params(arn: str) -> dict[str, str]:
    listed = boto3.client("sagemaker", region_name=REGION).list_pipeline_parameters_for_execution(
        PipelineExecutionArn=arn)["PipelineParameters"]
    return {p["Name"]: p["Value"] for p in listed}


def test_model_commands_use_the_group_and_accept_version_numbers(run, deployed):
    _, sm = deployed
    arn = sm.create_model_package(
        ModelPackageGroupName="roadseg-dev-segmentation", ModelApprovalStatus="PendingManualApproval",
        InferenceSpecification={"Containers": [{"Image": "123.dkr.ecr.us-east-1.amazonaws.com/ss:1",
                                                "ModelDataUrl": "s3://dev-artifacts/model.tar.gz"}],
                                "SupportedContentTypes": ["image/jpeg"], "SupportedResponseMIMETypes": ["image/png"]},
    )["ModelPackageArn"]
    rc, out, _ = run("model", "list", "--json")
    listed = json.loads(out)
    assert rc == 0 and [p["arn"] for p in listed] == [arn]
    assert set(listed[0]) == {"version", "approval", "status", "created", "metrics_uri", "arn"}
    rc, out, _ = run("model", "approve", "1", "--note", "floors met")
    assert rc == 0 and "Approved" in out
    rc, out, _ = run("model", "show", "1", "--json")
    shown = json.loads(out)
    assert rc == 0 and shown["approval"] == "Approved" and shown["approval_note"] == "floors met"
    assert shown["model_data_url"] == "s3://dev-artifacts/model.tar.gz"


def test_env_outputs_lists_every_stack(run, deployed):
    rc, out, _ = run("env", "outputs", "--json")
    assert rc == 0 and json.loads(out) == OUTPUTS


def test_endpoint_commands_explain_that_no_model_is_approved(run, deployed, tmp_path):
    image = tmp_path / "f.jpg"
    Image.new("RGB", (32, 16), (90, 90, 90)).save(image)  # a frame the ingest preprocessing accepts
    rc, _, err = run("endpoint", "invoke", image, "--out-dir", tmp_path)
    assert rc == 2
    assert "RoadsegDevInference has no output RealtimeEndpointName: no model package is approved yet" in err
    rc, out, _ = run("endpoint", "status", "--json")
    assert rc == 0 and [r["status"] for r in json.loads(out)] == ["not deployed", "not deployed"]


def test_an_environment_that_is_not_deployed_is_a_clear_error(run, aws):
    rc, _, err = run("model", "list")
    assert rc == 2
    assert "stack RoadsegDevTraining of environment 'dev' is not deployed in us-east-1" in err
    assert "--group" in err or "pass the name explicitly" in err


def test_unknown_environment_and_bad_usage_exit_2(run, aws):
    rc, _, err = run("--env", "nowhere", "model", "list")
    assert rc == 2 and "no configuration for environment 'nowhere'" in err
    rc, _, err = run("model", "frobnicate")
    assert rc == 2 and "No such command" in err


def test_env_costs_prints_the_readme_table_and_json(run):
    rc, out, _ = run("env", "costs", "dev")
    assert rc == 0 and "| dev | real-time | ml.g4dn.xlarge |" in out
    rc, out, _ = run("env", "costs", "dev", "--json")
    rows = json.loads(out)
    assert rc == 0 and [r["endpoint"] for r in rows] == ["real-time", "async"]


def test_every_command_shows_an_example_in_its_help(run):
    for group, commands in {"data": ["prepare", "upload"], "pipeline": ["start", "status", "list"],
                            "model": ["list", "show", "approve", "reject"],
                            "endpoint": ["invoke", "submit", "status"],
                            "env": ["preflight", "outputs", "costs"]}.items():
        for command in commands:
            rc, out, _ = run(group, command, "--help")
            assert rc == 0 and "Example:" in out and "roadseg " in out.split("Example:")[1], (group, command)


def test_console_script_reports_its_version():
    script = Path(sys.executable).parent / "roadseg"
    assert script.is_file(), "make synth installs the roadseg console script into .venv"
    version = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=60)
    assert version.returncode == 0 and version.stdout.startswith("roadseg, version ")


def test_help_imports_no_heavy_library():
    """Start-up stays fast because --help loads neither the AWS SDK nor the CDK, numpy or Pillow."""
    probe = ("import sys; from roadseg.cli import main; main(['--help']); "
             "print(sorted(m for m in ('boto3', 'botocore', 'aws_cdk', 'numpy', 'PIL', 'pydantic') "
             "if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip().endswith("[]"), result.stdout[-300:]
