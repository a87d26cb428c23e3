"""Training stack: the SageMaker pipelines that turn labelled frames into approved-able model packages."""

from __future__ import annotations

import aws_cdk as cdk
from constructs import Construct

from contracts import naming
from envconfig.config import EnvironmentConfig
from stacks.bucket_set import BucketSet
from stacks.network import NetworkStack
from stacks.training_pipelines import TrainingPipelines, TrainingPipelinesProps


class TrainingStack(cdk.Stack):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: EnvironmentConfig, data: BucketSet,
        network: NetworkStack | None = None, **kwargs
    ) -> None:
        """``network``: isolated-network mode, every job of the pipelines gets a VpcConfig in its subnets."""
        super().__init__(scope, construct_id, **kwargs)
        self.pipelines = TrainingPipelines(
            self, "Pipelines", TrainingPipelinesProps(config=config, buckets=data.share_with(self),
                                                      network=network.placement(self) if network else None)
        )
        cdk.CfnOutput(self, naming.TRAINING_PIPELINE_NAME, value=self.pipelines.training_pipeline.pipeline_name)
        cdk.CfnOutput(self, naming.TUNING_PIPELINE_NAME, value=self.pipelines.tuning_pipeline.pipeline_name)
        cdk.CfnOutput(self, naming.MODEL_PACKAGE_GROUP_NAME, value=self.pipelines.settings.model_package_group)
        cdk.CfnOutput(self, naming.EXECUTION_ROLE_ARN, value=self.pipelines.role.role_arn)
