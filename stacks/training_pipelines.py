"""Training and tuning pipelines: execution role, model package group, processing code and both pipelines."""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_sagemaker as sagemaker
from constructs import Construct

from contracts import naming
from contracts.lambda_env import frame_preparation_environment
from contracts.layout import ARTIFACTS, DATASETS, PIPELINE_INPUT_PREFIXES
from envconfig.classes import resolve_scheme
from envconfig.config import ConfigError, EnvironmentConfig
from envconfig.job_settings import job_settings
from segcore.classes import ClassScheme, classes_json
from stacks.bucket_set import SharedBuckets
from stacks.code_assets import PROCESSING_ENTRY, export_wheelhouse, staged, staged_job_settings
from stacks.compliance import acknowledge_policy, nag_account_region, nag_arn
from stacks.images import images_mapping
from stacks.network import VPC_WILDCARD_REASON, Placement, allow_sagemaker_vpc
from training.hyperparameters import HyperparameterError, ServingContract, contract_hyperparameters
from training.pipelines.definition import build_training_pipeline, build_tuning_pipeline
from training.pipelines.placeholders import network_placeholder_names
from training.pipelines.settings import PipelineSettings

# SageMaker names jobs started by a pipeline "pipelines-<execution>-<step>-..."; the role may touch only those.
PIPELINE_JOB_PREFIX = "pipelines-"


@dataclass(frozen=True)
class TrainingPipelinesProps:
    config: EnvironmentConfig
    buckets: SharedBuckets
    network: Placement | None = None  # isolated-network mode: the jobs' subnets and security groups


class ServingContractWarning(UserWarning):
    """An explicit training.hyperparameters value breaks the serving-resolution contract (it still wins)."""


def serving_contract(config: EnvironmentConfig) -> ServingContract:
    """The serving resolution (preprocessing.target_width/target_height) and training instance training derives from."""
    return ServingContract(config.preprocessing.target_width, config.preprocessing.target_height,
                           config.training.instance_type)


def pipeline_settings(config: EnvironmentConfig, scheme: ClassScheme) -> PipelineSettings:
    """The pipelines' settings; base_size, crop_size and the batch sizes derive from the serving contract.

    Explicit training.hyperparameters win; each one that breaks the contract is reported with ``warnings.warn``
    (ServingContractWarning: printed on stderr during synth, collected by ``pytest.warns`` in the tests).
    """
    training = config.training
    try:
        hyperparameters, broken = contract_hyperparameters(
            training.hyperparameters, serving_contract(config), num_classes=scheme.num_classes, num_training_samples=1
        )
    except HyperparameterError as exc:
        raise ConfigError(f"config/{config.name}.yaml: training.hyperparameters: {exc}") from None
    for problem in broken:
        warnings.warn(f"config/{config.name}.yaml: training.hyperparameters: {problem}", ServingContractWarning,
                      stacklevel=2)
    static = {k: v for k, v in hyperparameters.to_algorithm_strings().items() if k != "num_training_samples"}
    return PipelineSettings(
        prefix=config.prefix,
        model_package_group=naming.model_package_group_name(config.prefix),
        num_classes=scheme.num_classes,
        class_scheme=config.classes.scheme,
        hyperparameters=static,
        safety_iou_floors=dict(config.classes.safety_critical_iou_floors),
        min_miou=training.min_miou,
        training_instance_type=training.instance_type,
        processing_instance_type=training.processing_instance_type,
        transform_instance_type=training.transform_instance_type,
        volume_size_gb=training.volume_size_gb,
        max_runtime_seconds=training.max_runtime_hours * 3600,
        use_spot_instances=training.use_spot_instances,
        max_wait_seconds=training.max_wait_hours * 3600,
        max_bad_pair_fraction=training.max_bad_pair_fraction,
        tuning_max_jobs=training.tuning.max_jobs,
        tuning_max_parallel_jobs=training.tuning.max_parallel_jobs,
        incremental=training.incremental,
        custom_classes_json=classes_json(scheme) if config.classes.scheme == "custom" else None,
        # The gate's serving step prepares the validation frames exactly as the ingest function does.
        serving_preprocessing=frame_preparation_environment(config.preprocessing),
        export_max_logit_difference=training.export.max_logit_difference,
        export_min_argmax_agreement=training.export.min_argmax_agreement,
        export_parity_frames=training.export.parity_frames,
        incumbent_tolerance=training.incumbent_tolerance,
    )


class TrainingPipelines(Construct):
    """Everything a pipeline execution needs, from raw frames to a registered, gated model package."""

    def __init__(self, scope: Construct, construct_id: str, props: TrainingPipelinesProps) -> None:
        super().__init__(scope, construct_id)
        config, buckets = props.config, props.buckets
        stack = cdk.Stack.of(self)
        self.scheme = resolve_scheme(config)
        self.settings = pipeline_settings(config, self.scheme)
        if props.network is not None:
            self.settings = dataclasses.replace(
                self.settings, vpc_subnet_count=len(props.network.subnet_ids),
                vpc_security_group_count=len(props.network.security_group_ids))

        self.images = images_mapping(self, config)

        self.model_package_group = sagemaker.CfnModelPackageGroup(
            self, "ModelPackageGroup",
            model_package_group_name=self.settings.model_package_group,
            model_package_group_description=f"roadseg {config.name}: {self.scheme.name} segmentation models "
                                            "that passed the quality gate",
        )
        self.model_package_group.apply_removal_policy(
            cdk.RemovalPolicy.RETAIN if config.retain else cdk.RemovalPolicy.DESTROY)

        self.entry_script = s3_assets.Asset(self, "ProcessingEntry", path=str(PROCESSING_ENTRY))
        # training/, roadseg_lambda/ and contracts/ side by side (stacks.code_assets); processing_entry.py unpacks
        # them.
        self.package = s3_assets.Asset(self, "TrainingPackage", path=str(staged("processing")))
        # The export environment's wheels (make synth downloads them for the export image's platform): ExportModel
        # installs them into a venv with no network access (jobs/processing_entry.py).
        self.export_wheels = s3_assets.Asset(self, "ExportWheels", path=str(export_wheelhouse()))
        # The lists no request carries inline (the custom class list for Prepare, Evaluate and Export).
        self.job_settings = job_settings(config, self.scheme)
        self.settings_asset = s3_assets.Asset(self, "JobSettings", path=str(staged_job_settings(self.job_settings)))

        self.role = iam.Role(
            self, "ExecutionRole",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description=f"roadseg {config.name}: SageMaker pipelines, processing, training and transform jobs",
        )
        self._grant(config, buckets, stack, in_vpc=props.network is not None)

        placeholders = {
            "RoleArn": self.role.role_arn,
            "DatasetsBucket": buckets.datasets.bucket_name,
            "ArtifactsBucket": buckets.artifacts.bucket_name,
            "KmsKeyArn": buckets.key.key_arn,
            "AlgorithmImage": self.image("Algorithm"),
            "ProcessingImage": self.image("Processing"),
            "CodeEntryUri": self.entry_script.s3_object_url,
            "CodePackageUri": self.package.s3_object_url,
            "ExportImage": self.image("Export"),
            "ExportWheelsUri": self.export_wheels.s3_object_url,
            "JobSettingsUri": self.settings_asset.s3_object_url,
        }
        if props.network is not None:
            subnets, groups = network_placeholder_names(self.settings)
            placeholders.update(zip(subnets, props.network.subnet_ids, strict=True))
            placeholders.update(zip(groups, props.network.security_group_ids, strict=True))
            allow_sagemaker_vpc(self.role)
        training_name, tuning_name = naming.pipeline_names(config.prefix)
        self.training_pipeline = self._pipeline("TrainingPipeline", training_name,
                                                build_training_pipeline(self.settings), placeholders,
                                                "Prepare, train, transform, evaluate, gate and register")
        self.tuning_pipeline = self._pipeline("TuningPipeline", tuning_name,
                                              build_tuning_pipeline(self.settings), placeholders,
                                              "Prepare, tune, evaluate the best model, gate and register")

    def image(self, key: str) -> str:
        return self.images.get(key)

    def _pipeline(self, construct_id: str, name: str, definition: str, placeholders: dict[str, str],
                  description: str) -> sagemaker.CfnPipeline:
        pipeline = sagemaker.CfnPipeline(
            self, construct_id,
            pipeline_name=name,
            pipeline_display_name=name,
            pipeline_description=description,
            role_arn=self.role.role_arn,
            pipeline_definition={"PipelineDefinitionBody": cdk.Fn.sub(definition, placeholders)},
        )
        pipeline.node.add_dependency(self.role)
        pipeline.node.add_dependency(self.model_package_group)
        return pipeline

    def _grant(self, config: EnvironmentConfig, buckets: SharedBuckets, stack: cdk.Stack, *, in_vpc: bool) -> None:
        role = self.role
        # Data: read raw datasets, write prepared channels; read/write pipeline artifacts and checkpoints.
        # What InputDataS3Uri may name (raw trees and the immutable dataset versions): read-only.
        for prefix in PIPELINE_INPUT_PREFIXES:
            buckets.datasets.grant_read(role, f"{prefix}*")
        buckets.datasets.grant_read_write(role, f"{DATASETS.prepared}*")
        buckets.artifacts.grant_read_write(role, f"{ARTIFACTS.pipelines}*")
        buckets.artifacts.grant_read_write(role, f"{ARTIFACTS.checkpoints}*")
        self.entry_script.grant_read(role)
        self.package.grant_read(role)
        self.export_wheels.grant_read(role)
        self.settings_asset.grant_read(role)
        buckets.key.grant_encrypt_decrypt(role)
        # Jobs encrypt their ML storage volumes with the key (VolumeKmsKeyId), which SageMaker does through a grant
        # created with the job creator's credentials: the pipeline role needs kms:CreateGrant, for AWS resources
        # only. https://docs.aws.amazon.com/sagemaker/latest/dg/api-permissions-reference.html
        role.add_to_policy(iam.PolicyStatement(
            sid="VolumeKeyGrantsForJobs", actions=["kms:CreateGrant"], resources=[buckets.key.key_arn],
            conditions={"Bool": {"kms:GrantIsForAWSResource": "true"}}))

        arn = stack.format_arn
        sagemaker_arn = lambda resource, name: arn(service="sagemaker", resource=resource, resource_name=name)  # noqa: E731
        group = self.settings.model_package_group
        role.add_to_policy(iam.PolicyStatement(
            sid="PullAlgorithmAndProcessingImages",
            actions=["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
            resources=[self.image("AlgorithmRepository"), self.image("ProcessingRepository"),
                       self.image("ExportRepository")],
        ))
        role.add_to_policy(iam.PolicyStatement(
            sid="EcrLogin", actions=["ecr:GetAuthorizationToken"], resources=["*"],
        ))
        role.add_to_policy(iam.PolicyStatement(
            sid="JobLogs",
            actions=["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
            resources=[arn(service="logs", resource="log-group", resource_name="/aws/sagemaker/*",
                           arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME)],
        ))
        role.add_to_policy(iam.PolicyStatement(
            sid="JobMetrics", actions=["cloudwatch:PutMetricData"], resources=["*"],
            conditions={"StringLike": {"cloudwatch:namespace": ["/aws/sagemaker/*", "aws/sagemaker/*"]}},
        ))
        role.add_to_policy(iam.PolicyStatement(
            sid="RunPipelineSteps",
            actions=[
                "sagemaker:CreateProcessingJob", "sagemaker:DescribeProcessingJob", "sagemaker:StopProcessingJob",
                "sagemaker:CreateTrainingJob", "sagemaker:DescribeTrainingJob", "sagemaker:StopTrainingJob",
                "sagemaker:CreateTransformJob", "sagemaker:DescribeTransformJob", "sagemaker:StopTransformJob",
                "sagemaker:AddTags",
            ],
            resources=[sagemaker_arn(kind, f"{PIPELINE_JOB_PREFIX}*")
                       for kind in ("processing-job", "training-job", "transform-job")],
        ))
        role.add_to_policy(iam.PolicyStatement(
            sid="RunTuningStep",
            actions=["sagemaker:CreateHyperParameterTuningJob", "sagemaker:DescribeHyperParameterTuningJob",
                     "sagemaker:StopHyperParameterTuningJob", "sagemaker:ListTrainingJobsForHyperParameterTuningJob",
                     "sagemaker:AddTags"],
            resources=[sagemaker_arn("hyper-parameter-tuning-job", "*")],
        ))
        role.add_to_policy(iam.PolicyStatement(
            sid="CandidateModelsAndRegistry",
            actions=["sagemaker:CreateModel", "sagemaker:DescribeModel", "sagemaker:DeleteModel",
                     "sagemaker:CreateModelPackage", "sagemaker:DescribeModelPackage",
                     "sagemaker:DescribeModelPackageGroup", "sagemaker:AddTags"],
            resources=[sagemaker_arn("model", "*"), sagemaker_arn("model-package", f"{group}/*"),
                       sagemaker_arn("model-package-group", group)],
        ))
        role.add_to_policy(iam.PolicyStatement(
            sid="PassSelfToJobs", actions=["iam:PassRole"], resources=[role.role_arn],
            conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
        ))
        jobs = nag_arn(self, "sagemaker", "")[:-1]
        account, region = nag_account_region(self)
        shared = config.prefix
        datasets, artifacts = f"{shared}:DatasetsBucketArn", f"{shared}:ArtifactsBucketArn"  # as cdk-nag names them
        acknowledge_policy(role, actions=["s3:GetObject*", "s3:GetBucket*", "s3:List*", "s3:Abort*",
                                          "s3:DeleteObject*", "kms:GenerateDataKey*", "kms:ReEncrypt*"], resources={
            "*": "ecr:GetAuthorizationToken and cloudwatch:PutMetricData support no resource scoping; "
                 "PutMetricData is limited to SageMaker namespaces by condition."
                 + (VPC_WILDCARD_REASON if in_vpc else ""),
            f"{datasets}/{DATASETS.raw}*": "Read-only: the labelled source datasets pipelines prepare.",
            f"{datasets}/{DATASETS.versions}*": "Read-only: the immutable dataset versions pipelines prepare.",
            f"{datasets}/{DATASETS.prepared}*": "The Prepare step writes each execution's channels here.",
            f"{artifacts}/{ARTIFACTS.pipelines}*": "Training output, predictions and evaluation reports.",
            f"{artifacts}/{ARTIFACTS.checkpoints}*": "Spot-training checkpoints of the training jobs.",
            nag_arn(self, "s3", f"{naming.cdk_assets_bucket(account, region)}/*", regional=False):
                "CDK asset grant: the processing entry script, training package, export wheels and job settings "
                "zips in the bootstrap bucket.",
            nag_arn(self, "logs", "log-group:/aws/sagemaker/*"):
                "SageMaker jobs log to /aws/sagemaker/<JobType> log groups with per-job streams.",
            f"{jobs}:processing-job/pipelines-*": "Jobs started by a pipeline execution are named pipelines-*.",
            f"{jobs}:training-job/pipelines-*": "Jobs started by a pipeline execution are named pipelines-*.",
            f"{jobs}:transform-job/pipelines-*": "Jobs started by a pipeline execution are named pipelines-*.",
            f"{jobs}:hyper-parameter-tuning-job/*": "Tuning job names are generated by the pipeline (max 32 chars, "
                                                    "no stable prefix).",
            f"{jobs}:model/*": "Candidate model names are generated by the pipeline's model step.",
            f"{jobs}:model-package/{self.settings.model_package_group}/*":
                "Versions of this project's model package group only.",
        })
