"""The SageMaker Python SDK v3, imported and run offline: the one module that imports it.

The definitions are built under a ``PipelineSession`` (which records requests instead of sending them) with no
credentials and no network. Importing this module imports the SDK, so only what generates imports it (the step
builders, ``definition``, and stacks/images.py when it first reads the image table); ``settings`` and
``placeholders`` do not.

Offline traps handled here (SDK 3.27): a region must exist before the SDK is imported (a module creates a
boto3 client at import time); importing it configures the root logger; role validation is switched off
(``SAGEMAKER_VALIDATE_ROLE=false``) and the role is a literal ARN; the SDK's telemetry (S3 + STS calls on a
background thread) is patched out while generating; the SDK defaults config files of the developer's machine are
replaced by an empty one, so the definitions do not depend on who runs ``cdk synth`` (an empty one, because a
non-empty config is validated against the SDK's JSON schema on every lookup, ~10 s per definition). The traps of
individual builders are where they are dodged: sentinels.py, steps.py, tuning_job.py.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path

# The SDK creates a boto3 client while it is imported (class body of sagemaker.ai_registry.air_hub.AIRHub),
# which raises NoRegionError without a region: provide one for the import only (removed again below).
_IMPORT_ENVIRONMENT = {
    key: value
    for key, value in {"AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}.items()
    if key not in os.environ
}
os.environ.update(_IMPORT_ENVIRONMENT)
# Importing the SDK runs logging.basicConfig(level=INFO) (sagemaker/core/experiments/_metrics.py): undone below.
_ROOT_LOGGING = (logging.root.level, list(logging.root.handlers))

with warnings.catch_warnings():
    # The SDK imports its own deprecated shims (DeprecationWarning on import): nothing for us to fix.
    warnings.simplefilter("ignore", DeprecationWarning)
    import boto3
    import sagemaker.core.telemetry.telemetry_logging as _core_telemetry
    import sagemaker.serve.utils.telemetry_logger as _serve_telemetry
    from sagemaker.core import image_uris
    from sagemaker.core.drift_check_baselines import DriftCheckBaselines
    from sagemaker.core.model_metrics import MetricsSource, ModelMetrics
    from sagemaker.core.network import NetworkConfig
    from sagemaker.core.parameter import CategoricalParameter, ContinuousParameter, IntegerParameter
    from sagemaker.core.processing import Processor
    from sagemaker.core.shapes import (
        Channel,
        DataSource,
        ProcessingInput,
        ProcessingOutput,
        ProcessingS3Input,
        ProcessingS3Output,
        S3DataSource,
    )
    from sagemaker.core.training.configs import (
        CheckpointConfig,
        Compute,
        Networking,
        OutputDataConfig,
        StoppingCondition,
    )
    from sagemaker.core.transformer import Transformer
    from sagemaker.core.workflow.conditions import (
        ConditionEquals,
        ConditionGreaterThanOrEqualTo,
        ConditionLessThanOrEqualTo,
    )
    from sagemaker.core.workflow.execution_variables import ExecutionVariables
    from sagemaker.core.workflow.functions import Join, JsonGet
    from sagemaker.core.workflow.parameters import ParameterFloat, ParameterInteger, ParameterString
    from sagemaker.core.workflow.pipeline_context import PipelineSession
    from sagemaker.core.workflow.properties import PropertyFile
    from sagemaker.mlops.workflow import (
        ConditionStep,
        FailStep,
        ModelStep,
        Pipeline,
        ProcessingStep,
        TrainingStep,
        TransformStep,
        TuningStep,
    )
    from sagemaker.serve.model_builder import ModelBuilder
    from sagemaker.train import ModelTrainer
    from sagemaker.train.tuner import HyperparameterTuner

logging.root.setLevel(_ROOT_LOGGING[0])
logging.root.handlers[:] = _ROOT_LOGGING[1]
for _key in _IMPORT_ENVIRONMENT:
    os.environ.pop(_key, None)

# What the step builders take from the SDK (they import it from here, after the traps above).
__all__ = [
    "CategoricalParameter", "Channel", "CheckpointConfig", "Compute", "ConditionEquals",
    "ConditionGreaterThanOrEqualTo", "ConditionLessThanOrEqualTo", "ConditionStep", "ContinuousParameter",
    "DataSource", "DriftCheckBaselines", "ExecutionVariables", "FailStep", "HyperparameterTuner",
    "IntegerParameter", "Join", "JsonGet", "MetricsSource", "ModelBuilder", "ModelMetrics", "ModelStep",
    "ModelTrainer", "NetworkConfig", "Networking", "OutputDataConfig", "ParameterFloat", "ParameterInteger",
    "ParameterString", "Pipeline", "PipelineSession", "ProcessingInput", "ProcessingOutput", "ProcessingS3Input",
    "ProcessingS3Output", "ProcessingStep", "Processor", "PropertyFile", "REGION", "S3DataSource",
    "StoppingCondition", "TrainingStep", "TransformStep", "Transformer", "TuningStep", "image_uris",
    "offline_session", "quiet_sdk",
]

REGION = "us-east-1"  # only used to pick sentinel values; nothing regional remains in the output


@contextlib.contextmanager
def offline_session(default_bucket: str) -> Iterator[PipelineSession]:
    """Hermetic SDK: fixed region, no credentials lookup, no role validation, no telemetry, no user config."""
    with tempfile.TemporaryDirectory(prefix="roadseg-sdk-config-") as config_dir:
        config_file = Path(config_dir, "config.yaml")
        # Empty on purpose: the SDK validates a non-empty config against its JSON schema on every lookup
        # (~0.13 s each, ~10 s per definition); telemetry is patched out below instead of opted out.
        config_file.write_text("{}\n")
        environment = {
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true",
            "SAGEMAKER_VALIDATE_ROLE": "false",
            "SAGEMAKER_ADMIN_CONFIG_OVERRIDE": str(config_file),
            "SAGEMAKER_USER_CONFIG_OVERRIDE": str(config_file),
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_PROFILE": None,
        }
        with (
            _environment(environment),
            _patched(_core_telemetry, "_send_telemetry_request", _no_telemetry),
            _patched(_serve_telemetry, "_send_telemetry", _no_telemetry),
            quiet_sdk(),
        ):
            # Static dummy credentials: the credential chain (profiles, SSO, metadata) is never consulted,
            # and a request sent by mistake would fail instead of using the caller's identity.
            boto_session = boto3.Session(
                region_name=REGION, aws_access_key_id="offline", aws_secret_access_key="offline"
            )
            yield PipelineSession(boto_session=boto_session, default_bucket=default_bucket)


@contextlib.contextmanager
def quiet_sdk() -> Iterator[None]:
    """Keep cdk synth output readable: the SDK logs every default it applies and warns about known behaviour."""
    loggers = [logging.getLogger(n) for n in list(logging.root.manager.loggerDict) if n.split(".")[0] == "sagemaker"]
    loggers.append(logging.getLogger("sagemaker"))
    levels = [(lg, lg.level) for lg in loggers]
    try:
        for lg, _ in levels:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in levels:
            lg.setLevel(level)


def _no_telemetry(*_args, **_kwargs) -> None:
    return None


@contextlib.contextmanager
def _environment(values: Mapping[str, str | None]) -> Iterator[None]:
    saved = {key: os.environ.get(key) for key in values}
    try:
        for key, value in values.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _patched(module, attribute: str, replacement) -> Iterator[None]:
    original = getattr(module, attribute)
    setattr(module, attribute, replacement)
    try:
        yield
    finally:
        setattr(module, attribute, original)
