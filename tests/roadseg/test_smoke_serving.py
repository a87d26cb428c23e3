"""roadseg/smoke.py: a stage that was given a model must keep serving it (the serving SSM parameter), on moto."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from contracts import naming
from roadseg import smoke
from tests.roadseg.test_smoke import _outputs

PARAMETER = naming.serving_package_parameter("roadseg-dev")
ARN = "arn:aws:sagemaker:us-east-1:123456789012:model-package/roadseg-dev-segmentation/3"


def test_an_approved_package_without_endpoints_fails():
    problem = smoke.serving_failure(ARN, _outputs(serving=False), "roadseg-dev")
    assert problem is not None and ARN in problem and PARAMETER in problem and "dropped" in problem
    assert smoke.serving_failure(ARN, _outputs(serving=True), "roadseg-dev") is None
    assert smoke.serving_failure(naming.NO_MODEL_PACKAGE, _outputs(serving=False), "roadseg-dev") is None
    assert "does not exist" in smoke.serving_failure(None, _outputs(serving=False), "roadseg-dev")


@pytest.fixture
def aws(monkeypatch, tmp_path):
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": str(tmp_path / "none")}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        yield boto3.client("ssm", region_name="us-east-1")


def test_run_reads_the_serving_parameter_and_fails_a_stage_that_stopped_serving(aws):
    """The stacks' outputs come from a fake; the SSM parameter is moto's."""
    outputs = _outputs(serving=False)
    missing = smoke.run("dev", "us-east-1", False, describe=outputs.get, approved=lambda name: None)
    assert len(missing) == 1 and "does not exist" in missing[0]
    aws.put_parameter(Name=PARAMETER, Value=naming.NO_MODEL_PACKAGE, Type="String")
    failures = smoke.run("dev", "us-east-1", False, describe=outputs.get,
                         approved=lambda name: aws.get_parameter(Name=name)["Parameter"]["Value"])
    assert failures == []
    aws.put_parameter(Name=PARAMETER, Value=ARN, Type="String", Overwrite=True)
    failures = smoke.run("dev", "us-east-1", False, describe=outputs.get,
                         approved=lambda name: aws.get_parameter(Name=name)["Parameter"]["Value"])
    assert len(failures) == 1 and "a deploy dropped them" in failures[0]


def test_main_exits_1_when_a_served_stage_lost_its_endpoints(aws, capsys):
    """End to end on moto: the stacks (their outputs) and the parameter, read by smoke's own clients."""
    aws.put_parameter(Name=PARAMETER, Value=ARN, Type="String")
    cfn = boto3.client("cloudformation", region_name="us-east-1")
    template = '{"Resources": {"T": {"Type": "AWS::SNS::Topic"}}, "Outputs": %s}'
    for name, values in _outputs(serving=False).items():
        outputs = {k: {"Value": v} for k, v in values.items()}
        cfn.create_stack(StackName=name, TemplateBody=template % json.dumps(outputs))
    assert smoke.main(["--env", "dev", "--region", "us-east-1", "--no-frame"]) == 1
    out = capsys.readouterr().out
    assert f"FAIL {PARAMETER} says {ARN} is approved" in out
