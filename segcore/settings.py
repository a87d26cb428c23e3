"""Typed configuration of the preprocessor functions, read once from environment variables.

The variables, their defaults and their validation are the contract in ``contracts.lambda_env``, which the stack
writes with; this module adds the two tunables the stack does not set and the per-handler requirements. Every
problem is reported in one ``SettingsError`` that names the variable, what it got and what is allowed. Variables
that only some functions need (bucket, endpoint names, class names) are optional in the contract; each handler
states what it needs with ``get_settings(*required)``.

Lambda-only tunables (name: default, meaning):

- ASYNC_REQUEST_TTL_SECONDS: 21600, RequestTTLSeconds of InvokeEndpointAsync (60..21600)
- REALTIME_MAX_PAYLOAD_BYTES: 6291456 (1..6291456, the SageMaker real-time body limit)
- INGEST_RECORD_CONCURRENCY: 10 (1..10, SQS's largest batch): records of one batch the ingest function handles at
  once (their S3 and SageMaker calls overlap; 1: one after another)
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

from contracts.lambda_env import (
    DEFAULT_KEY_PATTERN,
    KEY_PATTERN_GROUPS,
    PreprocessorEnvironment,
    default_palette,
    int_range,
    variable,
)
from contracts.lambda_env import EnvironmentContractError as SettingsError

from .imaging import PrepareOptions

SAGEMAKER_REALTIME_BODY_LIMIT = 6_291_456

# Names a handler may pass to get_settings() / Settings.require().
OPTIONAL_VARIABLES = {
    "INFERENCE_BUCKET": "inference_bucket",
    "ASYNC_ENDPOINT_NAME": "async_endpoint_name",
    "REALTIME_ENDPOINT_NAME": "realtime_endpoint_name",
    "CLASS_NAMES": "class_names",
}

__all__ = ["DEFAULT_KEY_PATTERN", "KEY_PATTERN_GROUPS", "OPTIONAL_VARIABLES", "SAGEMAKER_REALTIME_BODY_LIMIT",
           "Settings", "SettingsError", "default_palette", "get_settings"]


@dataclass(frozen=True)
class Settings(PreprocessorEnvironment):
    """The stack's contract plus the Lambda-only tunables (their defaults are the service limits)."""

    async_request_ttl_seconds: int = variable("ASYNC_REQUEST_TTL_SECONDS", 21600, int_range(60, 21600))
    realtime_max_payload_bytes: int = variable("REALTIME_MAX_PAYLOAD_BYTES", SAGEMAKER_REALTIME_BODY_LIMIT,
                                               int_range(1, SAGEMAKER_REALTIME_BODY_LIMIT))
    ingest_record_concurrency: int = variable("INGEST_RECORD_CONCURRENCY", 10, int_range(1, 10))

    def prepare_options(self) -> PrepareOptions:
        """What ``prepare_frame`` does with a frame under these settings: the one mapping, used by the ingest function,
        the real-time front, the gate's serving step (training/serving.py) and the roadseg command."""
        return PrepareOptions(target_size=self.target_size, roi=self.roi, max_bytes=self.max_input_bytes,
                              max_pixels=self.max_input_pixels, jpeg_quality=self.jpeg_quality)

    def require(self, *names: str) -> Settings:
        """Raise SettingsError naming every variable in ``names`` that is not set."""
        missing = []
        for name in names:
            attr = OPTIONAL_VARIABLES.get(name)
            if attr is None:
                raise ValueError(f"{name} is not an optional setting (known: {', '.join(OPTIONAL_VARIABLES)})")
            if not getattr(self, attr):
                missing.append(name)
        if missing:
            raise SettingsError([f"{name}: required by this function but not set" for name in missing], tuple(missing))
        return self


@lru_cache(maxsize=8)
def get_settings(*required: str) -> Settings:
    """Settings from ``os.environ``, loaded once per process (tests call ``get_settings.cache_clear()``)."""
    return Settings.from_env(os.environ).require(*required)
