"""contracts.service_limits: the limit values agree with botocore's SageMaker model (which carries the API reference's
maximums but does not enforce them on the client), and each checker names what breaks a limit."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.stub import Stubber

from contracts import service_limits as L
from contracts.job_settings import CAMERAS_FILE, CLASSES_FILE, settings_files


def _shape(operation: str, *path: str):
    shape = boto3.client("sagemaker").meta.service_model.operation_model(operation).input_shape
    for part in path:
        shape = shape.member if part == "[]" else shape.key if part == "{key}" else \
            shape.value if part == "{value}" else shape.members[part]
    return shape


@pytest.mark.parametrize(("value", "operation", "path"), [
    (L.MAX_CONTAINER_ARGUMENTS, "CreateProcessingJob", ("AppSpecification", "ContainerArguments")),
    (L.MAX_CONTAINER_ARGUMENT_LENGTH, "CreateProcessingJob", ("AppSpecification", "ContainerArguments", "[]")),
    (L.MAX_PROCESSING_ENVIRONMENT_ENTRIES, "CreateProcessingJob", ("Environment",)),
    (L.MAX_PROCESSING_ENVIRONMENT_KEY, "CreateProcessingJob", ("Environment", "{key}")),
    (L.MAX_PROCESSING_ENVIRONMENT_VALUE, "CreateProcessingJob", ("Environment", "{value}")),
    (L.MAX_PROCESSING_INPUTS, "CreateProcessingJob", ("ProcessingInputs",)),
    (L.MAX_PROCESSING_OUTPUTS, "CreateProcessingJob", ("ProcessingOutputConfig", "Outputs")),
    (L.MAX_TRAINING_ENVIRONMENT_VALUE, "CreateTrainingJob", ("Environment", "{value}")),
    (L.MAX_HYPERPARAMETER_VALUE, "CreateTrainingJob", ("HyperParameters", "{value}")),
    (L.MAX_TRANSFORM_ENVIRONMENT_ENTRIES, "CreateTransformJob", ("Environment",)),
    (L.MAX_TAGS, "CreateProcessingJob", ("Tags",)),
    (L.MAX_DATA_INPUT_CONFIG_LENGTH, "CreateCompilationJob", ("InputConfig", "DataInputConfig")),
    (L.NAME_LIMITS["ProcessingJobName"][0], "CreateProcessingJob", ("ProcessingJobName",)),
    (L.NAME_LIMITS["CompilationJobName"][0], "CreateCompilationJob", ("CompilationJobName",)),
    (L.NAME_LIMITS["HyperParameterTuningJobName"][0], "CreateHyperParameterTuningJob",
     ("HyperParameterTuningJobName",)),
    (L.NAME_LIMITS["PipelineName"][0], "CreatePipeline", ("PipelineName",)),
    (L.NAME_LIMITS["ModelPackageGroupName"][0], "CreateModelPackageGroup", ("ModelPackageGroupName",)),
])
def test_limits_are_the_api_references(value, operation, path):
    assert _shape(operation, *path).metadata["max"] == value


def _request(arguments: list[str], **extra) -> dict:
    return {"ProcessingJobName": "roadseg-dev-drive-extract-0123", "RoleArn": "arn:aws:iam::123456789012:role/r",
            "AppSpecification": {"ImageUri": "img", "ContainerArguments": arguments},
            "ProcessingResources": {"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.xlarge",
                                                      "VolumeSizeInGB": 30}}, **extra}


def test_botocore_does_not_check_maximums_so_this_module_must():
    """The reason for the module: Stubber (botocore's client-side validation) accepts an argument over 256."""
    request = _request(["--classes-json", "x" * 300])
    client = boto3.client("sagemaker", region_name="us-east-1")
    with Stubber(client) as stub:
        stub.add_response("create_processing_job", {"ProcessingJobArn": "arn:x"}, request)
        client.create_processing_job(**request)
    (problem,) = L.check_processing_request(request)
    assert "ContainerArguments[1]" in problem and "300 characters" in problem and L.APP_SPECIFICATION_DOC in problem


def test_processing_request_checks():
    assert L.check_processing_request(_request(["a"] * 100)) == []
    problems = L.check_processing_request(_request(
        ["a"] * 101, ProcessingJobName="x" * 64, Environment={"OK": "v" * 256, "TOO_LONG": "v" * 257, "1bad": ""},
        ProcessingInputs=[{"InputName": f"i{i}", "S3Input": {"S3Uri": "s3://b/" + "k" * 1020, "LocalPath": "/x"}}
                          for i in range(11)],
        Tags=[{"Key": "k", "Value": "v" * 257}]))
    text = "\n".join(problems)
    for fragment in ("101 items", "ProcessingJobName", "Environment TOO_LONG has 257", "'1bad'", "11 ProcessingInputs",
                     "S3Uri has 1027", "tag k has a value of 257"):
        assert fragment in text, fragment
    assert "OK" not in text.replace("TOO_LONG", "")


def test_compilation_request_checks():
    good = {"CompilationJobName": "roadseg-dev-neo-v1-ml-g4dn", "InputConfig": {
        "S3Uri": "s3://b/bundle/model.tar.gz", "DataInputConfig": json.dumps({"data": [1, 3, 512, 1024]})},
        "OutputConfig": {"S3OutputLocation": "s3://b/bundle/compiled/ml_g4dn/"}}
    assert L.check_compilation_request(good) == []
    bad = {**good, "CompilationJobName": "roadseg_dev"}
    assert "does not match" in L.check_compilation_request(bad)[0]


def test_lambda_environment_counts_keys_and_values_in_bytes():
    assert L.lambda_environment_bytes({"AB": "cd", "E": "é"}) == 2 + 2 + 1 + 2
    assert L.check_lambda_environment({"X": "v" * 4095}) == []
    (problem,) = L.check_lambda_environment({"X": "v" * 4095, "CAMERAS": "c"})
    assert "4104 bytes" in problem and "CAMERAS" in problem and L.LAMBDA_LIMITS_DOC in problem


def test_the_settings_files_hold_what_no_argument_may():
    classes = [{"name": f"c{i}", "color": [i, i, i]} for i in range(30)]
    files = settings_files(classes, {"/cam/front": "front"})
    assert json.loads(files[CLASSES_FILE]) == classes and json.loads(files[CAMERAS_FILE]) == {"/cam/front": "front"}
    assert set(settings_files(None, None)) == {"settings.json"}  # never an empty directory (an asset needs a file)
