"""The checks: each a pure function of the configuration, the cloud assembly and the facts fetched from AWS, giving
one row ``check | needed | have`` with the exact fix when it fails; :func:`evaluate` runs them in table order."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# "If the update would change the instance type for any model that is a target for auto scaling, the update fails."
from contracts.aws_docs import SCALING_UPDATE_DOC as SCALING_DOC
from envconfig.config import LAMBDA_UNRESERVED_MINIMUM, EnvironmentConfig
from roadseg.preflight.assembly import (
    DEFAULT_BOOTSTRAP_PARAMETER,
    DEFAULT_QUALIFIER,
    Assembly,
    Names,
    image_regions,
    template_reservations,
)
from roadseg.preflight.facts import (
    SAGEMAKER_SERVICE_CODE,
    AwsFacts,
    EndpointState,
    LambdaAccount,
    NetworkFacts,
    Quota,
)

# Service Quotas code of Lambda's "Concurrent executions" (no AWS page states it; confirm with list-service-quotas).
LAMBDA_QUOTA_NAME, LAMBDA_SERVICE_CODE, LAMBDA_QUOTA_CODE = "Concurrent executions", "lambda", "L-B99A9384"

# Pages the network and Lake Formation checks rest on.
PRIVATE_DNS_DOC = "https://docs.aws.amazon.com/vpc/latest/privatelink/privatelink-access-aws-services.html"
GATEWAY_ROUTES_DOC = "https://docs.aws.amazon.com/vpc/latest/privatelink/gateway-endpoints.html"
PROCESSING_VPC_DOC = "https://docs.aws.amazon.com/sagemaker/latest/dg/process-vpc.html"
LAKE_FORMATION_DOC = "https://docs.aws.amazon.com/lake-formation/latest/dg/change-settings.html"
IAM_ALLOWED_PRINCIPALS = "IAM_ALLOWED_PRINCIPALS"


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
    # Tuning jobs run on demand (a shared checkpoint prefix rules out spot there, see training/pipelines/tuning_job.py);
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

