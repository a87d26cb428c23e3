"""roadseg/preflight/, isolated-network import mode and Lake Formation: the facts fetched from moto's EC2, SSM and
Lake Formation, and each pure check passing and failing with its fix."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from envconfig.config import EnvironmentConfig
from roadseg import session
from roadseg.preflight.assembly import Assembly, PlannedEndpoint, StackTemplate, planned_endpoints
from roadseg.preflight.checks import (
    check_lake_formation,
    check_network_dns,
    check_network_endpoints,
    check_network_groups,
)
from roadseg.preflight.errors import UsageError
from roadseg.preflight.facts import (
    Clients,
    ExistingEndpoint,
    GroupRules,
    NetworkFacts,
    fetch_lake_formation,
    fetch_network,
)

REGION = "us-east-1"
NETWORK_STACK = "RoadsegIsiNetwork"


def network_template() -> dict:
    """What the network stack's template holds of the endpoints (as CDK writes them, both ServiceName forms)."""
    def endpoint(service, kind):
        return {"Type": "AWS::EC2::VPCEndpoint", "Properties": {"ServiceName": service, "VpcEndpointType": kind}}
    joined = {"Fn::Join": ["", ["com.amazonaws.", {"Ref": "AWS::Region"}, ".s3"]]}
    return {"Resources": {"S3": endpoint(joined, "Gateway"),
                          "DynamoDb": endpoint({"Fn::Join": ["", ["com.amazonaws.", {"Ref": "AWS::Region"},
                                                                  ".dynamodb"]]}, "Gateway"),
                          "SageMakerApi": endpoint(f"com.amazonaws.{REGION}.sagemaker.api", "Interface")}}


ASSEMBLY = Assembly((StackTemplate("RoadsegIsiData", {"Resources": {}}),
                     StackTemplate(NETWORK_STACK, network_template())))


def test_planned_endpoints_read_both_service_name_forms():
    stack, planned = planned_endpoints(ASSEMBLY)
    assert stack == NETWORK_STACK
    assert planned == (PlannedEndpoint("s3", True), PlannedEndpoint("dynamodb", True),
                       PlannedEndpoint("sagemaker.api", False))


# -- pure checks -------------------------------------------------------------------------------------------------

def facts(**changes) -> NetworkFacts:
    base = dict(vpc_id="vpc-1", route_tables=("rtb-a", "rtb-b"), dns_support=True, dns_hostnames=True,
                groups=(GroupRules("sg-1", True, True, True, True),), endpoints=(), network_stack=NETWORK_STACK,
                planned=planned_endpoints(ASSEMBLY)[1])
    base.update(changes)
    return NetworkFacts(**base)


def test_dns_check():
    assert check_network_dns(facts()).passed
    failed = check_network_dns(facts(dns_hostnames=False))
    assert not failed.passed and "enableDnsHostnames off" in failed.have
    assert "modify-vpc-attribute --vpc-id vpc-1 --enable-dns-hostnames" in failed.fix


def test_group_check_names_each_missing_rule_with_its_command():
    assert all(r.passed for r in check_network_groups(facts()))
    [failed] = check_network_groups(facts(groups=(GroupRules("sg-1", False, True, True, False),)))
    assert "all traffic from itself" in failed.have and "0.0.0.0/0 or the S3 prefix list" in failed.have
    assert "authorize-security-group-ingress --group-id sg-1" in failed.fix
    assert "authorize-security-group-egress" not in failed.fix and "process-vpc.html" in failed.fix


def test_endpoint_check_ignores_the_stacks_own_and_other_route_tables():
    own = ExistingEndpoint("vpce-own", "s3", True, True, ("rtb-a",), NETWORK_STACK)
    elsewhere = ExistingEndpoint("vpce-x", "s3", True, True, ("rtb-z",))
    public_dns_off = ExistingEndpoint("vpce-y", "sagemaker.api", False, False)
    assert check_network_endpoints(facts(endpoints=(own, elsewhere, public_dns_off))).passed
    clash = ExistingEndpoint("vpce-1", "s3", True, True, ("rtb-b",))
    dns = ExistingEndpoint("vpce-2", "sagemaker.api", False, True)
    failed = check_network_endpoints(facts(endpoints=(clash, dns)))
    assert not failed.passed and failed.have == "2 in the way"
    assert "vpce-1 (s3 gateway on rtb-b)" in failed.fix and "vpce-2 (sagemaker.api, private DNS)" in failed.fix


def test_lake_formation_check():
    iam_only = [{"Principal": {"DataLakePrincipalIdentifier": "IAM_ALLOWED_PRINCIPALS"}, "Permissions": ["ALL"]}]
    assert check_lake_formation({"CreateDatabaseDefaultPermissions": iam_only,
                                           "CreateTableDefaultPermissions": iam_only}, "prod").passed
    failed = check_lake_formation({"CreateDatabaseDefaultPermissions": iam_only,
                                             "CreateTableDefaultPermissions": []}, "prod")
    assert not failed.passed and failed.have == "Lake Formation permissions on new tables"
    assert "Use only IAM access control" in failed.fix and "change-settings.html" in failed.fix


# -- facts from moto -----------------------------------------------------------------------------------------------

@pytest.fixture
def aws(offline_aws_env, monkeypatch):
    with mock_aws():
        monkeypatch.setattr(session, "make_client",
                            lambda service, region, **_: boto3.client(service, region_name=region))
        yield boto3.client("ec2", region_name=REGION)


def import_config(vpc: str, subnets: list[str], route_tables: list[str], groups: list[str]) -> EnvironmentConfig:
    return EnvironmentConfig.model_validate({
        "name": "isi", "prefix": "roadseg-isi", "account": "123456789012", "region": REGION,
        "network": {"mode": "import", "import": {
            "vpc_id": vpc, "availability_zones": [f"{REGION}a", f"{REGION}b"], "private_subnet_ids": subnets,
            "route_table_ids": route_tables, "security_group_ids": groups}}})


def build_vpc(ec2, *, dns: bool, self_rules: bool):
    vpc = ec2.create_vpc(CidrBlock="10.7.0.0/16")["Vpc"]["VpcId"]
    if dns:
        ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
        ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsSupport={"Value": True})
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.7.{i}.0/24", AvailabilityZone=f"{REGION}{z}")
               ["Subnet"]["SubnetId"] for i, z in enumerate("ab")]
    tables = [ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"] for _ in subnets]
    group = ec2.create_security_group(GroupName="workloads", Description="w", VpcId=vpc)["GroupId"]
    if self_rules:
        pair = [{"IpProtocol": "-1", "UserIdGroupPairs": [{"GroupId": group}]}]
        ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=pair)
    return vpc, subnets, tables, group


def run_checks(config: EnvironmentConfig) -> list:
    clients = Clients(REGION)
    network = fetch_network(clients, config, ASSEMBLY)
    assert network is not None
    return [check_network_dns(network), *check_network_groups(network),
            check_network_endpoints(network),
            check_lake_formation(fetch_lake_formation(clients), config.name)]


def test_a_prepared_vpc_passes(aws):
    vpc, subnets, tables, group = build_vpc(aws, dns=True, self_rules=True)
    # This stack's own gateway endpoint (a redeploy) is not in the way.
    aws.create_vpc_endpoint(VpcId=vpc, ServiceName=f"com.amazonaws.{REGION}.s3", RouteTableIds=[tables[0]],
                            VpcEndpointType="Gateway", TagSpecifications=[{
                                "ResourceType": "vpc-endpoint",
                                "Tags": [{"Key": "aws:cloudformation:stack-name", "Value": NETWORK_STACK}]}])
    results = run_checks(import_config(vpc, subnets, tables, [group]))
    assert [r.check for r in results if not r.passed] == []


def test_a_bare_vpc_fails_dns_groups_endpoints_and_lake_formation(aws):
    vpc, subnets, tables, group = build_vpc(aws, dns=False, self_rules=False)
    aws.create_vpc_endpoint(VpcId=vpc, ServiceName=f"com.amazonaws.{REGION}.s3", RouteTableIds=[tables[1]],
                            VpcEndpointType="Gateway")
    boto3.client("lakeformation", region_name=REGION).put_data_lake_settings(DataLakeSettings={
        "DataLakeAdmins": [], "CreateDatabaseDefaultPermissions": [], "CreateTableDefaultPermissions": []})
    failed = {r.check: r for r in run_checks(import_config(vpc, subnets, tables, [group])) if not r.passed}
    assert set(failed) == {f"VPC DNS {vpc}", f"security group {group}", f"VPC endpoints {vpc}",
                           "Lake Formation defaults"}
    # A new group's default egress (all traffic to 0.0.0.0/0) reaches its members; nothing lets them in.
    assert failed[f"security group {group}"].have == "lacks all traffic from itself"
    assert f"(s3 gateway on {tables[1]})" in failed[f"VPC endpoints {vpc}"].fix


def test_ssm_references_are_resolved_and_a_missing_one_is_one_line(aws):
    vpc, subnets, tables, group = build_vpc(aws, dns=True, self_rules=True)
    boto3.client("ssm", region_name=REGION).put_parameter(Name="/net/vpc", Value=vpc, Type="String")
    results = run_checks(import_config("ssm:/net/vpc", subnets, tables, [group]))
    assert all(r.passed for r in results)
    with pytest.raises(UsageError, match="SSM parameter /net/missing does not exist"):
        run_checks(import_config("ssm:/net/missing", subnets, tables, [group]))


def test_outside_import_mode_no_network_facts(aws):
    config = EnvironmentConfig.model_validate({"name": "dev", "prefix": "roadseg-dev"})
    assert fetch_network(Clients(REGION), config, ASSEMBLY) is None
