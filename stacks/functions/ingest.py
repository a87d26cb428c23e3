"""Ingest: camera frames under incoming/ of the inference and datasets buckets -> S3 notification -> queue
(retries, then a dead-letter queue) -> this function, which validates and resizes them and submits them to the
asynchronous endpoint."""

from __future__ import annotations

from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_notifications as s3n
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from contracts.lambda_env import PreprocessorEnvironment
from contracts.layout import DATASETS, INFERENCE
from envconfig.config import EnvironmentConfig
from stacks.bucket_set import SharedBuckets
from stacks.compliance import acknowledge, acknowledge_all_packs
from stacks.functions.preprocessor import preprocessor_function_props
from stacks.functions.roadseg_function import RoadsegFunction, encrypted_queue
from stacks.operations_key import OperationsKey


@dataclass(frozen=True)
class IngestFunctionProps:
    config: EnvironmentConfig
    environment: PreprocessorEnvironment  # shared by the preprocessors; the function sets its service name
    buckets: SharedBuckets  # frames arrive in the inference and datasets buckets; outputs go to inference
    key: OperationsKey  # the queues, the log group


class IngestFunction(RoadsegFunction):
    """Also creates, next to itself, ``<id>DeadLetters`` and ``<id>Queue`` (see ``roadseg_function``)."""

    def __init__(self, scope: Construct, construct_id: str, props: IngestFunctionProps) -> None:
        cfg, buckets = props.config.preprocessing, props.buckets
        super().__init__(scope, construct_id, preprocessor_function_props(
            props.config, props.environment, props.key, module="ingest", function=cfg.ingest,
            description="Validates camera frames and submits them to the async endpoint"))

        # S3 event -> queue (retries, then DLQ) -> ingest, one batch with partial-failure reporting.
        self.dead_letters = encrypted_queue(scope, f"{construct_id}DeadLetters", props.key)
        self.queue = encrypted_queue(
            scope, f"{construct_id}Queue", props.key,
            dead_letter=sqs.DeadLetterQueue(queue=self.dead_letters, max_receive_count=cfg.max_receive_count),
            visibility_timeout=cdk.Duration.seconds(6 * cfg.ingest.timeout_seconds))
        # S3 encrypts its notifications with the queue's key: SqsDestination adds the key-policy statement for
        # s3.amazonaws.com itself, because the key belongs to this stack.
        sources_by_bucket = ((buckets.inference, INFERENCE.incoming), (buckets.datasets, DATASETS.incoming))
        for bucket, incoming in sources_by_bucket:
            bucket.add_event_notification(s3.EventType.OBJECT_CREATED, s3n.SqsDestination(self.queue),
                                          s3.NotificationKeyFilter(prefix=incoming))
        acknowledge_notification_handler(cdk.Stack.of(self), [bucket for bucket, _ in sources_by_bucket])
        self.add_event_source(sources.SqsEventSource(
            self.queue, batch_size=cfg.batch_size, report_batch_item_failures=True,
            max_batching_window=cdk.Duration.seconds(5), max_concurrency=cfg.ingest_max_concurrency))

        self.grant_bucket_read(buckets.inference, INFERENCE.incoming,
                               reason="Frames arrive under incoming/; the function reads them only.")
        self.grant_bucket_read(buckets.datasets, DATASETS.incoming,
                               reason="Frames may also land in the datasets bucket.")
        self.grant_bucket_read_write(buckets.inference, INFERENCE.async_input,
                                     reason="Preprocessed frames for the async endpoint.")
        self.grant_bucket_put(buckets.inference, INFERENCE.quarantine,
                              reason="Rejected frames and their reason documents.")
        # InvokeEndpointAsync: Preprocessors grants it with AsyncEndpoint.grant_invoke (the endpoint owns its ARN).

        self.errors = self.errors_alarm()
        self.dead_letters_depth = self.dlq_depth_alarm(self.dead_letters)
        self.alarms = [self.errors, self.dead_letters_depth]


def acknowledge_notification_handler(stack: cdk.Stack, buckets: list[s3.IBucket]) -> None:
    """CDK's bucket-notification custom resource (one Lambda per stack, deploy-time only)."""
    handler = next(c for c in stack.node.children if c.node.id.startswith("BucketNotificationsHandler"))
    acknowledge(handler, "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AWSLambdaBasicExecutionRole]",
                "CDK's notification custom resource runs only at deploy time and needs only its own logs.")
    for bucket in buckets:
        acknowledge_all_packs(bucket.node.find_child("Notifications"), "IAMNoInlinePolicy",
                              "CDK-generated policy allowing s3:PutBucketNotification on this one bucket.")
