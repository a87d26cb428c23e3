"""Isolated-network mode: both example configs (config/examples/isolated-*.yaml) synthesize offline with cdk-nag,
cfn-lint and the integration contracts clean; the VPC, its endpoints and every VpcConfig; dev is unchanged."""

from __future__ import annotations

import json

import pytest
from cfnlint.api import ManualArgs

from envconfig.config import ConfigError, load_config
from stacks.checks.service_contracts import Assembly, Context, check
from stacks.checks.service_contracts.rules import (
    _custom_resource_providers,
    _pipeline_steps,
    _step_vpc_configs,
    isolated,
)
from stacks.network import ENDPOINT_SERVICES, NETWORK
from tests.stacks.conftest import EXAMPLES_DIR, ISOLATED_EXAMPLES
from tests.stacks.test_quality_gates import CFN_LINT_IGNORED, _lint, acknowledgments

INTERFACE_SERVICES = {s.suffix for s in ENDPOINT_SERVICES}


def _resources(templates: dict[str, dict], resource_type: str):
    for stack, template in templates.items():
        for logical_id, body in template["Resources"].items():
            if body["Type"] == resource_type:
                yield stack, logical_id, body


def _service(name) -> str:
    return name if isinstance(name, str) else json.dumps(name)


# -- configuration -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ISOLATED_EXAMPLES)
def test_example_configs_load(name):
    config = load_config(name, EXAMPLES_DIR)
    assert config.network is not None and config.network.mode == name.removeprefix("isolated-")
    assert config.account == "111111111111" and config.region


def test_default_configs_have_no_network():
    assert load_config("dev").network is None and load_config("prod").network is None


@pytest.mark.parametrize("network, message", [
    ({"mode": "import"}, "needs an 'import' section"),
    ({"mode": "import", "import": {"vpc_id": "vpc-0123456789abcdef0", "availability_zones": ["eu-west-1a"],
                                   "private_subnet_ids": ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"],
                                   "route_table_ids": ["rtb-01234567", "rtb-01234568"],
                                   "security_group_ids": ["sg-01234567"]}}, "availability_zones"),
    ({"mode": "import", "import": {"vpc_id": "vpc-nope", "availability_zones": ["eu-west-1a", "eu-west-1b"],
                                   "private_subnet_ids": ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"],
                                   "route_table_ids": ["rtb-01234567", "rtb-01234568"],
                                   "security_group_ids": ["sg-01234567"]}}, "neither a VPC ID"),
    ({"mode": "create", "create": {"cidr": "10.0.0.0/8"}}, "/16../24"),
    ({"mode": "create", "nat": True}, "unknown key"),
])
def test_invalid_network_sections_name_the_problem(tmp_path, network, message):
    (tmp_path / "iso.yaml").write_text(json.dumps({"prefix": "roadseg-x", "account": "111111111111",
                                                   "region": "eu-west-1", "network": network}))
    with pytest.raises(ConfigError, match="network") as raised:
        load_config("iso", tmp_path)
    assert message in str(raised.value)


# -- quality gates ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ISOLATED_EXAMPLES)
def test_example_synthesizes_with_zero_unacknowledged_nag_findings(isolated_synth, name):
    env = isolated_synth(name)
    base = {"isolated-create": "RoadsegIso", "isolated-import": "RoadsegIsi"}[name]
    assert [s.stack_name for s in env.stacks.all] == [f"{base}{k}" for k in ("Data", NETWORK, "Training", "Inference")]
    report = json.loads((env.outdir / "validation-report.json").read_text())
    assert all(p["conclusion"] == "success" for p in report["pluginReports"]), report


@pytest.mark.parametrize("name", ISOLATED_EXAMPLES)
def test_example_needs_no_context_lookup(isolated_synth, name):
    """The CLI would resolve missing context (e.g. the account's availability zones) with AWS calls: synth must
    need none, so it runs without credentials."""
    manifest = json.loads((isolated_synth(name).outdir / "manifest.json").read_text())
    assert not manifest.get("missing"), manifest.get("missing")


@pytest.mark.parametrize("name", ISOLATED_EXAMPLES)
def test_example_passes_cfn_lint(isolated_synth, name):
    env = isolated_synth(name)
    args = ManualArgs(ignore_checks=list(CFN_LINT_IGNORED), regions=[env.config.region])
    for template_file in env.template_files:
        matches = _lint(template_file, args)
        assert not matches, f"{template_file.name}:\n" + "\n".join(str(m) for m in matches)


@pytest.mark.parametrize("name", ISOLATED_EXAMPLES)
def test_example_keeps_every_integration_contract(isolated_synth, name):
    env = isolated_synth(name)
    assembly = Assembly.from_directory(env.outdir)
    assert isolated(assembly)
    violations = check(assembly, Context(reserved_concurrency_declared=env.config.reserved_lambda_concurrency,
                                         account_pinned=True))
    assert violations == [], "\n".join(map(str, violations))


# -- the VPC ---------------------------------------------------------------------------------------------------------

def test_created_vpc_has_isolated_subnets_in_two_zones_and_no_way_out(isolated_synth):
    templates = isolated_synth("isolated-create").templates()
    vpcs = list(_resources(templates, "AWS::EC2::VPC"))
    assert len(vpcs) == 1
    vpc = vpcs[0][2]["Properties"]
    assert vpc["CidrBlock"] == "10.42.0.0/16" and vpc["EnableDnsHostnames"] and vpc["EnableDnsSupport"]
    subnets = [body["Properties"] for _, _, body in _resources(templates, "AWS::EC2::Subnet")]
    assert sorted(json.dumps(s["AvailabilityZone"]) for s in subnets) == [
        json.dumps({"Fn::Select": [i, {"Fn::GetAZs": ""}]}) for i in range(2)]
    assert not any(s.get("MapPublicIpOnLaunch") for s in subnets)
    for kind in ("AWS::EC2::NatGateway", "AWS::EC2::InternetGateway", "AWS::EC2::EIP"):
        assert not list(_resources(templates, kind)), kind
    assert len(list(_resources(templates, "AWS::EC2::FlowLog"))) == 1


def test_imported_vpc_is_not_created_and_ssm_references_become_typed_parameters(isolated_synth):
    env = isolated_synth("isolated-import")
    templates = env.templates()
    assert not list(_resources(templates, "AWS::EC2::VPC")) and not list(_resources(templates, "AWS::EC2::Subnet"))
    for stack in ("RoadsegIsiNetwork", "RoadsegIsiTraining", "RoadsegIsiInference"):
        types = {p["Type"]: p.get("Default") for p in templates[stack]["Parameters"].values()}
        assert types.get("AWS::SSM::Parameter::Value<AWS::EC2::Subnet::Id>") == "/network/private-subnet-b", stack
    # The rollout may resolve the inference stack's SSM-typed parameters (UpdateStack needs it).
    assert check(Assembly.from_directory(env.outdir), Context(account_pinned=True)) == []
    gateways = [b for _, _, b in _resources(templates, "AWS::EC2::VPCEndpoint")
                if b["Properties"]["VpcEndpointType"] == "Gateway"]
    assert len(gateways) == 2  # S3 and DynamoDB
    for gateway in gateways:
        assert gateway["Properties"]["VpcId"] == "vpc-0123456789abcdef0"
        assert gateway["Properties"]["RouteTableIds"] == ["rtb-0123456789abcdef0", "rtb-0123456789abcdef1"]


# -- the endpoints ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ISOLATED_EXAMPLES)
def test_endpoints_cover_the_services_with_private_dns_and_scoped_policies(isolated_synth, name):
    templates = isolated_synth(name).templates()
    endpoints = [b["Properties"] for _, _, b in _resources(templates, "AWS::EC2::VPCEndpoint")]
    interface = {p["ServiceName"].removeprefix("com.amazonaws.eu-west-1."): p for p in endpoints
                 if p["VpcEndpointType"] == "Interface"}
    assert set(interface) == INTERFACE_SERVICES
    assert {"lambda", "application-autoscaling", "events", "servicequotas"}.isdisjoint(interface)
    for service, endpoint in interface.items():
        assert endpoint["PrivateDnsEnabled"] is True, service
        (statement,) = endpoint["PolicyDocument"]["Statement"]
        assert statement["Condition"] == {"StringEquals": {"aws:PrincipalAccount": "111111111111"}}, service
        assert len(endpoint["SubnetIds"]) == 2 and endpoint["SecurityGroupIds"], service
    gateways = {_service(p["ServiceName"]).rsplit(".", 1)[-1].rstrip('"]}'): p for p in endpoints
                if p["VpcEndpointType"] == "Gateway"}
    assert set(gateways) == {"s3", "dynamodb"}
    # DynamoDB from inside the VPC: a gateway (the SDK's default endpoint name resolves through the route tables),
    # limited to the project's drives table and this account.
    (table,) = gateways["dynamodb"]["PolicyDocument"]["Statement"]
    assert table["Condition"] == {"StringEquals": {"aws:PrincipalAccount": "111111111111"}}
    assert all(":table/roadseg-" in json.dumps(r) and "-drives" in json.dumps(r) for r in table["Resource"])
    gateway = gateways["s3"]
    (statement,) = gateway["PolicyDocument"]["Statement"]
    resources = json.dumps(statement["Resource"])
    for bucket in ("DatasetsBucketArn", "ArtifactsBucketArn", "InferenceBucketArn",
                   "arn:aws:s3:::prod-eu-west-1-starport-layer-bucket/*",
                   "arn:aws:s3:::cdk-hnb659fds-assets-111111111111-eu-west-1/*"):
        assert bucket in resources, bucket
    assert "*" not in [r for r in statement["Resource"] if isinstance(r, str)]


def test_endpoint_security_group_admits_only_https_from_the_workloads(isolated_synth):
    templates = isolated_synth("isolated-create").templates()
    groups = {lid: b["Properties"] for _, lid, b in _resources(templates, "AWS::EC2::SecurityGroup")}
    endpoint_group = next(p for lid, p in groups.items() if lid.startswith("Endpoints"))
    (ingress,) = endpoint_group["SecurityGroupIngress"]
    assert (ingress["FromPort"], ingress["ToPort"], ingress["IpProtocol"]) == (443, 443, "tcp")
    assert "SourceSecurityGroupId" in ingress
    workload = next(p for lid, p in groups.items() if lid.startswith("Workloads"))
    assert {(e["FromPort"], e["ToPort"]) for e in workload["SecurityGroupEgress"]} == {(443, 443)}


# -- VpcConfigs ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ISOLATED_EXAMPLES)
def test_every_function_model_and_job_runs_in_the_vpc(isolated_synth, name):
    env = isolated_synth(name)
    templates = env.templates()
    functions = {lid: b["Properties"] for _, lid, b in _resources(templates, "AWS::Lambda::Function")}
    in_vpc = {lid for lid, p in functions.items() if p.get("VpcConfig")}
    # Deploy-time custom-resource providers (S3 notifications, the serving package parameter) run no workload, as the
    # contract rule isolated-network-everything-in-the-vpc says.
    providers = {lid for _, lid in _custom_resource_providers(Assembly(templates))}
    assert any(lid.startswith("BucketNotificationsHandler") for lid in providers)
    assert set(functions) - providers == in_vpc
    assert len(in_vpc) == 7  # ingest, postprocess, real-time front, rollout, drive launcher and completion, drift
    for lid in in_vpc:
        vpc_config = functions[lid]["VpcConfig"]
        assert len(vpc_config["SubnetIds"]) == 2 and len(vpc_config["SecurityGroupIds"]) == 1, lid
    (model,) = [b["Properties"] for _, _, b in _resources(templates, "AWS::SageMaker::Model")]
    assert model["EnableNetworkIsolation"] is True and len(model["VpcConfig"]["Subnets"]) == 2
    assembly = Assembly.from_directory(env.outdir)
    pipelines = list(assembly.resources("AWS::SageMaker::Pipeline"))
    assert len(pipelines) == 2
    for pipeline in pipelines:
        jobs = list(_step_vpc_configs(_pipeline_steps(assembly, pipeline)))
        kinds = sorted({step["Type"] for step, _ in jobs})
        assert kinds == ["Model", "Processing", "Training"] or kinds == ["Model", "Processing", "Tuning"], kinds
        for step, vpc_config in jobs:
            assert len(vpc_config["Subnets"]) == 2 and len(vpc_config["SecurityGroupIds"]) == 1, step["Name"]
            arguments = step["Arguments"]
            isolation = arguments.get("EnableNetworkIsolation", (arguments.get("NetworkConfig") or {}).get(
                "EnableNetworkIsolation", (arguments.get("TrainingJobDefinition") or {}).get("EnableNetworkIsolation")))
            assert isolation is True, step["Name"]


def test_execution_roles_may_manage_network_interfaces(isolated_synth):
    templates = isolated_synth("isolated-create").templates()
    policies = [b["Properties"]["PolicyDocument"]["Statement"]
                for _, lid, b in _resources(templates, "AWS::IAM::Policy")
                if lid.startswith(("PipelinesExecutionRole", "ModelRole"))]
    assert len(policies) == 2
    for statements in policies:
        assert any(s.get("Sid") == "NetworkInterfacesInTheVpc" and "ec2:CreateNetworkInterface" in s["Action"]
                   for s in statements)


def test_functions_in_the_vpc_drop_the_outside_vpc_acknowledgment(isolated_synth, synth):
    def acks(env):
        templates = {s.stack_name: json.loads((env.outdir / s.template_file).read_text()) for s in env.stacks.all}
        # A provider's logical id is its construct id plus CDK's hash suffix.
        providers = [lid for _, lid in _custom_resource_providers(Assembly(templates))]
        return {(path.split("/")[-1], rule) for stack in env.stacks.all for path, rule, _ in acknowledgments(stack)
                if not any(lid.startswith(path.split("/")[-1]) for lid in providers)}

    isolated_acks, dev_acks = acks(isolated_synth("isolated-create")), acks(synth("dev"))
    assert not any("LambdaInsideVPC" in rule for _, rule in isolated_acks)
    assert any("LambdaInsideVPC" in rule for _, rule in dev_acks)
    assert any("AWSLambdaVPCAccessExecutionRole" in rule for _, rule in isolated_acks)
    assert not any("AWSLambdaVPCAccessExecutionRole" in rule for _, rule in dev_acks)


def test_function_url_keeps_iam_auth(isolated_synth):
    templates = isolated_synth("isolated-import").templates()
    (url,) = [b["Properties"] for _, _, b in _resources(templates, "AWS::Lambda::Url")]
    assert url["AuthType"] == "AWS_IAM"


# -- the default stays as it was -------------------------------------------------------------------------------------

def test_dev_synth_has_no_network(synth):
    env = synth("dev")
    assert env.stacks.network is None and len(env.stacks.all) == 3
    text = "".join(p.read_text() for p in env.template_files)
    for fragment in ("AWS::EC2::", "VpcConfig", "SubnetIds", "ec2:CreateNetworkInterface"):
        assert fragment not in text, fragment
    assert not isolated(Assembly.from_directory(env.outdir))


@pytest.mark.parametrize("name", ISOLATED_EXAMPLES)
def test_workload_stacks_deploy_after_the_network_in_both_modes(isolated_synth, name):
    """Import mode too: the gateway routes and interface endpoints exist before anything placed in the subnets."""
    stacks = isolated_synth(name).stacks
    for stack in (stacks.training, stacks.inference):
        assert stacks.network in stack.dependencies, stack.stack_name


def test_model_role_may_describe_vpc_endpoints(isolated_synth):
    """The hosted-endpoints VPC page lists ec2:DescribeVpcEndpoints for models in a VPC (HOST_VPC_DOC)."""
    from stacks.network import HOST_VPC_DOC, SAGEMAKER_VPC_ACTIONS

    assert "ec2:DescribeVpcEndpoints" in SAGEMAKER_VPC_ACTIONS and HOST_VPC_DOC.endswith("host-vpc.html")
    env = isolated_synth("isolated-create")
    assembly = Assembly.from_directory(env.outdir)
    (model,) = assembly.resources("AWS::SageMaker::Model")
    role = assembly.target(model.stack, model.properties["ExecutionRoleArn"], "AWS::IAM::Role")
    assert assembly.role_allows(role, "ec2:DescribeVpcEndpoints", "*")
