"""Label-free drift monitoring per camera (issue 23): the scheduled drift function, its least-privilege grants, the
drift and anomaly-detection alarms (to the alarm topic) and a dashboard section per camera position.

- Schedule: an EventBridge rule at ``monitoring.drift_schedule`` (hourly or daily) invokes lambda/drift_monitor.py
  (``monitoring.job``: the last window per camera against the serving model's reference profile). Events EventBridge
  cannot deliver and invocations that failed every retry go to the function's failed-invocation queue (alarmed), and
  its errors are alarmed: a drift check that stops working is heard.
- Grants (exactly what monitoring/job.py calls): ssm:GetParameter on the serving parameter;
  sagemaker:DescribeModelPackage on the project's package group; s3:GetObject (+ kms:Decrypt) under the artifacts
  bucket's pipelines/ prefix, where the gate writes the profile next to evaluation.json; cloudwatch:GetMetricData and
  cloudwatch:ListMetrics, which support no resource-level permissions (CW_IAM_DOC lists no resource type for them);
  cloudwatch:PutMetricData limited to ``monitoring.metrics.DRIFT_NAMESPACE`` by the ``cloudwatch:namespace``
  condition (CW_NAMESPACE_CONDITION_DOC).
- Alarms (each to the alarm topic, OK included): ``DriftDetected`` per judged camera (every configured camera,
  ``EnvironmentConfig.signal_cameras``, and ``unknown``) after ``monitoring.alarm_windows`` drifted windows in a
  row, and ``DriftedCameras``, a composite alarm in ALARM while any of them is (one camera drifted that many windows
  in a row); ``ReferenceMissing`` (the serving package has no usable reference profile); and a CloudWatch
  anomaly-detection alarm per monitored camera (``monitoring.cameras``) on each of ``monitoring.anomaly_signals``
  (hourly mean outside the model's band of ``anomaly_band_std`` standard deviations for ``alarm_windows`` hours).
  Missing data is not breaching: a camera that sends nothing is the ingest's concern (FramesReceived), not drift.
- Isolated-network mode: the function runs in the private subnets (RoadsegFunction's placement) and calls ssm,
  sagemaker.api, s3, kms, monitoring and logs, all endpoints of stacks/network.py (the contract
  ``isolated-network-endpoint-for-every-called-service`` checks the role's actions against them).
"""

from __future__ import annotations

from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from constructs import Construct

from contracts.layout import ARTIFACTS
from contracts.signal_metrics import (
    CAMERA_DIMENSION,
    ENVIRONMENT_DIMENSION,
    SIGNAL_METRICS,
    SIGNAL_METRICS_NAMESPACE,
    UNKNOWN_CAMERA,
    any_camera_alarm_rule,
    drift_alarm_name,
)
from envconfig.config import EnvironmentConfig
from monitoring.drift import DriftThresholds
from monitoring.job import DriftSettings
from monitoring.metrics import (
    DRIFT_DETECTED,
    DRIFT_NAMESPACE,
    DRIFTED_CAMERAS,
    DRIFTED_SIGNALS,
    REFERENCE_MISSING,
    SIGNAL_PSI,
)
from stacks.bucket_set import SharedBuckets
from stacks.functions.roadseg_function import RoadsegFunction, RoadsegFunctionProps
from stacks.metric_catalogue import metric
from stacks.monitoring import Monitoring
from stacks.operations_key import OperationsKey

CW_IAM_DOC = "https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazoncloudwatch.html"
CW_NAMESPACE_CONDITION_DOC = ("https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/"
                              "iam-cw-condition-keys-namespace.html")
ANOMALY_DOC = "https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Anomaly_Detection.html"
FUNCTION_NO_VPC = ("The function calls only regional AWS APIs (SSM, SageMaker, S3, CloudWatch) and reads one small "
                   "JSON profile; a VPC adds cost without narrowing what it can reach (isolated-network mode places "
                   "it in the VPC).")
# Signals charted per camera on the dashboard (the anomaly signals are added to them).
DASHBOARD_SIGNALS = ("brightness", "sharpness", "frac_road", "frac_sky", "drivable_fraction", "frac_vru")


@dataclass(frozen=True)
class DriftMonitoringProps:
    config: EnvironmentConfig
    buckets: SharedBuckets  # the artifacts bucket holds the reference profiles
    key: OperationsKey  # the function's log group and failed-invocation queue
    monitoring: Monitoring  # the alarm topic and the dashboard
    model_package_group: str
    serving_parameter: str  # contracts.naming.serving_package_parameter(prefix)


def drift_settings(config: EnvironmentConfig, serving_parameter: str) -> DriftSettings:
    """What the function runs with (its environment variables), from the environment's config."""
    cfg = config.monitoring
    return DriftSettings(
        environment=config.prefix, serving_parameter=serving_parameter, window_seconds=cfg.window * 3600,
        thresholds=DriftThresholds(cfg.psi_threshold, cfg.js_threshold, cfg.band_sigmas, cfg.min_frames),
        cameras=tuple(config.signal_cameras), per_signal=cfg.per_signal_metrics)


def drift_schedule(kind: str) -> events.Schedule:
    """Hourly: every hour, at whatever minute (windows end on the hour). Daily: 00:20 UTC, just after the judged UTC
    day closed and its frames settled (monitoring.job.window_bounds: whole-day windows end at 00:00 UTC)."""
    return events.Schedule.rate(cdk.Duration.hours(1)) if kind == "hourly" else events.Schedule.cron(minute="20",
                                                                                                      hour="0")


class DriftMonitoring(Construct):
    def __init__(self, scope: Construct, construct_id: str, props: DriftMonitoringProps) -> None:
        super().__init__(scope, construct_id)
        config, cfg = props.config, props.config.monitoring
        stack = cdk.Stack.of(self)
        self.period = cdk.Duration.hours(cfg.schedule_hours)
        self.alarm_windows = cfg.alarm_windows
        props.key.admit_eventbridge_dead_letters()  # the rule's dead letters share the function's queue
        self.function = RoadsegFunction(self, "Function", RoadsegFunctionProps(
            handler="drift_monitor.handler",
            description="Drift per camera: the last window's signals against the serving model's reference profile",
            function=cfg.function, environment=drift_settings(config, props.serving_parameter).to_env(),
            key=props.key, log_retention_days=config.retention.log_group_days, retain=config.retain,
            # No retries of the scheduled invocation: the next scheduled run judges again anyway (a retried run of the
            # same window adds nothing), and a failure that outlives the retries would dead-letter every period.
            # Errors still reach the Errors alarm; a missing reference profile is not an error (ReferenceMissing).
            no_vpc_reason=FUNCTION_NO_VPC, retry_attempts=0))

        parameter = stack.format_arn(service="ssm", resource="parameter",
                                     resource_name=props.serving_parameter.lstrip("/"))
        self.function.allow(iam.PolicyStatement(sid="ReadServingPackage", actions=["ssm:GetParameter"],
                                                resources=[parameter]))
        packages = stack.format_arn(service="sagemaker", resource="model-package",
                                    resource_name=f"{props.model_package_group}/*")
        self.function.allow(iam.PolicyStatement(
            sid="DescribeServingPackage", actions=["sagemaker:DescribeModelPackage"], resources=[packages]),
            reasons={packages: "Versions of this project's model package group only."})
        self.function.grant_bucket_read(props.buckets.artifacts, ARTIFACTS.pipelines,
                                        reason="Reference profiles lie next to evaluation.json under pipelines/.")
        self.function.allow(iam.PolicyStatement(
            sid="ReadSignalMetrics", actions=["cloudwatch:GetMetricData", "cloudwatch:ListMetrics"], resources=["*"]),
            reasons={"*": f"GetMetricData and ListMetrics support no resource-level permissions ({CW_IAM_DOC})."})
        self.function.allow(iam.PolicyStatement(
            sid="PublishDriftMetrics", actions=["cloudwatch:PutMetricData"], resources=["*"],
            conditions={"StringEquals": {"cloudwatch:namespace": DRIFT_NAMESPACE}}),
            reasons={"*": "PutMetricData supports no resource-level permissions; the cloudwatch:namespace condition "
                          f"limits it to {DRIFT_NAMESPACE} ({CW_NAMESPACE_CONDITION_DOC})."})

        self.rule = events.Rule(self, "Schedule", schedule=drift_schedule(cfg.drift_schedule),
                                description=f"roadseg {config.prefix}: drift per camera, {cfg.drift_schedule}")
        self.rule.add_target(targets.LambdaFunction(
            self.function, dead_letter_queue=self.function.failed_invocations, retry_attempts=2,
            max_event_age=cdk.Duration.hours(1)))

        env = {ENVIRONMENT_DIMENSION: config.prefix}
        # Every camera the function judges (the configured ones and the catch-all "unknown") has a drift alarm; the
        # monitored ones (monitoring.cameras) also anomaly alarms and a dashboard row.
        self.judged_cameras = [*config.signal_cameras, UNKNOWN_CAMERA]
        self.cameras = list(config.monitored_cameras)
        self.camera_alarms: list[cw.Alarm] = []
        self.anomaly_alarms: list[cw.AnomalyDetectionAlarm] = []
        for index, camera in enumerate(self.judged_cameras):
            dims = {**env, CAMERA_DIMENSION: camera}
            self.camera_alarms.append(self._drift_alarm(
                f"Drift{index}", metric(DRIFT_NAMESPACE, DRIFT_DETECTED, dims, statistic="Maximum",
                                        period=self.period),
                f"Camera {camera} drifted from the serving model's reference for {cfg.alarm_windows} windows in a "
                "row: `roadseg monitor status` (docs/drift.md)", alarm_name=drift_alarm_name(config.prefix, camera)))
            if camera not in self.cameras:
                continue
            for signal in cfg.anomaly_signals:
                self.anomaly_alarms.append(cw.AnomalyDetectionAlarm(
                    self, f"Anomaly{index}{SIGNAL_METRICS[signal]}",
                    metric=metric(SIGNAL_METRICS_NAMESPACE, SIGNAL_METRICS[signal], dims, statistic="Average",
                                  period=cdk.Duration.hours(1)),
                    std_devs=cfg.anomaly_band_std, evaluation_periods=cfg.alarm_windows,
                    comparison_operator=cw.ComparisonOperator.LESS_THAN_LOWER_OR_GREATER_THAN_UPPER_THRESHOLD,
                    treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
                    alarm_description=f"Camera {camera}: hourly mean {signal} outside its anomaly-detection band "
                                      f"({ANOMALY_DOC}) for {cfg.alarm_windows} hours"))

        # "Some camera drifted alarm_windows windows in a row": any per-camera drift alarm in ALARM. Not an alarm on
        # DriftedCameras (a count per run): different cameras drifting in successive windows would trip it, and
        # metric math has no per-series "N in a row" (MAX over the cameras' series has the same flaw).
        # By name, not ARN: AlarmRule takes 10,240 characters (contracts.signal_metrics.MAX_COMPOSITE_ALARM_RULE_CHARS);
        # the dependency makes CloudFormation create the named alarms first.
        self.any_camera = cw.CompositeAlarm(
            self, "DriftedCameras", alarm_rule=cw.AlarmRule.from_string(any_camera_alarm_rule(
                drift_alarm_name(config.prefix, camera) for camera in self.judged_cameras)),
            alarm_description=f"A camera of {config.prefix} drifted from the serving model's reference for "
                              f"{cfg.alarm_windows} windows in a row: `roadseg monitor status` names it "
                              "(docs/drift.md)")
        self.any_camera.node.add_dependency(*self.camera_alarms)
        self.reference_missing = cw.Alarm(
            self, "ReferenceMissing",
            metric=metric(DRIFT_NAMESPACE, REFERENCE_MISSING, env, statistic="Maximum", period=self.period),
            threshold=1, evaluation_periods=1,
            comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cw.TreatMissingData.IGNORE,
            alarm_description="The serving model package has no usable reference profile: drift is not judged. "
                              "Approve a package from a newer pipeline run, or attach a profile "
                              "(CustomerMetadataProperties ReferenceProfile, docs/drift.md)")
        self.errors = self.function.errors_alarm(description="The drift monitor failed: drift goes unmeasured")
        self.dlq_depth = self.function.dlq_depth_alarm(
            description="Drift checks that failed every retry (or schedule events not delivered)")
        # A schedule that stopped (rule disabled, function deleted) fails silently: no invocation in two periods.
        self.not_running = cw.Alarm(
            self, "NotRunning",
            metric=metric("AWS/Lambda", "Invocations", {"FunctionName": self.function.function_name},
                          statistic="Sum", period=cdk.Duration.hours(2 * cfg.schedule_hours)),
            threshold=1, evaluation_periods=1, comparison_operator=cw.ComparisonOperator.LESS_THAN_THRESHOLD,
            treat_missing_data=cw.TreatMissingData.BREACHING,
            alarm_description="The drift monitor did not run for two schedule periods")
        self.alarms: list[cw.AlarmBase] = [self.any_camera, *self.camera_alarms, *self.anomaly_alarms,
                                           self.reference_missing, self.errors, self.dlq_depth, self.not_running]
        props.monitoring.publish(*self.alarms)
        self._dashboard(props.monitoring.dashboard, config)

    def _drift_alarm(self, construct_id: str, drift: cw.Metric, description: str,
                     alarm_name: str | None = None) -> cw.Alarm:
        # IGNORE, not NOT_BREACHING: every run publishes 0 or 1, but stamped at the window's end and published at
        # least 15 minutes later (monitoring.job SETTLE), so the newest period is empty until the run; counting it as
        # good would flip the alarm to OK and back each period (alarms-and-missing-data.html: notBreaching suits
        # metrics emitted only on error). A stopped schedule is the NotRunning alarm's.
        windows = self.alarm_windows
        return cw.Alarm(self, construct_id, metric=drift, threshold=1, evaluation_periods=windows,
                        datapoints_to_alarm=windows, alarm_name=alarm_name,
                        comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                        treat_missing_data=cw.TreatMissingData.IGNORE, alarm_description=description)

    def _dashboard(self, dashboard: cw.Dashboard, config: EnvironmentConfig) -> None:
        """A text header, the drift alarms, then one row per camera: drift, PSI of its signals, signal means."""
        dashboard.add_widgets(cw.TextWidget(markdown="## Drift per camera (docs/drift.md)", width=24, height=1))
        dashboard.add_widgets(cw.AlarmStatusWidget(title="Drift alarms", alarms=self.alarms, width=24))
        env = {ENVIRONMENT_DIMENSION: config.prefix}
        dashboard.add_widgets(cw.GraphWidget(title="Cameras judged drifted per run", width=24, height=4, left=[
            metric(DRIFT_NAMESPACE, DRIFTED_CAMERAS, env, statistic="Maximum", period=self.period)]))
        signals = list(dict.fromkeys([*DASHBOARD_SIGNALS, *config.monitoring.anomaly_signals]))
        hour = cdk.Duration.hours(1)
        for camera in self.cameras:
            dims = {**env, CAMERA_DIMENSION: camera}
            dashboard.add_widgets(
                cw.GraphWidget(title=f"{camera}: drift", width=6, left=[
                    metric(DRIFT_NAMESPACE, DRIFT_DETECTED, dims, statistic="Maximum", period=self.period),
                    metric(DRIFT_NAMESPACE, DRIFTED_SIGNALS, dims, statistic="Maximum", period=self.period)]),
                cw.GraphWidget(title=f"{camera}: PSI per signal", width=6, left=[
                    metric(DRIFT_NAMESPACE, SIGNAL_PSI, {**dims, "Signal": s}, statistic="Maximum",
                           period=self.period) for s in signals]),
                cw.GraphWidget(title=f"{camera}: signal means (hourly)", width=12, left=[
                    metric(SIGNAL_METRICS_NAMESPACE, SIGNAL_METRICS[s], dims, statistic="Average", period=hour)
                    for s in signals if s != "sharpness"],
                    right=[metric(SIGNAL_METRICS_NAMESPACE, SIGNAL_METRICS["sharpness"], dims, statistic="Average",
                                  period=hour)]))
