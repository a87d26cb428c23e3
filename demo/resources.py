"""Stage 1: the buckets, ingest queue + DLQ, async topics, S3 notification, execution role, KMS key, model package
group, drives table and a stand-in of the inference stack, as the stacks provision them (names from demo.options)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from contracts import naming
from contracts.layout import INFERENCE
from contracts.naming import MODEL_PACKAGE_PARAMETER, SSM_PARAMETER_TYPE
from demo.awsenv import AwsClients
from demo.log import RehearsalLog
from demo.options import Names
from envconfig.config import EnvironmentConfig


@dataclass(frozen=True)
class IngestWiring:
    """The ingest path's settings as the rehearsal provisions them; tests/demo checks each against the
    synthesized inference template, so the two cannot drift apart."""

    visibility_timeout_seconds: int
    max_receive_count: int
    retention_seconds: int
    notification_events: tuple[str, ...]
    notification_prefix: str
    notifying_buckets: int  # both data buckets notify the ingest queue

    @classmethod
    def from_config(cls, config: EnvironmentConfig) -> IngestWiring:
        pre = config.preprocessing
        return cls(visibility_timeout_seconds=6 * pre.ingest.timeout_seconds, max_receive_count=pre.max_receive_count,
                   retention_seconds=14 * 86400, notification_events=("s3:ObjectCreated:*",),
                   notification_prefix=INFERENCE.incoming, notifying_buckets=2)


def create_resources(aws: AwsClients, config: EnvironmentConfig, names: Names,
                     log: RehearsalLog) -> dict[str, str]:
    s3, sqs, sns = aws("s3"), aws("sqs"), aws("sns")
    key_arn = aws("kms").create_key(Description=f"{config.prefix}: datasets, model artifacts and inference data")[
        "KeyMetadata"]["Arn"]
    location = {} if names.region == "us-east-1" else {"CreateBucketConfiguration": {
        "LocationConstraint": names.region}}
    for bucket in (names.datasets_bucket, names.artifacts_bucket, names.inference_bucket, names.assets_bucket):
        s3.create_bucket(Bucket=bucket, **location)
        if bucket != names.assets_bucket:  # versioned, SSE-KMS with the project key (moto does not enforce KMS)
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
            s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [{
                "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_arn},
                "BucketKeyEnabled": True}]})
    wiring = IngestWiring.from_config(config)
    encrypted = {"KmsMasterKeyId": key_arn, "MessageRetentionPeriod": str(wiring.retention_seconds)}
    dlq_url = sqs.create_queue(QueueName=names.ingest_dlq, Attributes=encrypted)["QueueUrl"]
    dlq_arn = _queue_arn(sqs, dlq_url)
    queue_url = sqs.create_queue(QueueName=names.ingest_queue, Attributes={
        **encrypted,
        "VisibilityTimeout": str(wiring.visibility_timeout_seconds),
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(wiring.max_receive_count)}),
    })["QueueUrl"]
    queue_arn = _queue_arn(sqs, queue_url)
    for bucket in (names.inference_bucket, names.datasets_bucket)[:wiring.notifying_buckets]:
        s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={"QueueConfigurations": [{
            "QueueArn": queue_arn, "Events": list(wiring.notification_events),
            "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": wiring.notification_prefix}]}}}]})
    success_arn = sns.create_topic(Name=names.success_topic, Attributes={"KmsMasterKeyId": key_arn})["TopicArn"]
    error_arn = sns.create_topic(Name=names.error_topic, Attributes={"KmsMasterKeyId": key_arn})["TopicArn"]
    # In AWS both topics invoke the postprocess Lambda; here an SQS queue collects what they deliver.
    tap_url = sqs.create_queue(QueueName=names.postprocess_tap)["QueueUrl"]
    tap_arn = _queue_arn(sqs, tap_url)
    subscriptions = {arn: sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=tap_arn)["SubscriptionArn"]
                     for arn in (success_arn, error_arn)}
    role_arn = aws("iam").create_role(RoleName=names.execution_role, AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                "Principal": {"Service": "sagemaker.amazonaws.com"}}]}))["Role"]["Arn"]
    aws("sagemaker").create_model_package_group(
        ModelPackageGroupName=names.model_package_group,
        ModelPackageGroupDescription=f"roadseg {config.name}: segmentation models (local rehearsal)")
    template = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": f"Local rehearsal stand-in for {names.inference_stack}: only its SSM-typed "
                       f"{MODEL_PACKAGE_PARAMETER} parameter (no endpoints)",
        "Parameters": {MODEL_PACKAGE_PARAMETER: {"Type": SSM_PARAMETER_TYPE, "Default": names.serving_parameter}},
        "Resources": {"ServingPlaceholder": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
        "Outputs": {"ServedModelPackageArn": {"Value": {"Ref": MODEL_PACKAGE_PARAMETER}}},
    }
    from contracts import drive_table

    aws("dynamodb").create_table(  # the drives table (stacks/drives.py DriveTable)
        TableName=names.drives_table, BillingMode="PAY_PER_REQUEST",
        **drive_table.key_schema(),
        SSESpecification={"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": key_arn},
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"})
    # What the data stack's ServingPackageParameter does before the inference stack exists: create it once, "none".
    aws("ssm").put_parameter(Name=names.serving_parameter, Value=naming.NO_MODEL_PACKAGE, Type="String",
                             Overwrite=False)
    resolve_ssm_parameters_like_cloudformation(aws("cloudformation"), aws("ssm"), names.inference_stack,
                                               {MODEL_PACKAGE_PARAMETER: names.serving_parameter})
    aws("cloudformation").create_stack(StackName=names.inference_stack, TemplateBody=json.dumps(template),
                                       Tags=[{"Key": "roadseg:environment", "Value": config.name}])
    log(f"buckets {names.datasets_bucket}, {names.artifacts_bucket}, {names.inference_bucket}; queue "
        f"{names.ingest_queue} (DLQ {names.ingest_dlq}, maxReceiveCount {wiring.max_receive_count}); topics "
        f"{names.success_topic}, {names.error_topic}; S3 {INFERENCE.incoming} -> {names.ingest_queue}; "
        f"table {names.drives_table}; stack {names.inference_stack} ({MODEL_PACKAGE_PARAMETER} <- SSM "
        f"{names.serving_parameter}={naming.NO_MODEL_PACKAGE!r})")
    return {"queue_url": queue_url, "queue_arn": queue_arn, "dlq_url": dlq_url, "success_topic": success_arn,
            "error_topic": error_arn, "tap_url": tap_url, "tap_arn": tap_arn, "role": role_arn, "key": key_arn,
            **{f"subscription:{arn}": sub for arn, sub in subscriptions.items()}}


def _queue_arn(sqs: Any, url: str) -> str:
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def resolve_ssm_parameters_like_cloudformation(cfn: Any, ssm: Any, stack: str, ssm_typed: dict[str, str]) -> None:
    """STAND-IN for CloudFormation's SSM-typed parameters, which moto 5 does not model faithfully, on the client
    ``cfn`` (the rollout's or the rehearsal's). ``ssm_typed``: template parameter -> SSM parameter name.

    - DescribeStacks of ``stack``: moto reports the resolved value as ``ParameterValue`` and no ``ResolvedValue``;
      CloudFormation reports the SSM parameter name as ``ParameterValue`` and the value it resolved at the last
      create or update as ``ResolvedValue``. The response is rewritten to CloudFormation's shape (the value moto
      resolved then becomes ``ResolvedValue``).
    - UpdateStack of ``stack`` with ``UsePreviousValue``: CloudFormation keeps the SSM parameter name and re-reads
      its value; moto keeps the previously resolved value, so it would answer "No updates are to be performed"
      after the rollout wrote a new ARN into SSM. What moto receives names the SSM parameter instead (the same
      previous value, as CloudFormation sees it)."""

    def describe(parsed: dict[str, Any], **_: Any) -> None:
        for found in parsed.get("Stacks") or []:
            if found.get("StackName") != stack:
                continue
            for parameter in found.get("Parameters") or []:
                name = ssm_typed.get(parameter.get("ParameterKey"))
                if name is not None and "ResolvedValue" not in parameter:
                    parameter["ResolvedValue"] = parameter.get("ParameterValue")
                    parameter["ParameterValue"] = name

    def update(params: dict[str, Any], **_: Any) -> None:
        if params.get("StackName") != stack:
            return
        for parameter in params.get("Parameters") or []:
            name = ssm_typed.get(parameter.get("ParameterKey"))
            if name is not None and parameter.get("UsePreviousValue"):
                parameter.pop("UsePreviousValue")
                parameter["ParameterValue"] = name

    cfn.meta.events.register("after-call.cloudformation.DescribeStacks", describe)
    cfn.meta.events.register("before-parameter-build.cloudformation.UpdateStack", update)
