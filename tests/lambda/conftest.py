"""Fixtures of the Lambda tests: offline AWS env, real images, moto buckets and queues.

``lambda`` is a Python keyword, so the code directory is not a package: pytest's ``pythonpath`` (pyproject.toml)
holds it, and the tests import ``roadseg_lambda`` and the handler modules (``ingest``, ``postprocess``,
``realtime``) exactly as the Lambda runtime does.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

LAMBDA_DIR = Path(__file__).resolve().parents[2] / "lambda"

# Powertools settings, before any handler module (and its Logger/Metrics) is imported. The offline AWS
# settings (fake credentials, region, no instance metadata) come from tests/conftest.py, loaded first.
os.environ.update(
    {
        "POWERTOOLS_METRICS_NAMESPACE": "roadseg-test",
        "POWERTOOLS_SERVICE_NAME": "roadseg-lambda-test",
        "POWERTOOLS_LOG_LEVEL": "INFO",
    }
)

from lambda_testkit import (  # noqa: E402
    BASE_ENV,
    INFERENCE_BUCKET,
    INGEST_BUCKET,
    FakeContext,
    camera_array,
    encode,
)
from roadseg_lambda import aws  # noqa: E402

from segcore.settings import Settings, get_settings  # noqa: E402

# Every variable the functions read (the contract plus the Lambda-only tunables); Powertools' are set above.
ALL_SETTINGS = tuple(
    f.metadata["env"].name for f in dataclasses.fields(Settings) if not f.metadata["env"].name.startswith("POWERTOOLS_")
)


# ----------------------------------------------------------------------------------------- images


@pytest.fixture(scope="session")
def frame_rgb() -> np.ndarray:
    return camera_array(320, 240)


@pytest.fixture(scope="session")
def frame_jpeg(frame_rgb: np.ndarray) -> bytes:
    return encode(frame_rgb, "JPEG", quality=92)


@pytest.fixture(scope="session")
def frame_png(frame_rgb: np.ndarray) -> bytes:
    return encode(frame_rgb, "PNG")


# ------------------------------------------------------------------------------------ environment


@pytest.fixture
def lambda_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """A clean configuration for the handlers (tests adjust it with monkeypatch.setenv + reload())."""
    for name in ALL_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    for name, value in BASE_ENV.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    aws.reset_clients()
    yield dict(BASE_ENV)
    get_settings.cache_clear()
    aws.reset_clients()


@pytest.fixture
def context() -> FakeContext:
    return FakeContext(aws_request_id=str(uuid.uuid4()))


class _CurrentStdout:
    """A stream that writes to whatever sys.stdout is at the time of the write (capsys swaps it)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


@pytest.fixture(autouse=True)
def _logs_to_capsys() -> None:
    """Powertools' log handler keeps the sys.stdout of import time: make it follow the test's capture."""
    for name in ("ingest", "postprocess", "realtime"):
        module = sys.modules.get(name)
        for handler in module.logger.handlers if module is not None else []:
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler.stream, _CurrentStdout):
                handler.stream = _CurrentStdout()  # not setStream(): it flushes the old, maybe closed, stream


@pytest.fixture(autouse=True)
def _clear_powertools_metrics() -> Iterator[None]:
    """Metrics added outside a handler (direct calls) must not leak into the next test's EMF output."""
    yield
    for name in ("ingest", "postprocess", "realtime"):
        module = sys.modules.get(name)
        if module is not None:
            module.metrics.clear_metrics()


# -------------------------------------------------------------------------------------- moto AWS


@pytest.fixture
def aws_env(lambda_env: dict[str, str]) -> Iterator[dict[str, Any]]:
    """moto: a versioned ingest bucket notifying an SQS queue on incoming/, and the inference bucket."""
    import boto3
    from moto import mock_aws

    with mock_aws():
        s3 = boto3.client("s3")
        sqs = boto3.client("sqs")
        s3.create_bucket(Bucket=INGEST_BUCKET)
        s3.put_bucket_versioning(Bucket=INGEST_BUCKET, VersioningConfiguration={"Status": "Enabled"})
        s3.create_bucket(Bucket=INFERENCE_BUCKET)
        queue_url = sqs.create_queue(QueueName="roadseg-ingest")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        s3.put_bucket_notification_configuration(
            Bucket=INGEST_BUCKET,
            NotificationConfiguration={
                "QueueConfigurations": [
                    {
                        "QueueArn": queue_arn,
                        "Events": ["s3:ObjectCreated:*"],
                        "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "incoming/"}]}},
                    }
                ]
            },
        )
        aws.reset_clients()
        yield {"s3": s3, "sqs": sqs, "queue_url": queue_url, "queue_arn": queue_arn}
        aws.reset_clients()
