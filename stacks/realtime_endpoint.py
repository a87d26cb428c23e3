"""GPU real-time endpoint: JPEG in, PNG class mask out, autoscaled on invocations per instance."""

from __future__ import annotations

from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from contracts import naming
from contracts.layout import INFERENCE
from envconfig.config import RealtimeEndpointConfig
from stacks.bucket_set import SharedBuckets
from stacks.endpoint_common import ServingEndpoint, endpoint, instance_count_target, storage_kms_key, variant


@dataclass(frozen=True)
class RealtimeEndpointProps:
    config: RealtimeEndpointConfig
    prefix: str  # the endpoint and its alarms are named from it (contracts.naming)
    model_name: str
    buckets: SharedBuckets
    latency_p90_threshold_ms: float = 1500.0
    # The first of the two deploys that change the instance type: no scalable target (docs/deploy.md).
    suspend_scaling: bool = False


class RealtimeEndpoint(ServingEndpoint):
    invoke_action = "sagemaker:InvokeEndpoint"

    def __init__(self, scope: Construct, construct_id: str, props: RealtimeEndpointProps) -> None:
        super().__init__(scope, construct_id, naming.realtime_endpoint_name(props.prefix))
        cfg, buckets = props.config, props.buckets
        capture = None
        if cfg.data_capture.enabled:
            capture = sagemaker.CfnEndpointConfig.DataCaptureConfigProperty(
                enable_capture=True,
                initial_sampling_percentage=cfg.data_capture.sampling_percentage,
                destination_s3_uri=buckets.inference.s3_url_for_object(INFERENCE.data_capture.rstrip("/")),
                kms_key_id=buckets.key.key_arn,
                capture_options=[sagemaker.CfnEndpointConfig.CaptureOptionProperty(capture_mode=m)
                                 for m in ("Input", "Output")],
            )
        self.endpoint_config = sagemaker.CfnEndpointConfig(
            self, "Config",
            production_variants=[variant(props.model_name, cfg.instance_type, cfg.min_capacity)],
            data_capture_config=capture,
        )
        self.endpoint_config.kms_key_id = storage_kms_key(self.endpoint_config, cfg.instance_type,
                                                          buckets.key.key_arn)
        self.latency_p90 = cw.Alarm(
            self, "LatencyP90", alarm_name=naming.realtime_latency_alarm_name(props.prefix),
            metric=self.metric_model_latency(),  # microseconds
            threshold=props.latency_p90_threshold_ms * 1000, evaluation_periods=3,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            alarm_description="Real-time endpoint p90 model latency above threshold",
        )
        self.errors_5xx = cw.Alarm(
            self, "Invocation5XXErrors", alarm_name=naming.realtime_errors_alarm_name(props.prefix),
            metric=self.metric_5xx_errors(),
            threshold=1, evaluation_periods=2,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            alarm_description="Real-time endpoint returned 5XX errors",
        )
        self.alarms = [self.latency_p90, self.errors_5xx]
        self.rollback_alarms = list(self.alarms)
        # Literal names (not the alarms' tokens): the alarms exist only with a model.
        self.rollback_alarm_names = list(naming.realtime_rollback_alarm_names(props.prefix))
        self.endpoint = endpoint(self, "Endpoint", self.endpoint_name, self.endpoint_config.attr_endpoint_config_name,
                                 self.rollback_alarms)
        self.scaling = None
        if props.suspend_scaling:
            return
        self.scaling = instance_count_target(self, self.endpoint, cfg.min_capacity, cfg.max_capacity)
        self.scaling.scale_to_track_metric(
            "InvocationsPerInstance",
            target_value=cfg.target_invocations_per_instance,
            predefined_metric=appscaling.PredefinedMetric.SAGEMAKER_VARIANT_INVOCATIONS_PER_INSTANCE,
            scale_in_cooldown=cdk.Duration.minutes(5), scale_out_cooldown=cdk.Duration.minutes(1),
        )

    def metric_model_latency(self, *, statistic: str = "p90", period: cdk.Duration | None = None) -> cw.Metric:
        """How long the model took to answer, in microseconds (ModelLatency)."""
        return self.metric("ModelLatency", statistic=statistic, period=period)

    def metric_5xx_errors(self, *, statistic: str = "Sum", period: cdk.Duration | None = None) -> cw.Metric:
        """Invocations the endpoint answered with a 5XX error (Invocation5XXErrors)."""
        return self.metric("Invocation5XXErrors", statistic=statistic, period=period)
