"""The reference profile of the model now serving: where it is and what it holds (pure; the caller fetches).

The chain the scheduled job and ``roadseg monitor status`` follow: the serving SSM parameter
(``contracts.naming.serving_package_parameter``: the rollout writes the approved package's ARN into it) ->
DescribeModelPackage -> ``DriftCheckBaselines.ModelDataQuality.Statistics.S3Uri`` (the gate writes the profile
next to evaluation.json and points the package at it) -> the profile document, validated with
``contracts.signals.validate_reference_profile``. A rollout switches the parameter, so the reference follows the
model. DescribeModelPackage's response shape:
https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_DescribeModelPackage.html (DriftCheckBaselines ->
ModelDataQuality -> Statistics: MetricsSource with ContentType and S3Uri).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from contracts.documents import DocumentError
from contracts.naming import NO_MODEL_PACKAGE
from contracts.signals import reference_profile_uri, validate_reference_profile
from segcore.keys import parse_s3_uri

DESCRIBE_MODEL_PACKAGE_DOC = "https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_DescribeModelPackage.html"


class ReferenceProfileError(ValueError):
    """The serving model has no usable reference profile; the message says which package and what to do."""


@dataclass(frozen=True)
class ServingReference:
    package_arn: str
    package_version: str | None  # the model package version (the ARN's last part), as results name it
    profile_uri: str


def serving_package(parameter_value: str | None) -> str | None:
    """The serving package ARN from the SSM parameter's value; None while no package is approved."""
    value = (parameter_value or "").strip()
    return None if not value or value == NO_MODEL_PACKAGE else value


# An operator's way to give a package registered before the gate wrote profiles one: UpdateModelPackage cannot add
# DriftCheckBaselines (set at creation only) but can set CustomerMetadataProperties (keys 1..128, values 1..256
# characters, UPDATE_MODEL_PACKAGE_DOC), e.g. ``aws sagemaker update-model-package --model-package-arn ARN
# --customer-metadata-properties ReferenceProfile=s3://bucket/pipelines/.../reference-profile.json``. Read only when
# DriftCheckBaselines has no profile (the gate's registration wins).
REFERENCE_PROFILE_METADATA_KEY = "ReferenceProfile"
UPDATE_MODEL_PACKAGE_DOC = "https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_UpdateModelPackage.html"


def reference_of_package(describe: Mapping[str, Any]) -> ServingReference:
    """The profile's S3 URI from a DescribeModelPackage response (DriftCheckBaselines, else the operator's
    CustomerMetadataProperties ``ReferenceProfile``); ReferenceProfileError when the package has neither."""
    arn = str(describe.get("ModelPackageArn") or "?")
    version = describe.get("ModelPackageVersion")
    uri = reference_profile_uri(describe)  # the one place the location is written (the gate registers it there)
    if uri is None:
        uri = (describe.get("CustomerMetadataProperties") or {}).get(REFERENCE_PROFILE_METADATA_KEY)
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        raise ReferenceProfileError(
            f"model package {arn} has no DriftCheckBaselines.ModelDataQuality.Statistics.S3Uri: it was registered "
            "before the gate wrote reference profiles; approve a package from a newer pipeline run, or attach a "
            f"profile: aws sagemaker update-model-package --model-package-arn {arn} --customer-metadata-properties "
            f"{REFERENCE_PROFILE_METADATA_KEY}=s3://... ({DESCRIBE_MODEL_PACKAGE_DOC})")
    return ServingReference(arn, str(version) if version is not None else None, uri)


def split_s3_uri(uri: str) -> tuple[str, str]:
    """(bucket, key) of ``s3://bucket/key`` (segcore.keys.parse_s3_uri), a bad URI a ReferenceProfileError."""
    try:
        return parse_s3_uri(uri)
    except ValueError:
        raise ReferenceProfileError(f"{uri!r} is not an s3://bucket/key URI") from None


def parse_profile(body: bytes | str, where: str) -> dict[str, Any]:
    """The validated profile document; ReferenceProfileError naming ``where`` and the problem."""
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ReferenceProfileError(f"{where}: the reference profile is not JSON ({exc})") from None
    try:
        return validate_reference_profile(doc)
    except DocumentError as exc:
        raise ReferenceProfileError(f"{where}: {exc}") from None


def profile_cameras(profile: Mapping[str, Any]) -> list[str]:
    return sorted((profile.get("cameras") or {}).keys())
