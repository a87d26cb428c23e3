"""SageMaker instance families: which have a GPU, and which have local NVMe instance storage.

The one definition behind the configuration check (GPU-only training, transform and endpoints), the pipelines'
storage-volume key and the endpoint configs' storage key. Standard library only: ``training`` is the lowest
layer that both the stacks and the pipeline definitions import.
"""

from __future__ import annotations

import re

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
