"""Instance families: one definition for the config check, the pipelines and the endpoint configs."""

from __future__ import annotations

import pytest

import training.pipelines.blocks
from contracts.instances import (
    GPU_FAMILIES,
    HOSTING_FAMILIES,
    INFERENCE_CPU_FAMILIES,
    INFERENCE_GPU_FAMILIES,
    NVME_FAMILIES,
    TRAINING_FAMILIES,
    has_local_instance_storage,
    instance_family,
)


def test_nvme_families_are_the_gpu_families_with_local_storage():
    assert set(NVME_FAMILIES) == {"g4dn", "g5", "g6", "g6e", "p3dn", "p4d", "p4de", "p5"}
    assert set(NVME_FAMILIES) <= set(GPU_FAMILIES)
    assert not has_local_instance_storage("ml.p3.2xlarge") and not has_local_instance_storage("p2")


def test_the_pipelines_use_the_one_definition():
    assert training.pipelines.blocks.has_local_instance_storage is has_local_instance_storage


@pytest.mark.parametrize(("value", "family"), [("ml.g4dn.xlarge", "g4dn"), ("ml.p4de.24xlarge", "p4de"), ("g5", "g5")])
def test_instance_family(value, family):
    assert instance_family(value) == family


def test_the_instance_matrix_is_the_algorithms_documented_families():
    # semantic-segmentation.html#semantic-segmentation-instances: training on P2, P3, G4dn or G5; inference on CPU
    # (such as C5 and M5) or GPU (such as P3 and G4dn). roadseg hosts on the GPU ones.
    assert TRAINING_FAMILIES == ("p2", "p3", "g4dn", "g5")
    assert INFERENCE_GPU_FAMILIES == HOSTING_FAMILIES == ("p3", "g4dn")
    assert INFERENCE_CPU_FAMILIES == ("c5", "m5")
    assert set(TRAINING_FAMILIES) | set(HOSTING_FAMILIES) <= set(GPU_FAMILIES)
    assert not set(INFERENCE_CPU_FAMILIES) & set(GPU_FAMILIES)
