"""Class (c) of the integration contracts: network completeness in isolated mode (every job and compilation request
carries VpcConfig; security groups admit their own members wherever a job can run on several instances). Rules
register with ``stacks.checks.service_contracts.rules.rule``.

- ``isolated-network-job-starters-know-the-vpc``: a function that may start SageMaker jobs (Processing, Training,
  tuning, Neo compilation) builds their requests at run time, so the templates cannot show the requests; what they
  can show is that the function's environment carries the subnets and security groups it runs in itself. The
  requests built from that environment are checked by :func:`missing_vpc_config` in the tests (the drive jobs'
  builders and the rollout's compilation requests, fed the isolated environments' Lambda variables). Pipeline steps
  are checked by ``isolated-network-everything-in-the-vpc`` (rules.py).
- ``isolated-network-groups-admit-their-members``: every security group of the app placed on a job that can run on
  several instances (a pipeline step whose InstanceCount is not the literal 1, a tuning step, any job a function
  starts) allows all traffic from and to itself (PROCESSING_VPC_DOC, TRAINING_VPC_DOC, TRAINING_ENCRYPTION_DOC).
  Imported groups are not in the templates: ``roadseg.preflight`` checks them in the account.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from stacks.checks.service_contracts.assembly import Assembly, Resource
from stacks.checks.service_contracts.rules import (
    Context,
    Violation,
    _pipeline_steps,
    _role_of_function,
    _step_vpc_configs,
    isolated,
    rule,
)

PROCESSING_VPC_DOC = "https://docs.aws.amazon.com/sagemaker/latest/dg/process-vpc.html"
TRAINING_VPC_DOC = "https://docs.aws.amazon.com/sagemaker/latest/dg/train-vpc.html"
TRAINING_ENCRYPTION_DOC = "https://docs.aws.amazon.com/sagemaker/latest/dg/train-encrypt.html"
NEO_VPC_DOC = "https://docs.aws.amazon.com/sagemaker/latest/dg/neo-vpc.html"
JOB_ACTIONS = ("sagemaker:CreateProcessingJob", "sagemaker:CreateTrainingJob",
               "sagemaker:CreateHyperParameterTuningJob", "sagemaker:CreateCompilationJob")
ALL_TRAFFIC = "-1"


# -- requests built at run time ----------------------------------------------------------------------------------

def request_vpc_config(kind: str, request: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """Where each Create*Job request carries its VpcConfig (API_NetworkConfig for Processing; VpcConfig at the top
    of CreateTrainingJob and CreateCompilationJob; in the training job definition of a tuning job)."""
    if kind == "processing":
        return (request.get("NetworkConfig") or {}).get("VpcConfig")
    if kind == "tuning":
        return (request.get("TrainingJobDefinition") or {}).get("VpcConfig")
    if kind in ("training", "compilation"):
        return request.get("VpcConfig")
    raise ValueError(f"unknown job kind {kind!r}")


def missing_vpc_config(kind: str, request: Mapping[str, Any], subnets: list[str] | tuple[str, ...],
                       security_groups: list[str] | tuple[str, ...]) -> str | None:
    """None when the request runs in exactly these subnets and security groups; else what is wrong (one line)."""
    config = request_vpc_config(kind, request)
    name = next((v for k, v in request.items() if k.endswith("JobName")), "the request")
    if not config:
        return f"{kind} job {name} has no VpcConfig: it would run outside the isolated network"
    if sorted(config.get("Subnets") or []) != sorted(subnets):
        return f"{kind} job {name} runs in subnets {config.get('Subnets')}, not the VPC's {list(subnets)}"
    if sorted(config.get("SecurityGroupIds") or []) != sorted(security_groups):
        return (f"{kind} job {name} has security groups {config.get('SecurityGroupIds')}, not the workloads' "
                f"{list(security_groups)}")
    return None


# -- templates -----------------------------------------------------------------------------------------------------

def _job_starters(assembly: Assembly) -> Iterator[tuple[Resource, list[str]]]:
    """(function, the job actions its role allows) for every function that may start SageMaker jobs."""
    for function in assembly.resources("AWS::Lambda::Function"):
        role = _role_of_function(assembly, function)
        if role is None:
            continue
        statements = assembly.identity_statements(role)
        actions = [a for a in JOB_ACTIONS if any(s.allows_action(a) for s in statements)]
        if actions:
            yield function, actions


@rule("isolated-network-job-starters-know-the-vpc")
def job_starters(assembly: Assembly, _: Context) -> Iterator[Violation]:
    name = "isolated-network-job-starters-know-the-vpc"
    if not isolated(assembly):
        return
    for function, actions in _job_starters(assembly):
        vpc = function.properties.get("VpcConfig") or {}
        variables = (function.properties.get("Environment") or {}).get("Variables") or {}
        environment = " ".join(assembly.text(function.stack, v) for v in variables.values())
        ids = [assembly.text(function.stack, i) for i in [*vpc.get("SubnetIds", []), *vpc.get("SecurityGroupIds", [])]]
        missing = [i for i in ids if i not in environment]
        if not ids or missing:
            yield Violation(name, function.path, f"may start jobs ({', '.join(actions)}) but its environment lacks "
                            f"{', '.join(missing) or 'the VPC (the function has no VpcConfig)'}: the requests it "
                            "builds cannot carry the VpcConfig of the isolated network", NEO_VPC_DOC)


def _multi_instance(step: dict) -> bool:
    arguments = step.get("Arguments") or {}
    kind = step.get("Type")
    if kind == "Tuning":
        return True
    holder = ((arguments.get("ProcessingResources") or {}).get("ClusterConfig") if kind == "Processing"
              else arguments.get("ResourceConfig"))
    count = (holder or {}).get("InstanceCount", 1)
    return not (isinstance(count, int) and count == 1)  # a pipeline parameter or expression can be anything


def _admits_itself(assembly: Assembly, group: Resource, direction: str) -> bool:
    """All traffic from (ingress) or to (egress) the group itself, inline or as separate rule resources."""
    own = {str(group.ref("GroupId")), str(group.ref())}
    peer_key = "SourceSecurityGroupId" if direction == "ingress" else "DestinationSecurityGroupId"
    inline = group.properties.get("SecurityGroupIngress" if direction == "ingress" else "SecurityGroupEgress", [])
    candidates = [(group.stack, r) for r in inline]
    resource_type = "AWS::EC2::SecurityGroupIngress" if direction == "ingress" else "AWS::EC2::SecurityGroupEgress"
    for separate in assembly.resources(resource_type):
        if assembly.text(separate.stack, separate.properties.get("GroupId")) in own:
            candidates.append((separate.stack, separate.properties))
    return any(str(r.get("IpProtocol")) == ALL_TRAFFIC and assembly.text(stack, r.get(peer_key)) in own
               for stack, r in candidates)


def _groups_of_multi_instance_jobs(assembly: Assembly) -> Iterator[tuple[str, str]]:
    """(rendered security group id, what runs with it) for every job that can run on several instances."""
    for pipeline in assembly.resources("AWS::SageMaker::Pipeline"):
        for step, vpc_config in _step_vpc_configs(_pipeline_steps(assembly, pipeline)):
            if vpc_config and _multi_instance(step):
                for group in vpc_config.get("SecurityGroupIds") or []:
                    yield str(group), f"{pipeline.path} step {step.get('Name')}"
    for function, _actions in _job_starters(assembly):
        for group in (function.properties.get("VpcConfig") or {}).get("SecurityGroupIds", []):
            yield assembly.text(function.stack, group), f"the jobs {function.path} starts"


@rule("isolated-network-groups-admit-their-members")
def groups_admit_members(assembly: Assembly, _: Context) -> Iterator[Violation]:
    name = "isolated-network-groups-admit-their-members"
    if not isolated(assembly):
        return
    groups = {}
    for group in assembly.resources("AWS::EC2::SecurityGroup"):
        groups[str(group.ref("GroupId"))] = group
        groups[str(group.ref())] = group
    users: dict[str, list[str]] = {}
    for group_id, user in _groups_of_multi_instance_jobs(assembly):
        if group_id in groups:
            users.setdefault(group_id, []).append(user)
    reported = set()
    for group_id, used_by in sorted(users.items()):
        group = groups[group_id]
        if group.path in reported:
            continue
        reported.add(group.path)
        missing = [d for d in ("ingress", "egress") if not _admits_itself(assembly, group, d)]
        if missing:
            yield Violation(name, group.path, "is placed on jobs that can run on several instances "
                            f"({', '.join(used_by)}) but has no self-referencing {' and '.join(missing)} rule for "
                            "all traffic: the instances cannot reach each other (inter-container encryption adds "
                            "UDP 500 and protocol 50)", PROCESSING_VPC_DOC)
