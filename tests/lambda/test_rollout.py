"""lambda/rollout.py: the pure decision, and the handler against moto (CloudFormation, SageMaker) and Stubber."""

from __future__ import annotations

import importlib
import json

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from moto import mock_aws

# The handlers live in lambda/ (the function's code root, on pytest's pythonpath), which is not a package.
rollout = importlib.import_module("rollout")
RolloutError, RolloutRetryableError, decide = rollout.RolloutError, rollout.RolloutRetryableError, rollout.decide
CLIENT_FACTORIES = (rollout.cloudformation_client, rollout.sagemaker_client)

REGION = "us-east-1"
GROUP = "roadseg-dev-segmentation"
STACK = "RoadsegDevInference"
OLD_ARN = f"arn:aws:sagemaker:{REGION}:123456789012:model-package/{GROUP}/1"
NEW_ARN = f"arn:aws:sagemaker:{REGION}:123456789012:model-package/{GROUP}/2"
EVENT_ID = "5ad8e4f2-1b4c-8d8e-7c1f-3e3a1c9e0b21"
PARAMETERS = [
    {"ParameterKey": "ModelPackageArn", "ParameterValue": OLD_ARN},
    {"ParameterKey": "RealtimeInstanceType", "ParameterValue": "ml.g5.xlarge"},
    {"ParameterKey": "BootstrapVersion", "ParameterValue": "/cdk-bootstrap/hnb659fds/version"},
]
TEMPLATE = {
    "AWSTemplateFormatVersion": "2010-09-09",
    "Parameters": {
        "ModelPackageArn": {"Type": "String", "Default": ""},
        "RealtimeInstanceType": {"Type": "String", "Default": "ml.g4dn.xlarge"},
        "BootstrapVersion": {"Type": "String", "Default": "/cdk-bootstrap/hnb659fds/version"},
    },
    "Resources": {"Topic": {"Type": "AWS::SNS::Topic", "Properties": {"DisplayName": {"Ref": "RealtimeInstanceType"}}}},
}


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


def test_approved_event_updates_only_the_package_parameter():
    decision = _decide(event())
    assert decision.action == "update"
    assert decision.model_package_arn == NEW_ARN and decision.previous_arn == OLD_ARN
    assert decision.model_package_version == 2
    assert list(decision.parameters) == [
        {"ParameterKey": "ModelPackageArn", "ParameterValue": NEW_ARN},
        {"ParameterKey": "RealtimeInstanceType", "UsePreviousValue": True},
        {"ParameterKey": "BootstrapVersion", "UsePreviousValue": True},
    ]
    assert decision.client_request_token == f"roadseg-rollout-{EVENT_ID}"


def test_redelivered_event_is_skipped():
    current = [{"ParameterKey": "ModelPackageArn", "ParameterValue": NEW_ARN}]
    decision = _decide(event(), current, "UPDATE_IN_PROGRESS")
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
def test_busy_stack_means_retry(status):
    decision = _decide(event(), status=status)
    assert decision.action == "retry" and status in decision.reason


@pytest.mark.parametrize("status", ["ROLLBACK_COMPLETE", "UPDATE_ROLLBACK_FAILED", "DELETE_FAILED"])
def test_stuck_stack_is_blocked(status):
    assert _decide(event(), status=status).action == "blocked"


@pytest.mark.parametrize("status", ["CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE"])
def test_settled_stack_is_updated(status):
    assert _decide(event(), status=status).action == "update"


def test_stack_without_the_parameter_is_blocked():
    decision = _decide(event(), [{"ParameterKey": "Other", "ParameterValue": "x"}])
    assert decision.action == "blocked" and "no parameter 'ModelPackageArn'" in decision.reason
    custom = decide(event(), [{"ParameterKey": "Pkg", "ParameterValue": OLD_ARN}], "UPDATE_COMPLETE",
                    model_package_group=GROUP, parameter_name="Pkg")
    assert custom.parameters == ({"ParameterKey": "Pkg", "ParameterValue": NEW_ARN},)


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


# --------------------------------------------------------------------------- handler on moto


@pytest.fixture
def env(monkeypatch, tmp_path):
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": REGION,
                       "AWS_CONFIG_FILE": str(tmp_path / "none"), "STACK_NAME": STACK,
                       "MODEL_PACKAGE_GROUP": GROUP}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("PARAMETER_NAME", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
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


@pytest.fixture
def world(env):
    """moto: the inference stack serving version 1, and version 2 approved in the registry."""
    with mock_aws():
        sm = boto3.client("sagemaker", region_name=REGION)
        sm.create_model_package_group(ModelPackageGroupName=GROUP)
        v1 = _package(sm, "Approved")
        v2 = _package(sm, "Approved")
        assert (v1, v2) == (OLD_ARN, NEW_ARN)
        cfn = boto3.client("cloudformation", region_name=REGION)
        cfn.create_stack(StackName=STACK, TemplateBody=json.dumps(TEMPLATE), Parameters=PARAMETERS,
                         Tags=[{"Key": "project", "Value": "roadseg"}], Capabilities=["CAPABILITY_IAM"])
        calls: list[dict] = []
        client = rollout.cloudformation_client()
        client.meta.events.register("provide-client-params.cloudformation.UpdateStack",
                                    lambda params, **_: calls.append(dict(params)))
        yield cfn, sm, calls


def _stack(cfn) -> dict:
    return cfn.describe_stacks(StackName=STACK)["Stacks"][0]


def test_handler_rolls_out_an_approved_package(world):
    cfn, _, calls = world
    result = rollout.handler(event(), None)
    assert result["action"] == "updated" and result["model_package_arn"] == NEW_ARN
    assert result["previous_model_package_arn"] == OLD_ARN and result["stack_name"] == STACK
    assert len(calls) == 1
    call = calls[0]
    assert call["UsePreviousTemplate"] is True and call["ClientRequestToken"] == f"roadseg-rollout-{EVENT_ID}"
    assert call["Capabilities"] == ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"]
    assert call["Parameters"][0] == {"ParameterKey": "ModelPackageArn", "ParameterValue": NEW_ARN}
    assert all(p == {"ParameterKey": p["ParameterKey"], "UsePreviousValue": True} for p in call["Parameters"][1:])
    assert "Tags" not in call  # omitted: CloudFormation keeps the stack's tags

    stack = _stack(cfn)
    values = {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}
    assert values == {"ModelPackageArn": NEW_ARN, "RealtimeInstanceType": "ml.g5.xlarge",
                      "BootstrapVersion": "/cdk-bootstrap/hnb659fds/version"}
    assert stack["Tags"] == [{"Key": "project", "Value": "roadseg"}]

    # The same event again (EventBridge at-least-once delivery, Lambda retry): nothing happens twice.
    again = rollout.handler(event(), None)
    assert (again["action"], again["reason"]) == ("skipped", "already deployed")
    assert len(calls) == 1


def test_handler_ignores_rejections_and_other_groups_without_aws_calls(world, monkeypatch):
    _, _, calls = world

    def no_client():
        raise AssertionError("an ignored event must not call AWS")

    monkeypatch.setattr(rollout, "cloudformation_client", no_client)
    monkeypatch.setattr(rollout, "sagemaker_client", no_client)
    rejected = rollout.handler(event(status="Rejected"), None)
    assert rejected["action"] == "ignored" and "'Rejected'" in rejected["reason"]
    other = rollout.handler(event(group="other-group"), None)
    assert other["action"] == "ignored" and "other-group" in other["reason"]
    assert calls == []


def test_handler_ignores_an_approval_that_was_withdrawn(world):
    cfn, sm, calls = world
    sm.update_model_package(ModelPackageArn=NEW_ARN, ModelApprovalStatus="Rejected")
    result = rollout.handler(event(), None)
    assert result["action"] == "ignored" and "no longer approved" in result["reason"]
    assert calls == [] and _stack(cfn)["Parameters"][0]["ParameterValue"] == OLD_ARN


def test_handler_uses_the_configured_parameter_name(world, monkeypatch):
    cfn, _, calls = world
    monkeypatch.setenv("PARAMETER_NAME", "RealtimeInstanceType")
    assert rollout.handler(event(), None)["action"] == "updated"
    assert calls[-1]["Parameters"] == [
        {"ParameterKey": "ModelPackageArn", "UsePreviousValue": True},
        {"ParameterKey": "RealtimeInstanceType", "ParameterValue": NEW_ARN},
        {"ParameterKey": "BootstrapVersion", "UsePreviousValue": True},
    ]
    values = {p["ParameterKey"]: p["ParameterValue"] for p in _stack(cfn)["Parameters"]}
    assert values["ModelPackageArn"] == OLD_ARN and values["RealtimeInstanceType"] == NEW_ARN


# ------------------------------------------------------------------------- handler with Stubber


def _stubbed(monkeypatch, stack_status: str = "UPDATE_COMPLETE", parameters=PARAMETERS) -> Stubber:
    cfn = boto3.client("cloudformation", region_name=REGION)
    sm = boto3.client("sagemaker", region_name=REGION)
    cfn_stub, sm_stub = Stubber(cfn), Stubber(sm)
    sm_stub.add_response("describe_model_package", {
        "ModelPackageName": GROUP, "ModelPackageArn": NEW_ARN, "CreationTime": 0, "ModelPackageStatus": "Completed",
        "ModelPackageStatusDetails": {"ValidationStatuses": []}, "ModelApprovalStatus": "Approved"},
        {"ModelPackageName": NEW_ARN})
    cfn_stub.add_response("describe_stacks", {"Stacks": [{
        "StackName": STACK, "CreationTime": 0, "StackStatus": stack_status, "Parameters": parameters}]},
        {"StackName": STACK})
    cfn_stub.activate()
    sm_stub.activate()
    monkeypatch.setattr(rollout, "cloudformation_client", lambda: cfn)
    monkeypatch.setattr(rollout, "sagemaker_client", lambda: sm)
    return cfn_stub


def test_exactly_one_update_stack_call_with_previous_values(env, monkeypatch):
    stub = _stubbed(monkeypatch)
    stub.add_response("update_stack", {"StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/x/1"}, {
        "StackName": STACK, "UsePreviousTemplate": True,
        "Parameters": [{"ParameterKey": "ModelPackageArn", "ParameterValue": NEW_ARN},
                       {"ParameterKey": "RealtimeInstanceType", "UsePreviousValue": True},
                       {"ParameterKey": "BootstrapVersion", "UsePreviousValue": True}],
        "Capabilities": ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"],
        "ClientRequestToken": f"roadseg-rollout-{EVENT_ID}"})
    result = rollout.handler(event(), None)
    assert result["action"] == "updated" and result["stack_id"].endswith("stack/x/1")
    stub.assert_no_pending_responses()


def test_busy_stack_raises_retryable_without_updating(env, monkeypatch):
    stub = _stubbed(monkeypatch, "UPDATE_ROLLBACK_IN_PROGRESS")
    with pytest.raises(RolloutRetryableError, match="UPDATE_ROLLBACK_IN_PROGRESS"):
        rollout.handler(event(), None)
    stub.assert_no_pending_responses()  # no update_stack was queued, and none was attempted


def test_stack_turning_busy_between_describe_and_update_is_retryable(env, monkeypatch):
    stub = _stubbed(monkeypatch)
    stub.add_client_error("update_stack", service_error_code="ValidationError", service_message=(
        f"Stack:arn:aws:cloudformation:us-east-1:123456789012:stack/{STACK}/1 is in UPDATE_IN_PROGRESS state "
        "and can not be updated."))
    with pytest.raises(RolloutRetryableError, match="UPDATE_IN_PROGRESS state"):
        rollout.handler(event(), None)


def test_no_updates_to_perform_is_skipped(env, monkeypatch):
    stub = _stubbed(monkeypatch)
    stub.add_client_error("update_stack", service_error_code="ValidationError",
                          service_message="No updates are to be performed.")
    result = rollout.handler(event(), None)
    assert (result["action"], result["reason"]) == ("skipped", "no updates are to be performed")


def test_update_failure_is_raised_for_the_dlq(env, monkeypatch):
    stub = _stubbed(monkeypatch)
    stub.add_client_error("update_stack", service_error_code="AccessDenied", http_status_code=403,
                          service_message="User is not authorized to perform: cloudformation:UpdateStack")
    with pytest.raises(ClientError) as exc:
        rollout.handler(event(), None)
    assert exc.value.response["Error"]["Code"] == "AccessDenied"
    assert not isinstance(exc.value, RolloutError)


def test_blocked_stack_is_raised_as_non_retryable(env, monkeypatch):
    _stubbed(monkeypatch, "ROLLBACK_COMPLETE")
    with pytest.raises(RolloutError, match="ROLLBACK_COMPLETE") as exc:
        rollout.handler(event(), None)
    assert not isinstance(exc.value, RolloutRetryableError)


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
    monkeypatch.setattr(rollout, "cloudformation_client", lambda: cfn)
    monkeypatch.setattr(rollout, "sagemaker_client", lambda: sm)
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
    with cfn_stub, sm_stub:
        result = rollout.handler(event(), None)
    assert result["action"] == "updated"
    assert result["compilation_jobs"] == [
        {"name": "roadseg-dev-neo-v2-ml-g4dn", "target": "ml_g4dn", "state": "created"},
        {"name": "roadseg-dev-neo-v2-jetson-xavier", "target": "jetson_xavier", "state": "exists"}]

    # Redelivered after a failure to compile: the package is already deployed, the jobs are still made sure of.
    deployed = [{**PARAMETERS[0], "ParameterValue": NEW_ARN}, *PARAMETERS[1:]]
    cfn_stub, sm_stub = _neo_stubbed(monkeypatch, deployed)
    for job in jobs:
        sm_stub.add_client_error("create_compilation_job", "ResourceInUse", "exists", expected_params=job)
    with cfn_stub, sm_stub:
        again = rollout.handler(event(), None)
    assert again["action"] == "skipped" and [j["state"] for j in again["compilation_jobs"]] == ["exists", "exists"]


def test_compilation_errors_other_than_an_existing_job_reach_the_dlq(env, monkeypatch):
    deployed = [{**PARAMETERS[0], "ParameterValue": NEW_ARN}, *PARAMETERS[1:]]
    cfn_stub, sm_stub = _neo_stubbed(monkeypatch, deployed)
    sm_stub.add_client_error("create_compilation_job", "AccessDeniedException", "not allowed")
    with cfn_stub, sm_stub, pytest.raises(rollout.ClientError, match="AccessDenied"):
        rollout.handler(event(), None)


def test_neo_targets_without_a_role_are_a_configuration_error(env, monkeypatch):
    monkeypatch.setenv("NEO_TARGETS", '["ml_g4dn"]')
    with pytest.raises(RolloutError, match="NEO_TARGETS is set without NEO_ROLE_ARN and NEO_JOB_PREFIX"):
        rollout.handler(event(), None)
