"""Lambda preprocessors: camera frames in (S3 -> SQS -> ingest), results out (SNS -> postprocess), and an
IAM-authenticated HTTPS front for the real-time endpoint. Each function is its own construct
(``stacks/functions``); this module builds their shared environment and composes them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from aws_cdk import aws_iam as iam
from aws_cdk import aws_sns as sns
from constructs import Construct

from contracts.lambda_env import PreprocessorEnvironment
from envconfig.config import EnvironmentConfig
from envconfig.lambda_env import preprocessor_environment
from segcore.classes import ClassScheme
from stacks.async_endpoint import AsyncEndpoint
from stacks.bucket_set import SharedBuckets
from stacks.drives import DriveTable
from stacks.functions.ingest import IngestFunction, IngestFunctionProps
from stacks.functions.postprocess import PostprocessFunction, PostprocessFunctionProps
from stacks.functions.realtime_front import RealtimeFront, RealtimeFrontProps
from stacks.operations_key import OperationsKey
from stacks.realtime_endpoint import RealtimeEndpoint


@dataclass(frozen=True)
class PreprocessorsProps:
    config: EnvironmentConfig
    scheme: ClassScheme
    buckets: SharedBuckets
    key: OperationsKey  # queues and log groups
    realtime_endpoint: RealtimeEndpoint  # the real-time front invokes it
    async_endpoint: AsyncEndpoint  # ingest submits to it
    success_topic: sns.ITopic
    error_topic: sns.ITopic
    model_package_version: str | None = None  # a token: the version of the package being served
    drives: DriveTable | None = None  # ingest and postprocess count drive frames' outcomes in it


class Preprocessors(Construct):
    def __init__(self, scope: Construct, construct_id: str, props: PreprocessorsProps) -> None:
        super().__init__(scope, construct_id)
        self.props = props
        config, environment = props.config, self.environment()
        self.ingest = IngestFunction(self, "Ingest", IngestFunctionProps(
            config=config, environment=environment, buckets=props.buckets, key=props.key))
        self.postprocess = PostprocessFunction(self, "Postprocess", PostprocessFunctionProps(
            config=config, environment=environment, buckets=props.buckets, key=props.key,
            success_topic=props.success_topic, error_topic=props.error_topic))
        self.realtime = RealtimeFront(self, "RealtimeFront", RealtimeFrontProps(
            config=config, environment=dataclasses.replace(environment, drives_table=None), key=props.key))
        # The endpoints exist only with a model, the functions always: the grants name the endpoints literally.
        props.async_endpoint.grant_invoke(self.ingest)
        props.realtime_endpoint.grant_invoke(self.realtime)

        if props.drives is not None:
            props.drives.grant_count_outcomes(self.ingest)  # quarantined drive frames
            props.drives.grant_count_outcomes(self.postprocess)  # processed and failed drive frames
        self.functions = [self.ingest, self.postprocess, self.realtime]
        # Function errors first, then the dead-letter queues: the dashboard section's order.
        self.alarms = [f.errors for f in self.functions] + [self.ingest.dead_letters_depth,
                                                            self.postprocess.dead_letters_depth]

    def environment(self) -> PreprocessorEnvironment:
        props = self.props
        return preprocessor_environment(
            props.config, props.scheme, inference_bucket=props.buckets.inference.bucket_name,
            async_endpoint_name=props.async_endpoint.endpoint_name,
            realtime_endpoint_name=props.realtime_endpoint.endpoint_name,
            model_package_version=props.model_package_version,
            drives_table=props.drives.table_name if props.drives else None)

    def grant_invoke_url(self, grantee: iam.IGrantable) -> iam.Grant:
        """Let ``grantee`` call the real-time front's function URL (``RealtimeFront.grant_invoke_url``)."""
        return self.realtime.grant_invoke_url(grantee)
