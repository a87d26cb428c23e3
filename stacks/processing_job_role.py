"""What every SageMaker Processing job role of this project needs besides its own data: pull the processing image,
write the /aws/sagemaker/ProcessingJobs logs, log in to ECR, put SageMaker's own metrics and, in isolated-network
mode, create the job's network interfaces in the VPC. The drive jobs (stacks/drive_processing.py) and the
candidate-pool scoring job (stacks/label_scoring.py) share it, so their roles cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping

import aws_cdk as cdk
from aws_cdk import aws_iam as iam

from stacks.compliance import acknowledged
from stacks.images import RegionImagesMapping
from stacks.network import VPC_WILDCARD_REASON, allow_sagemaker_vpc


def grant_processing_job_basics(role: iam.Role, images: RegionImagesMapping,
                                vpc_config: Mapping[str, list[str]] | None) -> None:
    """Add the image, logs, ECR login, metrics and (with ``vpc_config``) VPC statements to a Processing job role."""
    stack = cdk.Stack.of(role)
    role.add_to_policy(iam.PolicyStatement(
        sid="PullProcessingImage",
        actions=["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
        resources=[images.get("ProcessingRepository")]))
    logs = stack.format_arn(service="logs", resource="log-group", resource_name="/aws/sagemaker/ProcessingJobs:*",
                            arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME)
    acknowledged(role, lambda: role.add_to_policy(iam.PolicyStatement(
        sid="JobLogs", actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents",
                                "logs:DescribeLogStreams"], resources=[logs])),
        reasons={logs: "SageMaker Processing's log group and its per-job streams."})
    acknowledged(role, lambda: role.add_to_policy(iam.PolicyStatement(
        sid="EcrLogin", actions=["ecr:GetAuthorizationToken"], resources=["*"])),
        reasons="ecr:GetAuthorizationToken supports no resource-level permissions.")
    role.add_to_policy(iam.PolicyStatement(
        sid="JobMetrics", actions=["cloudwatch:PutMetricData"], resources=["*"],
        conditions={"StringLike": {"cloudwatch:namespace": ["/aws/sagemaker/*", "aws/sagemaker/*"]}}))
    if vpc_config:
        # Isolated-network mode: SageMaker creates the job's network interfaces in the VPC with this role.
        acknowledged(role, lambda: allow_sagemaker_vpc(role), reasons=VPC_WILDCARD_REASON.strip())
