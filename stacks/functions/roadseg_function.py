"""RoadsegFunction: a Lambda function of roadseg with what every one of them needs, built in one place.

The shared code asset (``stacks.lambda_code``), a KMS-encrypted log group, an encrypted queue for failed
asynchronous invocations (with the key grant Lambda needs to write into it), reserved concurrency only when
configured, the compliance acknowledgments every function needs, ``metric_*``/alarm helpers whose metrics come
from the catalogue, and ``grant_*`` methods that acknowledge the cdk-nag findings of exactly what they grant.

Companions are siblings: the log group, the failed-invocation queue, the alarms and whatever a subclass adds are
created next to the function, named after it (``<id>Logs``, ``<id>FailedInvocations``, ``<id>Errors``, ...), not
inside it. That keeps the logical ids the stacks had before these constructs existed, so no log group, queue or
alarm is replaced on update; the rollout passes its historical ids (``log_group_id``, ``dead_letter_queue_id``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from contracts.lambda_env import EnvironmentCodec
from envconfig.config import FunctionConfig
from stacks.compliance import acknowledge, acknowledge_all_packs, acknowledge_inline_policy, acknowledged
from stacks.lambda_code import RUNTIME, acknowledge_unreserved_concurrency, function_log_group, lambda_code
from stacks.metric_catalogue import metric
from stacks.network import FunctionPlacement, acknowledge_vpc_function, function_placement
from stacks.operations_key import OperationsKey

BASIC_EXECUTION_ROLE_FINDING = ("AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                                "AWSLambdaBasicExecutionRole]")
ALARM_PERIOD = cdk.Duration.minutes(5)


@dataclass(frozen=True)
class RoadsegFunctionProps:
    handler: str  # "<module>.handler" of the shared code asset (lambda/)
    description: str
    function: FunctionConfig  # memory, timeout, reserved concurrency (None: none reserved)
    environment: EnvironmentCodec | Mapping[str, str]  # a contracts.lambda_env codec object, or the variables
    key: OperationsKey  # encrypts the log group and the failed-invocation queue
    log_retention_days: int  # a CloudWatch Logs retention (envconfig.config.RetentionConfig.log_group_days)
    retain: bool  # keep the log group when the stack is deleted
    no_vpc_reason: str  # why the function runs outside a VPC (HIPAA/NIST LambdaInsideVPC), when it does
    tracing: bool = False  # X-Ray active tracing
    retry_attempts: int | None = None  # retries of asynchronous invocations (None: Lambda's default, 2)
    # Construct ids of the companions (siblings of the function); None: "<id>Logs", "<id>FailedInvocations".
    log_group_id: str | None = None
    dead_letter_queue_id: str | None = None
    # Isolated-network mode: the private subnets and security groups; None: the stack's (stacks.network
    # place_functions_in), outside that mode none (the function runs in Lambda's own network).
    placement: FunctionPlacement | None = None


def encrypted_queue(scope: Construct, construct_id: str, key: OperationsKey, *,
                    dead_letter: sqs.DeadLetterQueue | None = None,
                    visibility_timeout: cdk.Duration | None = None) -> sqs.Queue:
    """A queue encrypted with the operations key, TLS only, keeping messages 14 days. Without ``dead_letter`` it is
    itself a dead-letter queue (and acknowledged as one)."""
    queue = sqs.Queue(scope, construct_id, encryption=sqs.QueueEncryption.KMS, encryption_master_key=key.key,
                      enforce_ssl=True, retention_period=cdk.Duration.days(14), dead_letter_queue=dead_letter,
                      visibility_timeout=visibility_timeout)
    if dead_letter is None:
        acknowledge(queue, "AwsSolutions-SQS3", "This queue is itself a dead-letter queue.")
    return queue


def _variables(environment: EnvironmentCodec | Mapping[str, str]) -> dict[str, str]:
    return environment.to_env() if isinstance(environment, EnvironmentCodec) else dict(environment)


class RoadsegFunction(lambda_.Function):
    def __init__(self, scope: Construct, construct_id: str, props: RoadsegFunctionProps) -> None:
        fn = props.function
        # Lambda sends events that failed every retry here, with the function's role (granted below).
        dead_letters = encrypted_queue(scope, props.dead_letter_queue_id or f"{construct_id}FailedInvocations",
                                       props.key)
        placement = props.placement or function_placement(scope)
        log_group = function_log_group(scope, props.log_group_id or f"{construct_id}Logs", key=props.key,
                                       retention_days=props.log_retention_days, retain=props.retain)
        super().__init__(
            scope, construct_id, runtime=RUNTIME, code=lambda_code(), handler=props.handler,
            description=props.description, memory_size=fn.memory_mb, timeout=cdk.Duration.seconds(fn.timeout_seconds),
            reserved_concurrent_executions=fn.reserved_concurrency, environment=_variables(props.environment),
            log_group=log_group, tracing=lambda_.Tracing.ACTIVE if props.tracing else lambda_.Tracing.DISABLED,
            dead_letter_queue=dead_letters, retry_attempts=props.retry_attempts,
            vpc=placement.vpc if placement else None, vpc_subnets=placement.subnets if placement else None,
            security_groups=placement.security_groups if placement else None,
        )
        self.failed_invocations = dead_letters
        # sqs:SendMessage (added by CDK) is not enough for an encrypted queue: the role also needs the key's
        # GenerateDataKey and Decrypt (https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html).
        props.key.grant_send_to_queues(self)

        role = self._own_role
        if placement is None:
            acknowledge_all_packs(self, "LambdaInsideVPC", props.no_vpc_reason)
        else:
            acknowledge_vpc_function(self, role)
        if fn.reserved_concurrency is None:
            acknowledge_unreserved_concurrency(self)
        acknowledge(role, BASIC_EXECUTION_ROLE_FINDING,
                    "Grants only CreateLogStream/PutLogEvents, which every function needs for its own log group.")
        acknowledge_inline_policy(role)
        if props.tracing:
            acknowledge(role, "AwsSolutions-IAM5[Resource::*]",
                        "Active tracing: xray:PutTraceSegments and xray:PutTelemetryRecords support no resource-level "
                        "permissions.")

    @property
    def _own_role(self) -> iam.IRole:
        role = self.role
        if role is None:  # CDK always creates one when no role is passed in
            raise TypeError(f"{self.node.path} has no execution role")
        return role

    # -- grants: each records the cdk-nag acknowledgments of exactly what it grants ---------------------------

    def grant_bucket_read(self, bucket: s3.IBucket, prefix: str, *, reason: str) -> iam.Grant:
        """Read objects under ``prefix`` (and decrypt them); ``reason`` justifies the ``<bucket>/<prefix>*``
        resource wildcard, the action wildcards get theirs from ``compliance.GRANT_ACTION_REASONS``."""
        return acknowledged(self._own_role, lambda: bucket.grant_read(self, f"{prefix}*"), reasons=reason)

    def grant_bucket_read_write(self, bucket: s3.IBucket, prefix: str, *, reason: str) -> iam.Grant:
        """Read, write and delete objects under ``prefix`` (see :meth:`grant_bucket_read`)."""
        return acknowledged(self._own_role, lambda: bucket.grant_read_write(self, f"{prefix}*"), reasons=reason)

    def grant_bucket_put(self, bucket: s3.IBucket, prefix: str, *, reason: str) -> iam.Grant:
        """Write objects under ``prefix`` (see :meth:`grant_bucket_read`)."""
        return acknowledged(self._own_role, lambda: bucket.grant_put(self, f"{prefix}*"), reasons=reason)

    def allow(self, statement: iam.PolicyStatement, *, reasons: Mapping[str, str] | None = None) -> None:
        """Add ``statement`` to the role's policy; ``reasons``: for each wildcard resource of the statement (as
        written in it), why it cannot be narrower. A wildcard without a reason fails here, not at synth."""
        acknowledged(self._own_role, lambda: self.add_to_role_policy(statement), reasons=reasons or {})

    # -- metrics and alarms ------------------------------------------------------------------------------------

    def metric_errors(self, *, statistic: str = "Sum", period: cdk.Duration | None = None) -> cw.Metric:
        """Invocations that failed (AWS/Lambda Errors by FunctionName), from the metric catalogue."""
        return metric("AWS/Lambda", "Errors", {"FunctionName": self.function_name}, statistic=statistic,
                      period=period or ALARM_PERIOD)

    def errors_alarm(self, *, description: str | None = None, construct_id: str | None = None) -> cw.Alarm:
        """Any failed invocation in five minutes (``<id>Errors`` next to the function)."""
        return cw.Alarm(self.node.scope, construct_id or f"{self.node.id}Errors",
                        metric=self.metric_errors(), threshold=1, evaluation_periods=1,
                        treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
                        comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                        alarm_description=description or f"{self.node.id} function errors")

    def dlq_depth_alarm(self, queue: sqs.IQueue | None = None, *, description: str | None = None,
                        construct_id: str | None = None) -> cw.Alarm:
        """Any message in a dead-letter queue of this function (default: its failed invocations), as
        ``<queue id>Depth`` next to the function."""
        queue = queue or self.failed_invocations
        return cw.Alarm(self.node.scope, construct_id or f"{queue.node.id}Depth",
                        metric=metric("AWS/SQS", "ApproximateNumberOfMessagesVisible", {"QueueName": queue.queue_name},
                                      statistic="Maximum", period=ALARM_PERIOD),
                        threshold=1, evaluation_periods=1,
                        comparison_operator=cw.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                        alarm_description=description or f"Messages in {queue.node.id}: replay after fixing the cause "
                                                          "(docs/operations.md)")
