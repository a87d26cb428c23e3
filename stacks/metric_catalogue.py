"""Every CloudWatch metric roadseg alarms on, scales on or charts: namespace, name and the dimension sets AWS
publishes it with, with the AWS page that says so.

An alarm on a dimension set the service does not publish stays in INSUFFICIENT_DATA (or OK with
``notBreaching``) forever: it never fires, and a blue/green rollback that waits on it never rolls back. So the
stacks build every metric through :func:`metric`, which refuses a dimension set that is not listed here, and the
integration contracts (``stacks/checks/service_contracts``) check every alarm, scaling policy and dashboard widget of
the synthesized templates against the same catalogue.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from contracts.lambda_env import METRICS_NAMESPACE
from contracts.signal_metrics import (
    EMF_SPECIFICATION_DOC,
    FRAMES_QUARANTINED_METRIC,
    FRAMES_RECEIVED_METRIC,
    QUARANTINE_DIMENSIONS,
    SIGNAL_DIMENSIONS,
    SIGNAL_METRICS,
    SIGNAL_METRICS_NAMESPACE,
)
from monitoring.metrics import DRIFT_METRICS, DRIFT_NAMESPACE

SAGEMAKER_ENDPOINT_METRICS_DOC = "https://docs.aws.amazon.com/sagemaker/latest/dg/monitoring-cloudwatch.html"
SAGEMAKER_ASYNC_METRICS_DOC = "https://docs.aws.amazon.com/sagemaker/latest/dg/async-inference-monitor.html"
SAGEMAKER_PIPELINE_METRICS_DOC = "https://docs.aws.amazon.com/sagemaker/latest/dg/monitoring-cloudwatch.html"
LAMBDA_METRICS_DOC = "https://docs.aws.amazon.com/lambda/latest/dg/monitoring-metrics-types.html"
SQS_METRICS_DOC = "https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-available-cloudwatch-metrics.html"
POWERTOOLS_METRICS_DOC = "https://docs.powertools.aws.dev/lambda/python/latest/core/metrics/"
DRIFT_METRICS_DOC = "monitoring/metrics.py (roadseg publishes them itself with PutMetricData)"

ENDPOINT = frozenset({"EndpointName"})
ENDPOINT_VARIANT = frozenset({"EndpointName", "VariantName"})


@dataclass(frozen=True)
class MetricSpec:
    """One metric as its service publishes it. ``dimension_sets``: each set of dimension names it is published
    with (an alarm must use exactly one of them)."""

    namespace: str
    name: str
    dimension_sets: tuple[frozenset[str], ...]
    doc: str
    unit_note: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return self.namespace, self.name

    def check_dimensions(self, dimensions: Mapping[str, object] | frozenset[str]) -> None:
        names = frozenset(dimensions)
        if names not in self.dimension_sets:
            allowed = " or ".join("{" + ", ".join(sorted(s)) + "}" for s in self.dimension_sets)
            raise ValueError(f"{self.namespace} {self.name} is not published with the dimensions "
                             f"{{{', '.join(sorted(names))}}}; AWS publishes it with {allowed} ({self.doc})")


def _specs(namespace: str, names: str, dimension_sets: tuple[frozenset[str], ...], doc: str) -> list[MetricSpec]:
    return [MetricSpec(namespace, name, dimension_sets, doc) for name in names.split()]


CATALOGUE: dict[tuple[str, str], MetricSpec] = {spec.key: spec for spec in [
    # Real-time (and async) endpoint invocation metrics: per endpoint and variant.
    *_specs("AWS/SageMaker", "Invocations Invocation4XXErrors Invocation5XXErrors InvocationsPerInstance "
            "ModelLatency OverheadLatency", (ENDPOINT_VARIANT,), SAGEMAKER_ENDPOINT_METRICS_DOC),
    # Async endpoint queue metrics: "Dimensions: EndpointName" only.
    *_specs("AWS/SageMaker", "ApproximateBacklogSize ApproximateBacklogSizePerInstance ApproximateAgeOfOldestRequest "
            "HasBacklogWithoutCapacity", (ENDPOINT,), SAGEMAKER_ASYNC_METRICS_DOC),
    # Async endpoint processing metrics: "Dimensions: EndpointName, VariantName".
    *_specs("AWS/SageMaker", "RequestDownloadFailures ResponseUploadFailures NotificationFailures InvocationFailures "
            "InvocationsProcesssed", (ENDPOINT_VARIANT,), SAGEMAKER_ASYNC_METRICS_DOC),
    # Pipeline execution metrics, per pipeline.
    *_specs("AWS/Sagemaker/ModelBuildingPipeline", "ExecutionStarted ExecutionFailed ExecutionSucceeded "
            "ExecutionStopped ExecutionDuration", (frozenset({"PipelineName"}),), SAGEMAKER_PIPELINE_METRICS_DOC),
    *_specs("AWS/Lambda", "Invocations Errors Throttles Duration ConcurrentExecutions",
            (frozenset({"FunctionName"}), frozenset({"FunctionName", "Resource"})), LAMBDA_METRICS_DOC),
    *_specs("AWS/SQS", "ApproximateNumberOfMessagesVisible ApproximateAgeOfOldestMessage NumberOfMessagesSent",
            (frozenset({"QueueName"}),), SQS_METRICS_DOC),
    # roadseg's own metrics (Powertools EMF adds the `service` dimension to every metric it flushes).
    *_specs(METRICS_NAMESPACE, "FramesQuarantinedByReason", (frozenset({"service", "Reason"}),),
            POWERTOOLS_METRICS_DOC),
    # The per-frame signals and per-camera counts (contracts.signal_metrics), written by the postprocess and ingest
    # functions as EMF documents with exactly these dimensions (tests/lambda check the documents they print).
    *_specs(SIGNAL_METRICS_NAMESPACE, " ".join([*SIGNAL_METRICS.values(), FRAMES_RECEIVED_METRIC]),
            (frozenset(SIGNAL_DIMENSIONS),), EMF_SPECIFICATION_DOC),
    *_specs(SIGNAL_METRICS_NAMESPACE, FRAMES_QUARANTINED_METRIC, (frozenset(QUARANTINE_DIMENSIONS),),
            EMF_SPECIFICATION_DOC),
    # The drift monitor's own metrics (monitoring/metrics.py publishes them with PutMetricData, one dimension set each).
    *[MetricSpec(DRIFT_NAMESPACE, name, (frozenset(dims),), DRIFT_METRICS_DOC) for name, dims in DRIFT_METRICS.items()],
]}


def spec(namespace: str, name: str) -> MetricSpec:
    try:
        return CATALOGUE[(namespace, name)]
    except KeyError:
        raise ValueError(f"metric {namespace} {name} is not in the catalogue (stacks/metric_catalogue.py): add it with "
                         "the dimension sets and the AWS page that documents it") from None


def metric(namespace: str, name: str, dimensions: Mapping[str, str], *, statistic: str, period=None):
    """A ``cloudwatch.Metric`` whose namespace, name and dimension names are in the catalogue."""
    import aws_cdk as cdk
    from aws_cdk import aws_cloudwatch as cw

    spec(namespace, name).check_dimensions(dimensions)
    return cw.Metric(namespace=namespace, metric_name=name, dimensions_map=dict(dimensions), statistic=statistic,
                     period=period or cdk.Duration.minutes(1))
