"""GPU asynchronous endpoint: full-resolution frames via S3, SNS notifications, scales to zero when idle."""

from __future__ import annotations

from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sagemaker as sagemaker
from aws_cdk import aws_sns as sns
from constructs import Construct

from contracts import naming
from contracts.layout import INFERENCE
from envconfig.config import AsyncEndpointConfig
from stacks.bucket_set import SharedBuckets
from stacks.endpoint_common import ServingEndpoint, endpoint, instance_count_target, storage_kms_key, variant


@dataclass(frozen=True)
class AsyncEndpointProps:
    config: AsyncEndpointConfig
    prefix: str  # the endpoint and its alarms are named from it (contracts.naming)
    model_name: str
    model_role: iam.IRole
    buckets: SharedBuckets
    success_topic: sns.ITopic
    error_topic: sns.ITopic
    # The first of the two deploys that change the instance type: no scalable target (docs/deploy.md).
    suspend_scaling: bool = False


class AsyncEndpoint(ServingEndpoint):
    invoke_action = "sagemaker:InvokeEndpointAsync"

    def __init__(self, scope: Construct, construct_id: str, props: AsyncEndpointProps) -> None:
        super().__init__(scope, construct_id, naming.async_endpoint_name(props.prefix))
        cfg, buckets = props.config, props.buckets
        for topic in (props.success_topic, props.error_topic):
            topic.grant_publish(props.model_role)  # SageMaker publishes notifications as the model's role

        self.endpoint_config = sagemaker.CfnEndpointConfig(
            self, "Config",
            # CreateEndpointConfig needs at least one instance; the autoscaler then takes it down to min_capacity.
            production_variants=[variant(props.model_name, cfg.instance_type, max(1, cfg.min_capacity))],
            async_inference_config=sagemaker.CfnEndpointConfig.AsyncInferenceConfigProperty(
                client_config=sagemaker.CfnEndpointConfig.AsyncInferenceClientConfigProperty(
                    max_concurrent_invocations_per_instance=cfg.max_concurrent_invocations_per_instance),
                output_config=sagemaker.CfnEndpointConfig.AsyncInferenceOutputConfigProperty(
                    s3_output_path=buckets.inference.s3_url_for_object(INFERENCE.async_output.rstrip("/")),
                    s3_failure_path=buckets.inference.s3_url_for_object(INFERENCE.async_failures.rstrip("/")),
                    kms_key_id=buckets.key.key_arn,
                    notification_config=sagemaker.CfnEndpointConfig.AsyncInferenceNotificationConfigProperty(
                        success_topic=props.success_topic.topic_arn,
                        error_topic=props.error_topic.topic_arn,
                        include_inference_response_in=["SUCCESS_NOTIFICATION_TOPIC", "ERROR_NOTIFICATION_TOPIC"],
                    ),
                ),
            ),
        )
        self.endpoint_config.kms_key_id = storage_kms_key(self.endpoint_config, cfg.instance_type,
                                                          buckets.key.key_arn)

        self.backlog_without_capacity = cw.Alarm(
            self, "HasBacklogWithoutCapacity", alarm_name=naming.async_backlog_alarm_name(props.prefix),
            metric=self.metric_backlog_without_capacity(),
            threshold=1, evaluation_periods=1, datapoints_to_alarm=1,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            alarm_description="Async requests are waiting and the endpoint has no instance: scale out from zero",
        )
        self.failed_invocations = cw.Alarm(
            self, "InvocationFailures", alarm_name=naming.async_failures_alarm_name(props.prefix),
            metric=self.metric_invocation_failures(),
            threshold=1, evaluation_periods=2,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            alarm_description="Async endpoint invocations failed",
        )
        self.oldest_request_age = cw.Alarm(
            self, "ApproximateAgeOfOldestRequest", alarm_name=naming.async_oldest_request_alarm_name(props.prefix),
            metric=self.metric_oldest_request_age(period=cdk.Duration.minutes(5)),
            threshold=cfg.invocation_timeout_seconds, evaluation_periods=3,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            alarm_description="Async requests wait longer than the invocation timeout",
        )
        self.alarms = [self.failed_invocations, self.oldest_request_age, self.backlog_without_capacity]
        self.rollback_alarms = [self.failed_invocations]
        # Literal names (not the alarms' tokens): the alarms exist only with a model.
        self.rollback_alarm_names = list(naming.async_rollback_alarm_names(props.prefix))
        # Scaled to zero, a retained count would make the new fleet empty: nothing to judge during the bake.
        self.endpoint = endpoint(self, "Endpoint", self.endpoint_name, self.endpoint_config.attr_endpoint_config_name,
                                 self.rollback_alarms, retain_instance_count=cfg.min_capacity > 0)
        self.scaling = None
        if props.suspend_scaling:
            return
        self.scaling = instance_count_target(self, self.endpoint, cfg.min_capacity, cfg.max_capacity)
        # Backlog per instance, dimension EndpointName only (the async metric has no VariantName).
        self.scaling.scale_to_track_metric(
            "BacklogPerInstance",
            target_value=cfg.target_backlog_per_instance,
            custom_metric=self.metric_backlog_per_instance(),
            scale_in_cooldown=cdk.Duration.seconds(cfg.scale_in_cooldown_seconds),
            scale_out_cooldown=cdk.Duration.seconds(cfg.scale_out_cooldown_seconds),
        )
        # Target tracking never leaves zero until the backlog exceeds the target: add one instance as soon as
        # requests wait with no capacity.
        self.scale_out_from_zero = appscaling.StepScalingAction(
            self, "ScaleOutFromZero", scaling_target=self.scaling,
            adjustment_type=appscaling.AdjustmentType.CHANGE_IN_CAPACITY,
            cooldown=cdk.Duration.seconds(cfg.scale_out_cooldown_seconds),
            metric_aggregation_type=appscaling.MetricAggregationType.AVERAGE,
        )
        self.scale_out_from_zero.add_adjustment(adjustment=1, lower_bound=0)
        self.backlog_without_capacity.add_alarm_action(cw_actions.ApplicationScalingAction(self.scale_out_from_zero))

    # The queue metrics (backlog, oldest request) are published per endpoint only, the rest per endpoint and
    # variant: ``ServingEndpoint.metric`` picks the dimensions from the catalogue.

    def metric_invocation_failures(self, *, statistic: str = "Sum", period: cdk.Duration | None = None) -> cw.Metric:
        """Requests the model failed to process (InvocationFailures)."""
        return self.metric("InvocationFailures", statistic=statistic, period=period)

    def metric_oldest_request_age(self, *, statistic: str = "Maximum",
                                  period: cdk.Duration | None = None) -> cw.Metric:
        """Seconds the oldest queued request has waited (ApproximateAgeOfOldestRequest)."""
        return self.metric("ApproximateAgeOfOldestRequest", statistic=statistic, period=period)

    def metric_backlog_without_capacity(self, *, statistic: str = "Average",
                                        period: cdk.Duration | None = None) -> cw.Metric:
        """1 while requests are queued and the endpoint has no instance (HasBacklogWithoutCapacity)."""
        return self.metric("HasBacklogWithoutCapacity", statistic=statistic, period=period)

    def metric_backlog_per_instance(self, *, statistic: str = "Average",
                                    period: cdk.Duration | None = None) -> cw.Metric:
        """Queued requests per instance (ApproximateBacklogSizePerInstance): what the autoscaler tracks."""
        return self.metric("ApproximateBacklogSizePerInstance", statistic=statistic, period=period)
