"""Contract class (b), stacks/checks/service_contracts/deploy_state.py: what the rollout sets survives every deployer.
The synthesized dev environment keeps it; templates broken each way fail it."""

from __future__ import annotations

import copy
import json

import pytest

from contracts import naming
from stacks.checks.service_contracts import Assembly, Context, check
from stacks.checks.service_contracts.deploy_state import (
    pipeline_deploys_pass_no_overrides,
    runtime_set_parameters,
    runtime_set_parameters_survive,
)

INFERENCE = naming.inference_stack_name("roadseg-dev")
DATA = naming.data_stack_name("roadseg-dev")
SERVING = naming.serving_package_parameter("roadseg-dev")


@pytest.fixture(scope="module")
def templates(synth) -> dict[str, dict]:
    env = synth("dev")
    return {stack.stack_name: json.loads((env.outdir / stack.template_file).read_text()) for stack in env.stacks.all}


def _violations(templates: dict[str, dict]) -> list[str]:
    return [str(v) for v in runtime_set_parameters_survive(Assembly(templates), Context())]


def _creator(templates: dict[str, dict]) -> dict:
    (found,) = [r for r in templates[DATA]["Resources"].values() if r["Type"] == "Custom::AWS"]
    return found


def test_the_dev_environment_keeps_its_runtime_state(templates):
    assembly = Assembly(templates)
    found = [(f.path, stack, parameter) for f, _, stack, parameter in runtime_set_parameters(assembly)]
    assert [(stack, parameter) for _, stack, parameter in found] == [(INFERENCE, naming.MODEL_PACKAGE_PARAMETER)]
    assert "Rollout" in found[0][0]
    assert _violations(templates) == []
    assert check(assembly) == []


def test_a_plain_string_parameter_is_reset_by_a_deploy_without_parameters(templates):
    broken = copy.deepcopy(templates)
    broken[INFERENCE]["Parameters"][naming.MODEL_PACKAGE_PARAMETER] = {"Type": "String", "Default": ""}
    (violation,) = _violations(broken)
    assert "resets it to its default ''" in violation and "API_Parameter" in violation


def test_the_rollout_must_be_able_to_write_the_ssm_parameter(templates):
    broken = copy.deepcopy(templates)
    for resource in broken[INFERENCE]["Resources"].values():
        if resource["Type"] == "AWS::IAM::Policy":
            for statement in resource["Properties"]["PolicyDocument"]["Statement"]:
                if statement.get("Sid") == "WriteServingPackage":
                    statement["Action"] = "ssm:GetParameter"
    (violation,) = _violations(broken)
    assert "lacks ssm:PutParameter on it" in violation and SERVING in violation


def test_a_plain_ssm_parameter_resource_is_rewritten_by_cloudformation(templates):
    broken = copy.deepcopy(templates)
    broken[DATA]["Resources"]["Plain"] = {"Type": "AWS::SSM::Parameter", "Properties": {
        "Name": SERVING, "Type": "String", "Value": naming.NO_MODEL_PACKAGE}}
    (violation,) = _violations(broken)
    assert "CloudFormation puts its template value" in violation and "Plain" in violation


@pytest.mark.parametrize(("change", "message"), [
    (lambda call: call["parameters"].update(Overwrite=True), "without Overwrite false"),
    (lambda call: call["parameters"].pop("Overwrite"), "without Overwrite false"),
    (lambda call: call.pop("ignoreErrorCodesMatching"), "fails with ParameterAlreadyExists"),
])
def test_the_creator_must_never_overwrite(templates, change, message):
    broken = copy.deepcopy(templates)
    creator = _creator(broken)
    call = json.loads(creator["Properties"]["Update"])
    change(call)
    creator["Properties"]["Update"] = json.dumps(call)
    (violation,) = _violations(broken)
    assert message in violation and "Update call" in violation


def test_a_parameter_nobody_creates_cannot_deploy(templates):
    broken = copy.deepcopy(templates)
    del broken[DATA]["Resources"][next(k for k, r in broken[DATA]["Resources"].items() if r["Type"] == "Custom::AWS")]
    (violation,) = _violations(broken)
    assert "no stack of the app creates" in violation


def test_pipeline_actions_must_not_override_parameters():
    pipeline = {"Resources": {"Pipeline": {"Type": "AWS::CodePipeline::Pipeline", "Properties": {"Stages": [
        {"Name": "Staging", "Actions": [
            {"Name": "Inference.Prepare", "ActionTypeId": {"Category": "Deploy", "Provider": "CloudFormation"},
             "Configuration": {"StackName": INFERENCE}},
            {"Name": "Smoke", "ActionTypeId": {"Category": "Build", "Provider": "CodeBuild"},
             "Configuration": {"ParameterOverrides": "ignored: not a CloudFormation action"}}]}]}}}}
    assert list(pipeline_deploys_pass_no_overrides(Assembly({"P": pipeline}), Context())) == []
    broken = copy.deepcopy(pipeline)
    action = broken["Resources"]["Pipeline"]["Properties"]["Stages"][0]["Actions"][0]
    action["Configuration"]["ParameterOverrides"] = json.dumps({naming.MODEL_PACKAGE_PARAMETER: ""})
    (violation,) = pipeline_deploys_pass_no_overrides(Assembly({"P": broken}), Context())
    assert "Staging/Inference.Prepare passes ParameterOverrides" in str(violation)
