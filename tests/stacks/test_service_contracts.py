"""Integration contracts: every environment keeps them, and each rule fails on a template broken its way."""

from __future__ import annotations

import copy
import json

import pytest

from envconfig.config import available_environments
from stacks.checks.service_contracts import RULES, Assembly, Context, check
from stacks.checks.service_contracts.__main__ import main as contracts_main


def _context(env) -> Context:
    return Context(reserved_concurrency_declared=env.config.reserved_lambda_concurrency,
                   account_pinned=env.config.account is not None)


def _templates(env) -> dict[str, dict]:
    return {stack.stack_name: json.loads((env.outdir / stack.template_file).read_text()) for stack in env.stacks.all}


@pytest.mark.parametrize("env_name", available_environments())
def test_every_environment_keeps_every_contract(synth, env_name):
    env = synth(env_name)
    violations = check(Assembly.from_directory(env.outdir), _context(env))
    assert violations == [], "\n".join(map(str, violations))


def test_command_line_checks_an_assembly_directory(synth, capsys):
    env = synth("dev")
    assert contracts_main([str(env.outdir), "--env", "dev"]) == 0
    assert f"{len(RULES)} rules, 0 broken" in capsys.readouterr().out


def test_command_line_without_an_assembly_says_how_to_make_one(tmp_path, capsys):
    assert contracts_main([str(tmp_path)]) == 2
    assert "make synth" in capsys.readouterr().err


# -- broken templates --------------------------------------------------------------------------------------------

@pytest.fixture
def dev(synth):
    env = synth("dev")
    return env, _templates(env)


def _resources(templates, resource_type):
    for stack, template in templates.items():
        for logical_id, body in template["Resources"].items():
            if body["Type"] == resource_type:
                yield stack, logical_id, body


def _one(templates, resource_type, id_prefix):
    found = [body for _, logical_id, body in _resources(templates, resource_type) if logical_id.startswith(id_prefix)]
    assert len(found) == 1, (resource_type, id_prefix, len(found))
    return found[0]


def _drop_key_statements(templates, predicate) -> int:
    dropped = 0
    for _, _, key in _resources(templates, "AWS::KMS::Key"):
        statements = key["Properties"]["KeyPolicy"]["Statement"]
        kept = [s for s in statements if not predicate(s)]
        dropped += len(statements) - len(kept)
        key["Properties"]["KeyPolicy"]["Statement"] = kept
    return dropped


def _drop_identity_statements(templates, policy_prefix, predicate) -> int:
    dropped = 0
    for _, logical_id, policy in _resources(templates, "AWS::IAM::Policy"):
        if logical_id.startswith(policy_prefix):
            statements = policy["Properties"]["PolicyDocument"]["Statement"]
            kept = [s for s in statements if not predicate(s)]
            dropped += len(statements) - len(kept)
            policy["Properties"]["PolicyDocument"]["Statement"] = kept
    return dropped


def _sid(sid):
    return lambda statement: statement.get("Sid") == sid


def _service(name):
    return lambda statement: name in json.dumps(statement.get("Principal", {}))


def _actions(statement) -> list[str]:
    action = statement["Action"]
    return action if isinstance(action, list) else [action]


def _violations(env, templates, rule_name):
    return [v for v in RULES[rule_name](Assembly(templates), _context(env))]


def _break_and_check(dev, rule_name, breaker, expected_fragment):
    env, templates = dev
    assert _violations(env, templates, rule_name) == []
    broken = copy.deepcopy(templates)
    assert breaker(broken), "the breaker changed nothing"
    violations = _violations(env, broken, rule_name)
    assert violations, f"{rule_name} did not notice the broken template"
    assert all(v.doc.startswith(("https://docs.aws.amazon.com/", "stacks/")) for v in violations)
    assert any(expected_fragment in str(v) for v in violations), "\n".join(map(str, violations))
    return violations


def test_log_group_on_a_key_that_does_not_admit_cloudwatch_logs_fails(dev):
    # Known failure 1: the Lambda log groups on a key whose policy does not admit logs.<region>.amazonaws.com.
    violations = _break_and_check(dev, "log-group-key-admits-cloudwatch-logs",
                                  lambda t: _drop_key_statements(t, _sid("CloudWatchLogsEncryptLogGroups")),
                                  "kms:EncryptionContext:aws:logs:arn")
    assert len(violations) == 7  # ingest, postprocess, real-time front, rollout, drive launcher and completion, drift


def test_log_group_condition_must_cover_the_group(dev):
    def narrow(templates):
        for _, _, key in _resources(templates, "AWS::KMS::Key"):
            for statement in key["Properties"]["KeyPolicy"]["Statement"]:
                if statement.get("Sid") == "CloudWatchLogsEncryptLogGroups":
                    statement["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"] = \
                        "arn:aws:logs:us-east-1:111111111111:log-group:/other/*"
                    return True
        return False

    _break_and_check(dev, "log-group-key-admits-cloudwatch-logs", narrow, "CREATE_FAILED")


def test_alarm_topic_on_a_key_that_cloudwatch_cannot_use_fails(dev):
    # Known failure 2: alarms go off and notify nobody.
    _break_and_check(dev, "alarm-topic-key-admits-cloudwatch",
                     lambda t: _drop_key_statements(t, _sid("CloudWatchAlarmsPublishToTopics")), "notifies nobody")


def test_alarm_topic_whose_policy_does_not_allow_cloudwatch_fails(dev):
    def deny_only(templates):
        policy = _one(templates, "AWS::SNS::TopicPolicy", "MonitoringAlarmTopicPolicy")
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        policy["Properties"]["PolicyDocument"]["Statement"] = [s for s in statements if s["Effect"] == "Deny"]
        return any(s["Effect"] == "Allow" for s in statements)  # CloudWatch's publish (and EventBridge's) dropped

    _break_and_check(dev, "alarm-topic-key-admits-cloudwatch", deny_only, "topic policy")


def test_s3_notifications_to_a_queue_whose_key_does_not_admit_s3_fail(dev):
    _break_and_check(dev, "s3-notification-queue-key-admits-s3",
                     lambda t: _drop_key_statements(t, _service("s3.amazonaws.com")), "s3.amazonaws.com")


def test_eventbridge_dead_letters_need_the_key(dev):
    _break_and_check(dev, "eventbridge-dead-letter-key-admits-events",
                     lambda t: _drop_key_statements(t, _sid("EventBridgeSendToDeadLetterQueues")),
                     "events.amazonaws.com")


def test_sns_dead_letters_need_the_key(dev):
    _break_and_check(dev, "sns-dead-letter-key-admits-sns",
                     lambda t: _drop_key_statements(t, _sid("SnsSendToDeadLetterQueues")), "sns.amazonaws.com")


def test_function_dead_letters_need_kms_on_the_role(dev):
    _break_and_check(dev, "function-dead-letter-role-can-encrypt",
                     lambda t: _drop_identity_statements(t, "RolloutFunctionServiceRoleDefaultPolicy",
                                                         lambda s: "kms:GenerateDataKey" in _actions(s)),
                     "kms:GenerateDataKey")


def test_queue_consumers_need_kms_decrypt(dev):
    _break_and_check(dev, "queue-consumer-can-decrypt",
                     lambda t: _drop_identity_statements(t, "PreprocessorsIngestServiceRoleDefaultPolicy",
                                                         lambda s: "kms:Decrypt" in _actions(s)),
                     "kms:Decrypt")


def test_async_notifications_need_the_model_role_to_use_the_topic_key(dev):
    _break_and_check(dev, "async-notifications-publisher-can-encrypt",
                     lambda t: _drop_identity_statements(
                         t, "ModelRoleDefaultPolicy",
                         lambda s: "OperationsKey" in json.dumps(s.get("Resource"))),
                     "kms:GenerateDataKey")


def test_alarm_on_a_dimension_set_aws_does_not_publish_fails(dev):
    # Known failure 3: the async rollback alarm on InvocationFailures by EndpointName alone never fires.
    def endpoint_only(templates):
        alarm = _one(templates, "AWS::CloudWatch::Alarm", "ServingAsyncInvocationFailures")
        alarm["Properties"]["Dimensions"] = [d for d in alarm["Properties"]["Dimensions"]
                                             if d["Name"] == "EndpointName"]
        return True

    _break_and_check(dev, "metric-published-with-these-dimensions", endpoint_only,
                     "InvocationFailures is not published with the dimensions {EndpointName}")


def test_scaling_an_async_endpoint_on_invocations_per_instance_fails(dev):
    def predefined(templates):
        policy = _one(templates, "AWS::ApplicationAutoScaling::ScalingPolicy", "ServingAsyncScalingBacklogPerInstance")
        tracking = policy["Properties"]["TargetTrackingScalingPolicyConfiguration"]
        tracking.pop("CustomizedMetricSpecification")
        tracking["PredefinedMetricSpecification"] = {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"}
        return True

    _break_and_check(dev, "metric-published-with-these-dimensions", predefined, "ApproximateBacklogSizePerInstance")


def test_dashboard_metric_rows_are_checked(dev):
    def add_widget(templates):
        dashboard = _one(templates, "AWS::CloudWatch::Dashboard", "MonitoringDashboard")
        widget = {"type": "metric", "properties": {"metrics": [
            ["AWS/SageMaker", "ApproximateBacklogSize", "EndpointName", "x", "VariantName", "AllTraffic"]]}}
        dashboard["Properties"]["DashboardBody"] = json.dumps({"widgets": [widget]})
        return True

    _break_and_check(dev, "metric-published-with-these-dimensions", add_widget, "ApproximateBacklogSize")


def test_rollback_alarms_unreadable_by_the_model_role_fail(dev):
    violations = _break_and_check(dev, "rollback-alarms-readable-by-model-role",
                                  lambda t: _drop_identity_statements(t, "ModelRoleDefaultPolicy",
                                                                      _sid("ReadRollbackAlarms")),
                                  "cloudwatch:DescribeAlarms")
    assert len(violations) == 3  # two real-time alarms, one async


def test_stack_updater_without_ssm_get_parameters_fails(dev):
    _break_and_check(dev, "stack-updater-can-resolve-ssm-parameters",
                     lambda t: _drop_identity_statements(t, "RolloutFunctionServiceRoleDefaultPolicy",
                                                         _sid("ResolveSsmTypedParameters")),
                     "/cdk-bootstrap/hnb659fds/version")


def test_pipeline_role_without_create_grant_on_the_volume_key_fails(dev):
    _break_and_check(dev, "volume-key-grantable-by-job-creator",
                     lambda t: _drop_identity_statements(t, "PipelinesExecutionRoleDefaultPolicy",
                                                         _sid("VolumeKeyGrantsForJobs")),
                     "kms:CreateGrant")


def test_function_url_without_both_invoke_actions_fails(dev):
    def only_url_action(templates):
        policy = _one(templates, "AWS::IAM::ManagedPolicy", "PreprocessorsRealtimeFrontInvokePolicy")
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        policy["Properties"]["PolicyDocument"]["Statement"] = [s for s in statements
                                                               if s.get("Sid") != "InvokeTheFunction"]
        return len(statements) == 2

    _break_and_check(dev, "function-url-has-working-invoke-grant", only_url_action, "lambda:InvokeFunction")


def test_reserved_concurrency_in_an_unpinned_environment_fails(dev):
    # Known failure 4: dev reserved 41 units, more than a new account can spare.
    def reserve(templates):
        for _, _, function in _resources(templates, "AWS::Lambda::Function"):
            if function["Properties"].get("Handler") == "ingest.handler":
                function["Properties"]["ReservedConcurrentExecutions"] = 10
                return True
        return False

    violations = _break_and_check(dev, "reserved-concurrency-declared", reserve, "reserve 10 units")
    assert any("without a pinned account" in str(v) for v in violations)


# -- the graph ---------------------------------------------------------------------------------------------------

def test_import_values_resolve_to_the_exporting_stacks_resource():
    templates = {
        "Data": {"Resources": {"Key": {"Type": "AWS::KMS::Key", "Properties": {}}},
                 "Outputs": {"KeyArn": {"Value": {"Fn::GetAtt": ["Key", "Arn"]}, "Export": {"Name": "p:KeyArn"}}}},
        "Use": {"Resources": {"Queue": {"Type": "AWS::SQS::Queue", "Properties": {
            "KmsMasterKeyId": {"Fn::ImportValue": "p:KeyArn"}}}}},
    }
    assembly = Assembly(templates)
    queue = next(assembly.resources("AWS::SQS::Queue"))
    key = assembly.target("Use", queue.properties["KmsMasterKeyId"], "AWS::KMS::Key")
    assert (key.stack, key.logical_id) == ("Data", "Key")
    assert assembly.text("Use", {"Fn::Sub": ["${K}/x-${AWS::Region}", {"K": {"Fn::ImportValue": "p:KeyArn"}}]}) == \
        "{{Data/Key.Arn}}/x-${AWS::Region}"
    assert assembly.text("Use", {"Fn::Join": ["", [{"Ref": "AWS::Partition"}, ":", {"Ref": "Queue"}]]}) == \
        "${AWS::Partition}:{{Use/Queue.Ref}}"


# -- isolated-network mode ---------------------------------------------------------------------------------------

@pytest.fixture
def isolated_env(isolated_synth):
    env = isolated_synth("isolated-create")
    return env, env.templates()


def _isolated_violations(templates, rule_name):
    return list(RULES[rule_name](Assembly(templates), Context(account_pinned=True)))


def test_isolated_rules_say_nothing_outside_isolated_mode(dev):
    env, templates = dev
    for rule_name in ("isolated-network-everything-in-the-vpc", "isolated-network-endpoint-for-every-called-service"):
        assert _violations(env, templates, rule_name) == []


def test_isolated_mode_without_the_runtime_endpoint_fails(isolated_env):
    _, templates = isolated_env
    rule_name = "isolated-network-endpoint-for-every-called-service"
    assert _isolated_violations(templates, rule_name) == []
    broken = copy.deepcopy(templates)
    for stack, logical_id, body in list(_resources(broken, "AWS::EC2::VPCEndpoint")):
        if str(body["Properties"]["ServiceName"]).endswith("sagemaker.runtime"):
            del broken[stack]["Resources"][logical_id]
    (violation,) = _isolated_violations(broken, rule_name)
    assert "sagemaker.runtime" in str(violation) and "sagemaker:InvokeEndpointAsync" in violation.resource
    assert "sagemaker:InvokeEndpoint)" in violation.resource  # the real-time front too
    assert violation.doc.startswith("https://docs.aws.amazon.com/")


def test_isolated_mode_with_a_function_or_job_outside_the_vpc_fails(isolated_env):
    _, templates = isolated_env
    rule_name = "isolated-network-everything-in-the-vpc"
    assert _isolated_violations(templates, rule_name) == []
    broken = copy.deepcopy(templates)
    ingest = next(body for _, lid, body in _resources(broken, "AWS::Lambda::Function") if lid.startswith(
        "PreprocessorsIngest"))
    del ingest["Properties"]["VpcConfig"]
    model = next(body for _, _, body in _resources(broken, "AWS::SageMaker::Model"))
    del model["Properties"]["VpcConfig"]
    pipeline = next(body for _, lid, body in _resources(broken, "AWS::SageMaker::Pipeline") if "Training" in lid)
    sub = pipeline["Properties"]["PipelineDefinition"]["PipelineDefinitionBody"]["Fn::Sub"]
    definition = json.loads(sub[0])
    prepare = next(s for s in definition["Steps"] if s["Name"] == "PrepareDataset")
    del prepare["Arguments"]["NetworkConfig"]["VpcConfig"]
    sub[0] = json.dumps(definition)
    violations = _isolated_violations(broken, rule_name)
    text = "\n".join(map(str, violations))
    assert len(violations) == 3, text
    assert "PreprocessorsIngest" in text and "Model" in text and "step PrepareDataset (Processing)" in text
