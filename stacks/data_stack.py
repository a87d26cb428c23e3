"""Data stack: the buckets and key every other stack reads and writes."""

from __future__ import annotations

import aws_cdk as cdk
from constructs import Construct

from contracts import naming
from envconfig.config import EnvironmentConfig
from stacks.bucket_set import BucketSet, BucketSetProps
from stacks.deploy_role_access import DeployRoleParameterAccess, network_ssm_parameters
from stacks.registry_model import ServingPackageParameter


class DataStack(cdk.Stack):
    def __init__(self, scope: Construct, construct_id: str, *, config: EnvironmentConfig, **kwargs) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.buckets = BucketSet(self, "Buckets", BucketSetProps(config=config))
        for output, bucket in ((naming.DATASETS_BUCKET_NAME, self.buckets.datasets),
                               (naming.ARTIFACTS_BUCKET_NAME, self.buckets.artifacts),
                               (naming.INFERENCE_BUCKET_NAME, self.buckets.inference)):
            cdk.CfnOutput(self, output, value=bucket.bucket_name)
        # Plain (the exported BucketsDataKeyArn... stays as it is: renaming an export breaks its importers): roadseg
        # label score reads it, as the other stacks' outputs may not embed an imported value (cfn-lint W6001).
        cdk.CfnOutput(self, naming.DATA_KEY_ARN, value=self.buckets.key.key_arn)
        # The inference stack's SSM-typed ModelPackageArn reads it, so it must exist before that stack deploys.
        self.serving_package = ServingPackageParameter(
            self, "ServingPackage", name=naming.serving_package_parameter(config.prefix))
        # The later stacks' SSM-typed parameters resolve with the deployer's credentials: the CDK deploy role may read
        # exactly these (every other stack imports this one's exports, so this grant is in place first).
        self.deploy_role_access = DeployRoleParameterAccess(self, "DeployRoleAccess", parameter_names=[
            self.serving_package.name, *network_ssm_parameters(config.network)])
