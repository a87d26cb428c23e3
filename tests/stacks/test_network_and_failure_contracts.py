"""Contract classes c (network completeness in isolated mode) and d (no silent failure): the synthesized
environments keep them, each rule fails on a template broken its way, and the requests the Lambda code builds at run
time (drive jobs, Neo compilation) carry the VpcConfig of the isolated environment's own Lambda variables."""

from __future__ import annotations

import copy
import json
import re

import pytest
from roadseg_lambda.drive_jobs import build_request, extraction_request
from rollout import compilation_jobs

from contracts.drives import DriveId
from contracts.lambda_env import DrivesEnvironment
from stacks.checks.service_contracts import RULES, Assembly, Context
from stacks.checks.service_contracts.networks import missing_vpc_config
from stacks.job_failure_alarms import FAILED_STATES, PIPELINE_EXECUTION_EVENT, PROCESSING_JOB_EVENT
from tests.stacks.test_service_contracts import _context, _resources, _templates

PINNED = Context(account_pinned=True)


def _violations(templates, rule_name, context=PINNED):
    return list(RULES[rule_name](Assembly(templates), context))


@pytest.fixture
def dev(synth):
    env = synth("dev")
    return env, _templates(env)


@pytest.fixture
def isolated(isolated_synth):
    env = isolated_synth("isolated-create")
    return env, env.templates()


def _break(templates, rule_name, breaker, fragment, context=PINNED):
    assert _violations(templates, rule_name, context) == [], rule_name
    broken = copy.deepcopy(templates)
    assert breaker(broken), "the breaker changed nothing"
    violations = _violations(broken, rule_name, context)
    text = "\n".join(map(str, violations))
    assert violations and fragment in text, text
    assert all(v.doc.startswith("https://docs.aws.amazon.com/") for v in violations)
    return violations


# -- d. no silent failure ----------------------------------------------------------------------------------------

def _job_rules(templates):
    return {body["Properties"]["Name"]: (stack, lid, body)
            for stack, lid, body in _resources(templates, "AWS::Events::Rule")
            if "-job-failed-" in str(body["Properties"].get("Name"))}


def test_failure_rules_match_only_this_projects_failed_jobs(dev):
    env, templates = dev
    rules = _job_rules(templates)
    prefix = env.config.prefix
    pipelines = rules[f"{prefix}-job-failed-pipelines"][2]["Properties"]
    drives = rules[f"{prefix}-job-failed-drive-jobs"][2]["Properties"]
    assert pipelines["EventPattern"]["detail-type"] == [PIPELINE_EXECUTION_EVENT]
    assert pipelines["EventPattern"]["detail"]["currentPipelineExecutionStatus"] == list(FAILED_STATES)
    arns = json.dumps(pipelines["EventPattern"]["detail"]["pipelineArn"])
    assert f":pipeline/{prefix}-training" in arns and f":pipeline/{prefix}-tuning" in arns
    assert drives["EventPattern"]["detail-type"] == [PROCESSING_JOB_EVENT]
    assert drives["EventPattern"]["detail"] == {"ProcessingJobName": [{"prefix": f"{prefix}-drive-"}],
                                                "ProcessingJobStatus": ["Failed", "Stopped"]}
    for body in (pipelines, drives):
        assert body["EventPattern"]["source"] == ["aws.sagemaker"]
        assert [t["Arn"]["Ref"] for t in body["Targets"]][0].startswith("MonitoringAlarmTopic")


def test_a_pipeline_without_alarm_or_rule_fails(dev):
    env, templates = dev

    def breaker(broken):
        changed = 0
        for stack, lid, _ in list(_resources(broken, "AWS::CloudWatch::Alarm")):
            if lid.startswith("MonitoringPipelineFailed"):
                del broken[stack]["Resources"][lid]
                changed += 1
        stack, lid, _ = _job_rules(broken)[f"{env.config.prefix}-job-failed-pipelines"]
        del broken[stack]["Resources"][lid]
        return changed
    violations = _break(templates, "async-jobs-reach-the-alarm-topic", breaker, "a failed job of this pipeline",
                        _context(env))
    assert len(violations) == 2  # both pipelines


def test_a_rule_whose_topic_key_does_not_admit_eventbridge_does_not_count(dev):
    env, templates = dev

    def breaker(broken):
        for stack, lid, _ in list(_resources(broken, "AWS::CloudWatch::Alarm")):
            if lid.startswith("MonitoringPipelineFailed"):
                del broken[stack]["Resources"][lid]
        dropped = 0
        for _, _, key in _resources(broken, "AWS::KMS::Key"):
            statements = key["Properties"]["KeyPolicy"]["Statement"]
            kept = [s for s in statements if "events.amazonaws.com" not in json.dumps(s.get("Principal", {}))]
            dropped += len(statements) - len(kept)
            key["Properties"]["KeyPolicy"]["Statement"] = kept
        return dropped
    _break(templates, "async-jobs-reach-the-alarm-topic", breaker, "does not let events.amazonaws.com kms:Decrypt",
           _context(env))


def test_drive_jobs_without_a_failure_rule_fail(dev):
    env, templates = dev

    def narrow(broken):
        _, _, body = _job_rules(broken)[f"{env.config.prefix}-job-failed-drive-jobs"]
        body["Properties"]["EventPattern"]["detail"]["ProcessingJobStatus"] = ["Failed"]  # Stopped goes unseen
        return True
    violations = _break(templates, "async-jobs-reach-the-alarm-topic", narrow,
                        f"may start processing jobs named {env.config.prefix}-drive-*", _context(env))
    assert {v.resource.split("/")[1].split("ServiceRole")[0] for v in violations} == {
        "DriveProcessingLauncher", "DriveProcessingCompletion"}


def test_every_dead_letter_queue_needs_a_depth_alarm(dev):
    env, templates = dev

    def breaker(broken):
        for stack, lid, _body in list(_resources(broken, "AWS::CloudWatch::Alarm")):
            if lid.startswith("PreprocessorsPostprocessFailedInvocationsDepth"):
                del broken[stack]["Resources"][lid]
                return True
        return False
    (violation,) = _break(templates, "dead-letter-queues-alarmed", breaker, "PreprocessorsPostprocess",
                          _context(env))
    assert "failed invocations" in violation.message


def test_alarm_topic_key_admits_eventbridge_without_conditions(dev):
    _, templates = dev
    statements = [s for _, _, key in _resources(templates, "AWS::KMS::Key")
                  for s in key["Properties"]["KeyPolicy"]["Statement"]
                  if s.get("Sid") == "EventBridgeSendToDeadLetterQueues"]  # one statement serves topics and queues
    assert len(statements) == 1 and "Condition" not in statements[0]
    assert statements[0]["Principal"] == {"Service": "events.amazonaws.com"}
    assert set(statements[0]["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey"}


# -- c. network completeness -------------------------------------------------------------------------------------

def test_network_rules_say_nothing_outside_isolated_mode(dev):
    _, templates = dev
    for rule_name in ("isolated-network-job-starters-know-the-vpc", "isolated-network-groups-admit-their-members"):
        assert _violations(templates, rule_name) == []


def test_workload_group_admits_its_members_both_ways(isolated):
    _, templates = isolated
    for kind in ("Ingress", "Egress"):
        rules = [body["Properties"] for _, _, body in _resources(templates, f"AWS::EC2::SecurityGroup{kind}")
                 if body["Properties"].get("IpProtocol") == "-1"]
        peer = "SourceSecurityGroupId" if kind == "Ingress" else "DestinationSecurityGroupId"
        assert any(r["GroupId"] == r[peer] and "Workloads" in json.dumps(r["GroupId"]) for r in rules), kind


@pytest.mark.parametrize("kind", ["AWS::EC2::SecurityGroupIngress", "AWS::EC2::SecurityGroupEgress"])
def test_a_group_that_does_not_admit_itself_fails(isolated, kind):
    _, templates = isolated

    def breaker(broken):
        for stack, lid, body in list(_resources(broken, kind)):
            if body["Properties"].get("IpProtocol") == "-1":
                del broken[stack]["Resources"][lid]
                return True
        return False
    direction = "ingress" if kind.endswith("Ingress") else "egress"
    (violation,) = _break(templates, "isolated-network-groups-admit-their-members", breaker,
                          f"no self-referencing {direction} rule")
    assert "Workloads" in violation.resource and "DriveProcessingLauncher" in violation.message


def test_a_job_starter_without_the_vpc_in_its_environment_fails(isolated):
    _, templates = isolated

    def breaker(broken):
        for _, lid, body in _resources(broken, "AWS::Lambda::Function"):
            if lid.startswith("DriveProcessingLauncher"):
                return body["Properties"]["Environment"]["Variables"].pop("JOB_SECURITY_GROUPS", None) is not None
        return False
    (violation,) = _break(templates, "isolated-network-job-starters-know-the-vpc", breaker, "Workloads")
    assert "DriveProcessingLauncher" in violation.resource


# -- requests built at run time, from the isolated environments' own Lambda variables -------------------------------

_TOKEN = re.compile(r"\{\{[^}]+\}\}|\$\{[^}]+\}")


class _Fakes:
    """Unresolved references (``{{Stack/Id.Attr}}``, ``${Param}``) as stable fake values of the right form: the same
    reference always becomes the same fake, wherever it appears."""

    def __init__(self) -> None:
        self.seen: dict[str, str] = {}

    def value(self, text: str, kind: str = "tok") -> str:
        return _TOKEN.sub(lambda m: self.seen.setdefault(m.group(0), f"{kind}-{len(self.seen):017x}"), text)


def _launcher(env) -> tuple[dict[str, str], dict[str, list[str]]]:
    templates = env.templates()
    assembly = Assembly(templates)
    for stack, lid, body in _resources(templates, "AWS::Lambda::Function"):
        if lid.startswith("DriveProcessingLauncher"):
            props = body["Properties"]
            variables = {k: assembly.text(stack, v) for k, v in props["Environment"]["Variables"].items()}
            vpc = {k: [assembly.text(stack, i) for i in v] for k, v in props["VpcConfig"].items()}
            return variables, vpc
    raise AssertionError("no drive launcher")


@pytest.mark.parametrize("name", ["isolated-create", "isolated-import"])
def test_drive_job_requests_carry_the_functions_own_vpc(isolated_synth, name):
    """The launcher's synthesized environment, decoded by the real codec, makes requests whose VpcConfig is the
    function's own subnets and security groups (contract class c for requests built at run time)."""
    variables, vpc = _launcher(isolated_synth(name))
    fakes = _Fakes()
    subnets = [fakes.value(s, "subnet") for s in vpc["SubnetIds"]]
    groups = [fakes.value(g, "sg") for g in vpc["SecurityGroupIds"]]
    decoded = DrivesEnvironment.from_env({k: fakes.value(v) for k, v in variables.items()})
    assert decoded.job_subnets and decoded.job_security_groups
    drive = DriveId("car-1", "2026-12-01T10-00-00")
    requests = [extraction_request(decoded, drive, [f"drives/{drive}.mcap"]),
                build_request(decoded, drive, f"s3://{decoded.inference_bucket}/drive-outputs/{drive}/b.manifest")]
    for request in requests:
        assert missing_vpc_config("processing", request, subnets, groups) is None
    outside = {**requests[0], "NetworkConfig": {"EnableNetworkIsolation": False}}
    assert "has no VpcConfig" in missing_vpc_config("processing", outside, subnets, groups)


def test_compilation_requests_carry_the_vpc_only_when_given():
    metadata = {"EdgeBundle": "s3://artifacts/pipelines/p/e/bundle/", "ServingSize": "1024x512"}
    common = dict(targets=["ml_g4dn"], job_prefix="roadseg-iso-neo-", role_arn="arn:aws:iam::111111111111:role/neo",
                  kms_key_arn=None)
    subnets, groups = ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"], ["sg-0123456789abcdef0"]
    (inside,) = compilation_jobs(metadata, 3, subnets=subnets, security_groups=groups, **common)
    assert missing_vpc_config("compilation", inside, subnets, groups) is None
    (outside,) = compilation_jobs(metadata, 3, **common)
    assert "compilation job roadseg-iso-neo-" in missing_vpc_config("compilation", outside, subnets, groups)
    other = {**inside, "VpcConfig": {"Subnets": subnets[:1], "SecurityGroupIds": groups}}
    assert "runs in subnets" in missing_vpc_config("compilation", other, subnets, groups)
