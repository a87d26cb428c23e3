"""The AWS pages that the stacks' service contracts rest on, written once: the constructs that satisfy a contract
and the rules in stacks/checks/service_contracts that check it cite the same page. Standard library only."""

LOGS_KMS_DOC = "https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/encrypt-log-data-kms.html"
SNS_KMS_DOC = "https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html#compatibility-with-aws-services"
SQS_KMS_DOC = ("https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/"
               "sqs-key-management.html#compatibility-with-aws-services")
SNS_DLQ_DOC = "https://docs.aws.amazon.com/sns/latest/dg/sns-configure-dead-letter-queue.html"
GUARDRAILS_DOC = "https://docs.aws.amazon.com/sagemaker/latest/dg/deployment-guardrails-configuration.html"
SCALING_UPDATE_DOC = "https://docs.aws.amazon.com/sagemaker/latest/dg/endpoint-scaling-update.html"
ASYNC_SCALING_DOC = "https://docs.aws.amazon.com/sagemaker/latest/dg/async-inference-autoscale.html"
FUNCTION_URL_DOC = "https://docs.aws.amazon.com/lambda/latest/dg/urls-auth.html"
SSM_PARAMETER_TYPES_DOC = ("https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/"
                           "parameters-section-structure.html#aws-ssm-parameter-types")
# CreateCompilationJob's RoleArn: SageMaker reads the input and writes the output in S3, writes logs to CloudWatch Logs
# and publishes CloudWatch metrics with it; the caller needs iam:PassRole.
NEO_COMPILATION_DOC = "https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateCompilationJob.html"
# Whole drives (stacks/drive_processing.py). Two notifications of one bucket for the same event type must not have
# overlapping prefixes: incoming/ (ingest queue) and drives/ (launcher) are disjoint.
S3_NOTIFICATION_FILTER_DOC = "https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-how-to-filtering.html"
# Filters on a DynamoDB event source mapping apply to the record's "dynamodb" key (Keys, NewImage, ...).
DDB_EVENT_FILTER_DOC = "https://docs.aws.amazon.com/lambda/latest/dg/with-ddb-filtering.html"
# BisectBatchOnFunctionError, MaximumRetryAttempts (default -1: until the record expires), DestinationConfig.
DDB_ESM_PARAMS_DOC = "https://docs.aws.amazon.com/lambda/latest/dg/services-ddb-params.html"
# CreateProcessingJob: RoleArn (the caller needs iam:PassRole), Tags (sagemaker:AddTags), VolumeKmsKeyId (a KMS grant
# created with the caller's credentials: kms:CreateGrant).
CREATE_PROCESSING_JOB_DOC = "https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateProcessingJob.html"
SAGEMAKER_API_PERMISSIONS_DOC = "https://docs.aws.amazon.com/sagemaker/latest/dg/api-permissions-reference.html"
# The timeline table: Parquet SerDe (org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe), partitions added
# with BatchCreatePartition, Data Catalog ARNs (catalog, database/<db>, table/<db>/<table>) for IAM.
PARQUET_SERDE_DOC = "https://docs.aws.amazon.com/athena/latest/ug/parquet-serde.html"
GLUE_BATCH_CREATE_PARTITION_DOC = "https://docs.aws.amazon.com/glue/latest/webapi/API_BatchCreatePartition.html"
GLUE_RESOURCE_ARNS_DOC = "https://docs.aws.amazon.com/glue/latest/dg/glue-specifying-resource-arns.html"
