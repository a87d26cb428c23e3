"""Lambda preprocessors: camera frames in (S3 -> SQS -> ingest), results out (SNS -> postprocess), and an
IAM-authenticated HTTPS front for the real-time endpoint. Each function is its own construct
(``stacks/functions``); this module builds their shared environment and composes them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from aws_cdk import aws_iam as iam
from aws_cdk import aws_sns as sns
from constructs import Construct

from contracts.lambda_env import PreprocessorEnvironment, frame_preparation_environment
from contracts.layout import INFERENCE
from envconfig.config import EnvironmentConfig
from segcore.classes import ClassScheme
from stacks.bucket_set import SharedBuckets
from stacks.drives import DriveTable
from stacks.functions.ingest import IngestFunction, IngestFunctionProps
from stacks.functions.postprocess import PostprocessFunction, PostprocessFunctionProps
from stacks.functions.realtime_front import RealtimeFront, RealtimeFrontProps
from stacks.operations_key import OperationsKey


def preprocessor_environment(config: EnvironmentConfig, scheme: ClassScheme, *, inference_bucket: str,
                             async_endpoint_name: str, realtime_endpoint_name: str,
                             model_package_version: str | None = None,
                             drives_table: str | None = None) -> PreprocessorEnvironment:
    """The environment every preprocessor function gets (pure: the local rehearsal builds it the same way).

    The bucket name and model package version may be CDK tokens; each function adds its own ``service_name``.
    """
    cfg = config.preprocessing
    # The frame preparation (target size, ROI, limits, JPEG quality) from the one mapping the quality gate's serving
    # step and the roadseg command use too (contracts.lambda_env.frame_preparation_environment).
    return dataclasses.replace(
        frame_preparation_environment(cfg),
        inference_bucket=inference_bucket,
        async_input_prefix=INFERENCE.async_input, results_prefix=INFERENCE.results,
        quarantine_prefix=INFERENCE.quarantine, failures_prefix=INFERENCE.failures,
        async_endpoint_name=async_endpoint_name, realtime_endpoint_name=realtime_endpoint_name,
        class_names=tuple(scheme.names), class_colors=tuple(tuple(c.color) for c in scheme.classes),
        ignore_index=scheme.ignore_index,
        key_pattern=cfg.key_pattern, vru_min_pixels=cfg.vru_min_pixels,
        vru_classes=tuple(scheme.vulnerable_road_users),
        write_overlay=cfg.write_overlay, restore_original_size=cfg.restore_original_size,
        model_package_version=model_package_version,
        drives_table=drives_table,
    )


@dataclass(frozen=True)
class PreprocessorsProps:
    config: EnvironmentConfig
    scheme: ClassScheme
    buckets: SharedBuckets
    key: OperationsKey  # queues and log groups
    realtime_endpoint_name: str
    async_endpoint_name: str
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
            config=config, environment=environment, buckets=props.buckets, key=props.key,
            async_endpoint_name=props.async_endpoint_name))
        self.postprocess = PostprocessFunction(self, "Postprocess", PostprocessFunctionProps(
            config=config, environment=environment, buckets=props.buckets, key=props.key,
            success_topic=props.success_topic, error_topic=props.error_topic))
        self.realtime = RealtimeFront(self, "RealtimeFront", RealtimeFrontProps(
            config=config, environment=dataclasses.replace(environment, drives_table=None), key=props.key,
            realtime_endpoint_name=props.realtime_endpoint_name))

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
            async_endpoint_name=props.async_endpoint_name, realtime_endpoint_name=props.realtime_endpoint_name,
            model_package_version=props.model_package_version,
            drives_table=props.drives.table_name if props.drives else None)

    def grant_invoke_url(self, grantee: iam.IGrantable) -> iam.Grant:
        """Let ``grantee`` call the real-time front's function URL (``RealtimeFront.grant_invoke_url``)."""
        return self.realtime.grant_invoke_url(grantee)
