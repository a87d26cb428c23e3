"""The training job (the built-in semantic-segmentation algorithm) and the training pipeline's steps around it:
PrepareDataset -> TrainSegmentation -> the shared evaluation and registration (steps.py)."""

from __future__ import annotations

from collections.abc import Mapping

from training.pipelines.blocks import artifact_uri, channel, checkpoint_uri, networking, volume_kms_key
from training.pipelines.parameters import PipelineParameters
from training.pipelines.sdk import (
    Channel,
    CheckpointConfig,
    Compute,
    Join,
    JsonGet,
    ModelTrainer,
    OutputDataConfig,
    ParameterString,
    PipelineSession,
    ProcessingStep,
    PropertyFile,
    StoppingCondition,
    TrainingStep,
)
from training.pipelines.sentinels import SENTINELS
from training.pipelines.settings import PipelineSettings
from training.pipelines.steps import PREPARE, TRAIN, evaluate_and_register, prepare_step

# The channels passed to the algorithm, with their content types (JPEG images, PNG class-index masks): the four
# mandatory ones. label_map is optional and left out: the label map PrepareDataset writes ({"scale": "1"}) is the
# algorithm's default ("If you don't provide a label map, the algorithm assumes a scale of 1",
# https://docs.aws.amazon.com/sagemaker/latest/dg/semantic-segmentation.html), and AWS documents no content type for
# it (the built-in algorithms' content types list only image/jpeg, image/png, application/x-image and
# application/x-recordio for this algorithm: https://docs.aws.amazon.com/sagemaker/latest/dg/cdf-training.html).
CHANNEL_CONTENT_TYPES = {
    "train": "image/jpeg",
    "validation": "image/jpeg",
    "train_annotation": "image/png",
    "validation_annotation": "image/png",
}
MODEL_CHANNEL_CONTENT_TYPE = "application/x-sagemaker-model"


def training_steps(
    session: PipelineSession, settings: PipelineSettings, pipeline_name: str, params: PipelineParameters
) -> list:
    """PrepareDataset -> TrainSegmentation (one job, its hyperparameters pipeline parameters) -> the shared steps."""
    prepare, preparation_report = prepare_step(session, settings, params)
    hyperparameters = {
        **static_hyperparameters(settings),
        "epochs": params.epochs.to_string(),
        "algorithm": params.algorithm,
        "learning_rate": params.learning_rate.to_string(),
        "mini_batch_size": params.mini_batch_size.to_string(),
        "num_training_samples": num_training_samples(preparation_report),
    }
    trainer = model_trainer(session, settings, pipeline_name, params, hyperparameters,
                            spot=settings.use_spot_instances)
    channels = training_channels(prepare, params.previous_model)
    train = TrainingStep(name=TRAIN, step_args=trainer.train(input_data_config=channels))
    model_data = train.properties.ModelArtifacts.S3ModelArtifacts
    return [prepare, train, *evaluate_and_register(session, settings, pipeline_name, params, prepare, model_data,
                                                   head=params.algorithm)]


def static_hyperparameters(settings: PipelineSettings) -> dict[str, str]:
    return {"num_classes": str(settings.num_classes), **settings.hyperparameters}


def num_training_samples(preparation_report: PropertyFile) -> Join:
    # Hyperparameter values must be strings: Std:Join turns the report's integer into one.
    return JsonGet(step_name=PREPARE, property_file=preparation_report, json_path="num_training_samples").to_string()


def model_trainer(
    session: PipelineSession,
    settings: PipelineSettings,
    pipeline_name: str,
    params: PipelineParameters,
    hyperparameters: Mapping,
    *,
    spot: bool,
) -> ModelTrainer:
    """The built-in algorithm (no source code) with the project's storage and encryption; on spot capacity with
    checkpoints under checkpoints/<pipeline>/<execution id> if ``spot`` (one training job per execution only)."""
    return ModelTrainer(
        training_image=SENTINELS.algorithm_image,
        role=SENTINELS.role_arn,
        sagemaker_session=session,
        base_job_name=f"{settings.prefix}-train",
        hyperparameters=dict(hyperparameters),
        compute=Compute(
            instance_type=params.training_instance_type,
            instance_count=1,  # the algorithm trains on one instance (several GPUs allowed)
            volume_size_in_gb=settings.volume_size_gb,
            volume_kms_key_id=volume_kms_key(settings.training_instance_type),
            enable_managed_spot_training=spot,
        ),
        stopping_condition=StoppingCondition(
            max_runtime_in_seconds=settings.max_runtime_seconds,
            max_wait_time_in_seconds=settings.max_wait_seconds if spot else None,
        ),
        output_data_config=OutputDataConfig(
            s3_output_path=Join(on="/", values=artifact_uri(pipeline_name, "training")),
            kms_key_id=SENTINELS.kms_key_arn,
        ),
        # Spot jobs can be interrupted: checkpoints let SageMaker resume them.
        checkpoint_config=CheckpointConfig(s3_uri=Join(on="/", values=checkpoint_uri(pipeline_name)))
        if spot
        else None,
        networking=networking(settings),  # the built-in algorithm needs no network
        training_input_mode="File",
    )


def training_channels(prepare: ProcessingStep, previous_model: ParameterString | None) -> list[Channel]:
    """The prepared channels (+ the previous model for incremental training), read in File mode."""
    channels = [
        channel(name, prepare.properties.ProcessingOutputConfig.Outputs[name].S3Output.S3Uri, content_type)
        for name, content_type in CHANNEL_CONTENT_TYPES.items()
    ]
    if previous_model is not None:
        channels.append(channel("model", previous_model, MODEL_CHANNEL_CONTENT_TYPE))
    return channels
