"""The inference stack's own customer-managed key, for what AWS services write on roadseg's behalf: Lambda log
groups, the alarm and async-notification topics, the ingest queue and every dead-letter queue.

A service that writes into a destination encrypted with a customer-managed key uses the key itself, so the key
*policy* must admit it (an IAM grant cannot, and a policy statement added to an imported key is silently dropped
by CDK). Keeping this key in the stack that owns those destinations puts each statement next to the resource it
serves; the data key (``BucketSet``) stays for the buckets. Each ``admit_*`` method adds one statement, with the
AWS page that requires it; the integration contracts (``stacks/checks/service_contracts``) check the result.
Pages cited as ``aws_docs.<NAME>`` are in contracts/aws_docs.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct


@dataclass(frozen=True)
class OperationsKeyProps:
    prefix: str
    retain: bool


class OperationsKey(Construct):
    def __init__(self, scope: Construct, construct_id: str, props: OperationsKeyProps) -> None:
        super().__init__(scope, construct_id)
        self.key = kms.Key(
            self, "Key",
            description=f"{props.prefix}: log groups, topics and queues written by AWS services for roadseg",
            enable_key_rotation=True,
            removal_policy=cdk.RemovalPolicy.RETAIN if props.retain else cdk.RemovalPolicy.DESTROY,
            pending_window=cdk.Duration.days(30 if props.retain else 7),
        )
        self._admitted: set[str] = set()

    def _admit(self, sid: str, statement: iam.PolicyStatement) -> None:
        if sid not in self._admitted:  # idempotent: every log group / DLQ may ask
            self._admitted.add(sid)
            self.key.add_to_resource_policy(statement)

    def admit_log_groups(self) -> None:
        """CloudWatch Logs encrypts log events itself, as logs.<region>.amazonaws.com, with the log group's ARN
        in the encryption context (aws_docs.LOGS_KMS_DOC). Log group names are generated (fixed names would collide
        when a retained group outlives its stack), so the condition admits this account's log groups in this
        region."""
        stack = cdk.Stack.of(self)
        self._admit("CloudWatchLogsEncryptLogGroups", iam.PolicyStatement(
            sid="CloudWatchLogsEncryptLogGroups",
            principals=[iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")],
            actions=["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
            resources=["*"],
            conditions={"ArnLike": {"kms:EncryptionContext:aws:logs:arn": stack.format_arn(
                service="logs", resource="log-group", resource_name="*",
                arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME)}},
        ))

    def admit_alarm_notifications(self) -> None:
        """CloudWatch alarm actions publish to an encrypted topic as cloudwatch.amazonaws.com (aws_docs.SNS_KMS_DOC)."""
        self._admit("CloudWatchAlarmsPublishToTopics", self._service_statement(
            "CloudWatchAlarmsPublishToTopics", "cloudwatch.amazonaws.com", ["kms:Decrypt", "kms:GenerateDataKey*"],
            {"StringEquals": {"aws:SourceAccount": cdk.Aws.ACCOUNT_ID}}))

    def admit_event_notifications(self) -> None:
        """EventBridge rules publish to an encrypted topic as events.amazonaws.com, which needs kms:Decrypt and
        kms:GenerateDataKey on the topic's key (https://docs.aws.amazon.com/eventbridge/latest/userguide/
        eb-use-resource-based.html#eb-sns-permissions; no source condition: the page's key policy has none). That is
        the statement EventBridge's dead letters need too: one statement serves both."""
        self.admit_eventbridge_dead_letters()

    def admit_eventbridge_dead_letters(self) -> None:
        """EventBridge sends undeliverable events to an encrypted dead-letter queue as events.amazonaws.com
        (aws_docs.SQS_KMS_DOC). No source condition: the pages do not say which source ARN EventBridge presents to KMS
        for a dead-letter delivery, and a wrong guess would drop the events the queue exists to keep."""
        self._admit("EventBridgeSendToDeadLetterQueues", self._service_statement(
            "EventBridgeSendToDeadLetterQueues", "events.amazonaws.com", ["kms:Decrypt", "kms:GenerateDataKey"]))

    def admit_sns_dead_letters(self) -> None:
        """SNS moves undeliverable messages to a subscription's encrypted dead-letter queue as sns.amazonaws.com
        (aws_docs.SNS_DLQ_DOC, actions from aws_docs.SQS_KMS_DOC; no source condition, for the reason given above)."""
        self._admit("SnsSendToDeadLetterQueues", self._service_statement(
            "SnsSendToDeadLetterQueues", "sns.amazonaws.com", ["kms:Decrypt", "kms:GenerateDataKey"]))

    def grant_send_to_queues(self, grantee: iam.IGrantable) -> None:
        """A principal that sends to a queue encrypted with this key needs kms:GenerateDataKey and kms:Decrypt
        besides sqs:SendMessage (aws_docs.SQS_KMS_DOC): e.g. Lambda writing failed invocations to a function's DLQ with
        the function's role (https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html)."""
        self.key.grant(grantee, "kms:GenerateDataKey", "kms:Decrypt")

    @staticmethod
    def _service_statement(sid: str, service: str, actions: list[str],
                           conditions: dict | None = None) -> iam.PolicyStatement:
        return iam.PolicyStatement(sid=sid, principals=[iam.ServicePrincipal(service)], actions=actions,
                                   resources=["*"], conditions=conditions)
