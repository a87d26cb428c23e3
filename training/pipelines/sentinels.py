"""Stand-ins for the deployment's values while the SDK generates.

Every deployment-specific value (role, buckets, KMS key, images, code locations, subnets) is generated as a unique
literal *sentinel* that passes the SDK's checks, and the sentinels are then replaced in the JSON by the ``${Name}``
placeholders of training.pipelines.placeholders (definition.py). The processing code is an ``s3://`` URI: a local
path would be uploaded while generating.
"""

from __future__ import annotations

from dataclasses import dataclass

from training.pipelines.sdk import REGION, image_uris, quiet_sdk
from training.pipelines.settings import MAX_VPC_SECURITY_GROUPS, MAX_VPC_SUBNETS


@dataclass(frozen=True)
class Sentinels:
    """Unique literal stand-ins that satisfy the SDK's checks, replaced by ``${Name}`` at the end."""

    # Real image URIs (from the SDK's offline table), so that nothing validates against a fake.
    algorithm_image: str
    processing_image: str
    export_image: str
    role_arn: str = "arn:aws:iam::123456789012:role/roadseg-sentinel-role"
    datasets_bucket: str = "roadseg-sentinel-datasets"
    artifacts_bucket: str = "roadseg-sentinel-artifacts"
    kms_key_arn: str = "arn:aws:kms:us-east-1:123456789012:key/roadseg-sentinel-kms"
    code_entry_uri: str = "s3://roadseg-sentinel-code/entry/processing_entry.py"
    code_package_uri: str = "s3://roadseg-sentinel-code/package/training.zip"
    export_wheels_uri: str = "s3://roadseg-sentinel-code/wheels/export.zip"
    job_settings_uri: str = "s3://roadseg-sentinel-code/settings/job-settings.zip"

    def placeholders(self) -> dict[str, str]:
        """sentinel -> placeholder, most specific first (URIs before the buckets they contain)."""
        return {
            self.code_entry_uri: "CodeEntryUri",
            self.code_package_uri: "CodePackageUri",
            self.export_wheels_uri: "ExportWheelsUri",
            self.job_settings_uri: "JobSettingsUri",
            self.role_arn: "RoleArn",
            self.kms_key_arn: "KmsKeyArn",
            self.algorithm_image: "AlgorithmImage",
            self.processing_image: "ProcessingImage",
            self.export_image: "ExportImage",
            self.datasets_bucket: "DatasetsBucket",
            self.artifacts_bucket: "ArtifactsBucket",
            **{subnet_sentinel(i): f"Subnet{i}" for i in range(MAX_VPC_SUBNETS)},
            **{security_group_sentinel(i): f"SecurityGroup{i}" for i in range(MAX_VPC_SECURITY_GROUPS)},
        }


def subnet_sentinel(index: int) -> str:
    return f"subnet-roadseg{index:02d}sentinel"


def security_group_sentinel(index: int) -> str:
    return f"sg-roadseg{index:02d}sentinel"


def _make_sentinels() -> Sentinels:
    with quiet_sdk():
        return Sentinels(
            algorithm_image=image_uris.retrieve("semantic-segmentation", REGION),
            # PyTorch CPU training image: Python 3 with numpy and Pillow.
            processing_image=image_uris.retrieve(
                "pytorch",
                REGION,
                version="2.8",
                py_version="py312",
                instance_type="ml.m5.xlarge",
                image_scope="training",
            ),
            # Python 3.11 (MXNet 1.9.1's ceiling): the PyTorch 2.5 CPU training image; the export installs its own
            # pinned environment into a venv, so only the interpreter comes from the image.
            export_image=image_uris.retrieve(
                "pytorch", REGION, version="2.5", py_version="py311", instance_type="ml.m5.xlarge",
                image_scope="training",
            ),
        )


SENTINELS = _make_sentinels()
