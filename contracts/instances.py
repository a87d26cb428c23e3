"""SageMaker instance families: which have a GPU, which have local NVMe instance storage, which the Semantic
Segmentation algorithm documents for training and inference, and their GPU memory.

The one definition behind the configuration check (the instance matrix: training, transform and endpoints), the
training batch-size estimates, the pipelines' storage-volume key and the endpoint configs' storage key. Standard
library only, in ``contracts`` because the config model, the stacks and the pipeline definitions all read it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Families with a GPU (training is GPU-only for this algorithm; the endpoints are GPU by design).
GPU_FAMILIES = ("p2", "p3", "p3dn", "p4d", "p4de", "p5", "g4dn", "g5", "g6", "g6e")

# Instance families with local NVMe instance storage: SageMaker rejects a storage-volume KmsKeyId for them
# ("You can't request a VolumeKmsKeyId when using an instance type with local storage", API reference of
# ResourceConfig, TransformResources, ProcessingClusterConfig, and CreateEndpointConfig's KmsKeyId); their
# local storage is hardware-encrypted. These are the ones whose name does not say so: besides them, every
# family whose attribute letters contain "d" has local storage (c5d, m5d, m6id, g4dn, p3dn, p4d, p4de, ...).
_LOCAL_STORAGE_WITHOUT_D = frozenset(
    {"g5", "g6", "g6e", "gr6", "p5", "p5e", "p5en", "trn1", "trn1n", "trn2", "inf2", "i3", "i3en", "i4i"}
)


def instance_family(instance_type: str) -> str:
    """``ml.g4dn.xlarge`` -> ``g4dn``; a bare family is returned as it is."""
    return instance_type.split(".")[1] if instance_type.count(".") >= 2 else instance_type


def has_local_instance_storage(instance_type: str) -> bool:
    """Whether an instance type (``ml.g5.xlarge``) or family (``g5``) has local NVMe instance storage."""
    family = instance_family(instance_type)
    match = re.fullmatch(r"([a-z]+)(\d+)([a-z]*)", family)
    return family in _LOCAL_STORAGE_WITHOUT_D or bool(match and "d" in match.group(3))


# The GPU families with local NVMe storage: no storage-volume key for these.
NVME_FAMILIES = tuple(f for f in GPU_FAMILIES if has_local_instance_storage(f))


# --------------------------------------------------------------------------------------------------
# The instance matrix of the built-in Semantic Segmentation algorithm
# --------------------------------------------------------------------------------------------------
# "EC2 Instance Recommendation for the Semantic Segmentation Algorithm",
# https://docs.aws.amazon.com/sagemaker/latest/dg/semantic-segmentation.html#semantic-segmentation-instances :
# "only supports GPU instances for training ... can be trained using P2, P3, G4dn, or G5 instances in single machine
# configurations"; "For inference, you can use either CPU instances (such as C5 and M5) and GPU instances (such as
# P3 and G4dn) or both". Families the page does not name (p3dn, p4d, p5, g6, g6e for training; g5, g6 for hosting)
# are refused rather than assumed to work.
ALGORITHM_DOCS = "https://docs.aws.amazon.com/sagemaker/latest/dg/semantic-segmentation.html#semantic-segmentation-instances"
TRAINING_FAMILIES = ("p2", "p3", "g4dn", "g5")
INFERENCE_CPU_FAMILIES = ("c5", "m5")
INFERENCE_GPU_FAMILIES = ("p3", "g4dn")
# roadseg hosts on GPUs only, by design: the real-time and async endpoints and the validation transform (batch
# transform of this algorithm on CPU hosts has user reports of "Algorithm Error", aws/sagemaker-python-sdk#2084).
HOSTING_FAMILIES = INFERENCE_GPU_FAMILIES


@dataclass(frozen=True)
class TrainingGpu:
    """The GPU of a training family and how many ResNet-50 training crops of 512x512 fit on one of them."""

    family: str
    gpu: str
    memory_gib: int  # per GPU
    batch_at_512: int  # ResNet-50 crops of 512x512 per GPU (see the note below the table)
    batch_measured: bool = False  # False: the batch size is an ESTIMATE, not measured on the built-in algorithm


# Per GPU memory: Amazon EC2 accelerated computing instance specifications
# (https://docs.aws.amazon.com/ec2/latest/instancetypes/ac.html).
# batch_at_512 is an ESTIMATE until measured (batch_measured=False): about 2 GiB per 512x512 sample for a dilated
# (output stride 8) ResNet-50 FCN/PSP/DeepLabV3 head in FP32 with its auxiliary head, plus about 2 GiB of weights,
# optimizer state and workspace, less ~20 % headroom. AWS publishes no memory figure for the built-in algorithm.
TRAINING_GPUS: dict[str, TrainingGpu] = {
    "p2": TrainingGpu("p2", "NVIDIA K80", 12, 4),
    "p3": TrainingGpu("p3", "NVIDIA V100", 16, 6),
    "g4dn": TrainingGpu("g4dn", "NVIDIA T4", 16, 6),
    "g5": TrainingGpu("g5", "NVIDIA A10G", 24, 8),
}
# GPUs per instance for the multi-GPU sizes of the training families (every other size has one GPU); same source.
_MULTI_GPU_SIZES = {
    "ml.p2.8xlarge": 8,
    "ml.p2.16xlarge": 16,
    "ml.p3.8xlarge": 4,
    "ml.p3.16xlarge": 8,
    "ml.g4dn.12xlarge": 4,
    "ml.g5.12xlarge": 4,
    "ml.g5.24xlarge": 4,
    "ml.g5.48xlarge": 8,
}


def gpu_count(instance_type: str) -> int:
    """GPUs of a training instance type (``ml.p3.8xlarge`` -> 4); 1 for the single-GPU sizes."""
    return _MULTI_GPU_SIZES.get(instance_type, 1)


def training_gpu(instance_type: str) -> TrainingGpu:
    """The GPU table row of a training instance type; KeyError for a family the algorithm does not document."""
    return TRAINING_GPUS[instance_family(instance_type)]
