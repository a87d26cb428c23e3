"""The tuning job (a Bayesian search over the training job) and the tuning pipeline's steps around it:
PrepareDataset -> TuneSegmentation (its best job's model) -> the shared evaluation and registration (steps.py)."""

from __future__ import annotations

from training.hyperparameters import TunableRange, tuning_ranges
from training.pipelines.blocks import artifact_prefix, volume_kms_key
from training.pipelines.parameters import PipelineParameters
from training.pipelines.sdk import (
    CategoricalParameter,
    ContinuousParameter,
    HyperparameterTuner,
    IntegerParameter,
    Join,
    PipelineSession,
    TuningStep,
)
from training.pipelines.sentinels import SENTINELS
from training.pipelines.settings import PipelineSettings
from training.pipelines.steps import TUNE, evaluate_and_register, prepare_step
from training.pipelines.training_job import (
    model_trainer,
    num_training_samples,
    static_hyperparameters,
    training_channels,
)

OBJECTIVE_METRIC = "validation:mIOU"


def tuning_steps(
    session: PipelineSession, settings: PipelineSettings, pipeline_name: str, params: PipelineParameters
) -> list:
    """PrepareDataset -> TuneSegmentation (on demand, without checkpoints) -> the shared steps on the best model."""
    prepare, preparation_report = prepare_step(session, settings, params)
    hyperparameters = {
        **static_hyperparameters(settings),
        "epochs": params.epochs.to_string(),
        "num_training_samples": num_training_samples(preparation_report),
    }
    # Tuning runs on demand and without checkpoints, whatever training.use_spot_instances says. The training
    # jobs of a tuning job share one TrainingJobDefinition, so one CheckpointConfig.S3Uri: the SDK copies it
    # verbatim (sagemaker.train.tuner._build_training_job_definition), the API reference documents no per-job
    # suffix (https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_HyperParameterTrainingJobDefinition.html,
    # API_CheckpointConfig.html), and SageMaker copies whatever is under the URI into every job when it starts
    # (https://docs.aws.amazon.com/sagemaker/latest/dg/model-checkpoints.html): parallel jobs would resume from
    # each other's checkpoints of another head. Spot without checkpoints would restart interrupted jobs from
    # scratch, and SageMaker caps MaxWaitTimeInSeconds at an hour for built-in algorithms that do not checkpoint
    # (https://docs.aws.amazon.com/sagemaker/latest/dg/model-managed-spot-training.html).
    trainer = model_trainer(session, settings, pipeline_name, params, hyperparameters, spot=False)
    tuner = HyperparameterTuner(
        model_trainer=trainer,
        objective_metric_name=OBJECTIVE_METRIC,  # built-in metric: no metric definitions
        objective_type="Maximize",
        hyperparameter_ranges=_search_space(settings),  # the tuner drops these from the static ones
        strategy="Bayesian",
        max_jobs=settings.tuning_max_jobs,  # literal ints: the SDK rejects pipeline parameters here
        max_parallel_jobs=settings.tuning_max_parallel_jobs,
        base_tuning_job_name=f"{settings.prefix}-tune",
    )
    tune = _TuningStep(
        name=TUNE,
        step_args=tuner.tune(inputs=training_channels(prepare, None)),
        volume_kms_key=volume_kms_key(settings.training_instance_type),
    )
    model_data = tune.get_top_model_s3_uri(
        top_k=0,  # the best training job by the objective metric
        s3_bucket=SENTINELS.artifacts_bucket,
        prefix=Join(on="/", values=artifact_prefix(pipeline_name, "training")),
    )
    return [prepare, tune, *evaluate_and_register(session, settings, pipeline_name, params, prepare, model_data,
                                                  head=_tuned_head(settings, tune))]


def _search_space(settings: PipelineSettings) -> dict:
    """Search space of the tuning pipeline (defined next to the hyperparameters it ranges over), mini_batch_size
    capped at the settings' mini_batch_size: what fits the training instance (training.hyperparameters.ServingContract)
    or an explicit override."""
    fits = int(settings.hyperparameters.get("mini_batch_size", "16"))
    return {r.name: _sdk_range(r) for r in tuning_ranges(fits)}


def _sdk_range(tunable: TunableRange):
    """One of training.hyperparameters.TUNABLE_RANGES as the SDK's parameter range."""
    if tunable.kind == "categorical":
        return CategoricalParameter(list(tunable.values))
    if tunable.kind == "integer":
        return IntegerParameter(int(tunable.min), int(tunable.max), scaling_type=tunable.scaling)
    return ContinuousParameter(tunable.min, tunable.max, scaling_type=tunable.scaling)


class _TuningStep(TuningStep):
    """TuningStep that keeps what the SDK's tuner drops from the training job definition (3.27).

    ``HyperparameterTuner`` rebuilds ``ResourceConfig`` without ``VolumeKmsKeyId`` and copies only the
    VPC part of ``Networking``, losing ``EnableNetworkIsolation``; both are put back here.
    """

    def __init__(self, *, volume_kms_key: str | None, **kwargs) -> None:
        super().__init__(**kwargs)
        self._volume_kms_key = volume_kms_key

    @property
    def arguments(self):
        request = super().arguments
        definition = request["TrainingJobDefinition"]
        definition["EnableNetworkIsolation"] = True
        if self._volume_kms_key is not None:
            definition["ResourceConfig"]["VolumeKmsKeyId"] = self._volume_kms_key
        return request


def _tuned_head(settings: PipelineSettings, tune: TuningStep):
    """The segmentation head of the tuning pipeline's candidate: the tuned ``algorithm`` of the job whose model is
    evaluated (TrainingJobSummaries[0], as get_top_model_s3_uri(top_k=0)), or the static one if it is not tuned."""
    if "algorithm" in _search_space(settings):
        return tune.properties.TrainingJobSummaries[0].TunedHyperParameters["algorithm"]
    return settings.hyperparameters.get("algorithm", "fcn")  # the algorithm's own default head
