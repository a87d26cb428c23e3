"""Lambda preprocessors: camera frames in (S3 -> SQS -> ingest), results out (SNS -> postprocess), and an
IAM-authenticated HTTPS front for the real-time endpoint."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_notifications as s3n
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from contracts import naming
from contracts.lambda_env import SERVICE_NAMES, PreprocessorEnvironment
from contracts.layout import DATASETS, INFERENCE
from stacks.bucket_set import SharedBuckets
from stacks.compliance import acknowledge, acknowledge_all_packs, acknowledge_policy
from stacks.config import EnvironmentConfig, FunctionConfig
from stacks.lambda_code import RUNTIME, acknowledge_unreserved_concurrency, function_log_group, lambda_code
from stacks.metric_catalogue import metric
from stacks.operations_key import OperationsKey
from training.classes import ClassScheme

NO_VPC = ("The function talks only to regional AWS APIs (S3, SageMaker runtime) through their public endpoints "
          "with IAM auth; a VPC would need NAT or interface endpoints without narrowing access.")


def preprocessor_environment(config: EnvironmentConfig, scheme: ClassScheme, *, inference_bucket: str,
                             async_endpoint_name: str, realtime_endpoint_name: str,
                             model_package_version: str | None = None) -> PreprocessorEnvironment:
    """The environment every preprocessor function gets (pure: the local rehearsal builds it the same way).

    The bucket name and model package version may be CDK tokens; each function adds its own ``service_name``.
    """
    cfg = config.preprocessing
    return PreprocessorEnvironment(
        inference_bucket=inference_bucket,
        async_input_prefix=INFERENCE.async_input, results_prefix=INFERENCE.results,
        quarantine_prefix=INFERENCE.quarantine, failures_prefix=INFERENCE.failures,
        async_endpoint_name=async_endpoint_name, realtime_endpoint_name=realtime_endpoint_name,
        class_names=tuple(scheme.names), class_colors=tuple(tuple(c.color) for c in scheme.classes),
        ignore_index=scheme.ignore_index,
        target_width=cfg.target_width, target_height=cfg.target_height,
        roi=tuple(cfg.roi) if cfg.roi else None,
        max_input_bytes=cfg.max_input_bytes, max_input_pixels=cfg.max_input_pixels,
        jpeg_quality=cfg.jpeg_quality, key_pattern=cfg.key_pattern, vru_min_pixels=cfg.vru_min_pixels,
        write_overlay=cfg.write_overlay, restore_original_size=cfg.restore_original_size,
        model_package_version=model_package_version,
    )


@dataclass(frozen=True)
class PreprocessorsProps:
    config: EnvironmentConfig
    scheme: ClassScheme
    buckets: SharedBuckets
    key: OperationsKey  # queues and log groups
    realtime_endpoint_name: str
    async_endpoint_name: str
    success_topic: sns.ITopic
    error_topic: sns.ITopic
    model_package_version: str | None = None  # a token: the version of the package being served


class Preprocessors(Construct):
    def __init__(self, scope: Construct, construct_id: str, props: PreprocessorsProps) -> None:
        super().__init__(scope, construct_id)
        self.props = props
        cfg, buckets = props.config.preprocessing, props.buckets
        stack = cdk.Stack.of(self)

        # Frames: S3 event -> queue (retries, then DLQ) -> ingest, one batch with partial-failure reporting.
        self.ingest_dlq = self._queue("IngestDeadLetters", dead_letter=None)
        self.ingest_queue = self._queue("IngestQueue", dead_letter=sqs.DeadLetterQueue(
            queue=self.ingest_dlq, max_receive_count=cfg.max_receive_count),
            visibility=cdk.Duration.seconds(6 * cfg.ingest.timeout_seconds))
        # S3 encrypts its notifications with the queue's key: SqsDestination adds the key-policy statement for
        # s3.amazonaws.com itself, because the key belongs to this stack.
        for bucket in (buckets.inference, buckets.datasets):
            bucket.add_event_notification(s3.EventType.OBJECT_CREATED, s3n.SqsDestination(self.ingest_queue),
                                          s3.NotificationKeyFilter(prefix=INFERENCE.incoming))

        self.ingest = self._function("Ingest", "ingest", cfg.ingest,
                                     "Validates camera frames and submits them to the async endpoint")
        self.ingest.add_event_source(sources.SqsEventSource(
            self.ingest_queue, batch_size=cfg.batch_size, report_batch_item_failures=True,
            max_batching_window=cdk.Duration.seconds(5), max_concurrency=cfg.ingest_max_concurrency))
        for bucket in (buckets.inference, buckets.datasets):
            bucket.grant_read(self.ingest, f"{INFERENCE.incoming}*")
        buckets.inference.grant_read_write(self.ingest, f"{INFERENCE.async_input}*")
        buckets.inference.grant_put(self.ingest, f"{INFERENCE.quarantine}*")
        self.ingest.add_to_role_policy(iam.PolicyStatement(
            actions=["sagemaker:InvokeEndpointAsync"],
            resources=[stack.format_arn(service="sagemaker", resource="endpoint",
                                        resource_name=props.async_endpoint_name)]))

        # Results: async success/error notifications -> postprocess.
        self.postprocess = self._function("Postprocess", "postprocess", cfg.postprocess,
                                          "Turns async masks into result JSON (and overlays); records failures")
        self.postprocess_dlq = self._queue("PostprocessDeadLetters", dead_letter=None)
        props.key.admit_sns_dead_letters()  # SNS itself moves undeliverable notifications into the encrypted DLQ
        for topic in (props.success_topic, props.error_topic):
            topic.add_subscription(subs.LambdaSubscription(self.postprocess, dead_letter_queue=self.postprocess_dlq))
        buckets.inference.grant_read(self.postprocess, f"{INFERENCE.async_output}*")
        buckets.inference.grant_read(self.postprocess, f"{INFERENCE.async_failures}*")
        buckets.inference.grant_read(self.postprocess, f"{INFERENCE.async_input}*")
        buckets.inference.grant_put(self.postprocess, f"{INFERENCE.results}*")
        buckets.inference.grant_put(self.postprocess, f"{INFERENCE.failures}*")

        # Real-time: one frame over HTTPS (IAM auth) -> real-time endpoint -> mask + summary.
        self.realtime = self._function("RealtimeFront", "realtime", cfg.realtime,
                                       "Preprocesses one frame and returns its mask from the real-time endpoint")
        self.realtime_url = self.realtime.add_function_url(auth_type=lambda_.FunctionUrlAuthType.AWS_IAM)
        self.realtime_invoke_policy = self._invoke_url_policy()
        self.realtime.add_to_role_policy(iam.PolicyStatement(
            actions=["sagemaker:InvokeEndpoint"],
            resources=[stack.format_arn(service="sagemaker", resource="endpoint",
                                        resource_name=props.realtime_endpoint_name)]))

        self.functions = [self.ingest, self.postprocess, self.realtime]
        self.alarms = [self._errors_alarm(fn) for fn in self.functions] + [
            self._depth_alarm(q) for q in (self.ingest_dlq, self.postprocess_dlq)]
        self._acknowledge(stack)
        self._acknowledge_notification_handler(stack, [buckets.inference, buckets.datasets])
        cdk.CfnOutput(stack, naming.REALTIME_FRONT_URL, value=self.realtime_url.url,
                      description="POST a JPEG/PNG frame (SigV4-signed, service lambda) for its mask")

    def environment(self) -> PreprocessorEnvironment:
        props = self.props
        return preprocessor_environment(
            props.config, props.scheme, inference_bucket=props.buckets.inference.bucket_name,
            async_endpoint_name=props.async_endpoint_name, realtime_endpoint_name=props.realtime_endpoint_name,
            model_package_version=props.model_package_version)

    def _queue(self, construct_id: str, *, dead_letter: sqs.DeadLetterQueue | None,
               visibility: cdk.Duration | None = None) -> sqs.Queue:
        queue = sqs.Queue(self, construct_id, encryption=sqs.QueueEncryption.KMS,
                          encryption_master_key=self.props.key.key, enforce_ssl=True,
                          retention_period=cdk.Duration.days(14), dead_letter_queue=dead_letter,
                          visibility_timeout=visibility)
        if dead_letter is None:
            acknowledge(queue, "AwsSolutions-SQS3", "This queue is itself a dead-letter queue.")
        return queue

    def _function(self, construct_id: str, module: str, fn: FunctionConfig, description: str) -> lambda_.Function:
        config = self.props.config
        dead_letters = self._queue(f"{construct_id}FailedInvocations", dead_letter=None)
        environment = dataclasses.replace(self.environment(), service_name=SERVICE_NAMES[module])
        function = lambda_.Function(
            self, construct_id, runtime=RUNTIME, code=lambda_code(), handler=f"{module}.handler",
            description=description, memory_size=fn.memory_mb, timeout=cdk.Duration.seconds(fn.timeout_seconds),
            reserved_concurrent_executions=fn.reserved_concurrency, environment=environment.to_env(),
            log_group=function_log_group(self, f"{construct_id}Logs", config, self.props.key),
            tracing=lambda_.Tracing.ACTIVE if config.preprocessing.tracing else lambda_.Tracing.DISABLED,
            dead_letter_queue=dead_letters,
        )
        # Lambda sends failed events to the DLQ with the function's role: sqs:SendMessage (added by CDK) is not
        # enough for an encrypted queue, the role also needs the key's GenerateDataKey and Decrypt.
        # https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html
        self.props.key.grant_send_to_queues(function)
        acknowledge_all_packs(function, "LambdaInsideVPC", NO_VPC)
        if fn.reserved_concurrency is None:
            acknowledge_unreserved_concurrency(function)
        return function

    def _invoke_url_policy(self) -> iam.ManagedPolicy:
        """What a caller of the IAM-authenticated function URL needs. Since October 2025 a new function URL
        needs both lambda:InvokeFunctionUrl and lambda:InvokeFunction
        (https://docs.aws.amazon.com/lambda/latest/dg/urls-auth.html)."""
        policy = iam.ManagedPolicy(
            self, "RealtimeFrontInvokePolicy",
            description=f"{self.props.config.prefix}: call the real-time front's function URL (SigV4)",
            statements=[
                iam.PolicyStatement(sid="InvokeTheFunctionUrl", actions=["lambda:InvokeFunctionUrl"],
                                    resources=[self.realtime.function_arn],
                                    conditions={"StringEquals": {"lambda:FunctionUrlAuthType": "AWS_IAM"}}),
                iam.PolicyStatement(sid="InvokeTheFunction", actions=["lambda:InvokeFunction"],
                                    resources=[self.realtime.function_arn]),
            ])
        cdk.CfnOutput(cdk.Stack.of(self), naming.REALTIME_FRONT_INVOKE_POLICY_ARN, value=policy.managed_policy_arn,
                      description="Attach to the roles or users that call the real-time front")
        return policy

    def grant_invoke_url(self, grantee: iam.IGrantable) -> None:
        """Let ``grantee`` call the real-time front's function URL (both actions, see _invoke_url_policy)."""
        self.realtime.grant_invoke_url(grantee)
        self.realtime.grant_invoke(grantee)

    def _errors_alarm(self, function: lambda_.Function) -> cw.Alarm:
        return cw.Alarm(self, f"{function.node.id}Errors",
                        metric=metric("AWS/Lambda", "Errors", {"FunctionName": function.function_name},
                                      statistic="Sum", period=cdk.Duration.minutes(5)),
                        threshold=1, evaluation_periods=1, treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
                        comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                        alarm_description=f"{function.node.id} function errors")

    def _depth_alarm(self, queue: sqs.Queue) -> cw.Alarm:
        return cw.Alarm(self, f"{queue.node.id}Depth",
                        metric=metric("AWS/SQS", "ApproximateNumberOfMessagesVisible", {"QueueName": queue.queue_name},
                                      statistic="Maximum", period=cdk.Duration.minutes(5)),
                        threshold=1, evaluation_periods=1,
                        comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                        alarm_description=f"Messages in {queue.node.id}: replay after fixing the cause (README)")

    @staticmethod
    def _acknowledge_notification_handler(stack: cdk.Stack, buckets: list[s3.IBucket]) -> None:
        """CDK's bucket-notification custom resource (one Lambda per stack, deploy-time only)."""
        handler = next(c for c in stack.node.children if c.node.id.startswith("BucketNotificationsHandler"))
        acknowledge(handler, "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                    "AWSLambdaBasicExecutionRole]",
                    "CDK's notification custom resource runs only at deploy time and needs only its own logs.")
        for bucket in buckets:
            acknowledge_all_packs(bucket.node.find_child("Notifications"), "IAMNoInlinePolicy",
                                  "CDK-generated policy allowing s3:PutBucketNotification on this one bucket.")

    def _acknowledge(self, stack: cdk.Stack) -> None:
        prefix = self.props.buckets.export_prefix
        grants = ["s3:GetObject*", "s3:GetBucket*", "s3:List*", "s3:Abort*", "s3:DeleteObject*",
                  "kms:GenerateDataKey*", "kms:ReEncrypt*"]
        bucket = f"{prefix}:InferenceBucketArn"
        per_function = {
            self.ingest: {
                f"{bucket}/{INFERENCE.incoming}*": "Frames arrive under incoming/; the function reads them only.",
                f"{prefix}:DatasetsBucketArn/{DATASETS.incoming}*": "Frames may also land in the datasets bucket.",
                f"{bucket}/{INFERENCE.async_input}*": "Preprocessed frames for the async endpoint.",
                f"{bucket}/{INFERENCE.quarantine}*": "Rejected frames and their reason documents.",
            },
            self.postprocess: {
                f"{bucket}/{INFERENCE.async_output}*": "Masks written by the async endpoint.",
                f"{bucket}/{INFERENCE.async_failures}*": "Failure payloads written by the async endpoint.",
                f"{bucket}/{INFERENCE.async_input}*": "Frame metadata and pixels for overlays.",
                f"{bucket}/{INFERENCE.results}*": "Result documents and overlays.",
                f"{bucket}/{INFERENCE.failures}*": "Failure records of frames the endpoint could not segment.",
            },
            self.realtime: {},
        }
        for function, resources in per_function.items():
            acknowledge_policy(function.role, actions=[a for a in grants if resources], resources=resources)
            acknowledge(function.role, "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/"
                        "service-role/AWSLambdaBasicExecutionRole]",
                        "Grants only CreateLogStream/PutLogEvents, which every function needs for its own log group.")
