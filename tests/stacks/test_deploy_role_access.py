"""The CDK deploy role can resolve every SSM-typed parameter (stacks/deploy_role_access.py) and the contract
``cdk-deploy-role-can-resolve-ssm-parameters`` (stacks/checks/service_contracts/deploy_state.py) holds it to that:
the dev and isolated-import environments keep it; templates broken each way fail it."""

from __future__ import annotations

import copy
import json

import aws_cdk as cdk
import pytest

from contracts import naming
from envconfig.config import load_config
from stacks.checks.service_contracts import Assembly, Context
from stacks.checks.service_contracts.deploy_state import (
    bootstrap_qualifier,
    deploy_role_resolves_ssm_parameters,
    deployed_before,
)
from stacks.deploy_role_access import DeployRoleParameterAccess, deploy_role_name, network_ssm_parameters
from tests.stacks.conftest import EXAMPLES_DIR

DEV = "roadseg-dev"
DATA, INFERENCE, TRAINING = (naming.stack_names(DEV)[k] for k in (naming.DATA, naming.INFERENCE, naming.TRAINING))
SERVING = naming.serving_package_parameter(DEV)
DEV_ROLE = "cdk-hnb659fds-deploy-role-${AWS::AccountId}-${AWS::Region}"
SUBNET_PARAMETER = "/network/private-subnet-b"  # config/examples/isolated-import.yaml


@pytest.fixture(scope="module")
def dev(synth) -> dict[str, dict]:
    env = synth("dev")
    return {stack.stack_name: json.loads((env.outdir / stack.template_file).read_text()) for stack in env.stacks.all}


@pytest.fixture(scope="module")
def isolated(isolated_synth) -> dict[str, dict]:
    return isolated_synth("isolated-import").templates()


@pytest.fixture(scope="module")
def pinned(isolated_synth) -> dict[str, tuple[str, str]]:
    """(account, region) of the isolated-import stacks, whose templates carry literal ARNs."""
    return Assembly.from_directory(isolated_synth("isolated-import").outdir).environments


def _violations(templates: dict[str, dict], environments: dict | None = None) -> list[str]:
    return [str(v) for v in deploy_role_resolves_ssm_parameters(Assembly(templates, environments), Context())]


def _grants(template: dict) -> list[tuple[str, dict]]:
    return [(logical_id, r) for logical_id, r in template["Resources"].items()
            if r["Type"] == "AWS::IAM::ManagedPolicy" and logical_id.startswith("DeployRoleAccess")]


def _ssm_arn(name: str, account: str = "${AWS::AccountId}", region: str = "${AWS::Region}",
             partition: str = "${AWS::Partition}") -> str:
    return f"arn:{partition}:ssm:{region}:{account}:parameter{name}"


def _rendered_resources(templates: dict[str, dict], stack: str, policy: dict) -> list[str]:
    assembly = Assembly(templates)  # pinned templates carry literal ARNs, env-agnostic ones pseudo parameters
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
    return sorted(assembly.text(stack, r) for r in resources)


def test_the_data_stack_lets_the_deploy_role_read_exactly_the_serving_parameter(dev):
    (_, policy), = _grants(dev[DATA])
    assert policy["Properties"]["Roles"] == [{"Fn::Sub": DEV_ROLE}]
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert sorted(statement["Action"]) == ["ssm:GetParameter", "ssm:GetParameters"]
    assert _rendered_resources(dev, DATA, policy) == [_ssm_arn(SERVING)]
    assert _violations(dev) == []


def test_every_stack_deploys_after_the_data_stack(dev):
    before = deployed_before(Assembly(dev))
    assert before[DATA] == set()
    assert DATA in before[TRAINING] and DATA in before[INFERENCE]
    assert all(bootstrap_qualifier(Assembly(dev), stack) == "hnb659fds" for stack in dev)


def test_isolated_import_grants_the_network_references_before_the_network_stack(isolated, pinned):
    assembly = Assembly(isolated, pinned)
    data = next(s for s in isolated if s.endswith("Data"))
    network = next(s for s in isolated if s.endswith("Network"))
    (_, policy), = _grants(isolated[data])
    assert policy["Properties"]["Roles"] == ["cdk-hnb659fds-deploy-role-111111111111-eu-west-1"]
    assert _rendered_resources(isolated, data, policy) == sorted(
        _ssm_arn(name, "111111111111", "eu-west-1", "aws")
        for name in (naming.serving_package_parameter("roadseg-isi"), SUBNET_PARAMETER))
    assert data in deployed_before(assembly)[network]
    referencing = {stack for stack, t in isolated.items()
                   if any(p.get("Default") == SUBNET_PARAMETER for p in t.get("Parameters", {}).values())}
    assert network in referencing and len(referencing) >= 2  # the network stack and the stacks placed in the VPC
    assert _violations(isolated, pinned) == []


def test_without_the_grant_every_referencing_stack_fails(isolated, pinned):
    assert _violations(isolated, pinned) == []
    broken = copy.deepcopy(isolated)
    data = next(s for s in broken if s.endswith("Data"))
    for logical_id, _ in _grants(broken[data]):
        del broken[data]["Resources"][logical_id]
    violations = _violations(broken, pinned)
    assert any(naming.MODEL_PACKAGE_PARAMETER in v and "no stack of the app grants" in v for v in violations)
    assert sum(SUBNET_PARAMETER in v for v in violations) >= 2
    assert all("parameters-section-structure.html#aws-ssm-parameter-types" in v for v in violations)
    assert all("/cdk-bootstrap/" not in v for v in violations)  # the bootstrap's own grant covers its version


def test_a_grant_on_another_parameter_does_not_count(dev):
    broken = copy.deepcopy(dev)
    (_, policy), = _grants(broken[DATA])
    policy["Properties"]["PolicyDocument"]["Statement"][0]["Resource"] = {
        "Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter/roadseg/other"}
    (violation,) = _violations(broken)
    assert f"{INFERENCE}/{naming.MODEL_PACKAGE_PARAMETER}" in violation and SERVING in violation


def test_a_grant_on_another_role_does_not_count(dev):
    broken = copy.deepcopy(dev)
    (_, policy), = _grants(broken[DATA])
    policy["Properties"]["Roles"] = [{"Fn::Sub": "cdk-otherqual-deploy-role-${AWS::AccountId}-${AWS::Region}"}]
    (violation,) = _violations(broken)
    assert "no stack of the app grants cdk-hnb659fds-deploy-role-" in violation


def test_a_grant_in_the_referencing_stack_comes_too_late(dev):
    broken = copy.deepcopy(dev)
    (logical_id, policy), = _grants(broken[DATA])
    broken[INFERENCE]["Resources"][logical_id] = broken[DATA]["Resources"].pop(logical_id)
    (violation,) = _violations(broken)
    assert "in a stack that does not deploy before" in violation and INFERENCE in violation


def test_an_inline_policy_of_an_earlier_stack_counts_too(dev):
    moved = copy.deepcopy(dev)
    (logical_id, policy), = _grants(moved[DATA])
    del moved[DATA]["Resources"][logical_id]
    moved[DATA]["Resources"]["Inline"] = {"Type": "AWS::IAM::Policy", "Properties": {
        "PolicyName": "resolve", "Roles": policy["Properties"]["Roles"],
        "PolicyDocument": policy["Properties"]["PolicyDocument"]}}
    assert _violations(moved) == []


def test_an_ssm_typed_parameter_without_a_default_cannot_be_checked(dev):
    broken = copy.deepcopy(dev)
    broken[TRAINING]["Parameters"]["Undeclared"] = {"Type": "AWS::SSM::Parameter::Value<String>"}
    (violation,) = _violations(broken)
    assert f"{TRAINING}/Undeclared" in violation and "without a default" in violation


def test_a_stack_without_the_bootstrap_version_check_is_not_deployed_by_the_deploy_role(dev):
    other = copy.deepcopy(dev)
    del other[INFERENCE]["Parameters"]["BootstrapVersion"]
    (logical_id, _), = _grants(other[DATA])
    del other[DATA]["Resources"][logical_id]
    assert bootstrap_qualifier(Assembly(other), INFERENCE) is None
    assert _violations(other) == []  # only the inference stack had one, and it is not deployed through the roles


# -- the construct -------------------------------------------------------------------------------------------------

def test_network_references_are_listed_once_in_file_order():
    config = load_config("isolated-import", EXAMPLES_DIR)
    assert network_ssm_parameters(config.network) == [SUBNET_PARAMETER]
    assert network_ssm_parameters(None) == []
    assert network_ssm_parameters(load_config("isolated-create", EXAMPLES_DIR).network) == []


def test_the_role_follows_the_synthesizer_and_its_qualifier():
    app = cdk.App(context={"@aws-cdk/core:bootstrapQualifier": "abc123xyz"})
    pinned = cdk.Stack(app, "Pinned", env=cdk.Environment(account="222222222222", region="eu-central-1"))
    assert deploy_role_name(pinned) == "cdk-abc123xyz-deploy-role-222222222222-eu-central-1"
    legacy = cdk.Stack(app, "Cli", synthesizer=cdk.CliCredentialsStackSynthesizer())
    assert deploy_role_name(legacy) is None
    access = DeployRoleParameterAccess(legacy, "Access", parameter_names=["/a"])
    assert access.policy is None and not access.node.children  # nothing attached, nothing made


def test_every_delivery_stage_grants_before_its_change_sets(tmp_path_factory):
    """The pipeline's CloudFormation actions run as each target account's deploy role; every stage's stacks keep the
    contract (CDK Pipelines prepares a stack's change set only after the stacks it depends on are deployed)."""
    from stacks.app_builder import build_app, cdk_json_context

    outdir = tmp_path_factory.mktemp("cdk-delivery-deploy-role")
    app = cdk.App(outdir=str(outdir), context={**cdk_json_context(), "env": "delivery", "aws:cdk:bundling-stacks": [],
                                               "aws:cdk:disable-asset-staging": True})
    build_app(load_config("delivery", EXAMPLES_DIR), app, EXAMPLES_DIR)[0].synth()
    stages = sorted(outdir.glob("assembly-*"))
    assert len(stages) == 2
    for stage in stages:
        assembly = Assembly.from_directory(stage)
        (data,) = [s for s in assembly.templates if s.endswith("Data")]
        (inference,) = [s for s in assembly.templates if s.endswith("Inference")]
        assert data in deployed_before(assembly)[inference]
        (_, policy), = _grants(assembly.templates[data])
        account, region = assembly.environments[data]
        assert policy["Properties"]["Roles"] == [f"cdk-hnb659fds-deploy-role-{account}-{region}"]
        assert list(deploy_role_resolves_ssm_parameters(assembly, Context())) == []
