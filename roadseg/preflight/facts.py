"""The facts the checks need, fetched from the account with read-only calls (``READ_ACTIONS``): the caller's
account, the bootstrap versions, Lambda's account limits and this environment's reservations, the SageMaker
quotas, the deployed endpoints, Lake Formation's defaults and, in isolated-network import mode, the given VPC.
Every client comes from ``roadseg.session.make_client`` (:class:`Clients`); an AWS error becomes one-line
:class:`AwsError` (:func:`aws_errors`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from envconfig.config import EnvironmentConfig
from roadseg import session
from roadseg.preflight.assembly import Assembly, Names, PlannedEndpoint, planned_endpoints
from roadseg.preflight.errors import AwsError, UsageError

SAGEMAKER_SERVICE_CODE = "sagemaker"
SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"

# Everything the preflight calls (IAM action names); all of them only read.
READ_ACTIONS = (
    "sts:GetCallerIdentity", "ssm:GetParameter", "lambda:GetAccountSettings", "lambda:GetFunctionConcurrency",
    "cloudformation:ListStackResources", "servicequotas:ListServiceQuotas",
    "servicequotas:ListAWSDefaultServiceQuotas", "sagemaker:DescribeEndpoint", "sagemaker:DescribeEndpointConfig",
    "application-autoscaling:DescribeScalableTargets", "lakeformation:GetDataLakeSettings",
    "ec2:DescribeVpcs", "ec2:DescribeVpcAttribute", "ec2:DescribeSecurityGroups", "ec2:DescribeVpcEndpoints",
)
STACK_NAME_TAG = "aws:cloudformation:stack-name"
HTTPS_PORT = 443
_CREDENTIAL_ERRORS = {"InvalidClientTokenId", "UnrecognizedClientException", "ExpiredToken", "ExpiredTokenException",
                      "SignatureDoesNotMatch", "InvalidSignatureException", "RequestExpired", "InvalidAccessKeyId"}


class Clients:
    """One client per service in one region, created on first use through roadseg.session's ``make_client``, with
    five attempts each and the preflight's user agent."""

    def __init__(self, region: str) -> None:
        self.region = region
        self._clients: dict[str, Any] = {}

    def __call__(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = session.make_client(service, self.region, max_attempts=5,
                                                         user_agent="roadseg-preflight")
        return self._clients[service]


def describe_client_error(exc: ClientError, iam_prefix: str) -> str:
    error = exc.response.get("Error", {})
    code, message = error.get("Code", "Unknown"), error.get("Message", str(exc))
    action = f"{iam_prefix}:{exc.operation_name}"
    if code.startswith("AccessDenied") or code in ("UnauthorizedOperation", "UnauthorizedException"):
        return (f"access denied to {action} ({code}: {message}); the preflight needs these read-only actions: "
                f"{', '.join(READ_ACTIONS)}")
    if code in _CREDENTIAL_ERRORS:
        return f"AWS rejected the credentials ({code} on {action}: {message}): refresh them and run again"
    return f"{action} failed ({code}: {message})"


@contextmanager
def aws_errors(iam_prefix: str) -> Iterator[None]:
    """ClientError of a call to the service whose IAM actions start with ``iam_prefix`` -> one-line AwsError."""
    try:
        yield
    except ClientError as exc:
        raise AwsError(describe_client_error(exc, iam_prefix)) from None


def _code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def _message(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Message", "")


@dataclass(frozen=True)
class LambdaAccount:
    concurrent_executions: int  # AccountLimit.ConcurrentExecutions: the "Concurrent executions" quota
    unreserved: int  # AccountLimit.UnreservedConcurrentExecutions
    deployed_reserved: dict[str, int] = field(default_factory=dict)  # this environment's deployed functions

    @property
    def deployed_total(self) -> int:
        return sum(self.deployed_reserved.values())


@dataclass(frozen=True)
class Quota:
    name: str
    code: str
    value: float
    adjustable: bool = True
    applied: bool = True  # False: only the AWS default is known (ListAWSDefaultServiceQuotas)


@dataclass(frozen=True)
class EndpointState:
    name: str
    deployed: bool
    instance_type: str | None = None  # None when not deployed (or its endpoint config is gone)
    autoscaled: bool = False


@dataclass(frozen=True)
class ExistingEndpoint:
    endpoint_id: str
    service: str  # suffix after com.amazonaws.<region>.
    gateway: bool
    private_dns: bool
    route_tables: tuple[str, ...] = ()
    stack: str | None = None  # the CloudFormation stack that created it (its aws:cloudformation:stack-name tag)


@dataclass(frozen=True)
class GroupRules:
    """One security group's rules, reduced to what the workloads need."""

    group_id: str
    self_ingress: bool  # all traffic from the group itself
    self_egress: bool  # all traffic to the group itself
    https_to_vpc: bool  # TCP 443 out to the VPC's CIDR (the interface endpoints)
    https_to_s3: bool  # TCP 443 out to 0.0.0.0/0 or a prefix list (S3 through the gateway endpoint)


@dataclass(frozen=True)
class NetworkFacts:
    """The imported VPC as the account has it (import mode only)."""

    vpc_id: str
    route_tables: tuple[str, ...]
    dns_support: bool
    dns_hostnames: bool
    groups: tuple[GroupRules, ...]
    endpoints: tuple[ExistingEndpoint, ...]
    network_stack: str  # endpoints this stack created are its own, not conflicts
    planned: tuple[PlannedEndpoint, ...]


@dataclass(frozen=True)
class AwsFacts:
    account: str
    region: str
    bootstrap_versions: dict[str, str | None] = field(default_factory=dict)  # parameter -> value, None: missing
    lambda_account: LambdaAccount | None = None
    quotas: dict[str, Quota] = field(default_factory=dict)  # SageMaker quotas by QuotaName
    endpoints: dict[str, EndpointState] = field(default_factory=dict)
    network: NetworkFacts | None = None
    # GetDataLakeSettings' CreateDatabaseDefaultPermissions / CreateTableDefaultPermissions; None: not fetched
    lake_formation: dict[str, list] | None = None


def fetch_account(clients: Clients) -> str:
    with aws_errors("sts"):
        return clients("sts").get_caller_identity()["Account"]


def fetch_bootstrap_versions(clients: Clients, parameters: Sequence[str]) -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    with aws_errors("ssm"):
        for parameter in parameters:
            try:
                versions[parameter] = clients("ssm").get_parameter(Name=parameter)["Parameter"]["Value"]
            except ClientError as exc:
                if _code(exc) != "ParameterNotFound":
                    raise
                versions[parameter] = None
    return versions


def fetch_deployed_reservations(clients: Clients, stack_names: Sequence[str]) -> dict[str, int]:
    """Function name -> reserved concurrency, for the Lambda functions of those stacks that exist now."""
    functions = []
    with aws_errors("cloudformation"):
        for stack in stack_names:
            try:
                for page in clients("cloudformation").get_paginator("list_stack_resources").paginate(StackName=stack):
                    functions += [r["PhysicalResourceId"] for r in page["StackResourceSummaries"]
                                  if r["ResourceType"] == "AWS::Lambda::Function" and r.get("PhysicalResourceId")]
            except ClientError as exc:
                if _code(exc) != "ValidationError" or "does not exist" not in _message(exc):
                    raise
    reserved = {}
    with aws_errors("lambda"):
        for function in functions:
            try:
                response = clients("lambda").get_function_concurrency(FunctionName=function)
            except ClientError as exc:
                if _code(exc) != "ResourceNotFoundException":
                    raise
                continue
            if response.get("ReservedConcurrentExecutions"):
                reserved[function] = response["ReservedConcurrentExecutions"]
    return reserved


def fetch_lambda_account(clients: Clients, stack_names: Sequence[str]) -> LambdaAccount:
    with aws_errors("lambda"):
        limit = clients("lambda").get_account_settings()["AccountLimit"]
    return LambdaAccount(limit["ConcurrentExecutions"], limit["UnreservedConcurrentExecutions"],
                         fetch_deployed_reservations(clients, stack_names))


def fetch_sagemaker_quotas(clients: Clients) -> dict[str, Quota]:
    """Applied quotas (ListServiceQuotas), plus AWS defaults for the names the applied list lacks."""
    quotas: dict[str, Quota] = {}
    client = clients("service-quotas")
    with aws_errors("servicequotas"):
        for operation, applied in (("list_service_quotas", True), ("list_aws_default_service_quotas", False)):
            pages = client.get_paginator(operation).paginate(ServiceCode=SAGEMAKER_SERVICE_CODE,
                                                             PaginationConfig={"PageSize": 100})
            for page in pages:
                for q in page.get("Quotas", []):
                    quotas.setdefault(q["QuotaName"], Quota(q["QuotaName"], q["QuotaCode"], float(q["Value"]),
                                                            bool(q.get("Adjustable", True)), applied))
    return quotas


def fetch_endpoint_state(clients: Clients, name: str, variant: str) -> EndpointState:
    sagemaker = clients("sagemaker")
    with aws_errors("sagemaker"):
        try:
            endpoint = sagemaker.describe_endpoint(EndpointName=name)
        except ClientError as exc:
            if _code(exc) == "ValidationException" and "Could not find endpoint" in _message(exc):
                return EndpointState(name, deployed=False)
            raise
        instance_type = None
        try:
            variants = sagemaker.describe_endpoint_config(
                EndpointConfigName=endpoint["EndpointConfigName"])["ProductionVariants"]
        except ClientError as exc:
            if _code(exc) != "ValidationException":
                raise
        else:
            chosen = next((v for v in variants if v.get("VariantName") == variant), variants[0] if variants else {})
            instance_type = chosen.get("InstanceType")
    with aws_errors("application-autoscaling"):
        targets = clients("application-autoscaling").describe_scalable_targets(
            ServiceNamespace="sagemaker", ResourceIds=[f"endpoint/{name}/variant/{variant}"],
            ScalableDimension=SCALABLE_DIMENSION)["ScalableTargets"]
    return EndpointState(name, True, instance_type, bool(targets))


def fetch_lake_formation(clients: Clients) -> dict[str, list]:
    with aws_errors("lakeformation"):
        settings = clients("lakeformation").get_data_lake_settings()["DataLakeSettings"]
    return {key: list(settings.get(key) or []) for key in ("CreateDatabaseDefaultPermissions",
                                                           "CreateTableDefaultPermissions")}


def _resolve_id(clients: Clients, value: str) -> str:
    """A literal ID, or the value of an ``ssm:/name`` reference (envconfig/network.py)."""
    if not value.startswith("ssm:"):
        return value
    with aws_errors("ssm"):
        try:
            return clients("ssm").get_parameter(Name=value[4:])["Parameter"]["Value"]
        except ClientError as exc:
            if _code(exc) == "ParameterNotFound":
                raise UsageError(f"network.import: SSM parameter {value[4:]} does not exist") from None
            raise


def _covers(ranges: list[dict], cidr: str) -> bool:
    import ipaddress

    wanted = ipaddress.ip_network(cidr)
    return any(ipaddress.ip_network(r["CidrIp"]).supernet_of(wanted) for r in ranges if r.get("CidrIp"))


def _allows_https(permission: dict) -> bool:
    if permission.get("IpProtocol") == "-1":
        return True
    return (permission.get("IpProtocol") == "tcp"
            and permission.get("FromPort", 0) <= HTTPS_PORT <= permission.get("ToPort", -1))


def group_rules(group: dict, vpc_cidr: str) -> GroupRules:
    """The reduction of one DescribeSecurityGroups entry (pure)."""
    own = group["GroupId"]

    def to_itself(permissions: list[dict]) -> bool:
        """All traffic with the group itself, or with a range holding the whole VPC (which holds its members)."""
        return any(p.get("IpProtocol") == "-1" and (
            any(pair.get("GroupId") == own for pair in p.get("UserIdGroupPairs") or [])
            or _covers(p.get("IpRanges") or [], vpc_cidr)) for p in permissions)

    egress = group.get("IpPermissionsEgress") or []
    https = [p for p in egress if _allows_https(p)]
    return GroupRules(
        group_id=own, self_ingress=to_itself(group.get("IpPermissions") or []), self_egress=to_itself(egress),
        https_to_vpc=any(_covers(p.get("IpRanges") or [], vpc_cidr) for p in https),
        https_to_s3=any(_covers(p.get("IpRanges") or [], "0.0.0.0/0") or p.get("PrefixListIds") for p in https))


def fetch_network(clients: Clients, config: EnvironmentConfig, assembly: Assembly) -> NetworkFacts | None:
    """The imported VPC's facts (None outside isolated-network import mode)."""
    if config.network is None or config.network.mode != "import" or config.network.import_ is None:
        return None
    imported = config.network.import_
    vpc_id = _resolve_id(clients, imported.vpc_id)
    route_tables = tuple(_resolve_id(clients, r) for r in imported.route_table_ids)
    group_ids = [_resolve_id(clients, g) for g in imported.security_group_ids]
    ec2 = clients("ec2")
    with aws_errors("ec2"):
        try:
            vpc = ec2.describe_vpcs(VpcIds=[vpc_id])["Vpcs"][0]
            groups = ec2.describe_security_groups(GroupIds=group_ids)["SecurityGroups"]
        except ClientError as exc:
            if _code(exc).endswith(".NotFound") or _code(exc).startswith("InvalidGroup"):
                raise UsageError(f"network.import: {_message(exc)} (account {clients.region})") from None
            raise
        attribute = {name: ec2.describe_vpc_attribute(VpcId=vpc_id, Attribute=name)[key]["Value"]
                     for name, key in (("enableDnsSupport", "EnableDnsSupport"),
                                       ("enableDnsHostnames", "EnableDnsHostnames"))}
        existing = []
        for page in ec2.get_paginator("describe_vpc_endpoints").paginate(
                Filters=[{"Name": "vpc-id", "Values": [vpc_id]}]):
            for e in page["VpcEndpoints"]:
                if e.get("State", "").lower() in ("deleted", "deleting", "rejected", "failed", "expired"):
                    continue
                tags = {t["Key"]: t["Value"] for t in e.get("Tags") or []}
                existing.append(ExistingEndpoint(
                    e["VpcEndpointId"], e["ServiceName"].split(".", 3)[-1], e.get("VpcEndpointType") == "Gateway",
                    bool(e.get("PrivateDnsEnabled")), tuple(e.get("RouteTableIds") or []), tags.get(STACK_NAME_TAG)))
    network_stack, planned = planned_endpoints(assembly)
    return NetworkFacts(vpc_id, route_tables, attribute["enableDnsSupport"], attribute["enableDnsHostnames"],
                        tuple(group_rules(g, vpc["CidrBlock"]) for g in groups), tuple(existing),
                        network_stack or "", planned)


def fetch_facts(clients: Clients, account: str, assembly: Assembly, names: Names,
                config: EnvironmentConfig | None = None) -> AwsFacts:
    stacks = sorted({*assembly.stack_names, names.inference_stack})
    return AwsFacts(
        account=account, region=clients.region,
        bootstrap_versions=fetch_bootstrap_versions(clients, sorted(assembly.bootstrap)),
        lambda_account=fetch_lambda_account(clients, stacks),
        quotas=fetch_sagemaker_quotas(clients),
        endpoints={name: fetch_endpoint_state(clients, name, names.variant) for _, name in names.endpoints},
        network=fetch_network(clients, config, assembly) if config is not None else None,
        lake_formation=fetch_lake_formation(clients),
    )
