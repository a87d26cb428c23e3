"""Alarms published to one SNS topic (CloudWatch alarms, and SageMaker job failure events through
stacks/job_failure_alarms.py), and a dashboard of the serving and training paths."""

from __future__ import annotations

from dataclasses import dataclass, field

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sns as sns
from constructs import Construct

from stacks.job_failure_alarms import JobFailureAlarms, JobFailureAlarmsProps
from stacks.metric_catalogue import metric
from stacks.operations_key import OperationsKey

PIPELINE_NAMESPACE = "AWS/Sagemaker/ModelBuildingPipeline"


@dataclass
class MonitoringProps:
    prefix: str
    key: OperationsKey
    pipeline_names: list[str]
    alarm_topic: sns.ITopic | None = None
    widgets: list[cw.IWidget] = field(default_factory=list)


class Monitoring(Construct):
    def __init__(self, scope: Construct, construct_id: str, props: MonitoringProps) -> None:
        super().__init__(scope, construct_id)
        self.topic = props.alarm_topic or sns.Topic(self, "AlarmTopic", master_key=props.key.key, enforce_ssl=True,
                                                    display_name=f"{props.prefix} alarms")
        # Alarm actions publish as cloudwatch.amazonaws.com, which must be able to use the topic's key, and which
        # the topic policy must allow: enforce_ssl replaces SNS's default policy with a deny-only one.
        props.key.admit_alarm_notifications()
        stack = cdk.Stack.of(self)
        self.topic.add_to_resource_policy(iam.PolicyStatement(
            sid="CloudWatchAlarmsPublish", principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
            actions=["sns:Publish"], resources=[self.topic.topic_arn],
            conditions={"StringEquals": {"aws:SourceAccount": stack.account},
                        "ArnLike": {"aws:SourceArn": stack.format_arn(
                            service="cloudwatch", resource="alarm", resource_name="*",
                            arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME)}}))
        self._action = cw_actions.SnsAction(self.topic)
        self.pipeline_failures = [
            cw.Alarm(
                self, f"PipelineFailed{index}",
                metric=metric(PIPELINE_NAMESPACE, "ExecutionFailed", {"PipelineName": name}, statistic="Sum",
                              period=cdk.Duration.minutes(5)),
                threshold=1, evaluation_periods=1,
                comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
                alarm_description=f"Pipeline {name} had a failed execution (including quality-gate failures)")
            for index, name in enumerate(props.pipeline_names)
        ]
        self.publish(*self.pipeline_failures)
        # SageMaker's own failure events (pipeline executions, drive jobs) to the same topic.
        self.job_failures = JobFailureAlarms(self, "JobFailures", JobFailureAlarmsProps(
            prefix=props.prefix, topic=self.topic, key=props.key, pipeline_names=props.pipeline_names))
        self.dashboard = cw.Dashboard(self, "Dashboard", default_interval=cdk.Duration.hours(6))
        self.dashboard.add_widgets(cw.AlarmStatusWidget(title="Pipelines", alarms=self.pipeline_failures, width=24))

    def publish(self, *alarms: cw.Alarm) -> None:
        for alarm in alarms:
            alarm.add_alarm_action(self._action)
            alarm.add_ok_action(self._action)

    def add_section(self, title: str, alarms: list[cw.Alarm]) -> None:
        """Publish ``alarms`` and show each one's metric with its threshold."""
        self.publish(*alarms)
        self.dashboard.add_widgets(cw.TextWidget(markdown=f"## {title}", width=24, height=1))
        self.dashboard.add_widgets(*(cw.AlarmWidget(alarm=a, title=a.node.id, width=8) for a in alarms))
