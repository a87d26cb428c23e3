"""Data stack: the buckets and key every other stack reads and writes."""

from __future__ import annotations

import aws_cdk as cdk
from constructs import Construct

from stacks.bucket_set import BucketSet, BucketSetProps
from stacks.config import EnvironmentConfig


class DataStack(cdk.Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: EnvironmentConfig, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.buckets = BucketSet(self, "Buckets", BucketSetProps(config=config))
        for name, bucket in (("Datasets", self.buckets.datasets), ("Artifacts", self.buckets.artifacts),
                             ("Inference", self.buckets.inference)):
            cdk.CfnOutput(self, f"{name}BucketName", value=bucket.bucket_name)
