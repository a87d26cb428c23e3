"""Integration contracts: rules over the synthesized templates for what one AWS service needs from another.

cfn-lint checks each resource's shape and cdk-nag each resource's security settings; neither sees that a log
group's key does not admit CloudWatch Logs, or that an alarm watches a dimension set nobody publishes. Each rule
here encodes one such contract, cites the AWS page it rests on, and reports every resource that breaks it with
what is missing. ``tests/stacks/test_service_contracts.py`` runs every rule on every environment and feeds each
rule a template broken the way it guards against.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from contracts.aws_docs import (
    ASYNC_SCALING_DOC,
    CREATE_PROCESSING_JOB_DOC,
    FUNCTION_URL_DOC,
    GUARDRAILS_DOC,
    LOGS_KMS_DOC,
    SNS_DLQ_DOC,
    SNS_KMS_DOC,
    SQS_KMS_DOC,
    SSM_PARAMETER_TYPES_DOC,
)
from contracts.layout import DATASETS, PIPELINE_INPUT_PREFIXES
from contracts.naming import DATASETS_BUCKET_ARN_EXPORT
from stacks.checks.service_contracts.assembly import Assembly, Resource, ResourceRef
from stacks.metric_catalogue import CATALOGUE

ALARM_SNS_DOC = "https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/Notify_Users_Alarm_Changes.html"
S3_NOTIFICATION_DOC = ("https://docs.aws.amazon.com/AmazonS3/latest/userguide/"
                       "grant-destinations-permissions-to-s3.html")
LAMBDA_DLQ_DOC = "https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html"
LAMBDA_SQS_DOC = "https://docs.aws.amazon.com/lambda/latest/dg/with-sqs.html"
ASYNC_NOTIFICATION_DOC = "https://docs.aws.amazon.com/sagemaker/latest/dg/async-inference-create-endpoint.html"
SAGEMAKER_KMS_DOC = "https://docs.aws.amazon.com/sagemaker/latest/dg/api-permissions-reference.html"
LAMBDA_CONCURRENCY_DOC = "https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html"

ACCOUNT_ARN = "arn:${AWS::Partition}:{service}:${AWS::Region}:${AWS::AccountId}:{resource}"


@dataclass(frozen=True)
class Violation:
    rule: str
    resource: str
    message: str
    doc: str

    def __str__(self) -> str:
        return f"[{self.rule}] {self.resource}: {self.message} ({self.doc})"


@dataclass(frozen=True)
class Context:
    """What the templates alone cannot say: whether the environment pins an account (and so a known quota)."""

    reserved_concurrency_declared: int = 0
    account_pinned: bool = False


Rule = Callable[[Assembly, Context], Iterator[Violation]]
RULES: dict[str, Rule] = {}


def rule(name: str) -> Callable[[Rule], Rule]:
    def register(function: Rule) -> Rule:
        RULES[name] = function
        return function
    return register


def check(assembly: Assembly, context: Context = Context()) -> list[Violation]:
    return [violation for function in RULES.values() for violation in function(assembly, context)]


# -- helpers -----------------------------------------------------------------------------------------------------

def _arn(assembly: Assembly, stack: str, service: str, resource: str) -> str:
    """An ARN in ``stack``'s account and region, written the way that stack's template writes them."""
    return assembly.pseudo(stack, ACCOUNT_ARN.replace("{service}", service).replace("{resource}", resource))


def _key_of(assembly: Assembly, resource: Resource, prop: str) -> Resource | None:
    key_id = resource.properties.get(prop)
    return assembly.target(resource.stack, key_id, "AWS::KMS::Key") if key_id else None


def _unresolved_key(resource: Resource, prop: str, name: str, doc: str) -> Violation:
    return Violation(name, resource.path, f"{prop} names a key outside the synthesized stacks; its policy cannot be "
                     "checked: use a key of this app", doc)


def _key_admits(assembly: Assembly, key: Resource, service: str, actions: list[str],
                condition: tuple[str, str] | None = None) -> bool:
    """Does the key policy allow ``service`` (e.g. ``logs.${AWS::Region}.amazonaws.com``) every action, and, with
    ``condition`` = (key, ARN), a condition on that key whose pattern matches the ARN?"""
    from fnmatch import fnmatchcase

    for statement in assembly.key_policy(key):
        if f"Service:{service}" not in statement.principals:
            continue
        if not all(statement.allows_action(a) for a in actions):
            continue
        if condition is None:
            return True
        condition_key, arn = condition
        if any(fnmatchcase(arn, pattern) for pattern in statement.condition_values(condition_key)):
            return True
    return False


def _role_of_function(assembly: Assembly, function: Resource) -> Resource | None:
    return assembly.target(function.stack, function.properties.get("Role"), "AWS::IAM::Role")


def _encrypted_queue(assembly: Assembly, stack: str, value) -> tuple[Resource, Resource | None] | None:
    queue = assembly.target(stack, value, "AWS::SQS::Queue")
    if queue is None or not queue.properties.get("KmsMasterKeyId"):
        return None
    return queue, _key_of(assembly, queue, "KmsMasterKeyId")


def _service_writes_queue(assembly: Assembly, queue_expr, stack: str, writer: str, service: str, name: str,
                          doc: str) -> Iterator[Violation]:
    found = _encrypted_queue(assembly, stack, queue_expr)
    if found is None:
        return
    queue, key = found
    if key is None:
        yield _unresolved_key(queue, "KmsMasterKeyId", name, doc)
    elif not _key_admits(assembly, key, service, ["kms:GenerateDataKey", "kms:Decrypt"]):
        yield Violation(name, queue.path, f"{writer} writes into this queue as {service}, but the policy of its key "
                        f"{key.path} does not allow {service} kms:GenerateDataKey and kms:Decrypt", doc)


# -- a. encrypted destinations written by a service ---------------------------------------------------------------

@rule("log-group-key-admits-cloudwatch-logs")
def log_group_keys(assembly: Assembly, _: Context) -> Iterator[Violation]:
    name = "log-group-key-admits-cloudwatch-logs"
    for group in assembly.resources("AWS::Logs::LogGroup"):
        if not group.properties.get("KmsKeyId"):
            continue
        key = _key_of(assembly, group, "KmsKeyId")
        if key is None:
            yield _unresolved_key(group, "KmsKeyId", name, LOGS_KMS_DOC)
            continue
        arn = _arn(assembly, group.stack, "logs", f"log-group:{group.ref()}")
        if not _key_admits(assembly, key, assembly.pseudo(key.stack, "logs.${AWS::Region}.amazonaws.com"),
                           ["kms:Encrypt", "kms:Decrypt", "kms:ReEncryptFrom", "kms:GenerateDataKey",
                            "kms:DescribeKey"],
                           ("kms:EncryptionContext:aws:logs:arn", arn)):
            yield Violation(name, group.path, f"the policy of its key {key.path} does not admit "
                            "logs.<region>.amazonaws.com (kms:Encrypt*, Decrypt*, ReEncrypt*, GenerateDataKey*, "
                            "Describe*) with an ArnLike/ArnEquals kms:EncryptionContext:aws:logs:arn condition that "
                            "covers this log group: CREATE_FAILED", LOGS_KMS_DOC)


@rule("alarm-topic-key-admits-cloudwatch")
def alarm_topics(assembly: Assembly, _: Context) -> Iterator[Violation]:
    name = "alarm-topic-key-admits-cloudwatch"
    reported = set()
    for alarm in assembly.resources("AWS::CloudWatch::Alarm"):
        actions = [a for prop in ("AlarmActions", "OKActions", "InsufficientDataActions")
                   for a in alarm.properties.get(prop, [])]
        for action in actions:
            topic = assembly.target(alarm.stack, action, "AWS::SNS::Topic")
            if topic is None or not topic.properties.get("KmsMasterKeyId") or topic.path in reported:
                continue
            key = _key_of(assembly, topic, "KmsMasterKeyId")
            if key is None:
                yield _unresolved_key(topic, "KmsMasterKeyId", name, SNS_KMS_DOC)
            elif not _key_admits(assembly, key, "cloudwatch.amazonaws.com", ["kms:Decrypt", "kms:GenerateDataKey"]):
                yield Violation(name, topic.path, f"alarms (e.g. {alarm.path}) publish here, but the policy of its "
                                f"key {key.path} does not allow cloudwatch.amazonaws.com kms:Decrypt and "
                                "kms:GenerateDataKey*: the alarm fires and notifies nobody", SNS_KMS_DOC)
            if not _topic_policy_allows(assembly, topic, "cloudwatch.amazonaws.com", "sns:Publish"):
                yield Violation(name, topic.path, f"alarms (e.g. {alarm.path}) publish here, but a topic policy "
                                "replaces SNS's default one without allowing cloudwatch.amazonaws.com sns:Publish: "
                                "the alarm fires and notifies nobody", ALARM_SNS_DOC)
            reported.add(topic.path)


def _topic_policy_allows(assembly: Assembly, topic: Resource, service: str, action: str) -> bool:
    """No topic policy: SNS's default policy lets the owner account (and its services) publish. A topic policy
    replaces it, so it must allow the service itself."""
    policies = [p for p in assembly.resources("AWS::SNS::TopicPolicy")
                if any(assembly.resolve(p.stack, t) == topic.ref() for t in p.properties.get("Topics", []))]
    if not policies:
        return True
    return any(f"Service:{service}" in s.principals and s.allows_action(action)
               for p in policies for s in assembly.statements(p.stack, p.properties.get("PolicyDocument")))


@rule("s3-notification-queue-key-admits-s3")
def s3_notification_queues(assembly: Assembly, _: Context) -> Iterator[Violation]:
    for notification in assembly.resources("Custom::S3BucketNotifications"):
        config = notification.properties.get("NotificationConfiguration", {})
        for queue_config in config.get("QueueConfigurations", []):
            yield from _service_writes_queue(assembly, queue_config.get("QueueArn"), notification.stack,
                                             f"S3 ({notification.path})", "s3.amazonaws.com",
                                             "s3-notification-queue-key-admits-s3", S3_NOTIFICATION_DOC)


@rule("eventbridge-dead-letter-key-admits-events")
def eventbridge_dead_letters(assembly: Assembly, _: Context) -> Iterator[Violation]:
    for event_rule in assembly.resources("AWS::Events::Rule"):
        for target in event_rule.properties.get("Targets", []):
            dead_letter = target.get("DeadLetterConfig", {}).get("Arn")
            if dead_letter:
                yield from _service_writes_queue(assembly, dead_letter, event_rule.stack,
                                                 f"EventBridge ({event_rule.path})", "events.amazonaws.com",
                                                 "eventbridge-dead-letter-key-admits-events", SQS_KMS_DOC)


@rule("sns-dead-letter-key-admits-sns")
def sns_dead_letters(assembly: Assembly, _: Context) -> Iterator[Violation]:
    for subscription in assembly.resources("AWS::SNS::Subscription"):
        dead_letter = (subscription.properties.get("RedrivePolicy") or {}).get("deadLetterTargetArn")
        if dead_letter:
            yield from _service_writes_queue(assembly, dead_letter, subscription.stack,
                                             f"SNS ({subscription.path})", "sns.amazonaws.com",
                                             "sns-dead-letter-key-admits-sns", SNS_DLQ_DOC)


@rule("function-dead-letter-role-can-encrypt")
def function_dead_letters(assembly: Assembly, _: Context) -> Iterator[Violation]:
    name = "function-dead-letter-role-can-encrypt"
    for function in assembly.resources("AWS::Lambda::Function"):
        target = (function.properties.get("DeadLetterConfig") or {}).get("TargetArn")
        found = _encrypted_queue(assembly, function.stack, target) if target else None
        role = _role_of_function(assembly, function)
        if found is None or role is None:
            continue
        queue, key = found
        if key is None:
            yield _unresolved_key(queue, "KmsMasterKeyId", name, LAMBDA_DLQ_DOC)
            continue
        needs = (("sqs:SendMessage", assembly.arn(queue)), ("kms:GenerateDataKey", assembly.arn(key)),
                 ("kms:Decrypt", assembly.arn(key)))
        missing = [a for a, arn in needs if not assembly.role_allows(role, a, arn)]
        if missing:
            yield Violation(name, function.path, f"Lambda sends failed events to its dead-letter queue {queue.path} "
                            f"with the function's role, which lacks {', '.join(missing)}", LAMBDA_DLQ_DOC)


@rule("queue-consumer-can-decrypt")
def queue_consumers(assembly: Assembly, _: Context) -> Iterator[Violation]:
    name = "queue-consumer-can-decrypt"
    for mapping in assembly.resources("AWS::Lambda::EventSourceMapping"):
        found = _encrypted_queue(assembly, mapping.stack, mapping.properties.get("EventSourceArn"))
        function = assembly.target(mapping.stack, mapping.properties.get("FunctionName"), "AWS::Lambda::Function")
        if found is None or function is None:
            continue
        queue, key = found
        role = _role_of_function(assembly, function)
        if key is None:
            yield _unresolved_key(queue, "KmsMasterKeyId", name, LAMBDA_SQS_DOC)
        elif role is None or not assembly.role_allows(role, "kms:Decrypt", assembly.arn(key)):
            yield Violation(name, function.path, f"reads the encrypted queue {queue.path} but its role lacks "
                            f"kms:Decrypt on {key.path}", LAMBDA_SQS_DOC)


def _model_roles(assembly: Assembly, config: Resource) -> list[Resource]:
    roles = []
    for variant in config.properties.get("ProductionVariants", []):
        model = assembly.target(config.stack, variant.get("ModelName"), "AWS::SageMaker::Model")
        role = model and assembly.target(model.stack, model.properties.get("ExecutionRoleArn"), "AWS::IAM::Role")
        if role is not None:
            roles.append(role)
    return roles


@rule("async-notifications-publisher-can-encrypt")
def async_notifications(assembly: Assembly, _: Context) -> Iterator[Violation]:
    name = "async-notifications-publisher-can-encrypt"
    for config in assembly.resources("AWS::SageMaker::EndpointConfig"):
        output = ((config.properties.get("AsyncInferenceConfig") or {}).get("OutputConfig") or {})
        notification = output.get("NotificationConfig") or {}
        for prop in ("SuccessTopic", "ErrorTopic"):
            topic = assembly.target(config.stack, notification.get(prop), "AWS::SNS::Topic")
            if topic is None:
                continue
            key = _key_of(assembly, topic, "KmsMasterKeyId")
            for role in _model_roles(assembly, config):
                needs = [("sns:Publish", assembly.arn(topic))]
                if key is not None:
                    needs += [("kms:GenerateDataKey", assembly.arn(key)), ("kms:Decrypt", assembly.arn(key))]
                missing = [a for a, arn in needs if not assembly.role_allows(role, a, arn)]
                if missing:
                    yield Violation(name, config.path, f"SageMaker publishes the {prop} notifications with the model "
                                    f"role {role.path}, which lacks {', '.join(missing)} for {topic.path}",
                                    ASYNC_NOTIFICATION_DOC)


# -- b. metrics --------------------------------------------------------------------------------------------------

def _check_metric(namespace: str, metric_name: str, dimensions: list[str], where: str) -> Iterator[Violation]:
    name = "metric-published-with-these-dimensions"
    spec = CATALOGUE.get((namespace, metric_name))
    if spec is None:
        yield Violation(name, where, f"{namespace} {metric_name} is not in stacks/metric_catalogue.py; add it with "
                        "the dimension sets its service publishes", "stacks/metric_catalogue.py")
        return
    try:
        spec.check_dimensions(frozenset(dimensions))
    except ValueError as exc:
        yield Violation(name, where, f"{exc.args[0].split(' (')[0]}: the alarm or policy never sees a datapoint",
                        spec.doc)


@rule("metric-published-with-these-dimensions")
def metrics(assembly: Assembly, _: Context) -> Iterator[Violation]:
    for alarm in assembly.resources("AWS::CloudWatch::Alarm"):
        props = alarm.properties
        if "MetricName" in props:
            yield from _check_metric(props.get("Namespace", ""), props["MetricName"],
                                     [d["Name"] for d in props.get("Dimensions", [])], alarm.path)
        for query in props.get("Metrics", []):
            stat = (query.get("MetricStat") or {}).get("Metric")
            if stat:
                yield from _check_metric(stat.get("Namespace", ""), stat.get("MetricName", ""),
                                         [d["Name"] for d in stat.get("Dimensions", [])], alarm.path)
    for policy in assembly.resources("AWS::ApplicationAutoScaling::ScalingPolicy"):
        tracking = policy.properties.get("TargetTrackingScalingPolicyConfiguration") or {}
        custom = tracking.get("CustomizedMetricSpecification")
        if custom:
            yield from _check_metric(custom.get("Namespace", ""), custom.get("MetricName", ""),
                                     [d["Name"] for d in custom.get("Dimensions", [])], policy.path)
        predefined = (tracking.get("PredefinedMetricSpecification") or {}).get("PredefinedMetricType")
        if predefined == "SageMakerVariantInvocationsPerInstance" and _targets_async_endpoint(assembly, policy):
            yield Violation("metric-published-with-these-dimensions", policy.path,
                            "SageMakerVariantInvocationsPerInstance is built on InvocationsPerInstance, which async "
                            "endpoints do not publish: track ApproximateBacklogSizePerInstance", ASYNC_SCALING_DOC)
    for dashboard in assembly.resources("AWS::CloudWatch::Dashboard"):
        yield from _dashboard_metrics(assembly, dashboard)


def _targets_async_endpoint(assembly: Assembly, policy: Resource) -> bool:
    target = assembly.target(policy.stack, policy.properties.get("ScalingTargetId"),
                             "AWS::ApplicationAutoScaling::ScalableTarget")
    resource_id = assembly.text(target.stack, target.properties.get("ResourceId")) if target else ""
    for endpoint in assembly.resources("AWS::SageMaker::Endpoint"):
        name = endpoint.properties.get("EndpointName")
        if isinstance(name, str) and resource_id.startswith(f"endpoint/{name}/"):
            config = assembly.target(endpoint.stack, endpoint.properties.get("EndpointConfigName"))
            return bool(config and config.properties.get("AsyncInferenceConfig"))
    return False


def _dashboard_metrics(assembly: Assembly, dashboard: Resource) -> Iterator[Violation]:
    body = assembly.text(dashboard.stack, dashboard.properties.get("DashboardBody", "{}"))
    try:
        widgets = json.loads(body).get("widgets", [])
    except json.JSONDecodeError:
        yield Violation("metric-published-with-these-dimensions", dashboard.path,
                        "the dashboard body is not JSON after resolving its references", "stacks/monitoring.py")
        return
    for widget in widgets:
        previous: list = []
        for row in (widget.get("properties") or {}).get("metrics", []):
            row = [item for item in row if not isinstance(item, dict)]
            # "..." repeats the item at the same position in the previous row (CloudWatch's shorthand).
            row = [previous[i] if item == "..." and i < len(previous) else item for i, item in enumerate(row)]
            previous = row
            if len(row) >= 2 and isinstance(row[0], str):
                yield from _check_metric(row[0], row[1], [str(d) for d in row[2::2]], dashboard.path)


# -- c. calls made on a role's behalf ----------------------------------------------------------------------------

@rule("rollback-alarms-readable-by-model-role")
def rollback_alarms(assembly: Assembly, _: Context) -> Iterator[Violation]:
    name = "rollback-alarms-readable-by-model-role"
    alarms_by_name = {}
    for alarm in assembly.resources("AWS::CloudWatch::Alarm"):
        alarms_by_name[alarm.properties.get("AlarmName") or str(alarm.ref())] = alarm
    for endpoint in assembly.resources("AWS::SageMaker::Endpoint"):
        rollback = ((endpoint.properties.get("DeploymentConfig") or {}).get("AutoRollbackConfiguration") or {})
        config = assembly.target(endpoint.stack, endpoint.properties.get("EndpointConfigName"),
                                 "AWS::SageMaker::EndpointConfig")
        roles = _model_roles(assembly, config) if config else []
        for entry in rollback.get("Alarms", []):
            resolved = assembly.resolve(endpoint.stack, entry.get("AlarmName"))
            alarm = assembly.resource(resolved) if isinstance(resolved, ResourceRef) else alarms_by_name.get(resolved)
            if alarm is None:
                yield Violation(name, endpoint.path, f"rollback alarm {resolved} is not an alarm of the app",
                                GUARDRAILS_DOC)
                continue
            alarm_name = alarm.properties.get("AlarmName")
            arn = _arn(assembly, alarm.stack, "cloudwatch", f"alarm:{alarm_name or alarm.ref()}")
            for role in roles:
                if not assembly.role_allows(role, "cloudwatch:DescribeAlarms", arn):
                    yield Violation(name, endpoint.path, f"deployment guardrails read the rollback alarm "
                                    f"{alarm.path} with the model's execution role {role.path}, which lacks "
                                    "cloudwatch:DescribeAlarms on it: the blue/green rollback cannot see it",
                                    GUARDRAILS_DOC)


@rule("stack-updater-can-resolve-ssm-parameters")
def stack_updaters(assembly: Assembly, _: Context) -> Iterator[Violation]:
    name = "stack-updater-can-resolve-ssm-parameters"
    for role in assembly.resources("AWS::IAM::Role"):
        statements = assembly.identity_statements(role)
        for stack in assembly.templates:
            stack_arn = _arn(assembly, stack, "cloudformation", f"stack/{stack}/00000000-stack-id")
            if not any(s.allows_action("cloudformation:UpdateStack") and s.covers_resource(stack_arn)
                       for s in statements):
                continue
            for parameter in assembly.parameters(stack).values():
                if not str(parameter.get("Type", "")).startswith("AWS::SSM::Parameter::Value"):
                    continue
                arn = _arn(assembly, stack, "ssm", f"parameter/{str(parameter.get('Default', '')).lstrip('/')}")
                if not assembly.role_allows(role, "ssm:GetParameters", arn):
                    yield Violation(name, role.path, f"updates stack {stack}, whose template has the SSM-typed "
                                    f"parameter {parameter.get('Default')}: UpdateStack resolves it with the "
                                    "caller's credentials, and this role lacks ssm:GetParameters on it",
                                    SSM_PARAMETER_TYPES_DOC)


def _pipeline_steps(assembly: Assembly, pipeline: Resource) -> list[dict]:
    definition = pipeline.properties.get("PipelineDefinition") or {}
    body = definition.get("PipelineDefinitionBody")
    if body is None:
        return []
    try:
        return json.loads(assembly.text(pipeline.stack, body)).get("Steps", [])
    except json.JSONDecodeError:
        return []


def _volume_keys(arguments: dict) -> list[str]:
    found = []
    for holder in (arguments.get("ResourceConfig"), (arguments.get("ProcessingResources") or {}).get("ClusterConfig"),
                   arguments.get("TransformResources"),
                   (arguments.get("TrainingJobDefinition") or {}).get("ResourceConfig")):
        if holder and holder.get("VolumeKmsKeyId"):
            found.append(holder["VolumeKmsKeyId"])
    return found


@rule("volume-key-grantable-by-job-creator")
def volume_keys(assembly: Assembly, _: Context) -> Iterator[Violation]:
    name = "volume-key-grantable-by-job-creator"
    keys_by_text = {assembly.arn(k): k for k in assembly.resources("AWS::KMS::Key")}
    for pipeline in assembly.resources("AWS::SageMaker::Pipeline"):
        role = assembly.target(pipeline.stack, pipeline.properties.get("RoleArn"), "AWS::IAM::Role")
        for step in _pipeline_steps(assembly, pipeline):
            for key_text in _volume_keys(step.get("Arguments") or {}):
                if role is not None and not assembly.role_allows(role, "kms:CreateGrant", key_text):
                    key = keys_by_text.get(key_text)
                    yield Violation(name, pipeline.path, f"step {step.get('Name')} encrypts its volume with "
                                    f"{key.path if key else key_text}; the pipeline role {role.path} creates the job "
                                    "and needs kms:CreateGrant on that key", SAGEMAKER_KMS_DOC)


@rule("pipeline-role-reads-dataset-inputs")
def pipeline_dataset_inputs(assembly: Assembly, _: Context) -> Iterator[Violation]:
    """The Prepare step's ProcessingInput downloads InputDataS3Uri with the pipeline's role (CreateProcessingJob's
    RoleArn), and `roadseg pipeline start` points it at any of PIPELINE_INPUT_PREFIXES of the datasets bucket
    (--dataset, --dataset-version): the role reads every one of them."""
    name = "pipeline-role-reads-dataset-inputs"
    buckets = sorted({assembly.text(stack, value) for export, (stack, value) in assembly._exports.items()
                      if export.endswith(f":{DATASETS_BUCKET_ARN_EXPORT}")})
    for pipeline in assembly.resources("AWS::SageMaker::Pipeline"):
        role = assembly.target(pipeline.stack, pipeline.properties.get("RoleArn"), "AWS::IAM::Role")
        if role is None:
            continue
        for bucket in buckets:
            for prefix in PIPELINE_INPUT_PREFIXES:
                target = f"{bucket}/{prefix}some-dataset/images/frame.jpg"
                if not assembly.role_allows(role, "s3:GetObject", target):
                    yield Violation(name, pipeline.path, f"the pipeline role {role.path} cannot s3:GetObject under "
                                    f"{prefix} of the datasets bucket, where `roadseg pipeline start` may point "
                                    "InputDataS3Uri", CREATE_PROCESSING_JOB_DOC)


S3_CONDITIONAL_WRITES_DOC = "https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes-enforce.html"
S3_DELETE_OBJECTS_DOC = "https://docs.aws.amazon.com/AmazonS3/latest/userguide/DeletingObjectVersions.html"
S3_LIFECYCLE_DOC = "https://docs.aws.amazon.com/AmazonS3/latest/userguide/intro-lifecycle-rules.html"
# CDK's auto_delete_objects: a custom resource whose function empties the bucket on stack deletion.
AUTO_DELETE_TYPE = "Custom::S3AutoDeleteObjects"


def _denied_to_everyone(statement: Any, action: str, target: str) -> bool:
    return (statement.effect == "Deny" and "AWS:*" in statement.principals
            and any(fnmatchcase(action.lower(), a.lower()) for a in statement.actions)
            and statement.covers_resource(target))


@rule("dataset-versions-are-immutable")
def dataset_versions_immutable(assembly: Assembly, _: Context) -> Iterator[Violation]:
    """labelling.versions writes a dataset version once (PutObject If-None-Match) and never deletes it; gate results
    are compared on it. The datasets bucket's policy denies to every principal a PutObject under versions/ without
    If-None-Match and any DeleteObject / DeleteObjectVersion there (a delete marker would hide the version, and the
    noncurrent-version expiry would then destroy it); no lifecycle rule expires current objects under versions/;
    no auto-delete custom resource empties the bucket (it would need an exemption the policy does not make)."""
    name = "dataset-versions-are-immutable"
    bucket_arns = {assembly.text(stack, value) for export, (stack, value) in assembly._exports.items()
                   if export.endswith(f":{DATASETS_BUCKET_ARN_EXPORT}")}
    for bucket in assembly.resources("AWS::S3::Bucket"):
        arn = assembly.arn(bucket)
        if arn not in bucket_arns:
            continue
        target = f"{arn}/{DATASETS.versions}v0001/masks/frame.png"
        statements = [st for policy in assembly.resources("AWS::S3::BucketPolicy")
                      if assembly.resolve(policy.stack, policy.properties.get("Bucket")) == bucket.ref()
                      for st in assembly.statements(policy.stack, policy.properties.get("PolicyDocument"))]
        if not any(_denied_to_everyone(st, "s3:PutObject", target)
                   and st.conditions.get("Null", {}).get("s3:if-none-match") in ("true", True) for st in statements):
            yield Violation(name, bucket.path, f"the datasets bucket's policy does not deny a PutObject under "
                            f"{DATASETS.versions} without If-None-Match: another tool could overwrite a dataset "
                            "version", S3_CONDITIONAL_WRITES_DOC)
        for action in ("s3:DeleteObject", "s3:DeleteObjectVersion"):
            if not any(_denied_to_everyone(st, action, target) and not st.conditions for st in statements):
                yield Violation(name, bucket.path, f"the datasets bucket's policy does not deny {action} under "
                                f"{DATASETS.versions} to every principal: a dataset version could be deleted",
                                S3_DELETE_OBJECTS_DOC)
        rules = (bucket.properties.get("LifecycleConfiguration") or {}).get("Rules") or []
        for entry in rules:
            prefix = entry.get("Prefix") or (entry.get("Filter") or {}).get("Prefix") or ""
            if (entry.get("ExpirationInDays") or entry.get("ExpirationDate")) and (
                    DATASETS.versions.startswith(prefix) or prefix.startswith(DATASETS.versions)):
                yield Violation(name, bucket.path, f"lifecycle rule {entry.get('Id')} expires current objects under "
                                f"{DATASETS.versions} (lifecycle actions are not subject to the bucket policy)",
                                S3_LIFECYCLE_DOC)
        for custom in assembly.resources(AUTO_DELETE_TYPE):
            if assembly.resolve(custom.stack, custom.properties.get("BucketName")) == bucket.ref():
                yield Violation(name, custom.path, "auto-delete empties the datasets bucket on stack deletion, which "
                                f"the policy's Deny on {DATASETS.versions} refuses: exempt exactly its role with an "
                                "aws:PrincipalArn condition, or keep auto-delete off", S3_DELETE_OBJECTS_DOC)


@rule("endpoint-volume-key-grantable-by-updater")
def endpoint_volume_keys(assembly: Assembly, _: Context) -> Iterator[Violation]:
    """Roles that update the endpoints (the rollout, when the stack has no service role) create the volume grant."""
    name = "endpoint-volume-key-grantable-by-updater"
    updaters = [role for role in assembly.resources("AWS::IAM::Role")
                if any(s.allows_action("sagemaker:UpdateEndpoint") for s in assembly.identity_statements(role))]
    for endpoint in assembly.resources("AWS::SageMaker::Endpoint"):
        config = assembly.target(endpoint.stack, endpoint.properties.get("EndpointConfigName"),
                                 "AWS::SageMaker::EndpointConfig")
        key = config and _key_of(assembly, config, "KmsKeyId")
        if key is None:
            continue
        endpoint_name = endpoint.properties.get("EndpointName")
        endpoint_arn = _arn(assembly, endpoint.stack, "sagemaker", f"endpoint/{endpoint_name}")
        for role in updaters:
            if assembly.role_allows(role, "sagemaker:UpdateEndpoint", endpoint_arn) and \
                    not assembly.role_allows(role, "kms:CreateGrant", assembly.arn(key)):
                yield Violation(name, role.path, f"may update {endpoint.path}, whose config encrypts its volumes with "
                                f"{key.path}, but lacks kms:CreateGrant on that key", SAGEMAKER_KMS_DOC)


@rule("function-url-has-working-invoke-grant")
def function_urls(assembly: Assembly, _: Context) -> Iterator[Violation]:
    name = "function-url-has-working-invoke-grant"
    for url in assembly.resources("AWS::Lambda::Url"):
        if url.properties.get("AuthType") != "AWS_IAM":
            continue
        function = assembly.target(url.stack, url.properties.get("TargetFunctionArn"), "AWS::Lambda::Function")
        if function is None:
            continue
        arn = assembly.arn(function)
        grants = [assembly.statements(p.stack, p.properties.get("PolicyDocument"))
                  for p in assembly.resources("AWS::IAM::ManagedPolicy", "AWS::IAM::Policy")]
        if not any(any(s.allows_action("lambda:InvokeFunctionUrl") and s.covers_resource(arn) for s in statements)
                   and any(s.allows_action("lambda:InvokeFunction") and s.covers_resource(arn) for s in statements)
                   for statements in grants):
            yield Violation(name, url.path, "no policy of the app lets a caller use this IAM-authenticated URL: new "
                            "function URLs need both lambda:InvokeFunctionUrl and lambda:InvokeFunction "
                            "(since October 2025); give operators one policy with both", FUNCTION_URL_DOC)


# -- d. account limits -------------------------------------------------------------------------------------------

@rule("reserved-concurrency-declared")
def reserved_concurrency(assembly: Assembly, context: Context) -> Iterator[Violation]:
    name = "reserved-concurrency-declared"
    functions = [f for f in assembly.resources("AWS::Lambda::Function")
                 if f.properties.get("ReservedConcurrentExecutions")]
    total = sum(int(f.properties["ReservedConcurrentExecutions"]) for f in functions)
    if total != context.reserved_concurrency_declared:
        yield Violation(name, ", ".join(f.path for f in functions) or "(no function)",
                        f"the templates reserve {total} units of Lambda concurrency, the configuration declares "
                        f"{context.reserved_concurrency_declared}: every reservation must come from the config, "
                        "where make deploy's preflight checks it against the account", LAMBDA_CONCURRENCY_DOC)
    if total and not context.account_pinned:
        yield Violation(name, ", ".join(f.path for f in functions),
                        f"an environment without a pinned account (any new account) reserves {total} units: AWS keeps "
                        "100 unreserved (new accounts may have a quota of far less than 1,000), so the first deploy "
                        "can fail; leave reservations to environments whose account the preflight checks",
                        LAMBDA_CONCURRENCY_DOC)


# -- e. isolated-network mode ------------------------------------------------------------------------------------

PRIVATELINK_DOC = "https://docs.aws.amazon.com/vpc/latest/privatelink/aws-services-privatelink-support.html"
SAGEMAKER_VPC_DOC = "https://docs.aws.amazon.com/sagemaker/latest/dg/infrastructure-give-access.html"
LAMBDA_VPC_DOC = "https://docs.aws.amazon.com/lambda/latest/dg/configuration-vpc.html"
# IAM action (service prefix, or prefix:Action pattern, most specific first) -> the VPC endpoint service that serves
# it, com.amazonaws.<region>.<name> (PRIVATELINK_DOC). None: no endpoint needed from inside the VPC (IAM checks
# iam:PassRole, it is no call; Lambda and SageMaker manage ENIs with ec2:* from the AWS side).
ENDPOINT_FOR_ACTION: tuple[tuple[str, str | None], ...] = (
    ("sagemaker:InvokeEndpoint*", "sagemaker.runtime"),
    ("sagemaker:*", "sagemaker.api"),
    ("ecr:GetAuthorizationToken", "ecr.api"),
    ("ecr:*", "ecr.dkr"),
    ("s3:*", "s3"),
    ("kms:*", "kms"),
    ("logs:*", "logs"),
    ("cloudwatch:*", "monitoring"),
    ("sqs:*", "sqs"),
    ("sns:*", "sns"),
    ("sts:*", "sts"),
    ("ssm:*", "ssm"),
    ("cloudformation:*", "cloudformation"),
    ("lambda:*", "lambda"),
    ("events:*", "events"),
    ("application-autoscaling:*", "application-autoscaling"),
    ("xray:*", "xray"),
    ("iam:*", None),
    ("ec2:*", None),
)


# Granted to a stack updater (the rollout) for CloudFormation, which makes these calls itself, from the AWS side,
# while it updates the stack with the caller's credentials (forward access sessions): the function's own code calls
# only CloudFormation and SageMaker (lambda/rollout.py). Counted as calls for any role that cannot UpdateStack.
CALLED_BY_CLOUDFORMATION = ("lambda:GetFunction", "lambda:GetFunctionConfiguration",
                            "lambda:UpdateFunctionConfiguration")
FORWARD_ACCESS_DOC = "https://docs.aws.amazon.com/IAM/latest/UserGuide/access_forward_access_sessions.html"


def endpoint_for_action(action: str) -> str | None:
    from fnmatch import fnmatchcase

    for pattern, endpoint in ENDPOINT_FOR_ACTION:
        if fnmatchcase(action.lower(), pattern.lower()):
            return endpoint
    return action.split(":", 1)[0]  # unknown service: assume its endpoint is named after the prefix


def _step_vpc_configs(steps: list[dict]) -> Iterator[tuple[dict, dict | None]]:
    """(step, its VpcConfig or None) for each job or model step, Condition branches included."""
    for step in steps:
        arguments = step.get("Arguments") or {}
        kind = step.get("Type")
        if kind == "Condition":
            yield from _step_vpc_configs([*(arguments.get("IfSteps") or []), *(arguments.get("ElseSteps") or []),
                                          *(step.get("IfSteps") or []), *(step.get("ElseSteps") or [])])
        elif kind == "Processing":
            yield step, (arguments.get("NetworkConfig") or {}).get("VpcConfig")
        elif kind == "Training":
            yield step, arguments.get("VpcConfig")
        elif kind == "Tuning":
            yield step, (arguments.get("TrainingJobDefinition") or {}).get("VpcConfig")
        elif kind == "Model" and ("PrimaryContainer" in arguments or "Containers" in arguments):
            yield step, arguments.get("VpcConfig")


def _complete(vpc_config: Any) -> bool:
    if not isinstance(vpc_config, dict):
        return False
    subnets = vpc_config.get("Subnets", vpc_config.get("SubnetIds"))
    return bool(subnets) and bool(vpc_config.get("SecurityGroupIds"))


def _custom_resource_providers(assembly: Assembly) -> set[tuple[str, str]]:
    """Functions CloudFormation invokes as custom-resource providers at deploy time (CDK's bucket-notification
    handler): they run no workload, take no VpcConfig from this app, and are left out of the VPC rule."""
    found = set()
    for resource in assembly.resources():
        if resource.type.startswith("Custom::") or resource.type == "AWS::CloudFormation::CustomResource":
            target = assembly.target(resource.stack, resource.properties.get("ServiceToken"), "AWS::Lambda::Function")
            if target is not None:
                found.add((target.stack, target.logical_id))
    return found


def isolated(assembly: Assembly) -> bool:
    """Isolated-network mode, read from the templates: any VPC endpoint, or any function or model in a VPC."""
    return any(True for _ in assembly.resources("AWS::EC2::VPCEndpoint")) or any(
        r.properties.get("VpcConfig") for r in assembly.resources("AWS::Lambda::Function", "AWS::SageMaker::Model"))


@rule("isolated-network-everything-in-the-vpc")
def everything_in_the_vpc(assembly: Assembly, _: Context) -> Iterator[Violation]:
    """In isolated mode every function, SageMaker model and pipeline job runs in the VPC (subnets and security
    groups), so none of them reaches AWS except through the endpoints."""
    name = "isolated-network-everything-in-the-vpc"
    if not isolated(assembly):
        return
    providers = _custom_resource_providers(assembly)
    for function in assembly.resources("AWS::Lambda::Function"):
        if (function.stack, function.logical_id) not in providers and \
                not _complete(function.properties.get("VpcConfig")):
            yield Violation(name, function.path, "runs outside the VPC (no VpcConfig with subnets and security "
                            "groups) in an isolated-network environment", LAMBDA_VPC_DOC)
    for model in assembly.resources("AWS::SageMaker::Model"):
        if not _complete(model.properties.get("VpcConfig")):
            yield Violation(name, model.path, "has no VpcConfig in an isolated-network environment: its endpoints "
                            "would run outside the VPC", SAGEMAKER_VPC_DOC)
    for pipeline in assembly.resources("AWS::SageMaker::Pipeline"):
        for step, vpc_config in _step_vpc_configs(_pipeline_steps(assembly, pipeline)):
            if not _complete(vpc_config):
                yield Violation(name, pipeline.path, f"step {step.get('Name')} ({step.get('Type')}) has no VpcConfig "
                                "in an isolated-network environment", SAGEMAKER_VPC_DOC)


def _endpoint_services(assembly: Assembly) -> set[str]:
    """``sagemaker.runtime``, ``s3``, ... of every VPC endpoint (the part after com.amazonaws.<region>.)."""
    found = set()
    for endpoint in assembly.resources("AWS::EC2::VPCEndpoint"):
        service = assembly.text(endpoint.stack, endpoint.properties.get("ServiceName"))
        parts = service.split(".", 3)
        if len(parts) == 4:
            found.add(parts[3])
    return found


def _callers_in_the_vpc(assembly: Assembly) -> Iterator[tuple[str, Resource]]:
    """(what, its role) for every function, model and pipeline (its jobs) that runs in a VPC."""
    for function in assembly.resources("AWS::Lambda::Function"):
        role = _role_of_function(assembly, function)
        if function.properties.get("VpcConfig") and role is not None:
            yield function.path, role
    for model in assembly.resources("AWS::SageMaker::Model"):
        role = assembly.target(model.stack, model.properties.get("ExecutionRoleArn"), "AWS::IAM::Role")
        if model.properties.get("VpcConfig") and role is not None:
            yield model.path, role
    for pipeline in assembly.resources("AWS::SageMaker::Pipeline"):
        role = assembly.target(pipeline.stack, pipeline.properties.get("RoleArn"), "AWS::IAM::Role")
        if role is not None and any(v for _, v in _step_vpc_configs(_pipeline_steps(assembly, pipeline))):
            yield f"{pipeline.path} (its jobs)", role


@rule("isolated-network-endpoint-for-every-called-service")
def endpoints_for_called_services(assembly: Assembly, _: Context) -> Iterator[Violation]:
    """Every AWS service that a role of something in the VPC may call has a VPC endpoint (ENDPOINT_FOR_ACTION):
    the subnets have no other way out. Conservative: a role's every allowed action counts as a call."""
    name = "isolated-network-endpoint-for-every-called-service"
    if not isolated(assembly):
        return
    available = _endpoint_services(assembly)
    missing: dict[str, set[str]] = {}
    for caller, role in _callers_in_the_vpc(assembly):
        statements = assembly.identity_statements(role)
        updater = any(s.allows_action("cloudformation:UpdateStack") for s in statements)
        for statement in statements:
            if statement.effect != "Allow":
                continue
            for action in statement.actions:
                if updater and action in CALLED_BY_CLOUDFORMATION:
                    continue
                endpoint = endpoint_for_action(action)
                if endpoint is not None and endpoint not in available:
                    missing.setdefault(endpoint, set()).add(f"{caller} ({action})")
    for endpoint, callers in sorted(missing.items()):
        yield Violation(name, ", ".join(sorted(callers)), f"may call a service with no VPC endpoint in this "
                        f"isolated network: add com.amazonaws.<region>.{endpoint}", PRIVATELINK_DOC)
