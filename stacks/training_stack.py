"""Training stack: the SageMaker pipelines that turn labelled frames into approved-able model packages."""

from __future__ import annotations

import aws_cdk as cdk
from constructs import Construct

from stacks.bucket_set import BucketSet
from stacks.config import EnvironmentConfig
from stacks.training_pipelines import TrainingPipelines, TrainingPipelinesProps


class TrainingStack(cdk.Stack):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: EnvironmentConfig, data: BucketSet, **kwargs
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.pipelines = TrainingPipelines(
            self, "Pipelines", TrainingPipelinesProps(config=config, buckets=data.share_with(self))
        )
        cdk.CfnOutput(self, "TrainingPipelineName", value=self.pipelines.training_pipeline.pipeline_name)
        cdk.CfnOutput(self, "TuningPipelineName", value=self.pipelines.tuning_pipeline.pipeline_name)
        cdk.CfnOutput(self, "ModelPackageGroupName", value=self.pipelines.settings.model_package_group)
        cdk.CfnOutput(self, "ExecutionRoleArn", value=self.pipelines.role.role_arn)
