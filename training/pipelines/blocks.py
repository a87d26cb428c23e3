"""What every job of the pipelines shares: the processor, inputs, outputs and channels, the S3 locations under the
execution, the network settings and the volume encryption."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from contracts.instances import has_local_instance_storage
from contracts.job_settings import SETTINGS_DIR, SETTINGS_INPUT
from training.pipelines.parameters import PipelineParameters
from training.pipelines.placeholders import CODE_DIR, PACKAGE_DIR, PROCESSING_ENTRYPOINT
from training.pipelines.sdk import (
    Channel,
    DataSource,
    ExecutionVariables,
    NetworkConfig,
    Networking,
    PipelineSession,
    ProcessingInput,
    ProcessingOutput,
    ProcessingS3Input,
    ProcessingS3Output,
    Processor,
    S3DataSource,
)
from training.pipelines.sentinels import SENTINELS, security_group_sentinel, subnet_sentinel
from training.pipelines.settings import PipelineSettings


def entry_processor(
    session: PipelineSession,
    settings: PipelineSettings,
    base_job_name: str,
    params: PipelineParameters,
    env: Mapping[str, str] | None = None,
    image: str | None = None,
) -> Processor:
    """``python3 <entry script> <module> [args]`` in the processing image, isolated from the network.

    A plain Processor with the code as an input: ScriptProcessor(code=...) would run the script by the
    basename of its URI, which a CDK asset does not keep.
    """
    return Processor(
        role=SENTINELS.role_arn,
        image_uri=image or SENTINELS.processing_image,
        entrypoint=PROCESSING_ENTRYPOINT,
        instance_count=1,
        instance_type=params.processing_instance_type,
        volume_size_in_gb=settings.volume_size_gb,
        volume_kms_key=volume_kms_key(settings.processing_instance_type),
        output_kms_key=SENTINELS.kms_key_arn,
        max_runtime_in_seconds=settings.max_runtime_seconds,
        base_job_name=base_job_name,
        sagemaker_session=session,
        network_config=NetworkConfig(enable_network_isolation=True, **_vpc_arguments(settings)),
        env=dict(env) if env else None,
    )


def _vpc_arguments(settings: PipelineSettings) -> dict[str, list[str]]:
    """``subnets``/``security_group_ids`` as sentinels (replaced by NETWORK_PLACEHOLDERS), nothing without a VPC."""
    if not settings.vpc_subnet_count:
        return {}
    return {"subnets": [subnet_sentinel(i) for i in range(settings.vpc_subnet_count)],
            "security_group_ids": [security_group_sentinel(i) for i in range(settings.vpc_security_group_count)]}


def networking(settings: PipelineSettings) -> Networking:
    return Networking(enable_network_isolation=True, **_vpc_arguments(settings))


def code_inputs() -> list[ProcessingInput]:
    return [
        processing_input("code", SENTINELS.code_entry_uri, CODE_DIR),
        processing_input("package", SENTINELS.code_package_uri, PACKAGE_DIR),
    ]


def settings_input() -> ProcessingInput:
    """The job settings (contracts.job_settings), one zip the entry script unpacks where the arguments point."""
    return processing_input(SETTINGS_INPUT, SENTINELS.job_settings_uri, SETTINGS_DIR)


def processing_input(name: str, s3_uri, local_path: str) -> ProcessingInput:
    return ProcessingInput(
        input_name=name,
        s3_input=ProcessingS3Input(s3_uri=s3_uri, local_path=local_path, s3_data_type="S3Prefix", s3_input_mode="File"),
    )


def processing_output(name: str, s3_uri, local_path: str | None = None) -> ProcessingOutput:
    return ProcessingOutput(
        output_name=name,
        s3_output=ProcessingS3Output(
            s3_uri=s3_uri, local_path=local_path or f"/opt/ml/processing/output/{name}", s3_upload_mode="EndOfJob"
        ),
    )


def channel(name: str, s3_uri, content_type: str) -> Channel:
    return Channel(
        channel_name=name,
        content_type=content_type,
        compression_type="None",
        input_mode="File",
        data_source=DataSource(
            s3_data_source=S3DataSource(
                s3_data_type="S3Prefix", s3_uri=s3_uri, s3_data_distribution_type="FullyReplicated"
            )
        ),
    )


def prepared_prefix(name: str) -> list:
    return ["s3:/", SENTINELS.datasets_bucket, "prepared", ExecutionVariables.PIPELINE_EXECUTION_ID, name]


def artifact_prefix(pipeline_name: str, name: str) -> list:
    return ["pipelines", pipeline_name, ExecutionVariables.PIPELINE_EXECUTION_ID, name]


def artifact_uri(pipeline_name: str, name: str) -> list:
    return ["s3:/", SENTINELS.artifacts_bucket, *artifact_prefix(pipeline_name, name)]


def checkpoint_uri(pipeline_name: str) -> list:
    return ["s3:/", SENTINELS.artifacts_bucket, "checkpoints", pipeline_name, ExecutionVariables.PIPELINE_EXECUTION_ID]


def volume_kms_key(default_instance_type: str) -> str | None:
    # Decided on the configured default instance type: overriding the instance-type parameter at start
    # with a family on the other side of the local-storage line needs a configuration change instead.
    return None if has_local_instance_storage(default_instance_type) else SENTINELS.kms_key_arn


def decimal_argument(value: float) -> str:
    return format(Decimal(repr(float(value))), "f")
