"""Container images per region, from the SageMaker SDK's offline image-URI table.

The stacks may be env-agnostic (dev), so the region is only known at deploy time: the images go into a
CloudFormation mapping keyed by region and are picked with Fn::FindInMap on AWS::Region.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

import aws_cdk as cdk
from constructs import Construct

from envconfig.config import ConfigError, EnvironmentConfig
from stacks.compliance import partition_of

ALGORITHM = "semantic-segmentation"
# Prepare/Evaluate need Python with numpy and Pillow: the AWS PyTorch CPU training image has both.
PROCESSING_FRAMEWORK, PROCESSING_VERSION, PROCESSING_PY = "pytorch", "2.6.0", "py312"
# ExportModel needs Python 3.11 (MXNet 1.9.1's ceiling) with venv and pip: the PyTorch 2.5 CPU training image. Only its
# interpreter is used; the export environment comes from the shipped wheels.
EXPORT_VERSION, EXPORT_PY = "2.5", "py311"

_URI = re.compile(r"^(?P<account>\d{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.(?P<domain>[a-z.]+)/(?P<repo>[^:]+):")


@dataclass(frozen=True)
class RegionImages:
    algorithm: str
    algorithm_repository_arn: str
    processing: str
    processing_repository_arn: str
    export: str
    export_repository_arn: str


def _repository_arn(uri: str) -> str:
    match = _URI.match(uri)
    if not match:
        raise ValueError(f"unexpected image URI {uri}")
    region = match["region"]
    return f"arn:{partition_of(region)}:ecr:{region}:{match['account']}:repository/{match['repo']}"


@cache
def images_by_region() -> dict[str, RegionImages]:
    """Regions where the algorithm, processing and export images are all published (commercial, GovCloud, China)."""
    # The SDK's image-URI table, imported where the SDK's offline import traps are handled, on first use: importing
    # this module (every stack that maps images) does not load the SDK.
    from training.pipelines.sdk import image_uris

    found = {}
    for region in image_uris.config_for_framework(ALGORITHM)["versions"]["1"]["registries"]:
        if region.startswith(("us-iso",)):
            continue
        try:
            algorithm = image_uris.retrieve(ALGORITHM, region)
            processing = image_uris.retrieve(PROCESSING_FRAMEWORK, region, version=PROCESSING_VERSION,
                                             py_version=PROCESSING_PY, instance_type="ml.m5.xlarge",
                                             image_scope="training")
            export = image_uris.retrieve(PROCESSING_FRAMEWORK, region, version=EXPORT_VERSION, py_version=EXPORT_PY,
                                         instance_type="ml.m5.xlarge", image_scope="training")
        except ValueError:
            continue
        found[region] = RegionImages(algorithm, _repository_arn(algorithm), processing, _repository_arn(processing),
                                     export, _repository_arn(export))
    return found


def images_mapping(scope: Construct, config: EnvironmentConfig) -> RegionImagesMapping:
    """The stack's `Images` mapping (one per stack: FindInMap cannot read another stack's mapping)."""
    stack = cdk.Stack.of(scope)
    existing = stack.node.try_find_child("Images")
    if existing is not None:
        return RegionImagesMapping(existing)
    available = images_by_region()
    if config.region and config.region not in available:
        raise ConfigError(f"config/{config.name}.yaml: region: the semantic-segmentation algorithm is not "
                          f"published in '{config.region}' (allowed: {', '.join(available)})")
    mapping = cdk.CfnMapping(stack, "Images", mapping={
        region: {"Algorithm": images.algorithm, "AlgorithmRepository": images.algorithm_repository_arn,
                 "Processing": images.processing, "ProcessingRepository": images.processing_repository_arn,
                 "Export": images.export, "ExportRepository": images.export_repository_arn}
        for region, images in available.items() if config.region in (None, region)
    })
    return RegionImagesMapping(mapping)


@dataclass(frozen=True)
class RegionImagesMapping:
    mapping: cdk.CfnMapping

    def get(self, key: str) -> str:
        return self.mapping.find_in_map(cdk.Aws.REGION, key)
