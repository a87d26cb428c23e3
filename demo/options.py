"""What the rehearsal is asked to do (``python -m demo``'s options) and the resource names it uses."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from contracts import naming
from envconfig.config import EnvironmentConfig

DEFAULT_REGION = "us-east-1"


class RehearsalError(RuntimeError):
    """The rehearsal could not run (configuration, environment); the message says why."""


@dataclass(frozen=True)
class Options:
    env: str = "dev"
    frames: int = 8
    width: int = 1280
    height: int = 640
    out: Path = Path("demo-out")
    seed: int = 2026
    noise: float = 0.05
    readme_picture: Path | None = None
    drive: bool = True  # the drive stage (demo/drive.py)
    drive_seconds: float = 3.0
    drive_hz: float = 5.0


@dataclass(frozen=True)
class Names:
    """Every resource name of the rehearsal, derived from the typed configuration like the stacks do."""

    region: str
    datasets_bucket: str
    artifacts_bucket: str
    inference_bucket: str
    assets_bucket: str
    ingest_queue: str
    ingest_dlq: str
    success_topic: str
    error_topic: str
    postprocess_tap: str
    execution_role: str
    realtime_endpoint: str
    async_endpoint: str
    training_pipeline: str
    tuning_pipeline: str
    model_package_group: str
    inference_stack: str
    serving_parameter: str  # the SSM parameter behind the stack's SSM-typed ModelPackageArn
    drives_table: str

    @classmethod
    def from_config(cls, config: EnvironmentConfig, account: str = "123456789012") -> Names:
        prefix, region = config.prefix, config.region or DEFAULT_REGION
        realtime, async_ = naming.endpoint_names(prefix)
        training, tuning = naming.pipeline_names(prefix)
        return cls(
            region=region,
            datasets_bucket=f"{prefix}-datasets", artifacts_bucket=f"{prefix}-artifacts",
            inference_bucket=f"{prefix}-inference",
            assets_bucket=naming.cdk_assets_bucket(account, region),  # where CDK puts file assets
            ingest_queue=f"{prefix}-ingest", ingest_dlq=f"{prefix}-ingest-dlq",
            success_topic=f"{prefix}-async-success", error_topic=f"{prefix}-async-error",
            postprocess_tap=f"{prefix}-rehearsal-postprocess-tap",
            execution_role=f"{prefix}-sagemaker-execution",
            realtime_endpoint=realtime, async_endpoint=async_,
            training_pipeline=training, tuning_pipeline=tuning,
            model_package_group=naming.model_package_group_name(prefix),
            inference_stack=naming.inference_stack_name(prefix),
            serving_parameter=naming.serving_package_parameter(prefix),
            drives_table=naming.drives_table_name(prefix),
        )
