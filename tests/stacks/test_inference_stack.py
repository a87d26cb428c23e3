"""Inference stack: GPU endpoints, scale-to-zero async, conditions on the model, rollout and monitoring."""

from __future__ import annotations

import json
import re

import pytest
from aws_cdk.assertions import Match

from contracts import naming
from envconfig.config import GPU_FAMILIES, NVME_FAMILIES, instance_family
from stacks.registry_model import MODEL_PACKAGE_PARAMETER


@pytest.fixture(scope="module", params=["dev", "prod"])
def env(request, synth):
    return synth(request.param)


@pytest.fixture(scope="module")
def template(env):
    return env.template(env.stacks.inference)


def resources(template, kind: str) -> dict:
    return template.find_resources(kind)


def endpoint_configs(template) -> tuple[dict, dict]:
    configs = list(resources(template, "AWS::SageMaker::EndpointConfig").values())
    async_cfg = next(c for c in configs if "AsyncInferenceConfig" in c["Properties"])
    realtime_cfg = next(c for c in configs if "AsyncInferenceConfig" not in c["Properties"])
    return realtime_cfg, async_cfg


def test_model_package_arn_is_a_parameter_defaulting_to_none(env, template):
    """SSM-typed: every deploy re-reads the serving parameter the rollout writes; "none" until a package is approved."""
    parameter = template.to_json()["Parameters"][MODEL_PACKAGE_PARAMETER]
    assert parameter["Type"] == "AWS::SSM::Parameter::Value<String>"
    assert parameter["Default"] == naming.serving_package_parameter(env.config.prefix)
    assert template.to_json()["Conditions"]["HasModel"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": MODEL_PACKAGE_PARAMETER}, naming.NO_MODEL_PACKAGE]}]
    }
    assert naming.NO_MODEL_PACKAGE == "none"


def test_every_serving_resource_is_conditional_on_an_approved_model(template):
    for kind in (
        "AWS::SageMaker::Model",
        "AWS::SageMaker::EndpointConfig",
        "AWS::SageMaker::Endpoint",
        "AWS::ApplicationAutoScaling::ScalableTarget",
        "AWS::ApplicationAutoScaling::ScalingPolicy",
        "AWS::CloudWatch::Dashboard",
    ):
        found = resources(template, kind)
        assert found, kind
        assert all(r.get("Condition") == "HasModel" for r in found.values()), kind
    # Topics and the rollout exist without a model, so approving the first package can deploy the endpoints.
    assert all("Condition" not in r for r in resources(template, "AWS::SNS::Topic").values())
    assert all("Condition" not in r for r in resources(template, "AWS::Lambda::Function").values())
    status = template.to_json()["Outputs"]["ServingStatus"]["Value"]["Fn::If"]
    assert status[0] == "HasModel" and "No approved model package yet" in status[2]


def test_model_serves_the_registry_package(template):
    template.has_resource_properties(
        "AWS::SageMaker::Model",
        {
            "PrimaryContainer": {"ModelPackageName": {"Ref": MODEL_PACKAGE_PARAMETER}},
            "EnableNetworkIsolation": True,
        },
    )


def test_endpoints_use_gpu_instances_and_skip_storage_key_on_nvme(env, template):
    realtime_cfg, async_cfg = endpoint_configs(template)
    for cfg, expected in ((realtime_cfg, env.config.realtime_endpoint), (async_cfg, env.config.async_endpoint)):
        variant = cfg["Properties"]["ProductionVariants"][0]
        assert variant["InstanceType"] == expected.instance_type
        assert instance_family(variant["InstanceType"]) in GPU_FAMILIES
        has_nvme = instance_family(variant["InstanceType"]) in NVME_FAMILIES
        assert ("KmsKeyId" in cfg["Properties"]) is not has_nvme
        assert "EndpointConfigName" not in cfg["Properties"]  # generated, so updates can replace it


def test_async_config_outputs_notifications_and_concurrency(env, template):
    _, async_cfg = endpoint_configs(template)
    config = async_cfg["Properties"]["AsyncInferenceConfig"]
    assert config["ClientConfig"] == {
        "MaxConcurrentInvocationsPerInstance": env.config.async_endpoint.max_concurrent_invocations_per_instance
    }
    output = config["OutputConfig"]
    assert "async-output" in str(output["S3OutputPath"]) and "async-failures" in str(output["S3FailurePath"])
    assert output["KmsKeyId"] == {"Fn::ImportValue": f"{env.config.prefix}:DataKeyArn"}
    topics = set(resources(template, "AWS::SNS::Topic"))
    notification = output["NotificationConfig"]
    assert {notification["SuccessTopic"]["Ref"], notification["ErrorTopic"]["Ref"]} <= topics
    for topic in resources(template, "AWS::SNS::Topic").values():
        assert "KmsMasterKeyId" in topic["Properties"]


def test_realtime_data_capture_follows_config(env, template):
    realtime_cfg, _ = endpoint_configs(template)
    capture = realtime_cfg["Properties"].get("DataCaptureConfig")
    if env.config.realtime_endpoint.data_capture.enabled:
        assert capture["EnableCapture"] is True
        assert capture["InitialSamplingPercentage"] == env.config.realtime_endpoint.data_capture.sampling_percentage
        assert {o["CaptureMode"] for o in capture["CaptureOptions"]} == {"Input", "Output"}
    else:
        assert capture is None


def test_endpoints_retain_variant_properties_and_roll_back_on_alarms(template):
    endpoints = resources(template, "AWS::SageMaker::Endpoint")
    assert len(endpoints) == 2
    alarms = set(resources(template, "AWS::CloudWatch::Alarm"))
    for endpoint in endpoints.values():
        props = endpoint["Properties"]
        assert props["RetainAllVariantProperties"] is True
        policy = props["DeploymentConfig"]["BlueGreenUpdatePolicy"]
        assert policy["TrafficRoutingConfiguration"]["WaitIntervalInSeconds"] > 0
        rollback = props["DeploymentConfig"]["AutoRollbackConfiguration"]["Alarms"]
        assert rollback and all(a["AlarmName"]["Ref"] in alarms for a in rollback)


def scalable_targets(template) -> dict[str, dict]:
    return {
        r["Properties"]["ResourceId"]: r
        for r in resources(template, "AWS::ApplicationAutoScaling::ScalableTarget").values()
    }


def test_realtime_target_tracking_on_invocations(env, template):
    target = scalable_targets(template)[f"endpoint/{env.config.prefix}-realtime/variant/AllTraffic"]["Properties"]
    assert (target["MinCapacity"], target["MaxCapacity"]) == (
        env.config.realtime_endpoint.min_capacity,
        env.config.realtime_endpoint.max_capacity,
    )
    template.has_resource_properties(
        "AWS::ApplicationAutoScaling::ScalingPolicy",
        {
            "PolicyType": "TargetTrackingScaling",
            "TargetTrackingScalingPolicyConfiguration": Match.object_like(
                {"PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"}}
            ),
        },
    )


def test_async_scales_to_zero_with_backlog_tracking_and_step_scaling(env, template):
    name = f"{env.config.prefix}-async"
    target = scalable_targets(template)[f"endpoint/{name}/variant/AllTraffic"]["Properties"]
    assert target["MinCapacity"] == 0 and target["ScalableDimension"] == "sagemaker:variant:DesiredInstanceCount"
    template.has_resource_properties(
        "AWS::ApplicationAutoScaling::ScalingPolicy",
        {
            "PolicyType": "TargetTrackingScaling",
            "TargetTrackingScalingPolicyConfiguration": Match.object_like(
                {
                    "TargetValue": env.config.async_endpoint.target_backlog_per_instance,
                    "CustomizedMetricSpecification": {
                        "MetricName": "ApproximateBacklogSizePerInstance",
                        "Namespace": "AWS/SageMaker",
                        "Dimensions": [{"Name": "EndpointName", "Value": name}],
                        "Statistic": "Average",
                    },
                }
            ),
        },
    )
    template.has_resource_properties(
        "AWS::ApplicationAutoScaling::ScalingPolicy",
        {
            "PolicyType": "StepScaling",
            "StepScalingPolicyConfiguration": Match.object_like(
                {
                    "AdjustmentType": "ChangeInCapacity",
                    "StepAdjustments": [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}],
                }
            ),
        },
    )
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "MetricName": "HasBacklogWithoutCapacity",
            "Namespace": "AWS/SageMaker",
            "Period": 60,
            "Dimensions": [{"Name": "EndpointName", "Value": name}],
            "ComparisonOperator": "GreaterThanOrEqualToThreshold",
            "Threshold": 1,
            "AlarmActions": Match.array_with([{"Ref": Match.string_like_regexp("ScaleOutFromZero")}]),
        },
    )


@pytest.mark.parametrize(
    "metric",
    [
        "ModelLatency",
        "Invocation5XXErrors",
        "ApproximateAgeOfOldestRequest",
        "HasBacklogWithoutCapacity",
        "InvocationFailures",
        "ExecutionFailed",
        "ApproximateNumberOfMessagesVisible",
        "Errors",
    ],
)
def test_alarms_publish_to_the_alarm_topic(template, metric):
    alarms = [
        a for a in resources(template, "AWS::CloudWatch::Alarm").values() if a["Properties"].get("MetricName") == metric
    ]
    assert alarms, metric
    alarm_topic = next(k for k in resources(template, "AWS::SNS::Topic") if "AlarmTopic" in k)
    for alarm in alarms:
        assert {"Ref": alarm_topic} in alarm["Properties"]["AlarmActions"], metric


def test_rollout_reacts_to_approvals_of_this_group_only(env, template):
    template.has_resource_properties(
        "AWS::Events::Rule",
        {
            "EventPattern": {
                "source": ["aws.sagemaker"],
                "detail-type": ["SageMaker Model Package State Change"],
                "detail": {
                    "ModelPackageGroupName": [f"{env.config.prefix}-segmentation"],
                    "ModelApprovalStatus": ["Approved"],
                },
            }
        },
    )
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Handler": "rollout.handler",
            "DeadLetterConfig": Match.any_value(),
            "Environment": {"Variables": Match.object_like({"PARAMETER_NAME": MODEL_PACKAGE_PARAMETER})},
        },
    )


def test_rollout_can_update_only_this_stack_and_pass_only_the_model_role(env, template):
    statements = []
    for policy in resources(template, "AWS::IAM::Policy").values():
        statements += policy["Properties"]["PolicyDocument"]["Statement"]
    updates = [s for s in statements if "cloudformation:UpdateStack" in s["Action"]]
    assert len(updates) == 1
    assert env.stacks.inference.stack_name in str(updates[0]["Resource"])
    passes = [s for s in statements if s["Action"] == "iam:PassRole"]
    model_role = next(k for k in resources(template, "AWS::IAM::Role") if k.startswith("ModelRole"))
    assert any(s["Resource"] == {"Fn::GetAtt": [model_role, "Arn"]} for s in passes)


def function_by_handler(template, handler: str) -> tuple[str, dict]:
    return next((k, v) for k, v in resources(template, "AWS::Lambda::Function").items()
                if v["Properties"].get("Handler") == handler)


def test_ingest_queue_has_a_dead_letter_queue_and_partial_batch_failures(env, template):
    queues = resources(template, "AWS::SQS::Queue")
    ingest = next(q for k, q in queues.items() if k.startswith("PreprocessorsIngestQueue"))
    assert ingest["Properties"]["RedrivePolicy"]["maxReceiveCount"] == env.config.preprocessing.max_receive_count
    assert all("KmsMasterKeyId" in q["Properties"] for q in queues.values())
    ingest_id, _ = function_by_handler(template, "ingest.handler")
    template.has_resource_properties("AWS::Lambda::EventSourceMapping", {
        "FunctionName": {"Ref": ingest_id}, "FunctionResponseTypes": ["ReportBatchItemFailures"],
        "BatchSize": env.config.preprocessing.batch_size})


def test_frames_under_incoming_of_both_buckets_reach_the_queue(env, template):
    notifications = resources(template, "Custom::S3BucketNotifications")
    assert len(notifications) == 2
    for notification in notifications.values():
        queue_config = notification["Properties"]["NotificationConfiguration"]["QueueConfigurations"][0]
        assert queue_config["Events"] == ["s3:ObjectCreated:*"]
        assert queue_config["Filter"]["Key"]["FilterRules"] == [{"Name": "prefix", "Value": "incoming/"}]


def test_functions_take_sizes_and_tunables_from_config(env, template):
    cfg = env.config.preprocessing
    for handler, fn in (("ingest.handler", cfg.ingest), ("postprocess.handler", cfg.postprocess),
                        ("realtime.handler", cfg.realtime)):
        _, function = function_by_handler(template, handler)
        props = function["Properties"]
        assert props["MemorySize"] == fn.memory_mb
        assert props.get("ReservedConcurrentExecutions") == fn.reserved_concurrency
        variables = props["Environment"]["Variables"]
        assert variables["TARGET_WIDTH"] == str(cfg.target_width)
        assert variables["KEY_PATTERN"] == cfg.key_pattern
        assert variables["ASYNC_ENDPOINT_NAME"] == f"{env.config.prefix}-async"
        assert len(json.loads(variables["CLASS_NAMES"])) == 19
        assert "DeadLetterConfig" in props
        assert variables["MODEL_PACKAGE_VERSION"] == {"Fn::If": ["HasModel", {"Fn::Select": [2, {"Fn::Split": [
            "/", {"Ref": MODEL_PACKAGE_PARAMETER}]}]}, ""]}
    for log_group in resources(template, "AWS::Logs::LogGroup").values():
        assert log_group["Properties"]["RetentionInDays"] == env.config.retention.log_group_days
    ingest_id, _ = function_by_handler(template, "ingest.handler")
    # the ingest queue's mapping (the drives stream has a position; the capacity-wait queue feeds the launcher)
    mappings = [m["Properties"] for m in resources(template, "AWS::Lambda::EventSourceMapping").values()
                if "StartingPosition" not in m["Properties"] and m["Properties"]["FunctionName"] == {"Ref": ingest_id}]
    assert [m["ScalingConfig"]["MaximumConcurrency"] for m in mappings] == [cfg.ingest_max_concurrency]


def test_no_function_reserves_concurrency_unless_configured(env, template):
    reserved = [f["Properties"].get("ReservedConcurrentExecutions")
                for f in resources(template, "AWS::Lambda::Function").values()]
    assert sum(r or 0 for r in reserved) == env.config.reserved_lambda_concurrency


def test_postprocessor_subscribes_to_both_async_topics(template):
    postprocess_id, _ = function_by_handler(template, "postprocess.handler")
    subscriptions = [s["Properties"] for s in resources(template, "AWS::SNS::Subscription").values()
                     if s["Properties"]["Protocol"] == "lambda"]
    assert len(subscriptions) == 2
    assert all(s["Endpoint"] == {"Fn::GetAtt": [postprocess_id, "Arn"]} and "RedrivePolicy" in s
               for s in subscriptions)


def test_realtime_front_requires_iam_auth(template):
    realtime_id, _ = function_by_handler(template, "realtime.handler")
    template.has_resource_properties("AWS::Lambda::Url", {
        "AuthType": "AWS_IAM", "TargetFunctionArn": {"Fn::GetAtt": [realtime_id, "Arn"]}})
    outputs = template.to_json()["Outputs"]
    assert "RealtimeFrontInvokePolicyArn" in outputs
    policy = next(iter(resources(template, "AWS::IAM::ManagedPolicy").values()))
    actions = {s["Action"] for s in policy["Properties"]["PolicyDocument"]["Statement"]}
    assert actions == {"lambda:InvokeFunctionUrl", "lambda:InvokeFunction"}


def test_endpoints_grant_invoke_by_literal_name_and_publish_catalogue_metrics(env, template):
    """The functions exist without a model, the endpoints only with one: the grants name the endpoint literally
    (no reference to a conditional resource), each function gets its endpoint's invoke action only."""
    inference = env.stacks.inference
    realtime, async_endpoint = inference.realtime, inference.async_endpoint
    assert (realtime.endpoint_name, async_endpoint.endpoint_name) == naming.endpoint_names(env.config.prefix)
    role_of = {function_by_handler(template, f"{module}.handler")[1]["Properties"]["Role"]["Fn::GetAtt"][0]: module
               for module in ("ingest", "realtime")}
    granted = {}
    for policy in resources(template, "AWS::IAM::Policy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if str(statement["Action"]).startswith("sagemaker:Invoke"):
                for role in policy["Properties"]["Roles"]:
                    granted[role_of.get(role["Ref"], role["Ref"])] = (statement["Action"],
                                                                       json.dumps(statement["Resource"]))
    assert set(granted) == {"ingest", "realtime"}
    assert granted["ingest"][0] == "sagemaker:InvokeEndpointAsync"
    assert granted["realtime"][0] == "sagemaker:InvokeEndpoint"
    assert f":endpoint/{async_endpoint.endpoint_name}" in granted["ingest"][1]
    assert f":endpoint/{realtime.endpoint_name}" in granted["realtime"][1]
    referenced = {ref for _, resource in granted.values() for ref in re.findall(r'"Ref": "([^"]+)"', resource)}
    assert all(ref.startswith("AWS::") for ref in referenced), referenced  # pseudo parameters only

    by_variant = {"EndpointName", "VariantName"}
    assert set(realtime.metric_model_latency().dimensions) == by_variant
    assert set(realtime.metric_5xx_errors().dimensions) == by_variant
    assert set(async_endpoint.metric_invocation_failures().dimensions) == by_variant
    for queue_metric in (async_endpoint.metric_oldest_request_age(), async_endpoint.metric_backlog_without_capacity(),
                         async_endpoint.metric_backlog_per_instance()):
        assert set(queue_metric.dimensions) == {"EndpointName"}


def test_async_endpoint_scaled_to_zero_rolls_out_to_a_fresh_instance(env, template):
    """A retained count of zero would bake an empty fleet that no request reaches and no alarm can judge."""
    _, async_cfg = endpoint_configs(template)
    assert async_cfg["Properties"]["ProductionVariants"][0]["InitialInstanceCount"] == 1
    by_name = {e["Properties"]["EndpointName"]: e["Properties"] for e in
               resources(template, "AWS::SageMaker::Endpoint").values()}
    async_props = by_name[f"{env.config.prefix}-async"]
    assert env.config.async_endpoint.min_capacity == 0
    assert async_props["ExcludeRetainedVariantProperties"] == [{"VariantPropertyType": "DesiredInstanceCount"}]
    assert "ExcludeRetainedVariantProperties" not in by_name[f"{env.config.prefix}-realtime"]


def test_rollback_alarms_have_stable_names_the_model_role_may_read(env, template):
    names = {a["Properties"].get("AlarmName") for a in resources(template, "AWS::CloudWatch::Alarm").values()}
    prefix = env.config.prefix
    expected = {f"{prefix}-realtime-latency-p90", f"{prefix}-realtime-5xx-errors",
                f"{prefix}-async-invocation-failures"}
    assert expected <= names
    policy = json.dumps(resources(template, "AWS::IAM::Policy"))
    assert all(f":alarm:{name}" in policy for name in expected)


# -- construct branches no environment file exercises ------------------------------------------------------------

def _bare_inference_template(tmp_path, overrides: dict, context: dict | None = None):
    import aws_cdk as cdk
    from aws_cdk.assertions import Template

    from envconfig.config import load_config
    from stacks.app_builder import build_app, cdk_json_context

    config = load_config("dev").model_copy(update=overrides)
    app = cdk.App(outdir=str(tmp_path), context={**cdk_json_context(), "aws:cdk:bundling-stacks": [],
                                                 "aws:cdk:disable-asset-staging": True, **(context or {})})
    _, stacks = build_app(config, app)
    return Template.from_stack(stacks.inference), stacks


@pytest.fixture(scope="module")
def variant_template(tmp_path_factory):
    """An async endpoint with min capacity 1 on a non-NVMe instance, and scaling suspended (SCALING=off)."""
    from envconfig.config import AsyncEndpointConfig

    async_cfg = AsyncEndpointConfig(instance_type="ml.p3.2xlarge", min_capacity=1, max_capacity=2)
    return _bare_inference_template(tmp_path_factory.mktemp("bare"), {"async_endpoint": async_cfg},
                                    {"scaling": "off"})


def test_scaling_off_leaves_the_scalable_targets_out(variant_template):
    template, _ = variant_template
    assert resources(template, "AWS::ApplicationAutoScaling::ScalableTarget") == {}
    assert resources(template, "AWS::ApplicationAutoScaling::ScalingPolicy") == {}
    assert len(resources(template, "AWS::SageMaker::Endpoint")) == 2  # the endpoints themselves stay


def test_async_endpoint_with_min_capacity_retains_its_count_and_uses_the_volume_key(variant_template):
    template, _ = variant_template
    _, async_cfg = endpoint_configs(template)
    assert async_cfg["Properties"]["ProductionVariants"][0]["InitialInstanceCount"] == 1
    assert "KmsKeyId" in async_cfg["Properties"]  # p3 has no NVMe instance store
    async_endpoint = next(e for e in resources(template, "AWS::SageMaker::Endpoint").values()
                          if e["Properties"]["EndpointName"].endswith("-async"))
    assert "ExcludeRetainedVariantProperties" not in async_endpoint["Properties"]


def test_variant_keeps_every_integration_contract(variant_template):
    from stacks.checks.service_contracts import Assembly, check

    _, stacks = variant_template
    assembly = Assembly({s.stack_name: cdk_template(s) for s in stacks.all})
    assert check(assembly) == []
    # ... and the volume-key rule notices an updater without kms:CreateGrant.
    for template in assembly.templates.values():
        for body in template["Resources"].values():
            if body["Type"] == "AWS::IAM::Policy":
                statements = body["Properties"]["PolicyDocument"]["Statement"]
                body["Properties"]["PolicyDocument"]["Statement"] = [
                    s for s in statements if s.get("Sid") != "EndpointVolumeKeyGrants"]
    broken = [str(v) for v in check(assembly)]
    assert broken and all("endpoint-volume-key-grantable-by-updater" in v and "kms:CreateGrant" in v for v in broken)


def cdk_template(stack) -> dict:
    from aws_cdk.assertions import Template

    return Template.from_stack(stack).to_json()


def test_scaling_context_accepts_only_on_or_off(tmp_path):
    from envconfig.config import ConfigError

    with pytest.raises(ConfigError, match="scaling='maybe'"):
        _bare_inference_template(tmp_path, {}, {"scaling": "maybe"})


@pytest.mark.parametrize("function", ["ingest", "postprocess", "realtime", "rollout"])
def test_function_roles_acknowledge_exactly_their_wildcard_findings(env, template, function):
    """Grants record their cdk-nag acknowledgments (RoadsegFunction.grant_*/allow): none missing, none extra."""
    from stacks.compliance import iam5_findings

    stack = env.stacks.inference
    fn = stack.rollout.function if function == "rollout" else getattr(stack.preprocessors, function)
    role_id = stack.get_logical_id(fn.role.node.default_child)
    statements = [s for p in resources(template, "AWS::IAM::Policy").values()
                  if p["Properties"]["Roles"] == [{"Ref": role_id}]
                  for s in p["Properties"]["PolicyDocument"]["Statement"]]
    acknowledged = {rule.removeprefix("Annotation::AwsSolutions-IAM5[").removesuffix("]")
                    for entry in fn.role.node.metadata if entry.type == "aws:cdk:acknowledged-rules"
                    for rule in entry.data if rule.startswith("Annotation::AwsSolutions-IAM5[")}
    assert statements and acknowledged == iam5_findings(stack, statements)


def test_neo_targets_give_the_rollout_a_compilation_role_scoped_to_the_bundles(tmp_path):
    from envconfig.config import load_config

    training = load_config("dev").training.model_copy(update={
        "export": load_config("dev").training.export.model_copy(update={"neo_targets": ["ml_g4dn", "jetson_xavier"]})})
    template, stacks = _bare_inference_template(tmp_path, {"training": training})
    variables = next(f["Properties"]["Environment"]["Variables"]
                     for f in resources(template, "AWS::Lambda::Function").values()
                     if f["Properties"]["Handler"] == "rollout.handler")
    assert json.loads(variables["NEO_TARGETS"]) == ["ml_g4dn", "jetson_xavier"]
    assert variables["NEO_JOB_PREFIX"] == "roadseg-dev-neo-"
    roles = {k: r for k, r in resources(template, "AWS::IAM::Role").items() if "NeoRole" in k}
    (neo_role,) = roles
    assert variables["NEO_ROLE_ARN"] == {"Fn::GetAtt": [neo_role, "Arn"]}
    statements = [s for p in resources(template, "AWS::IAM::Policy").values()
                  for s in p["Properties"]["PolicyDocument"]["Statement"]]
    (create,) = [s for s in statements if s.get("Sid") == "CompileApprovedBundles"]
    # Describe: a failed create is confirmed by the job's own description, not by its error code.
    assert create["Action"] == ["sagemaker:CreateCompilationJob", "sagemaker:DescribeCompilationJob"]
    assert ":compilation-job/roadseg-dev-neo-*" in json.dumps(create["Resource"])
    (passes,) = [s for s in statements if s.get("Sid") == "PassOnlyTheNeoRole"]
    assert passes["Resource"] == {"Fn::GetAtt": [neo_role, "Arn"]}
    assert passes["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
    # Neo reads the bundles and writes the compiled models under pipelines/ only, with the project key.
    neo_policy = json.dumps([p for p in resources(template, "AWS::IAM::Policy").values()
                             if {"Ref": neo_role} in p["Properties"]["Roles"]])
    assert "/pipelines/*" in neo_policy and "s3:PutObject" in neo_policy and "kms:Decrypt" in neo_policy
    assert "cloudwatch:PutMetricData" in neo_policy and "logs:PutLogEvents" in neo_policy


def test_without_neo_targets_there_is_no_compilation(synth):
    env = synth("dev")
    template = env.template(env.stacks.inference).to_json()
    assert not [k for k in template["Resources"] if "NeoRole" in k]
    assert "CreateCompilationJob" not in json.dumps(template)
