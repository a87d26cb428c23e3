"""Class (d) of the integration contracts: no silent failure (every asynchronous job type and every dead-letter queue
reaches the alarm topic). Rules register with ``stacks.checks.service_contracts.rules.rule``.

- ``async-jobs-reach-the-alarm-topic``: every pipeline (its executions, so every job it starts) has a CloudWatch
  alarm on its failed executions or an EventBridge rule on its failed/stopped executions; every role of the app
  that may start Processing, Training or tuning jobs itself (not as a pipeline) has an EventBridge rule on those
  jobs' state changes whose name filter covers the jobs it may create; so does every prefix of jobs an operator
  command starts with the operator's credentials (the outputs of ``contracts.naming.OPERATOR_JOB_PREFIX_OUTPUTS``:
  ``roadseg label score``'s scoring jobs), which no role of the app shows. Both must end at a topic the alarms use,
  whose key and policy let EventBridge publish. Neo compilation jobs have no state-change event in the SageMaker
  events page (EVENTS_DOC): the rule cannot ask for one, and says so in ``COMPILATION_GAP``.
- ``dead-letter-queues-alarmed``: every SQS queue that receives dead letters or failure destinations (Lambda
  DeadLetterConfig and on-failure destinations, event source mappings, SQS redrive, SNS subscriptions, EventBridge
  targets) has a CloudWatch alarm on its ApproximateNumberOfMessagesVisible that notifies an SNS topic.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from contracts.naming import OPERATOR_JOB_PREFIX_OUTPUTS
from stacks.checks.service_contracts.assembly import Assembly, Resource
from stacks.checks.service_contracts.rules import Context, Violation, _key_admits, _topic_policy_allows, rule

EVENTS_DOC = "https://docs.aws.amazon.com/sagemaker/latest/dg/automating-sagemaker-with-eventbridge.html"
SNS_TARGET_DOC = "https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-use-resource-based.html#eb-sns-permissions"
SQS_METRICS_DOC = "https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-available-cloudwatch-metrics.html"
PIPELINE_METRICS_DOC = "https://docs.aws.amazon.com/sagemaker/latest/dg/monitoring-cloudwatch.html"
PIPELINE_EVENT = "SageMaker Model Building Pipeline Execution Status Change"
# Job kind -> (the IAM action that starts it, its ARN resource type, the event's detail-type, the name field).
JOB_EVENTS = {
    "processing": ("sagemaker:CreateProcessingJob", "processing-job", "SageMaker Processing Job State Change",
                   "ProcessingJobName", "ProcessingJobStatus"),
    "training": ("sagemaker:CreateTrainingJob", "training-job", "SageMaker Training Job State Change",
                 "TrainingJobName", "TrainingJobStatus"),
    "tuning": ("sagemaker:CreateHyperParameterTuningJob", "hyper-parameter-tuning-job",
               "SageMaker HyperParameter Tuning Job State Change", "HyperParameterTuningJobName",
               "HyperParameterTuningJobStatus"),
}
FAILED_STATES = ("Failed", "Stopped")
COMPILATION_GAP = ("SageMaker publishes no compilation-job state change to EventBridge (not in EVENTS_DOC's list) "
                   "and no CloudWatch metric of failed compilation jobs: a failed Neo compilation is visible only "
                   "in DescribeCompilationJob")


def _alarm_topics(assembly: Assembly) -> set[tuple[str, str]]:
    """(stack, logical id) of every SNS topic some CloudWatch alarm notifies: the alarm topics."""
    found = set()
    for alarm in assembly.resources("AWS::CloudWatch::Alarm"):
        for action in alarm.properties.get("AlarmActions", []):
            topic = assembly.target(alarm.stack, action, "AWS::SNS::Topic")
            if topic is not None:
                found.add((topic.stack, topic.logical_id))
    return found


def _sagemaker_rules(assembly: Assembly, detail_type: str) -> Iterator[tuple[Resource, dict]]:
    """(rule, its event pattern's resolved detail) of every enabled rule on SageMaker events of ``detail_type``."""
    for event_rule in assembly.resources("AWS::Events::Rule"):
        if event_rule.properties.get("State", "ENABLED") != "ENABLED":
            continue
        pattern = assembly.resolve(event_rule.stack, event_rule.properties.get("EventPattern") or {})
        if not isinstance(pattern, dict) or "aws.sagemaker" not in (pattern.get("source") or []):
            continue
        if detail_type in (pattern.get("detail-type") or []):
            yield event_rule, pattern.get("detail") or {}


def _matches_failures(detail: dict, status_field: str) -> bool:
    """The pattern lets Failed and Stopped through (no status filter, or one listing both)."""
    wanted = detail.get(status_field)
    return wanted is None or all(state in wanted for state in FAILED_STATES)


def _delivery_problem(assembly: Assembly, event_rule: Resource, topics: set[tuple[str, str]]) -> str | None:
    """None when the rule publishes to an alarm topic that EventBridge can use; else what is wrong."""
    reasons = []
    for target in event_rule.properties.get("Targets", []):
        topic = assembly.target(event_rule.stack, target.get("Arn"), "AWS::SNS::Topic")
        if topic is None:
            continue
        if (topic.stack, topic.logical_id) not in topics:
            reasons.append(f"its topic {topic.path} is not the alarm topic")
            continue
        key_id = topic.properties.get("KmsMasterKeyId")
        key = assembly.target(topic.stack, key_id, "AWS::KMS::Key") if key_id else None
        if key_id and (key is None or not _key_admits(assembly, key, "events.amazonaws.com",
                                                      ["kms:Decrypt", "kms:GenerateDataKey"])):
            reasons.append(f"the key of {topic.path} does not let events.amazonaws.com kms:Decrypt and "
                           "kms:GenerateDataKey")
            continue
        if not _topic_policy_allows(assembly, topic, "events.amazonaws.com", "sns:Publish"):
            reasons.append(f"the policy of {topic.path} does not let events.amazonaws.com sns:Publish")
            continue
        return None
    return "; ".join(reasons) or "it has no SNS topic target"


def _name_filter_covers(detail: dict, name_field: str, pattern: str) -> bool:
    """Does the rule's name filter let through every job name the IAM ``pattern`` (``<prefix>*``) allows?"""
    wanted = detail.get(name_field)
    if wanted is None:
        return True
    job_prefix = pattern.rstrip("*")
    for entry in wanted if isinstance(wanted, list) else [wanted]:
        if isinstance(entry, dict) and isinstance(entry.get("prefix"), str) and job_prefix.startswith(entry["prefix"]):
            return True
    return False


def _job_name_patterns(assembly: Assembly, role: Resource, action: str, resource_type: str) -> list[str]:
    """The job-name patterns a role may create (``<prefix>*`` from ``.../<resource_type>/<prefix>*``)."""
    found = []
    for statement in assembly.identity_statements(role):
        if not statement.allows_action(action):
            continue
        for resource in statement.resources:
            if resource == "*":
                found.append("*")
            elif f":{resource_type}/" in resource:
                found.append(resource.split(f":{resource_type}/", 1)[1])
    return found


def _pipeline_alarmed(assembly: Assembly, pipeline: Resource, topics: set[tuple[str, str]]) -> bool:
    """A CloudWatch alarm on this pipeline's ExecutionFailed metric that notifies an alarm topic."""
    name = pipeline.properties.get("PipelineName")
    for alarm in assembly.resources("AWS::CloudWatch::Alarm"):
        props = alarm.properties
        if props.get("MetricName") != "ExecutionFailed":
            continue
        dimensions = {d.get("Name"): assembly.text(alarm.stack, d.get("Value")) for d in props.get("Dimensions", [])}
        if dimensions.get("PipelineName") == name and _notifies(assembly, alarm, topics):
            return True
    return False


def _notifies(assembly: Assembly, alarm: Resource, topics: set[tuple[str, str]]) -> bool:
    """Whether one of the alarm's AlarmActions is one of the alarm ``topics``."""
    actions = [assembly.target(alarm.stack, a, "AWS::SNS::Topic") for a in alarm.properties.get("AlarmActions", [])]
    return any(t and (t.stack, t.logical_id) in topics for t in actions)


@rule("async-jobs-reach-the-alarm-topic")
def async_jobs(assembly: Assembly, _: Context) -> Iterator[Violation]:
    name = "async-jobs-reach-the-alarm-topic"
    topics = _alarm_topics(assembly)
    pipeline_rules = list(_sagemaker_rules(assembly, PIPELINE_EVENT))
    pipeline_roles = set()
    for pipeline in assembly.resources("AWS::SageMaker::Pipeline"):
        role = assembly.target(pipeline.stack, pipeline.properties.get("RoleArn"), "AWS::IAM::Role")
        if role is not None:
            pipeline_roles.add((role.stack, role.logical_id))
        pipeline_name = pipeline.properties.get("PipelineName")
        watching = [(r, d) for r, d in pipeline_rules
                    if _matches_failures(d, "currentPipelineExecutionStatus")
                    and (d.get("pipelineArn") is None
                         or any(str(arn).endswith(f":pipeline/{pipeline_name}") for arn in d["pipelineArn"]))]
        problems = [p for p in (_delivery_problem(assembly, r, topics) for r, _ in watching)]
        if None in problems or _pipeline_alarmed(assembly, pipeline, topics):
            continue
        detail = f" ({'; '.join(problems)})" if problems else ""
        yield Violation(name, pipeline.path, "no CloudWatch alarm on its ExecutionFailed metric and no EventBridge "
                        f"rule on its failed or stopped executions reaches the alarm topic{detail}: a failed job of "
                        "this pipeline would go unnoticed", EVENTS_DOC)
    for role in assembly.resources("AWS::IAM::Role"):
        if (role.stack, role.logical_id) in pipeline_roles:
            continue  # a pipeline's jobs: covered through the pipeline's executions above
        for kind, (action, resource_type, detail_type, name_field, status_field) in JOB_EVENTS.items():
            patterns = _job_name_patterns(assembly, role, action, resource_type)
            if not patterns:
                continue
            rules = [(r, d) for r, d in _sagemaker_rules(assembly, detail_type) if _matches_failures(d, status_field)]
            for pattern in patterns:
                covering = [r for r, d in rules if _name_filter_covers(d, name_field, pattern)]
                problems = [p for p in (_delivery_problem(assembly, r, topics) for r in covering)]
                if None in problems:
                    continue
                detail = f" ({'; '.join(problems)})" if problems else ""
                yield Violation(name, role.path, f"may start {kind} jobs named {pattern}, but no EventBridge rule on "
                                f"\"{detail_type}\" with {'/'.join(FAILED_STATES)} for those names reaches the alarm "
                                f"topic{detail}", EVENTS_DOC)
    # Jobs an operator command starts: their name prefix is a stack output (the command reads the same value).
    for stack, template in assembly.templates.items():
        for key, kind in OPERATOR_JOB_PREFIX_OUTPUTS.items():
            output = (template.get("Outputs") or {}).get(key)
            if output is None:
                continue
            job_prefix = assembly.text(stack, output.get("Value"))
            _, _, detail_type, name_field, status_field = JOB_EVENTS[kind]
            rules = [(r, d) for r, d in _sagemaker_rules(assembly, detail_type) if _matches_failures(d, status_field)]
            covering = [r for r, d in rules if _name_filter_covers(d, name_field, f"{job_prefix}*")]
            problems = [_delivery_problem(assembly, r, topics) for r in covering]
            if None in problems:
                continue
            detail = f" ({'; '.join(problems)})" if problems else ""
            yield Violation(name, f"{stack}/Outputs/{key}", f"the operator command starts {kind} jobs named "
                            f"{job_prefix}*, but no EventBridge rule on \"{detail_type}\" with "
                            f"{'/'.join(FAILED_STATES)} for those names reaches the alarm topic{detail}", EVENTS_DOC)


# -- dead-letter queues ------------------------------------------------------------------------------------------

def _dead_letter_targets(assembly: Assembly) -> Iterator[tuple[Any, str, str]]:
    """(queue expression, stack, what sends there) for every dead-letter or failure destination of the app."""
    for function in assembly.resources("AWS::Lambda::Function"):
        target = (function.properties.get("DeadLetterConfig") or {}).get("TargetArn")
        if target:
            yield target, function.stack, f"{function.path} (failed invocations)"
    for config in assembly.resources("AWS::Lambda::EventInvokeConfig"):
        target = ((config.properties.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
        if target:
            yield target, config.stack, f"{config.path} (on-failure destination)"
    for mapping in assembly.resources("AWS::Lambda::EventSourceMapping"):
        target = ((mapping.properties.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
        if target:
            yield target, mapping.stack, f"{mapping.path} (failed batches)"
    for queue in assembly.resources("AWS::SQS::Queue"):
        target = (queue.properties.get("RedrivePolicy") or {}).get("deadLetterTargetArn")
        if target:
            yield target, queue.stack, f"{queue.path} (redrive)"
    for subscription in assembly.resources("AWS::SNS::Subscription"):
        target = (subscription.properties.get("RedrivePolicy") or {}).get("deadLetterTargetArn")
        if target:
            yield target, subscription.stack, f"{subscription.path} (undeliverable messages)"
    for event_rule in assembly.resources("AWS::Events::Rule"):
        for target in event_rule.properties.get("Targets", []):
            dead_letter = (target.get("DeadLetterConfig") or {}).get("Arn")
            if dead_letter:
                yield dead_letter, event_rule.stack, f"{event_rule.path} (undeliverable events)"


def _depth_alarmed(assembly: Assembly, queue: Resource, topics: set[tuple[str, str]]) -> bool:
    """A CloudWatch alarm on the queue's visible messages (QueueName = the queue) that notifies an alarm topic."""
    queue_name = str(queue.ref("QueueName"))
    for alarm in assembly.resources("AWS::CloudWatch::Alarm"):
        props = alarm.properties
        if props.get("Namespace") != "AWS/SQS" or props.get("MetricName") != "ApproximateNumberOfMessagesVisible":
            continue
        dimensions = {d.get("Name"): assembly.text(alarm.stack, d.get("Value")) for d in props.get("Dimensions", [])}
        if dimensions.get("QueueName") != queue_name:
            continue
        if _notifies(assembly, alarm, topics):
            return True
    return False


@rule("dead-letter-queues-alarmed")
def dead_letter_queues(assembly: Assembly, _: Context) -> Iterator[Violation]:
    name = "dead-letter-queues-alarmed"
    topics = _alarm_topics(assembly)
    senders: dict[tuple[str, str], tuple[Resource, list[str]]] = {}
    for expression, stack, sender in _dead_letter_targets(assembly):
        queue = assembly.target(stack, expression, "AWS::SQS::Queue")
        if queue is not None:
            senders.setdefault((queue.stack, queue.logical_id), (queue, []))[1].append(sender)
    for queue, sent_by in senders.values():
        if not _depth_alarmed(assembly, queue, topics):
            yield Violation(name, queue.path, f"receives what failed ({', '.join(sent_by)}) but no CloudWatch alarm on "
                            "its ApproximateNumberOfMessagesVisible notifies the alarm topic: failures would pile up "
                            "unseen until the queue's retention deletes them", SQS_METRICS_DOC)
