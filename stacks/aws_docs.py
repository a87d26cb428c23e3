"""The AWS pages that the stacks' service contracts rest on, written once: the constructs that satisfy a contract
and the rules in stacks/service_contracts that check it cite the same page. Standard library only."""

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
