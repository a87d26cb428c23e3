"""Read-only deploy preflight: does the account fit what `cdk deploy` of this environment's cloud assembly needs?

``python -m roadseg.preflight --env prod [--assembly cdk.out] [--scaling on|off] [--json] [--region R]``

``make deploy`` runs it between ``cdk synth`` (which writes the cloud assembly to cdk.out) and
``cdk deploy --app cdk.out``. It uses the deployer's AWS credentials (boto3's default chain), makes only read
calls (``READ_ACTIONS``), and prints one table ``check | needed | have | result``, then one line with the exact fix
for every failed check (``--json``: a list of ``{check, needed, have, passed, fix}`` instead).

Checks: account/region (the config's pins), the CDK bootstrap version, Lambda concurrency (reservations in the
templates plus the 100 AWS keeps unreserved), SageMaker instance quotas (endpoints x2 for blue/green, training,
transform, processing), the algorithm image in the region, instance-type changes on autoscaled endpoints, Lake
Formation's defaults for new Data Catalog resources (the drive timeline's Glue database and table), and in
isolated-network import mode the given VPC: DNS support and hostnames, the security groups' rules, and no gateway or
private-DNS interface endpoint already serving a service the network stack adds (``check_network_*``).

Exit codes: 0 every check passed, 1 a check failed, 2 bad input (unknown environment, invalid configuration, no
cloud assembly), 3 AWS not usable (no credentials, access denied, no region, another AWS error).

Structure: facts come from AWS (``fetch_*``; every client from :func:`make_client`), each check is a pure function
of those facts (``check_*``, combined by :func:`evaluate`), and the results are rendered (``render_*``).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, PartialCredentialsError

from contracts.aws_docs import SCALING_UPDATE_DOC as SCALING_DOC
from contracts.naming import CDK_BOOTSTRAP_QUALIFIER
from envconfig.config import LAMBDA_UNRESERVED_MINIMUM, ConfigError, EnvironmentConfig, load_config

PROG = "roadseg-preflight"
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_AWS = 0, 1, 2, 3

STACK_ARTIFACT = "aws:cloudformation:stack"
ASSET_MANIFEST_ARTIFACT = "cdk:asset-manifest"
DEFAULT_QUALIFIER = CDK_BOOTSTRAP_QUALIFIER
DEFAULT_BOOTSTRAP_PARAMETER = f"/cdk-bootstrap/{DEFAULT_QUALIFIER}/version"

# Service Quotas code of Lambda's "Concurrent executions" (no AWS page states it; confirm with list-service-quotas).
LAMBDA_QUOTA_NAME, LAMBDA_SERVICE_CODE, LAMBDA_QUOTA_CODE = "Concurrent executions", "lambda", "L-B99A9384"
SAGEMAKER_SERVICE_CODE = "sagemaker"
SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"
# "If the update would change the instance type for any model that is a target for auto scaling, the update fails."

# Everything the preflight calls (IAM action names); all of them only read.
READ_ACTIONS = (
    "sts:GetCallerIdentity", "ssm:GetParameter", "lambda:GetAccountSettings", "lambda:GetFunctionConcurrency",
    "cloudformation:ListStackResources", "servicequotas:ListServiceQuotas",
    "servicequotas:ListAWSDefaultServiceQuotas", "sagemaker:DescribeEndpoint", "sagemaker:DescribeEndpointConfig",
    "application-autoscaling:DescribeScalableTargets", "lakeformation:GetDataLakeSettings",
    "ec2:DescribeVpcs", "ec2:DescribeVpcAttribute", "ec2:DescribeSecurityGroups", "ec2:DescribeVpcEndpoints",
)
# Pages the network and Lake Formation checks rest on.
PRIVATE_DNS_DOC = "https://docs.aws.amazon.com/vpc/latest/privatelink/privatelink-access-aws-services.html"
GATEWAY_ROUTES_DOC = "https://docs.aws.amazon.com/vpc/latest/privatelink/gateway-endpoints.html"
PROCESSING_VPC_DOC = "https://docs.aws.amazon.com/sagemaker/latest/dg/process-vpc.html"
LAKE_FORMATION_DOC = "https://docs.aws.amazon.com/lake-formation/latest/dg/change-settings.html"
IAM_ALLOWED_PRINCIPALS = "IAM_ALLOWED_PRINCIPALS"
STACK_NAME_TAG = "aws:cloudformation:stack-name"
HTTPS_PORT = 443
_REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-[0-9]$")
_CREDENTIAL_ERRORS = {"InvalidClientTokenId", "UnrecognizedClientException", "ExpiredToken", "ExpiredTokenException",
                      "SignatureDoesNotMatch", "InvalidSignatureException", "RequestExpired", "InvalidAccessKeyId"}


class UsageError(Exception):
    """Bad input the user can fix (exit 2)."""


class AwsError(Exception):
    """AWS cannot be used: no credentials or region, access denied, an AWS error (exit 3)."""


# ------------------------------------------------------------------------------------------------- results


@dataclass(frozen=True)
class CheckResult:
    check: str
    needed: str
    have: str
    passed: bool
    fix: str | None = None  # None when passed

    def as_dict(self) -> dict[str, Any]:
        return {"check": self.check, "needed": self.needed, "have": self.have, "passed": self.passed,
                "fix": self.fix}


def _result(check: str, needed: str, have: str, fix: str | None) -> CheckResult:
    """``fix`` None: the check passed."""
    return CheckResult(check, needed, have, fix is None, fix)


# ------------------------------------------------------------------------------------------ cloud assembly


@dataclass(frozen=True)
class StackTemplate:
    name: str  # the CloudFormation stack name
    template: dict


@dataclass(frozen=True)
class Assembly:
    stacks: tuple[StackTemplate, ...]
    # SSM parameter holding the bootstrap version -> the highest version any artifact requires.
    bootstrap: dict[str, int] = field(default_factory=dict)

    @property
    def stack_names(self) -> list[str]:
        return [stack.name for stack in self.stacks]


def parse_assembly(manifest: dict, load_template: Callable[[str], dict]) -> Assembly:
    """The stacks (with their templates) and bootstrap requirements of a cloud assembly's manifest.json."""
    stacks, bootstrap = [], {}
    for artifact_id, artifact in sorted((manifest.get("artifacts") or {}).items()):
        kind, props = artifact.get("type"), artifact.get("properties") or {}
        if kind not in (STACK_ARTIFACT, ASSET_MANIFEST_ARTIFACT):
            continue
        required = props.get("requiresBootstrapStackVersion")
        if required is not None:
            parameter = props.get("bootstrapStackVersionSsmParameter") or DEFAULT_BOOTSTRAP_PARAMETER
            bootstrap[parameter] = max(bootstrap.get(parameter, 0), int(required))
        if kind == STACK_ARTIFACT:
            stacks.append(StackTemplate(props.get("stackName") or artifact_id, load_template(props["templateFile"])))
    return Assembly(tuple(stacks), bootstrap)


def read_assembly(directory: Path, env: str) -> Assembly:
    synth = f"run `make synth ENV={env}` first"
    if not directory.is_dir():
        raise UsageError(f"no cloud assembly: {directory} does not exist: {synth}")
    manifest_path = directory / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
        return parse_assembly(manifest, lambda name: json.loads((directory / name).read_text()))
    except FileNotFoundError as exc:
        raise UsageError(f"incomplete cloud assembly in {directory} ({Path(exc.filename).name} missing): "
                         f"{synth}") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"unreadable cloud assembly in {directory} ({type(exc).__name__}: {exc}): {synth}") from None


def require_environment(assembly: Assembly, names: Names, env: str, directory: Path) -> None:
    """The assembly must hold this environment's stacks (cdk.out may come from a synth of another ENV)."""
    if names.inference_stack not in assembly.stack_names:
        held = ", ".join(assembly.stack_names) or "no stacks"
        raise UsageError(f"{directory} holds {held}, not {names.inference_stack}: run `make synth ENV={env}` first")


def template_reservations(assembly: Assembly) -> dict[str, int]:
    """``<stack>/<logical id>`` -> ReservedConcurrentExecutions of every Lambda function that sets it."""
    found = {}
    for stack in assembly.stacks:
        for logical_id, resource in (stack.template.get("Resources") or {}).items():
            if resource.get("Type") != "AWS::Lambda::Function":
                continue
            value = (resource.get("Properties") or {}).get("ReservedConcurrentExecutions")
            if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
                found[f"{stack.name}/{logical_id}"] = int(value)
    return found


def image_regions(assembly: Assembly) -> set[str] | None:
    """Regions in every template's ``Mappings.Images`` (stacks/images.py); None when no template has one."""
    regions = None
    for stack in assembly.stacks:
        images = (stack.template.get("Mappings") or {}).get("Images")
        if images is not None:
            regions = set(images) if regions is None else regions & set(images)
    return regions


# --------------------------------------------------------------------------------------------------- names


@dataclass(frozen=True)
class Names:
    """What the app names this environment's resources (stacks/environment.py, stacks/inference_stack.py)."""

    inference_stack: str
    endpoints: tuple[tuple[str, str], ...]  # (config section, endpoint name): realtime_endpoint, async_endpoint
    variant: str


def deployment_names(config: EnvironmentConfig) -> Names:
    from contracts import naming

    realtime, async_ = naming.endpoint_names(config.prefix)
    return Names(naming.inference_stack_name(config.prefix), (("realtime_endpoint", realtime),
                                                              ("async_endpoint", async_)), naming.VARIANT_NAME)


# --------------------------------------------------------------------------------------------- AWS facts


@cache
def _session() -> boto3.session.Session:
    """One session per run, so credentials (and any MFA or SSO prompt) are resolved once."""
    return boto3.session.Session()


def make_client(service: str, region: str) -> Any:
    """The one place AWS clients are created (tests replace it to use moto or botocore's Stubber)."""
    config = Config(user_agent_extra="roadseg-preflight", retries={"mode": "standard", "max_attempts": 5})
    return _session().client(service, region_name=region, config=config)


class Clients:
    """One client per service in one region, created on first use through :func:`make_client`."""

    def __init__(self, region: str) -> None:
        self.region = region
        self._clients: dict[str, Any] = {}

    def __call__(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = make_client(service, self.region)
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
class PlannedEndpoint:
    """A VPC endpoint the network stack's template creates: service suffix (``s3``, ``sagemaker.api``), type."""

    service: str
    gateway: bool


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


def planned_endpoints(assembly: Assembly) -> tuple[str | None, tuple[PlannedEndpoint, ...]]:
    """(the network stack's name, the VPC endpoints its template creates), from the cloud assembly."""
    for stack in assembly.stacks:
        planned = []
        for resource in (stack.template.get("Resources") or {}).values():
            if resource.get("Type") != "AWS::EC2::VPCEndpoint":
                continue
            props = resource.get("Properties") or {}
            service = props.get("ServiceName")
            parts = service.get("Fn::Join", ["", []])[1] if isinstance(service, dict) else [service]
            # "com.amazonaws.<region>.<suffix>" literal (pinned region), or a join ending in ".<suffix>"
            last = str(parts[-1] if parts else "")
            suffix = last.split(".", 3)[3] if last.startswith("com.amazonaws.") else last.lstrip(".")
            planned.append(PlannedEndpoint(suffix, props.get("VpcEndpointType", "Gateway") == "Gateway"))
        if planned:
            return stack.name, tuple(planned)
    return None, ()


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


# ------------------------------------------------------------------------------------------ pure checks


def check_account(config: EnvironmentConfig, account: str, region: str) -> CheckResult:
    needed = f"{config.account or 'any account'} / {config.region or 'any region'}"
    fixes = []
    if config.account and account != config.account:
        fixes.append(f"config/{config.name}.yaml pins account {config.account} but the credentials are for "
                     f"{account}: use credentials (AWS_PROFILE) of account {config.account}")
    if config.region and region != config.region:
        fixes.append(f"config/{config.name}.yaml pins region {config.region}: drop --region or pass "
                     f"--region {config.region}")
    return _result("account/region", needed, f"{account} / {region}", "; ".join(fixes) or None)


def bootstrap_command(account: str, region: str, parameter: str) -> str:
    match = re.fullmatch(r"/cdk-bootstrap/([^/]+)/version", parameter)
    qualifier = f" --qualifier {match[1]}" if match and match[1] != DEFAULT_QUALIFIER else ""
    return f"npx cdk bootstrap aws://{account}/{region}{qualifier}"


def check_bootstrap(parameter: str, required: int, value: str | None, account: str, region: str) -> CheckResult:
    check = "CDK bootstrap" if parameter == DEFAULT_BOOTSTRAP_PARAMETER else f"CDK bootstrap ({parameter})"
    needed = f"version >= {required}"
    command = bootstrap_command(account, region, parameter)
    if value is None:
        return _result(check, needed, f"not bootstrapped (no {parameter})",
                       f"not bootstrapped: run `{command}` once for this account and region")
    try:
        version = int(value)
    except ValueError:
        return _result(check, needed, f"unreadable version {value!r}", f"re-run the bootstrap: `{command}`")
    fix = None if version >= required else (f"the bootstrap stack (version {version}) is older than this CDK app "
                                            f"needs ({required}): run `{command}`")
    return _result(check, needed, f"version {version}", fix)


def reservation_keys(config: EnvironmentConfig) -> list[str]:
    """Configuration keys that reserve Lambda concurrency."""
    functions = config.preprocessing
    return [f"preprocessing.{name}.reserved_concurrency" for name in ("ingest", "postprocess", "realtime")
            if getattr(functions, name).reserved_concurrency is not None]


def check_lambda_concurrency(env: str, template_reserved: dict[str, int], limits: LambdaAccount, region: str,
                             config_keys: Sequence[str] = (), minimum: int = LAMBDA_UNRESERVED_MINIMUM) -> CheckResult:
    """Reservations must leave ``minimum`` unreserved; reservations of this environment's deployed functions are
    given back when the deploy replaces them, so they count as available."""
    reserved = sum(template_reserved.values())
    needed, have = reserved + minimum, limits.unreserved + limits.deployed_total
    needed_text = f"{needed} = {reserved} reserved + {minimum} unreserved"
    have_text = f"{have} = {limits.unreserved} unreserved + {limits.deployed_total} reserved by this environment"
    if have >= needed:
        return _result("Lambda concurrency", needed_text, have_text, None)
    desired = limits.concurrent_executions + needed - have
    where = (f"remove {', '.join(config_keys)} from config/{env}.yaml" if config_keys else
             f"lower the reserved concurrency of {', '.join(sorted(template_reserved))}")
    fix = (f"{where}, or request the Lambda quota \"{LAMBDA_QUOTA_NAME}\" >= {desired}: "
           f"aws service-quotas request-service-quota-increase --service-code {LAMBDA_SERVICE_CODE} "
           f"--quota-code {LAMBDA_QUOTA_CODE} --desired-value {desired} --region {region} "
           f"(confirm the quota code with `aws service-quotas list-service-quotas --service-code lambda`)")
    return _result("Lambda concurrency", needed_text, have_text, fix)


@dataclass(frozen=True)
class QuotaNeed:
    name: str  # Service Quotas QuotaName, e.g. "ml.g4dn.xlarge for endpoint usage"
    amount: int
    detail: str = ""
    type_keys: tuple[str, ...] = ()  # config keys choosing the instance type
    amount_keys: tuple[str, ...] = ()  # config keys the amount comes from


def sagemaker_quota_needs(config: EnvironmentConfig) -> list[QuotaNeed]:
    """Instances per SageMaker quota this environment can use at once."""
    endpoints: dict[str, list[tuple[str, int]]] = {}
    for key in ("realtime_endpoint", "async_endpoint"):
        endpoint = getattr(config, key)
        endpoints.setdefault(endpoint.instance_type, []).append((key, endpoint.max_capacity))
    needs = []
    for instance_type, parts in endpoints.items():
        # Blue/green: the old fleet keeps running until the new one has baked, so an update needs both.
        detail = " + ".join(f"2 x {n} {key.split('_')[0]}" for key, n in parts) + " max_capacity, blue/green"
        needs.append(QuotaNeed(f"{instance_type} for endpoint usage", sum(2 * n for _, n in parts), detail,
                               tuple(f"{key}.instance_type" for key, _ in parts),
                               tuple(f"{key}.max_capacity" for key, _ in parts)))
    training = config.training
    # Tuning jobs run on demand (a shared checkpoint prefix rules out spot there, see training/pipelines.py);
    # the training pipeline's one job runs on spot when the config says so.
    parallel = training.tuning.max_parallel_jobs
    needs.append(QuotaNeed(f"{training.instance_type} for training job usage", max(1, parallel),
                           f"tuning.max_parallel_jobs {parallel}", ("training.instance_type",),
                           ("training.tuning.max_parallel_jobs",)))
    if training.use_spot_instances:
        needs.append(QuotaNeed(f"{training.instance_type} for spot training job usage", 1,
                               "the training pipeline's spot job", ("training.instance_type",)))
    needs.append(QuotaNeed(f"{training.transform_instance_type} for transform job usage", 1, "",
                           ("training.transform_instance_type",)))
    needs.append(QuotaNeed(f"{training.processing_instance_type} for processing job usage", 1, "",
                           ("training.processing_instance_type",)))
    return needs


def check_sagemaker_quota(need: QuotaNeed, quota: Quota | None, env: str, region: str) -> CheckResult:
    check = f"quota: {need.name}"
    needed = f"{need.amount} ({need.detail})" if need.detail else str(need.amount)
    config_file = f"config/{env}.yaml"
    if quota is None:
        return _result(check, needed, "no such quota",
                       f"no quota named \"{need.name}\" in {region}: the instance type may not be offered there; "
                       f"choose another for {', '.join(need.type_keys)} in {config_file} or another region")
    have = f"{quota.value:g}" + ("" if quota.applied else " (AWS default)")
    if quota.value >= need.amount:
        return _result(check, needed, have, None)
    lower = f"lower {', '.join(need.amount_keys)} or " if need.amount_keys else ""
    if not quota.adjustable:
        return _result(check, needed, have, f"\"{need.name}\" ({quota.code}) is not adjustable: {lower}choose "
                                            f"another instance type for {', '.join(need.type_keys)} in {config_file}")
    return _result(check, needed, have,
                   f"request \"{need.name}\" >= {need.amount}: aws service-quotas request-service-quota-increase "
                   f"--service-code {SAGEMAKER_SERVICE_CODE} --quota-code {quota.code} --desired-value {need.amount} "
                   f"--region {region}" + (f" (or lower {', '.join(need.amount_keys)} in {config_file})"
                                           if need.amount_keys else ""))


def check_algorithm_image(regions: set[str] | None, region: str, env: str) -> CheckResult:
    check = "algorithm image in region"
    if regions is None:
        return _result(check, region, "no Images mapping in the cloud assembly",
                       f"the templates carry no Mappings.Images: run `make synth ENV={env}` again")
    if region in regions:
        return _result(check, region, "published", None)
    return _result(check, region, "not published",
                   f"the semantic-segmentation algorithm image is not published in {region}: deploy to one of "
                   f"{', '.join(sorted(regions))}")


def check_instance_type_change(state: EndpointState, config_key: str, configured: str, scaling_on: bool,
                               env: str) -> CheckResult:
    """AWS refuses to change the instance type of a variant that is an autoscaling target (SCALING_DOC), so such a
    change is two deploys: without the scalable target (SCALING=off) and the old type, then the new type."""
    check = f"instance type {state.name}"
    if not state.deployed:
        return _result(check, configured, "not deployed", None)
    if state.instance_type is None:
        return _result(check, configured, "deployed, type unknown (endpoint config gone)", None)
    old = state.instance_type
    have = old + (" (autoscaled)" if state.autoscaled else "")
    if old == configured:
        return _result(check, configured, have, None)
    if not scaling_on and state.autoscaled:
        # The scalable target is deleted only after the endpoint update, which it would still block.
        return _result(check, configured, have,
                       f"step 1 must keep the deployed instance type: set {config_key}.instance_type back to {old} in "
                       f"config/{env}.yaml for `make deploy ENV={env} SCALING=off`, then set {configured} and run "
                       f"`make deploy ENV={env}`")
    if state.autoscaled:
        return _result(check, configured, have,
                       f"AWS cannot change the instance type of an autoscaled endpoint ({SCALING_DOC}), so deploy in "
                       f"two steps: 1) with the deployed type ({old}) still in config/{env}.yaml run "
                       f"`make deploy ENV={env} SCALING=off` (removes the scalable target), 2) set "
                       f"{config_key}.instance_type to {configured} and run `make deploy ENV={env}` (updates the "
                       f"endpoint, then registers scaling again)")
    return _result(check, configured, have, None)


def check_lake_formation(settings: dict[str, list], env: str) -> CheckResult:
    """The drive timeline's Glue database and table are created by CloudFormation and written by the completion
    function with IAM permissions only; that works while new Data Catalog resources give IAM_ALLOWED_PRINCIPALS
    ALL ("Use only IAM access control", the default unless the account changed it: LAKE_FORMATION_DOC)."""
    check = "Lake Formation defaults"
    needed = f"{IAM_ALLOWED_PRINCIPALS}: ALL on new databases and tables"
    missing = [key.removeprefix("Create").removesuffix("DefaultPermissions").lower() + "s"
               for key in ("CreateDatabaseDefaultPermissions", "CreateTableDefaultPermissions")
               if not any((entry.get("Principal") or {}).get("DataLakePrincipalIdentifier") == IAM_ALLOWED_PRINCIPALS
                          and "ALL" in (entry.get("Permissions") or []) for entry in settings.get(key, []))]
    if not missing:
        return _result(check, needed, "IAM access control only", None)
    return _result(check, needed, f"Lake Formation permissions on new {' and '.join(missing)}",
                   f"Lake Formation manages new {' and '.join(missing)} in this account, so the drives' Glue database "
                   f"and table would refuse the stack and the completion function's IAM-only access: in Lake "
                   f"Formation > Data Catalog settings tick \"Use only IAM access control\" for new databases and "
                   f"tables ({LAKE_FORMATION_DOC}), or grant the deploy role CREATE_DATABASE and, after the first "
                   f"deploy, the drive completion role ALTER on the drives database before `make deploy ENV={env}`")


def check_network_dns(facts: NetworkFacts) -> CheckResult:
    """Interface endpoints with private DNS need both VPC attributes (PRIVATE_DNS_DOC)."""
    off = [name for name, on in (("enableDnsSupport", facts.dns_support), ("enableDnsHostnames", facts.dns_hostnames))
           if not on]
    have = "both on" if not off else f"{', '.join(off)} off"
    fix = None if not off else (
        "the interface endpoints' private DNS names need DNS resolution and DNS hostnames on the VPC "
        f"({PRIVATE_DNS_DOC}): " + "; ".join(f"aws ec2 modify-vpc-attribute --vpc-id {facts.vpc_id} "
                                             f"--{name.replace('enableDns', 'enable-dns-').lower()} "
                                             "'{\"Value\":true}'" for name in off))
    return _result(f"VPC DNS {facts.vpc_id}", "enableDnsSupport and enableDnsHostnames", have, fix)


def check_network_groups(facts: NetworkFacts) -> list[CheckResult]:
    """Each given group: its members reach each other (distributed jobs, PROCESSING_VPC_DOC) and HTTPS leaves for
    the interface endpoints (the VPC's CIDR) and S3 (the gateway endpoint's public ranges)."""
    results = []
    for group in facts.groups:
        lacking = [what for what, ok in (("all traffic from itself", group.self_ingress),
                                         ("all traffic to itself", group.self_egress),
                                         ("TCP 443 out to the VPC's CIDR", group.https_to_vpc),
                                         ("TCP 443 out to 0.0.0.0/0 or the S3 prefix list", group.https_to_s3))
                   if not ok]
        fixes = []
        if not group.self_ingress:
            fixes.append(f"aws ec2 authorize-security-group-ingress --group-id {group.group_id} --ip-permissions "
                         f"'IpProtocol=-1,UserIdGroupPairs=[{{GroupId={group.group_id}}}]'")
        if not group.self_egress:
            fixes.append(f"aws ec2 authorize-security-group-egress --group-id {group.group_id} --ip-permissions "
                         f"'IpProtocol=-1,UserIdGroupPairs=[{{GroupId={group.group_id}}}]'")
        if not (group.https_to_vpc and group.https_to_s3):
            fixes.append(f"allow TCP 443 out of {group.group_id} to the VPC's CIDR and to S3")
        results.append(_result(f"security group {group.group_id}", "self ingress/egress, HTTPS out",
                               "as needed" if not lacking else f"lacks {', '.join(lacking)}",
                               None if not lacking else f"{'; '.join(fixes)} ({PROCESSING_VPC_DOC})"))
    return results


def check_network_endpoints(facts: NetworkFacts) -> CheckResult:
    """The network stack adds the S3 and DynamoDB gateway endpoints to the given route tables and one private-DNS
    interface endpoint per service: an endpoint of another owner already doing either makes the deploy fail (a
    route table takes one route per prefix list, GATEWAY_ROUTES_DOC; one private DNS name per service in a VPC,
    PRIVATE_DNS_DOC)."""
    conflicts = []
    for planned in facts.planned:
        for e in facts.endpoints:
            if e.service != planned.service or e.gateway != planned.gateway or e.stack == facts.network_stack:
                continue
            if e.gateway and set(e.route_tables) & set(facts.route_tables):
                conflicts.append(f"{e.endpoint_id} ({e.service} gateway on "
                                 f"{', '.join(sorted(set(e.route_tables) & set(facts.route_tables)))})")
            elif not e.gateway and e.private_dns:
                conflicts.append(f"{e.endpoint_id} ({e.service}, private DNS)")
    needed = f"no other endpoint for the {len(facts.planned)} the network stack adds"
    if not conflicts:
        return _result(f"VPC endpoints {facts.vpc_id}", needed, "none in the way", None)
    return _result(f"VPC endpoints {facts.vpc_id}", needed, f"{len(conflicts)} in the way",
                   f"{', '.join(conflicts)} already serve what the network stack adds ({GATEWAY_ROUTES_DOC}, "
                   f"{PRIVATE_DNS_DOC}): delete them (or take those route tables out of network.import) first")


def evaluate(config: EnvironmentConfig, assembly: Assembly, names: Names, facts: AwsFacts,
             scaling_on: bool) -> list[CheckResult]:
    """Every check, in table order. A wrong account or region stops here: the rest would describe another target."""
    region = facts.region
    results = [check_account(config, facts.account, region)]
    if not results[0].passed:
        return results
    results += [check_bootstrap(parameter, required, facts.bootstrap_versions.get(parameter), facts.account, region)
                for parameter, required in sorted(assembly.bootstrap.items())]
    if facts.lambda_account is not None:
        results.append(check_lambda_concurrency(config.name, template_reservations(assembly), facts.lambda_account,
                                                region, reservation_keys(config)))
    results += [check_sagemaker_quota(need, facts.quotas.get(need.name), config.name, region)
                for need in sagemaker_quota_needs(config)]
    results.append(check_algorithm_image(image_regions(assembly), region, config.name))
    for key, name in names.endpoints:
        state = facts.endpoints.get(name, EndpointState(name, deployed=False))
        results.append(check_instance_type_change(state, key, getattr(config, key).instance_type, scaling_on,
                                                  config.name))
    if facts.lake_formation is not None:
        results.append(check_lake_formation(facts.lake_formation, config.name))
    if facts.network is not None:
        results += [check_network_dns(facts.network), *check_network_groups(facts.network),
                    check_network_endpoints(facts.network)]
    return results


# ------------------------------------------------------------------------------------------------ output


def render_table(results: Sequence[CheckResult]) -> str:
    headers = ("check", "needed", "have", "result")
    rows = [(r.check, r.needed, r.have, "PASS" if r.passed else "FAIL") for r in results]
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows)]

    def line(cells: Sequence[str]) -> str:
        return " | ".join(cell.ljust(width) for cell, width in zip(cells, widths)).rstrip()

    lines = [line(headers), "-+-".join("-" * width for width in widths), *map(line, rows)]
    fixes = [f"FAIL {r.check}: {r.fix}" for r in results if not r.passed]
    return "\n".join(lines + ([""] + fixes if fixes else []))


def render_json(results: Sequence[CheckResult]) -> str:
    return json.dumps([r.as_dict() for r in results], indent=2)


# -------------------------------------------------------------------------------------------------- main


def resolve_region(explicit: str | None, config: EnvironmentConfig) -> str:
    if explicit is not None and not _REGION.match(explicit):
        raise UsageError(f"--region: '{explicit}' is not an AWS region name (e.g. eu-west-1)")
    from roadseg.session import AwsAccessError, config_file
    from roadseg.session import resolve_region as region_rule  # the one rule of every roadseg command

    try:
        return region_rule(explicit, config.region, config_path=config_file(config.name))
    except AwsAccessError as exc:
        raise AwsError(str(exc)) from None


def run(config: EnvironmentConfig, assembly: Assembly, names: Names, region: str,
        scaling_on: bool) -> list[CheckResult]:
    clients = Clients(region)
    account = fetch_account(clients)
    first = check_account(config, account, region)
    if not first.passed:
        return [first]
    return evaluate(config, assembly, names, fetch_facts(clients, account, assembly, names, config), scaling_on)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not usage + message
        print(f"{PROG}: {message} (see --help)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m roadseg.preflight", description=__doc__.split("\n")[0],
                     epilog="Exit codes: 0 all checks pass, 1 a check failed, 2 bad input, 3 AWS not usable. "
                            f"IAM actions used (read-only): {', '.join(READ_ACTIONS)}.")
    parser.add_argument("--env", required=True, help="environment: config/<env>.yaml")
    parser.add_argument("--assembly", default="cdk.out", type=Path,
                        help="cloud assembly written by `make synth` (default cdk.out)")
    parser.add_argument("--scaling", choices=("on", "off"), default="on",
                        help="off: this deploy leaves the endpoints' scalable targets out (make deploy SCALING=off)")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of the table")
    parser.add_argument("--region", help="AWS region (default: the config's region, then AWS_REGION, "
                                         "AWS_DEFAULT_REGION, your AWS profile's)")
    return parser


def _fail(message: str, code: int) -> int:
    print(f"{PROG}: {' '.join(message.split())}", file=sys.stderr)  # one line, whatever the message holds
    return code


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    _session.cache_clear()
    try:
        config = load_config(args.env)
        assembly = read_assembly(args.assembly, args.env)
        names = deployment_names(config)
        require_environment(assembly, names, args.env, args.assembly)
        region = resolve_region(args.region, config)
        results = run(config, assembly, names, region, scaling_on=args.scaling == "on")
    except (ConfigError, UsageError) as exc:
        return _fail(str(exc), EXIT_USAGE)
    except AwsError as exc:
        return _fail(str(exc), EXIT_AWS)
    except (NoCredentialsError, PartialCredentialsError) as exc:
        return _fail(f"no usable AWS credentials ({exc}): set AWS_PROFILE or log in (e.g. aws sso login)", EXIT_AWS)
    except ClientError as exc:
        return _fail(describe_client_error(exc, "aws"), EXIT_AWS)
    except BotoCoreError as exc:
        return _fail(f"AWS: {exc}", EXIT_AWS)
    except Exception as exc:  # botocore could not parse the answer (a proxy's HTML page): not retried, not BotoCore
        from roadseg.session import UNPARSEABLE_RESPONSE, unparseable_response

        if not unparseable_response(exc):
            raise
        return _fail(UNPARSEABLE_RESPONSE, EXIT_AWS)
    print(render_json(results) if args.json else render_table(results))
    return EXIT_OK if all(r.passed for r in results) else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
