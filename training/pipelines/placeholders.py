"""The interface with the stack: the ``${Name}`` placeholders it fills in with ``Fn::Sub``, and where the code it
ships is mounted in the jobs. Imports no SageMaker SDK."""

from __future__ import annotations

from contracts.job_settings import SETTINGS_DIR
from contracts.layout import PROCESSING_CODE_DIR
from contracts.layout import PROCESSING_ENTRYPOINT as _ENTRYPOINT
from training.pipelines.settings import PipelineSettings

# PrepareDataset and EvaluateModel run ``python3 <entry script> <module> [args]``. The entry script is one
# S3 object (CodeEntryUri) downloaded into CODE_DIR under its own key name, which the stack does not control
# (a CDK file asset is stored as <hash>.py): the shell runs whichever .py file arrived there.
CODE_DIR = PROCESSING_CODE_DIR
PACKAGE_DIR = "/opt/ml/processing/input/package"
PROCESSING_ENTRYPOINT = list(_ENTRYPOINT)
# ExportModel: the export environment's wheels (export/requirements.txt, one zip), installed by the entry
# script into a virtual environment without network access (processing_entry.py).
WHEELS_DIR = "/opt/ml/processing/input/wheels"

PLACEHOLDERS: dict[str, str] = {
    "RoleArn": "ARN of the SageMaker execution role that runs every step",
    "DatasetsBucket": "name of the datasets bucket: raw frames under raw/, prepared channels written under "
    "prepared/<execution id>/<channel>/",
    "ArtifactsBucket": "name of the artifacts bucket: model, predictions and evaluation under "
    "pipelines/<pipeline name>/<execution id>/, spot checkpoints under checkpoints/",
    "KmsKeyArn": "ARN of the project KMS key (job outputs, and storage volumes of instance types without "
    "local NVMe storage)",
    "AlgorithmImage": "semantic-segmentation image URI of the deployment region (training, model, registry)",
    "ProcessingImage": "Python 3 image with numpy and Pillow for PrepareDataset, PrepareServingValidation and "
    "EvaluateModel",
    "CodeEntryUri": f"s3:// URI of the single entry script jobs/processing_entry.py, any key name (mounted in "
    f"{CODE_DIR} and run as python3 <script> <module> [args])",
    "CodePackageUri": f"s3:// URI of the zip of the training/, roadseg_lambda/ and contracts/ packages (mounted in "
    f"{PACKAGE_DIR})",
    "ExportImage": "Python 3.11 image for ExportModel (MXNet 1.9.1 runs on Python <= 3.11 only)",
    "ExportWheelsUri": f"s3:// URI of the zip of the export environment's wheels (mounted in {WHEELS_DIR})",
    "JobSettingsUri": f"s3:// URI of the zip of the job settings (contracts.job_settings: the custom class list; "
    f"mounted in {SETTINGS_DIR} of PrepareDataset, EvaluateModel and ExportModel, unpacked by the entry script)",
}

# Isolated-network mode (PipelineSettings.vpc_subnet_count > 0): every processing, training, tuning job and the
# candidate model (so the transform job) gets a VpcConfig whose subnets and security groups are these placeholders,
# numbered from 0 (Subnet0, Subnet1, ...; SecurityGroup0, ...). Network isolation stays on: SageMaker then moves the
# job's data through the VPC (S3 gateway endpoint) while the container itself has no network
# (https://docs.aws.amazon.com/sagemaker/latest/dg/train-vpc.html; at most MAX_VPC_SUBNETS and
# MAX_VPC_SECURITY_GROUPS of them, training.pipelines.settings).
NETWORK_PLACEHOLDERS: dict[str, str] = {
    "Subnet<i>": "ID of the i-th private subnet the jobs and the candidate model run in (isolated-network mode)",
    "SecurityGroup<i>": "ID of the i-th security group of the jobs and the candidate model (isolated-network mode)",
}


def network_placeholder_names(settings: PipelineSettings) -> tuple[list[str], list[str]]:
    """The subnet and security-group placeholders the definitions of ``settings`` use (empty without a VPC)."""
    return ([f"Subnet{i}" for i in range(settings.vpc_subnet_count)],
            [f"SecurityGroup{i}" for i in range(settings.vpc_security_group_count)])
