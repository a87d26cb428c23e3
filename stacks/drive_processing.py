"""Whole drives in the inference stack: the launcher and completion functions, the two Processing job roles and
the Glue timeline table (lambda/drives.py and roadseg_lambda/drive_jobs.py define what they need).

- LAUNCHER (``drives.launch_handler``): S3 "Object Created" under ``drives/`` of the inference bucket, delivered
  straight to the function (asynchronous invocation: 2 retries, then its failed-invocation queue). The bucket's
  other notification, ``incoming/`` -> the ingest queue, has a disjoint prefix: S3 refuses two configurations of one
  event type with overlapping prefixes (aws_docs.S3_NOTIFICATION_FILTER_DOC). It creates the DRIVE item and starts
  the EXTRACTION job.
- COMPLETION (``drives.completion_handler``): the drives table's NEW_IMAGE stream, filtered to DRIVE items (Lambda
  event filtering on the record's ``dynamodb.NewImage``, aws_docs.DDB_EVENT_FILTER_DOC: the many FRAME items never
  invoke it), bisecting a failing batch, retrying a bounded number of times, then sending the batch's description to its
  dead-letter queue (aws_docs.DDB_ESM_PARAMS_DOC). It claims the build, writes the builder's input manifest file,
  registers the timeline partitions (glue:BatchCreatePartition, aws_docs.GLUE_BATCH_CREATE_PARTITION_DOC) and starts
  the BUILDER job.
- CAPACITY WAIT: a start that CreateProcessingJob refuses with ResourceLimitExceeded (the account's Processing quota)
  is sent by either function to the ``CapacityWait`` queue with a message timer (SQS_TIMERS_DOC) and retried by the
  launcher, which consumes that queue (partial batch responses, LAMBDA_SQS_DOC); past ``drives.capacity_max_wait_hours``
  the launcher sends it to ``CapacityWaitDeadLetters`` (also the queue's redrive target for messages that fail three
  receives), whose depth alarm notifies the alarm topic. Both queues use the operations key; the senders get
  sqs:SendMessage with the key's data-key actions (SQS_KMS_DOC), the launcher the consume actions and kms:Decrypt.
  The launcher may therefore also pass the builder role (a build that waited is started by the launcher).
- Both functions call CreateProcessingJob (aws_docs.CREATE_PROCESSING_JOB_DOC) on ``processing-job/<prefix>-drive-*``
  only (contracts.naming.drive_job_prefix), with sagemaker:AddTags (the requests carry a ``roadseg:drive`` tag),
  iam:PassRole on the one role each passes (to SageMaker only) and kms:CreateGrant on the data key for AWS resources
  (the jobs' VolumeKmsKeyId, aws_docs.SAGEMAKER_API_PERMISSIONS_DOC).
- The EXTRACTION role reads drives/ (and the shard manifest file), puts frames under incoming/ and the drive manifest
  under drive-outputs/, reads and updates the drives table; the BUILDER role reads the drive's documents (results/,
  failures/, quarantine/, drive-outputs/) and writes drive-outputs/ (SageMaker uploads with it; network isolation on).
  Both read the code and wheel assets, pull the processing image, write /aws/sagemaker/ProcessingJobs logs and
  SageMaker metrics, and use the data key.
- The TIMELINE table: Glue database ``drives_glue_database_name``, table ``drive_timeline.TIMELINE_TABLE_NAME``
  over ``s3://<inference bucket>/drive-outputs/timeline/``, Parquet (aws_docs.PARQUET_SERDE_DOC), columns and
  partition keys from the contract.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import aws_cdk as cdk
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_s3_notifications as s3n
from aws_cdk import aws_sqs as sqs
from constructs import Construct
from roadseg_lambda.drive_jobs import EXTRACT_INPUTS

from contracts import drive_table, naming
from contracts.drive_timeline import (
    TIMELINE_COLUMNS,
    TIMELINE_PARTITION_KEYS,
    TIMELINE_TABLE_NAME,
    TIMELINE_TABLE_PREFIX,
)
from contracts.job_settings import CAMERAS_FILE, CLASSES_FILE, cameras_argument, classes_path, settings_files
from contracts.lambda_env import SERVICE_NAMES, DrivesEnvironment
from contracts.layout import INFERENCE
from envconfig.config import DrivesConfig, FunctionConfig
from stacks.bucket_set import SharedBuckets
from stacks.code_assets import PROCESSING_ENTRY, drive_wheelhouse, staged, staged_job_settings
from stacks.compliance import acknowledge_inline_policy, acknowledged
from stacks.drives import DriveTable
from stacks.functions.roadseg_function import RoadsegFunction, RoadsegFunctionProps, encrypted_queue
from stacks.images import RegionImagesMapping
from stacks.operations_key import OperationsKey
from stacks.processing_job_role import grant_processing_job_basics

PARQUET_SERDE = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
PARQUET_INPUT_FORMAT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
PARQUET_OUTPUT_FORMAT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
SAGEMAKER = "sagemaker.amazonaws.com"
NO_VPC = ("The function calls only regional AWS APIs (S3, DynamoDB, SageMaker, Glue) with IAM auth; a VPC would "
          "need NAT or interface endpoints without narrowing access.")
JOB_ACTIONS = ("sagemaker:CreateProcessingJob", "sagemaker:AddTags")
# PutItem: the DRIVE item; GetItem and UpdateItem: a capacity wait's retry reads it and records the wait.
LAUNCHER_TABLE_ACTIONS = ("dynamodb:PutItem", "dynamodb:GetItem", "dynamodb:UpdateItem")
SQS_TIMERS_DOC = "https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-message-timers.html"
LAMBDA_SQS_DOC = "https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-errorhandling.html"
SQS_KMS_DOC = "https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-key-management.html"
# Receives of one capacity-wait message that failed (an error, not a refusal) before it goes to the DLQ.
CAPACITY_WAIT_RECEIVES = drive_table.CAPACITY_WAIT_RECEIVES
# "we recommend setting the source queue's visibility timeout to at least six times the timeout that you configure
# on your function" (LAMBDA_SQS_DOC).
VISIBILITY_PER_FUNCTION_TIMEOUT = 6
KEY_GRANT_REASON = "The operations key of the capacity-wait queues only, as SQS encryption needs (SQS_KMS_DOC)."
COMPLETION_TABLE_ACTIONS = ("dynamodb:UpdateItem", "dynamodb:Query")
EXTRACTION_TABLE_ACTIONS = ("dynamodb:UpdateItem", "dynamodb:GetItem")
GLUE_ACTIONS = ("glue:GetTable", "glue:BatchCreatePartition")
DRIVE_MANIFEST = "manifest.json"  # contracts.drives.DriveOutputs.manifest, under the drive's prefix


@dataclass(frozen=True)
class DriveProcessingProps:
    prefix: str  # the environment's prefix (names, the jobs' prefix)
    drives: DrivesConfig  # the config's drives: section
    buckets: SharedBuckets  # logs arrive in, frames and outputs go to the inference bucket; the data key
    table: DriveTable
    key: OperationsKey  # the functions' log groups and queues
    images: RegionImagesMapping  # the stack's Images mapping ("Processing", "ProcessingRepository")
    log_retention_days: int
    retain: bool
    # The class scheme's name (the builder's --scheme) and the environment's job settings files
    # (envconfig.job_settings.job_settings: classes.json for a custom scheme, cameras.json for a camera map); empty:
    # the settings of ``drives`` alone. The scene thresholds come from ``drives``.
    class_scheme: str = "cityscapes"
    job_settings: Mapping[str, str] = field(default_factory=dict)
    no_vpc_reason: str = NO_VPC
    # The ingest function's input limits (preprocessing.max_input_bytes, max_input_pixels): extraction skips what
    # ingest would refuse, with the same codes.
    frame_limits: tuple[int, int] | None = None
    # Isolated-network mode: the jobs' subnets and security groups (Placement.sagemaker_vpc_config()).
    vpc_config: Mapping[str, list[str]] | None = None


class DriveProcessing(Construct):
    def __init__(self, scope: Construct, construct_id: str, props: DriveProcessingProps) -> None:
        super().__init__(scope, construct_id)
        self.props = props
        stack = cdk.Stack.of(self)
        cfg, inference = props.drives, props.buckets.inference

        # Code: the processing entry script and package (as the training stack's, same hashes: one S3 object each),
        # and the drive wheelhouse the drive-job module installs without an index.
        self.entry_script = s3_assets.Asset(self, "ProcessingEntry", path=str(PROCESSING_ENTRY))
        self.package = s3_assets.Asset(self, "ProcessingPackage", path=str(staged("processing")))
        self.wheels = s3_assets.Asset(self, "DriveWheels", path=str(drive_wheelhouse()))
        # The lists no request carries inline (contracts.job_settings): both jobs receive them as the settings input.
        files = dict(props.job_settings) or settings_files(None, dict(cfg.cameras))
        self.settings = s3_assets.Asset(self, "JobSettings", path=str(staged_job_settings(files)))

        self.extraction_role = self._job_role("ExtractionRole", "roadseg drives: the extraction Processing job")
        self._grant_extraction(self.extraction_role)
        self.builder_role = self._job_role("BuilderRole", "roadseg drives: the drive builder Processing job")
        self._grant_builder(self.builder_role)

        self.database, self.timeline = self._timeline_table(stack)
        # Capacity wait: starts refused for lack of Processing capacity wait here (lambda/drives.py CapacityWait).
        self.capacity_dead_letters = encrypted_queue(self, "CapacityWaitDeadLetters", props.key)
        self.capacity_queue = encrypted_queue(
            self, "CapacityWait", props.key,
            dead_letter=sqs.DeadLetterQueue(queue=self.capacity_dead_letters, max_receive_count=CAPACITY_WAIT_RECEIVES),
            visibility_timeout=cdk.Duration.seconds(VISIBILITY_PER_FUNCTION_TIMEOUT * cfg.launcher.timeout_seconds))
        self.job_prefix = naming.drive_job_prefix(props.prefix)
        environment = DrivesEnvironment(
            drives_table=props.table.table_name, inference_bucket=inference.bucket_name, job_prefix=props.prefix,
            extraction_role_arn=self.extraction_role.role_arn, builder_role_arn=self.builder_role.role_arn,
            processing_image=props.images.get("Processing"), code_entry_uri=self.entry_script.s3_object_url,
            code_package_uri=self.package.s3_object_url, drive_wheels_uri=self.wheels.s3_object_url,
            kms_key_arn=props.buckets.key.key_arn, extraction_instance_type=cfg.extraction_instance_type,
            extraction_max_instances=cfg.extraction_max_instances, builder_instance_type=cfg.builder_instance_type,
            volume_size_gb=cfg.volume_size_gb, max_runtime_seconds=cfg.max_runtime_hours * 3600,
            rate_hz=cfg.rate_hz, settings_uri=self.settings.s3_object_url,
            extraction_arguments=extraction_arguments(files) or None,
            builder_arguments={**scheme_arguments(props.class_scheme, files), **cfg.scenes.builder_arguments()},
            glue_database=self.database_name, glue_table=TIMELINE_TABLE_NAME, service_name=SERVICE_NAMES["drives"],
            max_input_bytes=props.frame_limits[0] if props.frame_limits else None,
            max_input_pixels=props.frame_limits[1] if props.frame_limits else None,
            job_subnets=tuple((props.vpc_config or {}).get("subnets", ())),
            job_security_groups=tuple((props.vpc_config or {}).get("security_group_ids", ())),
            capacity_queue_url=self.capacity_queue.queue_url,
            capacity_dead_letter_url=self.capacity_dead_letters.queue_url,
            capacity_max_wait_seconds=cfg.capacity_max_wait_hours * 3600)

        self.launcher = self._function("Launcher", "drives.launch_handler", cfg.launcher, environment,
                                       "Starts the extraction job of a drive log uploaded under drives/")
        self._grant_launcher(stack)
        self.completion = self._function("Completion", "drives.completion_handler", cfg.completion, environment,
                                         "Starts the drive builder once every frame of a drive has an outcome")
        self._grant_completion(stack)

        # S3 -> launcher, drives/ only: disjoint from the ingest queue's incoming/ (S3_NOTIFICATION_FILTER_DOC).
        inference.add_event_notification(s3.EventType.OBJECT_CREATED, s3n.LambdaDestination(self.launcher),
                                          s3.NotificationKeyFilter(prefix=INFERENCE.drives))
        # Stream -> completion: DRIVE items only, bisect, bounded retries, then the function's dead-letter queue.
        stream = sources.DynamoEventSource(
            props.table.table, starting_position=lambda_.StartingPosition.TRIM_HORIZON, batch_size=10,
            bisect_batch_on_error=True, retry_attempts=cfg.stream_retry_attempts,
            max_record_age=cdk.Duration.hours(24), on_failure=sources.SqsDlq(self.completion.failed_invocations),
            filters=[lambda_.FilterCriteria.filter(drive_item_filter())])
        acknowledged(self.completion.role, lambda: self.completion.add_event_source(stream),
                     reasons="dynamodb:ListStreams supports no resource-level permissions; the stream actions are "
                             "limited to the drives table's stream.")

        # Capacity-wait queue -> launcher: each message retried on its own (partial batch responses).
        acknowledged(self.launcher.role, lambda: self.launcher.add_event_source(sources.SqsEventSource(
            self.capacity_queue, batch_size=10, report_batch_item_failures=True)), reasons=KEY_GRANT_REASON)

        self.functions = [self.launcher, self.completion]
        self.alarms = [self.launcher.errors_alarm(description="The drive launcher failed: see its logs"),
                       self.completion.errors_alarm(description="The drive completion function failed"),
                       self.launcher.dlq_depth_alarm(description="Drive logs whose extraction could not be started: "
                                                                 "replay after fixing the cause (docs/drives.md)"),
                       self.completion.dlq_depth_alarm(description="Drive stream batches that failed every retry: "
                                                                   "restart the builder (docs/drives.md)"),
                       self.launcher.dlq_depth_alarm(
                           self.capacity_dead_letters,
                           description="Drive jobs that found no Processing capacity within drives."
                                       "capacity_max_wait_hours: raise the quota or wait, then redrive the messages "
                                       "to the CapacityWait queue (docs/drives.md)")]

    # -- functions -------------------------------------------------------------------------------------------------

    def _function(self, construct_id: str, handler: str, function: FunctionConfig, environment: DrivesEnvironment,
                  description: str) -> RoadsegFunction:
        props = self.props
        return RoadsegFunction(self, construct_id, RoadsegFunctionProps(
            handler=handler, description=description, function=function, environment=environment, key=props.key,
            log_retention_days=props.log_retention_days, retain=props.retain, no_vpc_reason=props.no_vpc_reason,
            retry_attempts=2))

    def _start_jobs(self, fn: RoadsegFunction, stack: cdk.Stack, role: iam.IRole) -> None:
        """CreateProcessingJob (+ AddTags: the requests' tags) on this project's drive jobs, PassRole on ``role``
        to SageMaker only, and the KMS grant SageMaker creates for the jobs' volume key."""
        jobs = stack.format_arn(service="sagemaker", resource="processing-job", resource_name=f"{self.job_prefix}*")
        fn.allow(iam.PolicyStatement(sid="StartDriveJobs", actions=list(JOB_ACTIONS), resources=[jobs]),
                 reasons={jobs: "Drive jobs of this environment only: <prefix>-drive-<extract|build>-<digest>."})
        # "Already started?" is DescribeProcessingJob's answer (lambda/drives.py start_job), not an error code's.
        fn.allow(iam.PolicyStatement(sid="DescribeDriveJobs", actions=["sagemaker:DescribeProcessingJob"],
                                     resources=[jobs]),
                 reasons={jobs: "Drive jobs of this environment only: <prefix>-drive-<extract|build>-<digest>."})
        fn.allow(iam.PolicyStatement(sid="PassTheDriveJobRole", actions=["iam:PassRole"], resources=[role.role_arn],
                                     conditions={"StringEquals": {"iam:PassedToService": SAGEMAKER}}))
        fn.allow(iam.PolicyStatement(sid="DriveJobVolumeKeyGrants", actions=["kms:CreateGrant"],
                                     resources=[self.props.buckets.key.key_arn],
                                     conditions={"Bool": {"kms:GrantIsForAWSResource": "true"}}))

    def _grant_launcher(self, stack: cdk.Stack) -> None:
        fn, props = self.launcher, self.props
        inference = props.buckets.inference
        # A ROS 2 bag directory: every object under its prefix (list only, under drives/).
        fn.allow(iam.PolicyStatement(sid="ListDriveLogs", actions=["s3:ListBucket"], resources=[inference.bucket_arn],
                                     conditions={"StringLike": {"s3:prefix": [f"{INFERENCE.drives}*"]}}))
        fn.grant_bucket_put(inference, INFERENCE.drive_outputs,
                            reason="The extraction's shard manifest file, under the drive's drive-outputs/ prefix.")
        acknowledged(fn.role, lambda: props.table.table.grant(fn, *LAUNCHER_TABLE_ACTIONS),
                     reasons="The drives table's key (data key) only, as DynamoDB encryption needs.")
        self._start_jobs(fn, stack, self.extraction_role)
        # A build that waited for capacity is started by the launcher (the capacity-wait queue's consumer).
        fn.allow(iam.PolicyStatement(sid="PassTheBuilderRoleAfterAWait", actions=["iam:PassRole"],
                                     resources=[self.builder_role.role_arn],
                                     conditions={"StringEquals": {"iam:PassedToService": SAGEMAKER}}))
        for queue in (self.capacity_queue, self.capacity_dead_letters):
            acknowledged(fn.role, lambda queue=queue: queue.grant_send_messages(fn), reasons=KEY_GRANT_REASON)

    def _grant_completion(self, stack: cdk.Stack) -> None:
        fn, props = self.completion, self.props
        inference = props.buckets.inference
        acknowledged(fn.role, lambda: props.table.table.grant(fn, *COMPLETION_TABLE_ACTIONS),
                     reasons="The drives table's key (data key) only, as DynamoDB encryption needs.")
        fn.grant_bucket_put(inference, INFERENCE.drive_outputs,
                            reason="The builder's input manifest file, under the drive's drive-outputs/ prefix.")
        acknowledged(fn.role, lambda: inference.grant_read(fn, f"{INFERENCE.drive_outputs}*/{DRIVE_MANIFEST}"),
                     reasons="Only the drive manifests (their cameras and stamps name the partitions).")
        glue_arns = self.glue_arns(stack)
        fn.allow(iam.PolicyStatement(sid="RegisterTimelinePartitions", actions=list(GLUE_ACTIONS),
                                     resources=list(glue_arns)))
        self._start_jobs(fn, stack, self.builder_role)
        acknowledged(fn.role, lambda: self.capacity_queue.grant_send_messages(fn), reasons=KEY_GRANT_REASON)

    def glue_arns(self, stack: cdk.Stack) -> tuple[str, str, str]:
        """The catalog, the database and the timeline table (aws_docs.GLUE_RESOURCE_ARNS_DOC)."""
        database = self.database_name
        return (stack.format_arn(service="glue", resource="catalog"),
                stack.format_arn(service="glue", resource="database", resource_name=database),
                stack.format_arn(service="glue", resource="table", resource_name=f"{database}/{TIMELINE_TABLE_NAME}"))

    # -- job roles -------------------------------------------------------------------------------------------------

    def _job_role(self, construct_id: str, description: str) -> iam.Role:
        """A SageMaker role with what every drive job needs: the code and wheel assets, the processing image, its
        logs and metrics, the data key (volumes, objects, the table)."""
        props = self.props
        role = iam.Role(self, construct_id, assumed_by=iam.ServicePrincipal(SAGEMAKER), description=description)
        for asset in (self.entry_script, self.package, self.wheels, self.settings):
            acknowledged(role, lambda asset=asset: asset.grant_read(role),
                         reasons="CDK asset grant: the processing entry, package, drive wheels and job settings in the "
                                 "bootstrap bucket.")
        acknowledged(role, lambda: props.buckets.key.grant_encrypt_decrypt(role), reasons="The project data key.")
        grant_processing_job_basics(role, props.images, props.vpc_config)
        acknowledge_inline_policy(role)
        return role

    def _grant_extraction(self, role: iam.Role) -> None:
        props = self.props
        inference = props.buckets.inference
        grants = (
            (lambda: inference.grant_read(role, f"{INFERENCE.drives}*"), "Read-only: the drive logs under drives/."),
            (lambda: inference.grant_read(role, f"{INFERENCE.drive_outputs}*/{EXTRACT_INPUTS}"),
             "Only the shard manifest file SageMaker reads for ShardedByS3Key inputs."),
            (lambda: inference.grant_read(role, f"{INFERENCE.drive_outputs}*/manifests/*"),
             "The instances' manifest shares, which the last instance merges into the drive's manifest."),
            (lambda: inference.grant_put(role, f"{INFERENCE.incoming}*"),
             "Extracted frames, with the drive id in their metadata, go where ingest picks them up."),
            (lambda: inference.grant_put(role, f"{INFERENCE.drive_outputs}*"),
             "The drive manifest (and per-instance manifests) under the drive's drive-outputs/ prefix."),
            (lambda: props.table.table.grant(role, *EXTRACTION_TABLE_ACTIONS),
             "The drives table's key (data key) only, as DynamoDB encryption needs."),
        )
        for grant, reason in grants:
            acknowledged(role, grant, reasons=reason)

    def _grant_builder(self, role: iam.Role) -> None:
        inference = self.props.buckets.inference
        for prefix, reason in ((INFERENCE.results, "The drive frames' results, masks and overlays."),
                               (INFERENCE.async_output, "The drive frames' masks at the inference size (the "
                                                        "postprocess function's default, RESTORE_ORIGINAL_SIZE off)."),
                               (INFERENCE.failures, "The drive frames' failure documents."),
                               (INFERENCE.quarantine, "The drive frames' quarantine reason documents."),
                               (INFERENCE.drive_outputs, "The drive manifest and the builder's input manifest.")):
            acknowledged(role, lambda prefix=prefix: inference.grant_read(role, f"{prefix}*"), reasons=reason)
        acknowledged(role, lambda: inference.grant_put(role, f"{INFERENCE.drive_outputs}*"),
                     reasons="SageMaker uploads the builder's outputs: the drive's folder and the timeline table.")

    # -- the timeline table ----------------------------------------------------------------------------------------

    @property
    def database_name(self) -> str:
        return naming.drives_glue_database_name(self.props.prefix)

    def _timeline_table(self, stack: cdk.Stack) -> tuple[glue.CfnDatabase, glue.CfnTable]:
        database = glue.CfnDatabase(self, "Database", catalog_id=stack.account, database_input=glue.CfnDatabase.
                                    DatabaseInputProperty(name=self.database_name,
                                                          description="roadseg whole drives: the frame timeline"))
        location = f"s3://{self.props.buckets.inference.bucket_name}/{TIMELINE_TABLE_PREFIX}"
        table = glue.CfnTable(
            self, "Timeline", catalog_id=stack.account, database_name=self.database_name,
            table_input=glue.CfnTable.TableInputProperty(
                name=TIMELINE_TABLE_NAME, table_type="EXTERNAL_TABLE",
                description="One row per drive frame (contracts/drive_timeline.py); partitions registered by the "
                            "drive completion function",
                parameters={"classification": "parquet", "EXTERNAL": "TRUE"},
                partition_keys=[_column(c) for c in TIMELINE_PARTITION_KEYS],
                storage_descriptor=glue.CfnTable.StorageDescriptorProperty(
                    columns=[_column(c) for c in TIMELINE_COLUMNS], location=location,
                    input_format=PARQUET_INPUT_FORMAT, output_format=PARQUET_OUTPUT_FORMAT, compressed=False,
                    serde_info=glue.CfnTable.SerdeInfoProperty(serialization_library=PARQUET_SERDE,
                                                              parameters={"serialization.format": "1"}))))
        table.node.add_dependency(database)
        return database, table


def _column(column) -> glue.CfnTable.ColumnProperty:
    return glue.CfnTable.ColumnProperty(name=column.name, type=column.glue_type, comment=column.comment)


def drive_item_filter() -> dict:
    """The completion function's event filter: stream records of DRIVE items and of their counter items (``COUNTS#``:
    the last frame's outcome lands on one of those), INSERT or MODIFY; no FRAME item.

    On the ``dynamodb`` key only: "DynamoDB event source mappings only support filtering on the dynamodb key"
    (aws_docs.DDB_EVENT_FILTER_DOC), so a top-level ``eventName`` pattern is not honoured. The sort key is matched in
    ``NewImage`` (the stream's NEW_IMAGE view): a REMOVE record has no new image, so only INSERT and MODIFY pass."""
    return {"dynamodb": {"NewImage": {drive_table.SORT_KEY: {"S": [
        *lambda_.FilterRule.is_equal(drive_table.DRIVE_ITEM),
        *lambda_.FilterRule.begins_with(drive_table.COUNTER_ITEM_PREFIX)]}}}}


def scheme_arguments(scheme_name: str, job_settings: Mapping[str, str]) -> dict[str, str]:
    """The builder's class-scheme options (segcore.classes.add_scheme_arguments): a custom class list is read from
    its file in the job settings, never passed inline (an argument holds at most 256 characters)."""
    custom = {"--classes-file": classes_path()} if CLASSES_FILE in job_settings else {}
    return {"--scheme": scheme_name, **custom}


def extraction_arguments(job_settings: Mapping[str, str]) -> dict[str, str]:
    """The extraction's options that name a job settings file: the camera map, when there is one."""
    return {"--cameras-json": cameras_argument()} if CAMERAS_FILE in job_settings else {}
