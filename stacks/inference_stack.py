"""Inference stack: the registry model, both GPU endpoints, the approval rollout and monitoring."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_sns as sns
from constructs import Construct

from contracts import naming
from envconfig.config import EnvironmentConfig
from stacks.async_endpoint import AsyncEndpoint, AsyncEndpointProps
from stacks.bucket_set import BucketSet
from stacks.drift_monitoring import DriftMonitoring, DriftMonitoringProps
from stacks.drive_processing import DriveProcessing, DriveProcessingProps
from stacks.drives import DriveTable, DriveTableProps
from stacks.images import images_mapping
from stacks.label_scoring import LabelScoring, LabelScoringProps
from stacks.monitoring import Monitoring, MonitoringProps
from stacks.network import NetworkStack, place_functions_in
from stacks.operations_key import OperationsKey, OperationsKeyProps
from stacks.preprocessors import Preprocessors, PreprocessorsProps
from stacks.realtime_endpoint import RealtimeEndpoint, RealtimeEndpointProps
from stacks.registry_model import RegistryModel, RegistryModelProps, apply_condition
from stacks.rollout import ApprovalRollout, ApprovalRolloutProps
from stacks.training_pipelines import TrainingPipelines


def endpoint_names(config: EnvironmentConfig) -> tuple[str, str]:
    """``contracts.naming.endpoint_names`` of the config (kept for roadseg/preflight/assembly.py)."""
    return naming.endpoint_names(config.prefix)


class InferenceStack(cdk.Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: EnvironmentConfig, data: BucketSet,
                 training: TrainingPipelines, suspend_scaling: bool = False, network: NetworkStack | None = None,
                 **kwargs) -> None:
        """``suspend_scaling``: leave the endpoints' scalable targets out, the first of the two deploys that change
        an autoscaled endpoint's instance type (docs/deploy.md, "Changing an endpoint's instance type"). ``network``:
        isolated-network mode, the model and every function run in its private subnets."""
        super().__init__(scope, construct_id, **kwargs)
        # First: SSM-typed parameters of an imported network exist before the rollout lists them, and no function
        # can be created outside the VPC.
        placement = network.placement(self) if network else None
        if placement is not None:
            place_functions_in(self, placement.function)
        self.realtime_name, self.async_name = naming.endpoint_names(config.prefix)
        buckets = data.share_with(self)
        self.model = RegistryModel(self, "Model", RegistryModelProps(
            buckets=buckets, algorithm_repository_arn=images_mapping(self, config).get("AlgorithmRepository"),
            serving_parameter=naming.serving_package_parameter(config.prefix),
            vpc_config=placement.sagemaker_vpc_config() if placement else None))
        # Log groups, topics and queues that AWS services write into use this stack's own key (see the module).
        self.operations_key = OperationsKey(self, "OperationsKey", OperationsKeyProps(
            prefix=config.prefix, retain=config.retain))
        key = self.operations_key.key
        # Topics exist with or without a model, so subscribers (the result postprocessor) never dangle.
        self.success_topic = sns.Topic(self, "AsyncSuccess", master_key=key, enforce_ssl=True,
                                       display_name=f"{config.prefix} async inference succeeded")
        self.error_topic = sns.Topic(self, "AsyncError", master_key=key, enforce_ssl=True,
                                     display_name=f"{config.prefix} async inference failed")

        serving = Construct(self, "Serving")  # everything below exists only while a model is approved
        self.realtime = RealtimeEndpoint(serving, "Realtime", RealtimeEndpointProps(
            config=config.realtime_endpoint, prefix=config.prefix, model_name=self.model.model_name,
            buckets=buckets, suspend_scaling=suspend_scaling))
        self.async_endpoint = AsyncEndpoint(serving, "Async", AsyncEndpointProps(
            config=config.async_endpoint, prefix=config.prefix, model_name=self.model.model_name,
            model_role=self.model.role, buckets=buckets, success_topic=self.success_topic,
            error_topic=self.error_topic, suspend_scaling=suspend_scaling))
        self.model.allow_reading_alarms(self.realtime.rollback_alarm_names + self.async_endpoint.rollback_alarm_names)
        self.monitoring = Monitoring(self, "Monitoring", MonitoringProps(
            prefix=config.prefix, key=self.operations_key,
            pipeline_names=[training.training_pipeline.pipeline_name, training.tuning_pipeline.pipeline_name]))
        self.monitoring.add_section("Real-time endpoint", self.realtime.alarms)
        self.monitoring.add_section("Asynchronous endpoint", self.async_endpoint.alarms)
        apply_condition(serving, self.model.has_model)
        apply_condition(self.monitoring.dashboard, self.model.has_model)

        self.rollout = ApprovalRollout(self, "Rollout", ApprovalRolloutProps(
            config=config, model_package_group=training.settings.model_package_group, model_role=self.model.role,
            key=self.operations_key, endpoint_names=(self.realtime_name, self.async_name), buckets=buckets,
            serving_parameter=naming.serving_package_parameter(config.prefix),
            vpc_config=placement.sagemaker_vpc_config() if placement else None))
        self.monitoring.add_section("Rollout", self.rollout.alarms)

        # Results name the model that produced them: the version is the last part of the package ARN.
        version = cdk.Fn.condition_if(self.model.has_model.logical_id,
                                      cdk.Fn.select(2, cdk.Fn.split("/", self.model.package_arn.value_as_string)),
                                      "").to_string()
        # Whole drives: the counters every drive frame's outcome is recorded in (stacks/drives.py).
        self.drives = DriveTable(self, "Drives", DriveTableProps(prefix=config.prefix, key=buckets.key,
                                                                 retain=config.retain))
        self.preprocessors = Preprocessors(self, "Preprocessors", PreprocessorsProps(
            config=config, scheme=training.scheme, buckets=buckets, key=self.operations_key,
            realtime_endpoint=self.realtime, async_endpoint=self.async_endpoint,
            success_topic=self.success_topic, error_topic=self.error_topic, model_package_version=version,
            drives=self.drives))
        self.monitoring.add_section("Lambda preprocessors", self.preprocessors.alarms)
        # Every failed-invocation queue is alarmed (contract dead-letter-queues-alarmed): SNS invokes postprocess
        # asynchronously, so its queue holds async results that failed every retry.
        self.monitoring.add_section("Failed invocations", [f.dlq_depth_alarm() for f in self.preprocessors.functions])
        # Whole drives: logs under drives/ -> extraction job -> frames; all outcomes counted -> builder job.
        self.drive_processing = DriveProcessing(self, "DriveProcessing", DriveProcessingProps(
            prefix=config.prefix, drives=config.drives, buckets=buckets, table=self.drives, key=self.operations_key,
            images=images_mapping(self, config), log_retention_days=config.retention.log_group_days,
            retain=config.retain, class_scheme=config.classes.scheme, job_settings=training.job_settings,
            frame_limits=(config.preprocessing.max_input_bytes, config.preprocessing.max_input_pixels),
            vpc_config=placement.sagemaker_vpc_config() if placement else None))
        self.monitoring.add_section("Whole drives", self.drive_processing.alarms)
        # Candidate-pool scoring (roadseg label score): the job's role and settings; its failures reach the alarm
        # topic through the job-failure rule on its name prefix (stacks/job_failure_alarms.py).
        drive_assets = self.drive_processing
        self.label_scoring = LabelScoring(self, "LabelScoring", LabelScoringProps(
            prefix=config.prefix, buckets=buckets, images=images_mapping(self, config),
            code_assets=(drive_assets.entry_script, drive_assets.package, drive_assets.wheels),
            volume_size_gb=config.drives.volume_size_gb, max_runtime_seconds=config.drives.max_runtime_hours * 3600,
            vpc_config=placement.sagemaker_vpc_config() if placement else None))
        # Label-free drift per camera (issue 23): each camera's last window against the serving model's reference.
        self.drift = DriftMonitoring(self, "Drift", DriftMonitoringProps(
            config=config, buckets=buckets, key=self.operations_key, monitoring=self.monitoring,
            model_package_group=training.settings.model_package_group,
            serving_parameter=naming.serving_package_parameter(config.prefix))) if config.monitoring.enabled else None
        self.rollout.allow_updating(self.preprocessors.functions)
        if any(e.endpoint_config.kms_key_id for e in (self.realtime, self.async_endpoint)):
            self.rollout.allow_granting_volume_key(buckets.key)

        cdk.CfnOutput(self, naming.ALARM_TOPIC_ARN, value=self.monitoring.topic.topic_arn,
                      description="Every alarm notifies this topic: subscribe on-call addresses to it")
        cdk.CfnOutput(self, naming.LABEL_SCORING_JOB, value=self.label_scoring.settings_parameter_name,
                      description="The SSM parameter holding what roadseg label score needs to start a scoring "
                                  "Processing job (JSON)")
        cdk.CfnOutput(self, naming.LABEL_SCORING_JOB_PREFIX, value=self.label_scoring.job_prefix,
                      description="Scoring jobs are named with this prefix (the job-failure rule matches it)")
        cdk.CfnOutput(self, naming.REALTIME_ENDPOINT_NAME, value=self.realtime_name, condition=self.model.has_model)
        cdk.CfnOutput(self, naming.ASYNC_ENDPOINT_NAME, value=self.async_name, condition=self.model.has_model)
        cdk.CfnOutput(self, naming.SERVING_STATUS, value=cdk.Fn.condition_if(
            self.model.has_model.logical_id, "Endpoints deployed for the approved model package",
            "No approved model package yet: endpoints are not deployed. Approve one in the model package group "
            "(or deploy with --parameters ModelPackageArn=<arn>).").to_string())
