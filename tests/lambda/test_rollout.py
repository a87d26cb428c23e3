"""lambda/rollout.py: the pure decision, and the handler against moto (CloudFormation, SageMaker) and Stubber."""

from __future__ import annotations

import importlib

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from moto import mock_aws

# The handlers live in lambda/ (the function's code root, on pytest's pythonpath), which is not a package.
rollout = importlib.import_module("rollout")
RolloutError, RolloutRetryableError, decide = rollout.RolloutError, rollout.RolloutRetryableError, rollout.decide
CLIENT_FACTORIES = (rollout.cloudformation_client, rollout.sagemaker_client, rollout.ssm_client)

REGION = "us-east-1"
GROUP = "roadseg-dev-segmentation"
STACK = "RoadsegDevInference"
SERVING = "/roadseg/roadseg-dev/serving/model-package-arn"
OLD_ARN = f"arn:aws:sagemaker:{REGION}:123456789012:model-package/{GROUP}/1"
NEW_ARN = f"arn:aws:sagemaker:{REGION}:123456789012:model-package/{GROUP}/2"
EVENT_ID = "5ad8e4f2-1b4c-8d8e-7c1f-3e3a1c9e0b21"
# DescribeStacks' Parameters of the inference stack: the SSM-typed package parameter carries the SSM name as its
# value and what it resolved to at the last create/update (API_Parameter: ResolvedValue).
PARAMETERS = [
    {"ParameterKey": "ModelPackageArn", "ParameterValue": SERVING, "ResolvedValue": OLD_ARN},
    {"ParameterKey": "RealtimeInstanceType", "ParameterValue": "ml.g5.xlarge"},
    {"ParameterKey": "BootstrapVersion", "ParameterValue": "/cdk-bootstrap/hnb659fds/version", "ResolvedValue": "30"},
]
ALL_PREVIOUS = [{"ParameterKey": p["ParameterKey"], "UsePreviousValue": True} for p in PARAMETERS]
DEPLOYED = [{**PARAMETERS[0], "ResolvedValue": NEW_ARN}, *PARAMETERS[1:]]


def event(arn: str = NEW_ARN, status: str = "Approved", group: str = GROUP, event_id: str = EVENT_ID) -> dict:
    """An EventBridge "SageMaker Model Package State Change" event as SageMaker sends it."""
    return {
        "version": "0",
        "id": event_id,
        "detail-type": "SageMaker Model Package State Change",
        "source": "aws.sagemaker",
        "account": "123456789012",
        "time": "2026-11-24T07:00:00Z",
        "region": REGION,
        "resources": [arn],
        "detail": {
            "ModelPackageGroupName": group,
            "ModelPackageVersion": int(arn.rsplit("/", 1)[1]),
            "ModelPackageArn": arn,
            "CreationTime": 1795000000000,
            "InferenceSpecification": {"Containers": [{"Image": "img", "ModelDataUrl": "s3://b/model.tar.gz"}],
                                       "SupportedContentTypes": ["image/jpeg"],
                                       "SupportedResponseMIMETypes": ["image/png"]},
            "ModelApprovalStatus": status,
            "ModelPackageStatus": "Completed",
        },
    }


def _decide(evt: dict, parameters=PARAMETERS, status: str = "UPDATE_COMPLETE", **kw):
    return decide(evt, parameters, status, model_package_group=GROUP, **kw)


# ---------------------------------------------------------------------------------- pure decision

def test_approved_event_updates_the_stack_with_every_previous_value():
    decision = _decide(event())
    assert decision.action == "update"
    assert decision.model_package_arn == NEW_ARN and decision.previous_arn == OLD_ARN
    assert decision.model_package_version == 2 and decision.serving_parameter == SERVING
    # No parameter value: the SSM-typed package parameter re-resolves to what the handler writes into SSM first.
    assert list(decision.parameters) == ALL_PREVIOUS
    assert decision.client_request_token == f"roadseg-rollout-{EVENT_ID}"


def test_redelivered_event_is_skipped():
    decision = _decide(event(), DEPLOYED, "UPDATE_IN_PROGRESS")
    assert (decision.action, decision.reason) == ("skipped", "already deployed")


@pytest.mark.parametrize("status", ["Rejected", "PendingManualApproval", None])
def test_other_statuses_are_ignored(status):
    decision = _decide(event(status=status), None, None)
    assert decision.action == "ignored" and "not 'Approved'" in decision.reason


def test_other_groups_and_other_events_are_ignored():
    assert _decide(event(group="someone-else"), None, None).action == "ignored"
    other = {**event(), "detail-type": "SageMaker Endpoint State Change"}
    assert "not a model package state change" in _decide(other, None, None).reason


@pytest.mark.parametrize("status", ["UPDATE_IN_PROGRESS", "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS",
                                    "UPDATE_ROLLBACK_IN_PROGRESS", "CREATE_IN_PROGRESS", "REVIEW_IN_PROGRESS"])
def test_busy_stack_means_retry_and_still_names_the_ssm_parameter(status):
    decision = _decide(event(), status=status)
    assert decision.action == "retry" and status in decision.reason
    assert decision.serving_parameter == SERVING and list(decision.parameters) == ALL_PREVIOUS


@pytest.mark.parametrize("status", ["ROLLBACK_COMPLETE", "UPDATE_ROLLBACK_FAILED", "DELETE_FAILED"])
def test_stuck_stack_is_blocked(status):
    assert _decide(event(), status=status).action == "blocked"


@pytest.mark.parametrize("status", ["CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE"])
def test_settled_stack_is_updated(status):
    assert _decide(event(), status=status).action == "update"


def test_stack_without_the_parameter_is_blocked():
    decision = _decide(event(), [{"ParameterKey": "Other", "ParameterValue": "x"}])
    assert decision.action == "blocked" and "no parameter 'ModelPackageArn'" in decision.reason
    custom = decide(event(), [{"ParameterKey": "Pkg", "ParameterValue": "/x/pkg", "ResolvedValue": OLD_ARN}],
                    "UPDATE_COMPLETE", model_package_group=GROUP, parameter_name="Pkg")
    assert custom.serving_parameter == "/x/pkg" and custom.parameters == ({"ParameterKey": "Pkg",
                                                                           "UsePreviousValue": True},)


def test_a_package_parameter_that_is_not_ssm_typed_is_blocked():
    """A stack still on the old template (a plain String parameter, which the next deploy would reset)."""
    decision = _decide(event(), [{"ParameterKey": "ModelPackageArn", "ParameterValue": OLD_ARN}])
    assert decision.action == "blocked" and "not SSM-typed" in decision.reason


def test_package_no_longer_approved_is_ignored():
    decision = _decide(event(), current_approval_status="Rejected")
    assert decision.action == "ignored" and "no longer approved (now Rejected)" in decision.reason


def test_arn_falls_back_to_resources_and_must_exist():
    evt = event()
    del evt["detail"]["ModelPackageArn"]
    assert _decide(evt).model_package_arn == NEW_ARN
    evt["resources"] = []
    with pytest.raises(RolloutError, match="carries no model package ARN"):
        _decide(evt)


def test_client_request_token_is_valid_for_cloudformation():
    token = rollout.client_request_token("9" + "x" * 200 + "/.:", NEW_ARN)
    assert token.startswith("roadseg-rollout-9") and len(token) == 128
    assert all(c.isalnum() or c == "-" for c in token)
    assert rollout.client_request_token("", NEW_ARN) == f"roadseg-rollout-{GROUP}-2"


def test_wait_budget_leaves_a_margin_before_the_timeout():
    assert rollout.wait_budget_seconds(None) == 0
    assert rollout.wait_budget_seconds(10_000) == 0
    assert rollout.wait_budget_seconds(900_000) == 900 - rollout.WAIT_MARGIN_SECONDS


# ------------------------------------------- handler: SageMaker and SSM on moto, CloudFormation stubbed
# moto's CloudFormation does not return ResolvedValue for SSM-typed parameters, so DescribeStacks/UpdateStack are
# stubbed with the shapes botocore validates; the registry and the SSM parameter are moto's.


@pytest.fixture
def env(monkeypatch, tmp_path):
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": REGION,
                       "AWS_CONFIG_FILE": str(tmp_path / "none"), "STACK_NAME": STACK,
                       "MODEL_PACKAGE_GROUP": GROUP}.items():
        monkeypatch.setenv(key, value)
    for name in ("PARAMETER_NAME", "AWS_PROFILE", "NEO_TARGETS", "NEO_SUBNETS", "NEO_SECURITY_GROUPS"):
        monkeypatch.delenv(name, raising=False)
    for factory in CLIENT_FACTORIES:
        factory.cache_clear()  # clients made under another test's moto/credentials must not leak in
    yield
    for factory in CLIENT_FACTORIES:
        factory.cache_clear()


def _package(sm, status: str) -> str:
    return sm.create_model_package(
        ModelPackageGroupName=GROUP, ModelApprovalStatus=status,
        InferenceSpecification={"Containers": [{"Image": "811284229777.dkr.ecr.us-east-1.amazonaws.com/ss:1",
                                                "ModelDataUrl": "s3://b/model.tar.gz"}],
                                "SupportedContentTypes": ["image/jpeg"], "SupportedResponseMIMETypes": ["image/png"]},
    )["ModelPackageArn"]


def _describe(status: str = "UPDATE_COMPLETE", parameters=PARAMETERS) -> dict:
    return {"Stacks": [{"StackName": STACK, "CreationTime": 0, "StackStatus": status, "Parameters": parameters}]}


class Context:
    """A Lambda context with a fixed time budget."""

    def __init__(self, remaining_ms: int) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@pytest.fixture
def world(env, monkeypatch):
    """moto: versions 1 and 2 approved, the serving SSM parameter naming version 1; CloudFormation stubbed."""
    with mock_aws():
        sm = boto3.client("sagemaker", region_name=REGION)
        sm.create_model_package_group(ModelPackageGroupName=GROUP)
        assert (_package(sm, "Approved"), _package(sm, "Approved")) == (OLD_ARN, NEW_ARN)
        ssm = boto3.client("ssm", region_name=REGION)
        ssm.put_parameter(Name=SERVING, Value=OLD_ARN, Type="String")
        cfn = boto3.client("cloudformation", region_name=REGION)
        stub = Stubber(cfn)
        monkeypatch.setattr(rollout, "cloudformation_client", lambda: cfn)
        slept: list[float] = []
        monkeypatch.setattr(rollout, "_sleep", slept.append)
        with stub:
            yield stub, sm, ssm, slept


def _serving(ssm) -> str:
    return ssm.get_parameter(Name=SERVING)["Parameter"]["Value"]


UPDATE = {"StackName": STACK, "UsePreviousTemplate": True, "Parameters": ALL_PREVIOUS,
          "Capabilities": ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
          "ClientRequestToken": f"roadseg-rollout-{EVENT_ID}"}
STACK_ID = "arn:aws:cloudformation:us-east-1:123456789012:stack/x/1"


def test_handler_writes_ssm_then_updates_the_stack_once(world):
    stub, _, ssm, _ = world
    stub.add_response("describe_stacks", _describe(), {"StackName": STACK})
    stub.add_response("update_stack", {"StackId": STACK_ID}, UPDATE)  # Stubber checks the exact request
    result = rollout.handler(event(), None)
    assert result["action"] == "updated" and result["model_package_arn"] == NEW_ARN
    assert result["previous_model_package_arn"] == OLD_ARN and result["stack_id"] == STACK_ID
    assert _serving(ssm) == NEW_ARN  # what every later deploy resolves
    stub.assert_no_pending_responses()

    # The same event again once the update resolved it: nothing happens twice.
    stub.add_response("describe_stacks", _describe(parameters=DEPLOYED), {"StackName": STACK})
    again = rollout.handler(event(), None)
    assert (again["action"], again["reason"]) == ("skipped", "already deployed")
    stub.assert_no_pending_responses()


def test_handler_ignores_rejections_and_other_groups_without_aws_calls(env, monkeypatch):
    def no_client():
        raise AssertionError("an ignored event must not call AWS")

    for name in ("cloudformation_client", "sagemaker_client", "ssm_client"):
        monkeypatch.setattr(rollout, name, no_client)
    rejected = rollout.handler(event(status="Rejected"), None)
    assert rejected["action"] == "ignored" and "'Rejected'" in rejected["reason"]
    other = rollout.handler(event(group="other-group"), None)
    assert other["action"] == "ignored" and "other-group" in other["reason"]


def test_handler_ignores_an_approval_that_was_withdrawn(world):
    stub, sm, ssm, _ = world
    sm.update_model_package(ModelPackageArn=NEW_ARN, ModelApprovalStatus="Rejected")
    stub.add_response("describe_stacks", _describe(), {"StackName": STACK})
    result = rollout.handler(event(), None)
    assert result["action"] == "ignored" and "no longer approved" in result["reason"]
    assert _serving(ssm) == OLD_ARN


def test_busy_stack_waits_within_the_invocation_then_updates(world):
    """A pipeline deploy holds the stack: the function polls until it settles, having written SSM first."""
    stub, _, ssm, slept = world
    stub.add_response("describe_stacks", _describe("UPDATE_IN_PROGRESS"), {"StackName": STACK})
    stub.add_response("describe_stacks", _describe("UPDATE_COMPLETE_CLEANUP_IN_PROGRESS"), {"StackName": STACK})
    stub.add_response("describe_stacks", _describe("UPDATE_COMPLETE"), {"StackName": STACK})
    stub.add_response("update_stack", {"StackId": STACK_ID}, UPDATE)
    result = rollout.handler(event(), Context(900_000))
    assert result["action"] == "updated" and _serving(ssm) == NEW_ARN
    assert slept == [rollout.WAIT_POLL_SECONDS] * 2
    stub.assert_no_pending_responses()


def test_busy_stack_past_the_budget_is_retryable_and_the_package_is_already_in_ssm(world):
    stub, _, ssm, slept = world
    polls = 3
    for _ in range(polls + 1):
        stub.add_response("describe_stacks", _describe("UPDATE_IN_PROGRESS"), {"StackName": STACK})
    budget_ms = (rollout.WAIT_MARGIN_SECONDS + polls * rollout.WAIT_POLL_SECONDS) * 1000
    with pytest.raises(RolloutRetryableError, match="UPDATE_IN_PROGRESS.*next deploy serves it"):
        rollout.handler(event(), Context(budget_ms))
    assert slept == [rollout.WAIT_POLL_SECONDS] * polls
    assert _serving(ssm) == NEW_ARN  # the pipeline's next deploy (or any other) serves it
    stub.assert_no_pending_responses()


def test_stack_turning_busy_between_describe_and_update_is_retryable(world):
    stub, _, _, _ = world
    stub.add_response("describe_stacks", _describe(), {"StackName": STACK})
    stub.add_client_error("update_stack", service_error_code="ValidationError", service_message=(
        f"Stack:arn:aws:cloudformation:us-east-1:123456789012:stack/{STACK}/1 is in UPDATE_IN_PROGRESS state "
        "and can not be updated."))
    with pytest.raises(RolloutRetryableError, match="UPDATE_IN_PROGRESS state"):
        rollout.handler(event(), None)


def test_no_updates_to_perform_is_skipped(world):
    stub, _, _, _ = world
    stub.add_response("describe_stacks", _describe(), {"StackName": STACK})
    stub.add_client_error("update_stack", service_error_code="ValidationError",
                          service_message="No updates are to be performed.")
    result = rollout.handler(event(), None)
    assert (result["action"], result["reason"]) == ("skipped", "no updates are to be performed")


def test_update_failure_is_raised_for_the_dlq(world):
    stub, _, _, _ = world
    stub.add_response("describe_stacks", _describe(), {"StackName": STACK})
    stub.add_client_error("update_stack", service_error_code="AccessDenied", http_status_code=403,
                          service_message="User is not authorized to perform: cloudformation:UpdateStack")
    with pytest.raises(ClientError) as exc:
        rollout.handler(event(), None)
    assert exc.value.response["Error"]["Code"] == "AccessDenied"
    assert not isinstance(exc.value, RolloutError)


def test_blocked_stack_is_raised_as_non_retryable_and_ssm_is_left_alone(world):
    stub, _, ssm, _ = world
    stub.add_response("describe_stacks", _describe("ROLLBACK_COMPLETE"), {"StackName": STACK})
    with pytest.raises(RolloutError, match="ROLLBACK_COMPLETE") as exc:
        rollout.handler(event(), None)
    assert not isinstance(exc.value, RolloutRetryableError)
    assert _serving(ssm) == OLD_ARN


def test_missing_environment_is_reported(monkeypatch):
    monkeypatch.delenv("STACK_NAME", raising=False)
    monkeypatch.delenv("MODEL_PACKAGE_GROUP", raising=False)
    with pytest.raises(RolloutError, match="STACK_NAME, MODEL_PACKAGE_GROUP not set"):
        rollout.handler(event(), None)


# ------------------------------------------------------------------------- Neo compilation of the edge bundle

BUNDLE = "s3://roadseg-dev-artifacts/pipelines/roadseg-dev-training/abc123def456/bundle"
METADATA = {"ClassScheme": "cityscapes", "NumClasses": "19", "EdgeBundle": BUNDLE, "ServingSize": "1024x512"}
NEO_ROLE = "arn:aws:iam::123456789012:role/roadseg-dev-neo"
KEY = "arn:aws:kms:us-east-1:123456789012:key/1111-2222"


def test_compilation_jobs_compile_the_bundle_graph_at_the_serving_size_per_target():
    jobs = rollout.compilation_jobs(METADATA, 7, targets=("ml_g4dn", "jetson_xavier"), job_prefix="roadseg-dev-neo-",
                                    role_arn=NEO_ROLE, kms_key_arn=KEY)
    assert [j["CompilationJobName"] for j in jobs] == ["roadseg-dev-neo-v7-ml-g4dn", "roadseg-dev-neo-v7-jetson-xavier"]
    first = jobs[0]
    assert first["InputConfig"] == {"S3Uri": f"{BUNDLE}/neo/model.tar.gz",
                                    "DataInputConfig": '{"data": [1, 3, 512, 1024]}',
                                    "Framework": "MXNET", "FrameworkVersion": "1.8"}
    assert first["OutputConfig"] == {"S3OutputLocation": f"{BUNDLE}/compiled/ml_g4dn/", "TargetDevice": "ml_g4dn",
                                     "KmsKeyId": KEY}
    assert first["RoleArn"] == NEO_ROLE and first["StoppingCondition"] == {"MaxRuntimeInSeconds": 900}
    # Each request is valid for the SageMaker API as botocore describes it.
    sm = boto3.client("sagemaker", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    stub = Stubber(sm)
    for job in jobs:
        stub.add_response("create_compilation_job", {"CompilationJobArn": f"arn:x:{job['CompilationJobName']}"}, job)
    with stub:
        for job in jobs:
            sm.create_compilation_job(**job)
    assert rollout.compilation_jobs(METADATA, 7, targets=(), job_prefix="p-", role_arn=NEO_ROLE, kms_key_arn=None) == []


@pytest.mark.parametrize("metadata", [None, {"ClassScheme": "cityscapes"}, {**METADATA, "ServingSize": "big"},
                                      {**METADATA, "EdgeBundle": "/local/path"}])
def test_a_package_without_its_bundle_cannot_be_compiled(metadata):
    with pytest.raises(RolloutError, match="EdgeBundle s3:// URI and ServingSize WxH"):
        rollout.compilation_jobs(metadata, 7, targets=("ml_g4dn",), job_prefix="p-", role_arn=NEO_ROLE,
                                 kms_key_arn=None)


DESCRIBED_JOB = {
    "CompilationJobName": "roadseg-dev-neo-v2-jetson-xavier", "CompilationJobArn": "arn:job/2",
    "CompilationJobStatus": "INPROGRESS", "StoppingCondition": {"MaxRuntimeInSeconds": 900},
    "CreationTime": "2026-12-08T00:00:00Z", "LastModifiedTime": "2026-12-08T00:00:00Z", "FailureReason": "",
    "ModelArtifacts": {"S3ModelArtifacts": "s3://b/k"}, "RoleArn": "arn:aws:iam::123456789012:role/neo",
    "InputConfig": {"S3Uri": "s3://b/k", "Framework": "MXNET"},
    "OutputConfig": {"S3OutputLocation": "s3://b/o", "TargetDevice": "ml_g4dn"}}


def _neo_stubbed(monkeypatch, parameters, metadata=METADATA) -> tuple[Stubber, Stubber]:
    cfn = boto3.client("cloudformation", region_name=REGION)
    sm = boto3.client("sagemaker", region_name=REGION)
    cfn_stub, sm_stub = Stubber(cfn), Stubber(sm)
    sm_stub.add_response("describe_model_package", {
        "ModelPackageName": GROUP, "ModelPackageArn": NEW_ARN, "CreationTime": 0, "ModelPackageStatus": "Completed",
        "ModelPackageStatusDetails": {"ValidationStatuses": []}, "ModelApprovalStatus": "Approved",
        "CustomerMetadataProperties": metadata}, {"ModelPackageName": NEW_ARN})
    cfn_stub.add_response("describe_stacks", {"Stacks": [{
        "StackName": STACK, "CreationTime": 0, "StackStatus": "UPDATE_COMPLETE", "Parameters": parameters}]},
        {"StackName": STACK})
    ssm = boto3.client("ssm", region_name=REGION)
    ssm_stub = Stubber(ssm)
    if parameters[0].get("ResolvedValue") != NEW_ARN:
        ssm_stub.add_response("put_parameter", {"Version": 2}, {"Name": SERVING, "Value": NEW_ARN, "Type": "String",
                                                                "Overwrite": True})
    ssm_stub.activate()
    monkeypatch.setattr(rollout, "cloudformation_client", lambda: cfn)
    monkeypatch.setattr(rollout, "sagemaker_client", lambda: sm)
    monkeypatch.setattr(rollout, "ssm_client", lambda: ssm)
    monkeypatch.setenv("NEO_TARGETS", '["ml_g4dn", "jetson_xavier"]')
    monkeypatch.setenv("NEO_ROLE_ARN", NEO_ROLE)
    monkeypatch.setenv("NEO_KMS_KEY_ARN", KEY)
    monkeypatch.setenv("NEO_JOB_PREFIX", "roadseg-dev-neo-")
    return cfn_stub, sm_stub


def test_an_approval_rolls_out_then_compiles_and_a_redelivery_creates_nothing_twice(env, monkeypatch):
    cfn_stub, sm_stub = _neo_stubbed(monkeypatch, PARAMETERS)
    cfn_stub.add_response("update_stack", {"StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/x/1"})
    jobs = rollout.compilation_jobs(METADATA, 2, targets=("ml_g4dn", "jetson_xavier"),
                                    job_prefix="roadseg-dev-neo-", role_arn=NEO_ROLE, kms_key_arn=KEY)
    sm_stub.add_response("create_compilation_job", {"CompilationJobArn": "arn:job/1"}, jobs[0])
    sm_stub.add_client_error("create_compilation_job", "ResourceInUse", "already exists", expected_params=jobs[1])
    sm_stub.add_response("describe_compilation_job", DESCRIBED_JOB,
                         {"CompilationJobName": jobs[1]["CompilationJobName"]})
    with cfn_stub, sm_stub:
        result = rollout.handler(event(), None)
    assert result["action"] == "updated"
    assert result["compilation_jobs"] == [
        {"name": "roadseg-dev-neo-v2-ml-g4dn", "target": "ml_g4dn", "state": "created"},
        {"name": "roadseg-dev-neo-v2-jetson-xavier", "target": "jetson_xavier", "state": "exists"}]

    # Redelivered after a failure to compile: the package is already deployed, the jobs are still made sure of.
    deployed = DEPLOYED
    cfn_stub, sm_stub = _neo_stubbed(monkeypatch, deployed)
    for job in jobs:
        sm_stub.add_client_error("create_compilation_job", "ResourceInUse", "exists", expected_params=job)
        sm_stub.add_response("describe_compilation_job", DESCRIBED_JOB,
                             {"CompilationJobName": job["CompilationJobName"]})
    with cfn_stub, sm_stub:
        again = rollout.handler(event(), None)
    assert again["action"] == "skipped" and [j["state"] for j in again["compilation_jobs"]] == ["exists", "exists"]


def test_compilation_errors_other_than_an_existing_job_reach_the_dlq(env, monkeypatch):
    deployed = DEPLOYED
    cfn_stub, sm_stub = _neo_stubbed(monkeypatch, deployed)
    sm_stub.add_client_error("create_compilation_job", "AccessDeniedException", "not allowed")
    sm_stub.add_client_error("describe_compilation_job", "ResourceNotFound", "no such job")
    with cfn_stub, sm_stub, pytest.raises(rollout.ClientError, match="AccessDenied"):
        rollout.handler(event(), None)


def test_resource_in_use_without_a_job_of_that_name_is_not_taken_for_an_existing_job(env, monkeypatch):
    # The code alone proves nothing (CreateCompilationJob documents no code for a duplicate name): the description
    # decides, and a job that does not exist is an error for the DLQ, not "exists".
    cfn_stub, sm_stub = _neo_stubbed(monkeypatch, DEPLOYED)
    sm_stub.add_client_error("create_compilation_job", "ResourceInUse", "Resource being accessed is in use")
    sm_stub.add_client_error("describe_compilation_job", "ResourceNotFound", "no such job")
    with cfn_stub, sm_stub, pytest.raises(rollout.ClientError, match="ResourceInUse"):
        rollout.handler(event(), None)


def test_neo_targets_without_a_role_are_a_configuration_error(env, monkeypatch):
    monkeypatch.setenv("NEO_TARGETS", '["ml_g4dn"]')
    with pytest.raises(RolloutError, match="NEO_TARGETS is set without NEO_ROLE_ARN and NEO_JOB_PREFIX"):
        rollout.handler(event(), None)


def test_compilation_jobs_in_isolated_mode_run_in_the_vpc():
    jobs = rollout.compilation_jobs(METADATA, 7, targets=("ml_g4dn",), job_prefix="roadseg-dev-neo-",
                                    role_arn=NEO_ROLE, kms_key_arn=KEY, subnets=("subnet-0a", "subnet-0b"),
                                    security_groups=("sg-0c",))
    assert jobs[0]["VpcConfig"] == {"Subnets": ["subnet-0a", "subnet-0b"], "SecurityGroupIds": ["sg-0c"]}
    sm = boto3.client("sagemaker", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(sm) as stub:  # botocore's model of CreateCompilationJob accepts the VpcConfig
        stub.add_response("create_compilation_job", {"CompilationJobArn": "arn:x:job"}, jobs[0])
        sm.create_compilation_job(**jobs[0])
    assert "VpcConfig" not in rollout.compilation_jobs(METADATA, 7, targets=("ml_g4dn",), job_prefix="p-",
                                                      role_arn=NEO_ROLE, kms_key_arn=None)[0]


def test_the_handler_gives_the_jobs_the_vpc_of_its_environment(env, monkeypatch):
    cfn_stub, sm_stub = _neo_stubbed(monkeypatch, DEPLOYED)
    monkeypatch.setenv("NEO_SUBNETS", "subnet-0a,subnet-0b")
    monkeypatch.setenv("NEO_SECURITY_GROUPS", "sg-0c")
    jobs = rollout.compilation_jobs(METADATA, 2, targets=("ml_g4dn", "jetson_xavier"), job_prefix="roadseg-dev-neo-",
                                    role_arn=NEO_ROLE, kms_key_arn=KEY, subnets=("subnet-0a", "subnet-0b"),
                                    security_groups=("sg-0c",))
    for job in jobs:
        sm_stub.add_response("create_compilation_job", {"CompilationJobArn": "arn:x:job"}, job)
    with cfn_stub, sm_stub:
        result = rollout.handler(event(), None)
    assert [j["state"] for j in result["compilation_jobs"]] == ["created", "created"]
    sm_stub.assert_no_pending_responses()
    monkeypatch.delenv("NEO_SECURITY_GROUPS")
    with pytest.raises(RolloutError, match="NEO_SUBNETS and NEO_SECURITY_GROUPS must be set together"):
        rollout.handler(event(), None)
