"""Construct tests of the function constructs (stacks/functions) on bare stacks: no environment file needed."""

from __future__ import annotations

import pytest

BUNDLING_OFF = {"aws:cdk:bundling-stacks": []}
EXPORT = "p:InferenceBucketArn"


def bare_stack(*, checks: bool = False):
    import aws_cdk as cdk

    from stacks.app_builder import cdk_json_context
    from stacks.compliance import add_compliance_checks

    app = cdk.App(context={**cdk_json_context(), **BUNDLING_OFF})
    if checks:
        add_compliance_checks(app)
    return app, cdk.Stack(app, "Bare")


def operations_key(stack):
    from stacks.operations_key import OperationsKey, OperationsKeyProps

    return OperationsKey(stack, "OperationsKey", OperationsKeyProps(prefix="t", retain=False))


def roadseg_function(stack, key, construct_id: str = "Fn", **overrides):
    from envconfig.config import FunctionConfig
    from stacks.functions.roadseg_function import RoadsegFunction, RoadsegFunctionProps

    props = dict(handler="rollout.handler", description="a test function", function=FunctionConfig(),
                 environment={"ROADSEG_TEST": "1"}, key=key, log_retention_days=7, retain=False,
                 no_vpc_reason="The test function calls regional AWS APIs only.")
    return RoadsegFunction(stack, construct_id, RoadsegFunctionProps(**{**props, **overrides}))


def imported_bucket(stack):
    import aws_cdk as cdk
    from aws_cdk import aws_kms as kms
    from aws_cdk import aws_s3 as s3

    key = kms.Key.from_key_arn(stack, "DataKey", cdk.Fn.import_value("p:DataKeyArn"))
    return s3.Bucket.from_bucket_attributes(stack, "Inference", bucket_arn=cdk.Fn.import_value(EXPORT),
                                            encryption_key=key)


def template(stack) -> dict:
    from aws_cdk.assertions import Template

    return Template.from_stack(stack).to_json()


def of_type(tpl: dict, kind: str) -> dict[str, dict]:
    return {k: v for k, v in tpl["Resources"].items() if v["Type"] == kind}


def acknowledged(construct) -> dict[str, str]:
    """The rule ids acknowledged on ``construct`` itself, with their reasons."""
    found: dict[str, str] = {}
    for entry in construct.node.metadata:
        if entry.type == "aws:cdk:acknowledged-rules":
            found.update({k.removeprefix("Annotation::"): v for k, v in entry.data.items()})
    return found


def statements(tpl: dict, policy_prefix: str) -> list[dict]:
    policy = next(v for k, v in of_type(tpl, "AWS::IAM::Policy").items() if k.startswith(policy_prefix))
    return policy["Properties"]["PolicyDocument"]["Statement"]


def actions_of(statement: dict) -> list[str]:
    action = statement["Action"]
    return action if isinstance(action, list) else [action]


# -- RoadsegFunction ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reserved", [None, 5])
def test_reserved_concurrency_only_when_configured(reserved):
    from envconfig.config import FunctionConfig

    _, stack = bare_stack()
    fn = roadseg_function(stack, operations_key(stack), function=FunctionConfig(reserved_concurrency=reserved))
    props = next(iter(of_type(template(stack), "AWS::Lambda::Function").values()))["Properties"]
    assert props.get("ReservedConcurrentExecutions") == reserved
    concurrency_acks = {r for r in acknowledged(fn) if r.endswith("-LambdaConcurrency")}
    assert concurrency_acks == (set() if reserved else {"HIPAA.Security-LambdaConcurrency",
                                                         "NIST.800.53.R5-LambdaConcurrency"})


def test_failed_invocations_go_to_an_encrypted_queue_the_role_can_write():
    _, stack = bare_stack()
    fn = roadseg_function(stack, operations_key(stack))
    tpl = template(stack)
    key_id = next(iter(of_type(tpl, "AWS::KMS::Key")))
    queue_id = next(k for k in of_type(tpl, "AWS::SQS::Queue") if k.startswith("FnFailedInvocations"))
    assert fn.failed_invocations.node.id == "FnFailedInvocations" and fn.failed_invocations.node.scope is stack
    assert tpl["Resources"][queue_id]["Properties"]["KmsMasterKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
    function = next(iter(of_type(tpl, "AWS::Lambda::Function").values()))["Properties"]
    assert function["DeadLetterConfig"] == {"TargetArn": {"Fn::GetAtt": [queue_id, "Arn"]}}
    granted = statements(tpl, "FnServiceRoleDefaultPolicy")
    assert {"Action": "sqs:SendMessage", "Effect": "Allow", "Resource": {"Fn::GetAtt": [queue_id, "Arn"]}} in granted
    key_statement = next(s for s in granted if s["Resource"] == {"Fn::GetAtt": [key_id, "Arn"]})
    assert set(actions_of(key_statement)) == {"kms:GenerateDataKey", "kms:Decrypt"}
    log_group = next(iter(of_type(tpl, "AWS::Logs::LogGroup").values()))["Properties"]
    assert log_group["KmsKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]} and log_group["RetentionInDays"] == 7
    assert "TracingConfig" not in function and "ReservedConcurrentExecutions" not in function


def test_companion_ids_can_be_kept_from_an_older_layout():
    _, stack = bare_stack()
    fn = roadseg_function(stack, operations_key(stack), "Function", log_group_id="Logs",
                          dead_letter_queue_id="DeadLetters", retry_attempts=2)
    assert {c.node.id for c in stack.node.children} >= {"Function", "Logs", "DeadLetters"}
    assert fn.failed_invocations.node.id == "DeadLetters"
    config = next(iter(of_type(template(stack), "AWS::Lambda::EventInvokeConfig").values()))["Properties"]
    assert config["MaximumRetryAttempts"] == 2


def test_errors_metric_and_alarms_use_the_catalogue_dimensions():
    _, stack = bare_stack()
    fn = roadseg_function(stack, operations_key(stack))
    errors = fn.metric_errors()
    assert (errors.namespace, errors.metric_name, errors.statistic) == ("AWS/Lambda", "Errors", "Sum")
    assert set(errors.dimensions) == {"FunctionName"} and errors.period.to_seconds() == 300
    fn.errors_alarm()
    fn.dlq_depth_alarm()
    tpl = template(stack)
    function_id = next(iter(of_type(tpl, "AWS::Lambda::Function")))
    queue_id = next(k for k in of_type(tpl, "AWS::SQS::Queue") if k.startswith("FnFailedInvocations"))
    alarms = {k: v["Properties"] for k, v in of_type(tpl, "AWS::CloudWatch::Alarm").items()}
    errors_alarm = next(v for k, v in alarms.items() if k.startswith("FnErrors"))
    assert errors_alarm["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": function_id}}]
    assert (errors_alarm["Namespace"], errors_alarm["MetricName"], errors_alarm["Period"]) == ("AWS/Lambda", "Errors",
                                                                                             300)
    depth = next(v for k, v in alarms.items() if k.startswith("FnFailedInvocationsDepth"))
    assert depth["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue_id, "QueueName"]}}]
    assert depth["MetricName"] == "ApproximateNumberOfMessagesVisible" and depth["Statistic"] == "Maximum"


def test_bucket_grants_acknowledge_exactly_the_findings_they_create():
    _, stack = bare_stack()
    fn = roadseg_function(stack, operations_key(stack))
    bucket = imported_bucket(stack)
    fn.grant_bucket_read(bucket, "incoming/", reason="Frames arrive under incoming/ only.")
    read = {r: v for r, v in acknowledged(fn.role).items() if r.startswith("AwsSolutions-IAM5")}
    assert set(read) == {f"AwsSolutions-IAM5[{f}]" for f in (
        f"Resource::{EXPORT}/incoming/*", "Action::s3:GetObject*", "Action::s3:GetBucket*", "Action::s3:List*")}
    assert read[f"AwsSolutions-IAM5[Resource::{EXPORT}/incoming/*]"] == "Frames arrive under incoming/ only."

    fn.grant_bucket_put(bucket, "results/", reason="Result documents of the test.")
    put = {r for r in acknowledged(fn.role) if r.startswith("AwsSolutions-IAM5")} - set(read)
    assert put == {f"AwsSolutions-IAM5[{f}]" for f in (
        f"Resource::{EXPORT}/results/*", "Action::s3:Abort*", "Action::kms:GenerateDataKey*",
        "Action::kms:ReEncrypt*")}
    assert not any("DeleteObject" in r for r in acknowledged(fn.role))  # only read-write grants delete


def test_a_wildcard_without_a_reason_fails_at_the_call():
    from aws_cdk import aws_iam as iam

    _, stack = bare_stack()
    fn = roadseg_function(stack, operations_key(stack))
    arn = stack.format_arn(service="sagemaker", resource="model", resource_name="*")
    with pytest.raises(ValueError, match="no reason for the AwsSolutions-IAM5 finding Resource::arn:.*:model/\\*"):
        fn.allow(iam.PolicyStatement(actions=["sagemaker:DescribeModel"], resources=[arn]))
    with pytest.raises(ValueError, match="which the change does not create"):
        fn.allow(iam.PolicyStatement(actions=["sagemaker:DescribeModel"], resources=["arn:aws:s3:::b"]),
                 reasons={"arn:aws:s3:::other/*": "A reason for something not granted."})


def test_a_function_passes_every_nag_pack_on_its_own():
    """Tracing, reserved concurrency and a bucket grant: every finding the construct creates is acknowledged (its
    alarms are left out: their actions come from Monitoring)."""
    from envconfig.config import FunctionConfig

    app, stack = bare_stack(checks=True)
    fn = roadseg_function(stack, operations_key(stack), tracing=True,
                          function=FunctionConfig(reserved_concurrency=2))
    fn.grant_bucket_read_write(imported_bucket(stack), "work/", reason="The test function's own work area.")
    app.synth()  # raises on any unacknowledged finding


# -- the preprocessor functions --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def front_stack():
    from aws_cdk import aws_iam as iam

    from envconfig.config import load_config
    from envconfig.lambda_env import preprocessor_environment
    from segcore.classes import get_scheme
    from stacks.functions.realtime_front import RealtimeFront, RealtimeFrontProps

    _, stack = bare_stack()
    config = load_config("dev")
    environment = preprocessor_environment(config, get_scheme("cityscapes"), inference_bucket="b",
                                           async_endpoint_name="a", realtime_endpoint_name="r")
    front = RealtimeFront(stack, "RealtimeFront", RealtimeFrontProps(
        config=config, environment=environment, key=operations_key(stack)))
    caller = iam.Role(stack, "Caller", assumed_by=iam.AccountRootPrincipal())
    front.grant_invoke_url(caller)
    return stack, front


def test_realtime_front_grant_invoke_url_gives_both_actions(front_stack):
    stack, _ = front_stack
    tpl = template(stack)
    granted = statements(tpl, "CallerDefaultPolicy")
    function_id = next(iter(of_type(tpl, "AWS::Lambda::Function")))
    by_action = {a: s for s in granted for a in actions_of(s)}
    assert set(by_action) == {"lambda:InvokeFunctionUrl", "lambda:InvokeFunction"}
    for statement in by_action.values():
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        assert {"Fn::GetAtt": [function_id, "Arn"]} in resources
    assert by_action["lambda:InvokeFunctionUrl"]["Condition"] == {
        "StringEquals": {"lambda:FunctionUrlAuthType": "AWS_IAM"}}


def test_realtime_front_url_policy_and_outputs(front_stack):
    stack, front = front_stack
    tpl = template(stack)
    url = next(iter(of_type(tpl, "AWS::Lambda::Url").values()))["Properties"]
    assert url["AuthType"] == "AWS_IAM"
    assert front.invoke_policy.node.id == "RealtimeFrontInvokePolicy" and front.invoke_policy.node.scope is stack
    assert {"RealtimeFrontUrl", "RealtimeFrontInvokePolicyArn"} <= set(tpl["Outputs"])
    assert [a.node.id for a in front.alarms] == ["RealtimeFrontErrors"]
