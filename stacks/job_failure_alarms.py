"""No silent failure of SageMaker's asynchronous work: an EventBridge rule per kind of job this project starts, each
matching only this project's jobs in a failed or stopped state and publishing the event to the alarm topic.

- Pipeline executions (``SageMaker Model Building Pipeline Execution Status Change``, ``detail.pipelineArn`` one of
  this environment's pipelines): every job a pipeline starts (preparation, training, tuning, evaluation, transform,
  ExportModel) fails its step and so the execution. SageMaker names those jobs ``pipelines-<execution>-...``, so a
  job-level rule could not tell this project's from another's; the execution can.
- Drive jobs (``SageMaker Processing Job State Change``, ``detail.ProcessingJobName`` starting with
  ``contracts.naming.drive_job_prefix``): the extraction and builder jobs the drive functions start.
- Scoring jobs (the same event, names starting with ``contracts.naming.label_scoring_job_prefix``): the
  candidate-pool scoring jobs ``roadseg label score`` starts.
- Neo compilation jobs: the SageMaker events page (EVENTS_DOC) lists no compilation-job event, so no rule can
  watch them; the rollout function reports the jobs it creates (the contract class d rule records the gap).

The detail-types, fields and status values are those of EVENTS_DOC and of the API's status enums
(ProcessingJobStatus: Failed | Stopped; PipelineExecutionStatus: Failed | Stopped). The alarm topic is encrypted with
the operations key and has a topic policy (enforce_ssl): EventBridge publishes as events.amazonaws.com, which needs
both the key (kms:Decrypt, kms:GenerateDataKey) and sns:Publish in the topic policy (SNS_TARGET_DOC).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import aws_cdk as cdk
import jsii
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sns as sns
from constructs import Construct

from contracts import naming
from stacks.operations_key import OperationsKey

EVENTS_DOC = "https://docs.aws.amazon.com/sagemaker/latest/dg/automating-sagemaker-with-eventbridge.html"
SNS_TARGET_DOC = "https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-use-resource-based.html#eb-sns-permissions"
SAGEMAKER_SOURCE = "aws.sagemaker"
PIPELINE_EXECUTION_EVENT = "SageMaker Model Building Pipeline Execution Status Change"
PROCESSING_JOB_EVENT = "SageMaker Processing Job State Change"
TRAINING_JOB_EVENT = "SageMaker Training Job State Change"
TUNING_JOB_EVENT = "SageMaker HyperParameter Tuning Job State Change"
FAILED_STATES = ("Failed", "Stopped")


@dataclass(frozen=True)
class JobFailureAlarmsProps:
    prefix: str  # the environment's prefix: rule names and the drive jobs' name prefix
    topic: sns.ITopic  # the alarm topic
    key: OperationsKey  # the topic's key
    pipeline_names: Sequence[str]


def rule_name_prefix(prefix: str) -> str:
    """The rules are named ``<prefix>-job-failed-<kind>`` (operators find them by name)."""
    return f"{prefix}-job-failed-"


class JobFailureAlarms(Construct):
    def __init__(self, scope: Construct, construct_id: str, props: JobFailureAlarmsProps) -> None:
        super().__init__(scope, construct_id)
        stack = cdk.Stack.of(self)
        names = rule_name_prefix(props.prefix)
        # Both grants written here, once, with the page that asks for them (CDK's SnsTopic target would add its own
        # copies, merged into unrelated key statements).
        props.key.admit_event_notifications()
        props.topic.add_to_resource_policy(iam.PolicyStatement(
            sid="EventBridgeJobFailuresPublish", principals=[iam.ServicePrincipal("events.amazonaws.com")],
            actions=["sns:Publish"], resources=[props.topic.topic_arn]))
        pipeline_arns = [stack.format_arn(service="sagemaker", resource="pipeline", resource_name=name)
                         for name in props.pipeline_names]
        self.pipelines = self._rule("Pipelines", f"{names}pipelines", props.topic,
                                    "A pipeline execution of this environment failed or was stopped",
                                    PIPELINE_EXECUTION_EVENT, {"pipelineArn": pipeline_arns,
                                                               "currentPipelineExecutionStatus": list(FAILED_STATES)})
        self.drive_jobs = self._rule("DriveJobs", f"{names}drive-jobs", props.topic,
                                     "A drive extraction or builder job failed or was stopped",
                                     PROCESSING_JOB_EVENT,
                                     {"ProcessingJobName": [{"prefix": naming.drive_job_prefix(props.prefix)}],
                                      "ProcessingJobStatus": list(FAILED_STATES)})
        # Candidate-pool scoring jobs, started by `roadseg label score` (the operator's credentials, not a role of the
        # app: the contract reads their prefix from the LabelScoringJobPrefix output).
        scoring_prefix = naming.label_scoring_job_prefix(props.prefix)
        self.scoring_jobs = self._rule("ScoringJobs", f"{names}label-scoring", props.topic,
                                       "A candidate-pool scoring job (roadseg label score) failed or was stopped",
                                       PROCESSING_JOB_EVENT, {"ProcessingJobName": [{"prefix": scoring_prefix}],
                                                              "ProcessingJobStatus": list(FAILED_STATES)})
        self.rules = [self.pipelines, self.drive_jobs, self.scoring_jobs]

    def _rule(self, construct_id: str, rule_name: str, topic: sns.ITopic, description: str, detail_type: str,
              detail: dict) -> events.Rule:
        rule = events.Rule(self, construct_id, rule_name=rule_name, description=description,
                           event_pattern=events.EventPattern(source=[SAGEMAKER_SOURCE], detail_type=[detail_type],
                                                             detail=detail))
        rule.add_target(_Topic(topic))
        return rule


@jsii.implements(events.IRuleTarget)
class _Topic:
    """The alarm topic as a rule target, without the grants CDK's SnsTopic target adds (JobFailureAlarms adds them)."""

    def __init__(self, topic: sns.ITopic) -> None:
        self.topic = topic

    def bind(self, _rule: events.IRule, _id: str | None = None) -> events.RuleTargetConfig:
        return events.RuleTargetConfig(arn=self.topic.topic_arn)
