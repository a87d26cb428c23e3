"""boto3 clients (created lazily, once per process) and classification of AWS errors.

The handlers get their clients only through ``s3_client()``, ``runtime_client()``, ``dynamodb_client()`` and
``sagemaker_client()`` so that tests can
replace them (``monkeypatch.setattr(aws, "runtime_client", ...)``) or reset them with ``reset_clients()``.

Clients are created one at a time (``_CREATING``): a client is thread-safe once created, but creating clients from
boto3's default session in several threads at once is not (botocore#2991, boto3#1592), and the ingest function's
records run in threads (roadseg_lambda.batch).
"""

from __future__ import annotations

import re
import threading
from functools import lru_cache
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

_S3_CONFIG = Config(retries={"mode": "standard", "max_attempts": 4}, connect_timeout=5, read_timeout=30)
# Real-time inference may take up to 60 s; retries are the caller's business (API clients retry on 503).
_RUNTIME_CONFIG = Config(retries={"mode": "standard", "max_attempts": 2}, connect_timeout=5, read_timeout=65)

THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "SlowDown",
        "ProvisionedThroughputExceededException",
    }
)
UNAVAILABLE_CODES = frozenset(
    {
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalFailure",
        "InternalError",
        "InternalServerError",
        "InternalServerException",
        "InternalDependencyException",
        "RequestTimeout",
        "RequestTimeoutException",
        "ModelNotReadyException",
    }
)
NOT_FOUND_CODES = frozenset({"NoSuchKey", "NoSuchVersion", "404", "NotFound"})
# ValidationError messages of endpoints that are being created, updated or scaled (retry later).
_TRANSIENT_VALIDATION = re.compile(r"endpoint .*(not found|is (being )?(updated|created|creating|updating))|scal", re.I)


_CREATING = threading.RLock()


def _create(service: str, config: Config) -> Any:
    with _CREATING:
        return boto3.client(service, config=config)


def _once(factory: Any) -> Any:
    """``factory`` cached, its first call made under ``_CREATING`` (so every thread gets the one client)."""
    cached = lru_cache(maxsize=1)(factory)

    def get() -> Any:
        with _CREATING:
            return cached()

    get.cache_clear = cached.cache_clear  # type: ignore[attr-defined]
    return get


@_once
def _cached_s3() -> Any:
    return _create("s3", _S3_CONFIG)


@_once
def _cached_runtime() -> Any:
    return _create("sagemaker-runtime", _RUNTIME_CONFIG)


@_once
def _cached_dynamodb() -> Any:
    return _create("dynamodb", _S3_CONFIG)


@_once
def _cached_sagemaker() -> Any:
    return _create("sagemaker", _S3_CONFIG)


def s3_client() -> Any:
    return _cached_s3()


def dynamodb_client() -> Any:
    return _cached_dynamodb()


def sagemaker_client() -> Any:
    return _cached_sagemaker()


def runtime_client() -> Any:
    return _cached_runtime()


def reset_clients() -> None:
    """Forget the clients (tests: new clients inside each moto context)."""
    _cached_s3.cache_clear()
    _cached_runtime.cache_clear()
    _cached_dynamodb.cache_clear()
    _cached_sagemaker.cache_clear()


def error_code(exc: BaseException) -> str | None:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code") or "") or None
    return None


def error_message(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Message") or exc)
    return str(exc)


def is_not_found(exc: BaseException) -> bool:
    return error_code(exc) in NOT_FOUND_CODES


def is_throttling(exc: BaseException) -> bool:
    return error_code(exc) in THROTTLING_CODES


def is_transient(exc: BaseException) -> bool:
    """Errors worth retrying later: throttling, service/endpoint unavailability, network failures."""
    if isinstance(exc, (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ConnectionClosedError)):
        return True
    code = error_code(exc)
    if code is None:
        return False
    if code in THROTTLING_CODES or code in UNAVAILABLE_CODES:
        return True
    if code in ("ValidationError", "ValidationException"):
        return bool(_TRANSIENT_VALIDATION.search(error_message(exc)))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") if isinstance(exc, ClientError) else None
    return isinstance(status, int) and (status == 429 or status >= 500)
