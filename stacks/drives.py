"""The drives table (contracts.drive_table): exactly-once counters and per-frame outcomes of whole drives.

On-demand, point-in-time recovery on, encrypted with the data key (the project's customer-managed key for inference
data, ``SharedBuckets.key``), a NEW_IMAGE stream for the completion function. ``grant_count_outcomes`` is what the
ingest and postprocess functions need for roadseg_lambda.drive_counts (one TransactWriteItems: Put + Update), with
its cdk-nag acknowledgments made in the same call.

Using a customer-managed key for a table: the principals that read or write the table need kms:Decrypt (and
kms:GenerateDataKey to write) on the key. ``Table.grant`` does not add them: every writer here also gets the data key
through its S3 grants (the same key), and ``grant_count_outcomes`` adds it explicitly all the same.
https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/encryption.usagenotes.html
https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_TransactWriteItems.html (per-item permissions)
"""

from __future__ import annotations

from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from contracts import drive_table, naming
from stacks.compliance import acknowledge_all_packs, acknowledged

COUNT_ACTIONS = ("dynamodb:PutItem", "dynamodb:UpdateItem")


@dataclass(frozen=True)
class DriveTableProps:
    prefix: str
    key: kms.IKey  # the data key (SharedBuckets.key)
    retain: bool


class DriveTable(Construct):
    def __init__(self, scope: Construct, construct_id: str, props: DriveTableProps) -> None:
        super().__init__(scope, construct_id)
        self.table = dynamodb.Table(
            self, "Table", table_name=naming.drives_table_name(props.prefix),
            partition_key=dynamodb.Attribute(name=drive_table.PARTITION_KEY, type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name=drive_table.SORT_KEY, type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED, encryption_key=props.key,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True),
            stream=dynamodb.StreamViewType.NEW_IMAGE,
            removal_policy=cdk.RemovalPolicy.RETAIN if props.retain else cdk.RemovalPolicy.DESTROY,
        )
        acknowledge_all_packs(self.table, "DynamoDBInBackupPlan",
                              "Point-in-time recovery (35 days, on) is the table's backup; the counters are derived "
                              "data that the frames' documents can rebuild, so no separate AWS Backup plan.")

    @property
    def table_name(self) -> str:
        return self.table.table_name

    def grant_count_outcomes(self, function: lambda_.Function) -> iam.Grant:
        """PutItem + UpdateItem on the table (roadseg_lambda.drive_counts) and the key use that needs, acknowledged
        on the function's role."""
        role = function.role
        if role is None:
            raise TypeError(f"{function.node.path} has no role to acknowledge the grant on")
        def grant() -> iam.Grant:
            self.table.encryption_key.grant_encrypt_decrypt(function)  # Table.grant adds no key use
            return self.table.grant(function, *COUNT_ACTIONS)

        return acknowledged(role, grant,
                            reasons="The drives table's key (data key) only, as DynamoDB encryption needs.")
