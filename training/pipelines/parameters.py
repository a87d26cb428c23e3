"""The pipeline parameters: what an execution may override at start, defaulting to the settings."""

from __future__ import annotations

from dataclasses import dataclass

from contracts.layout import DATASETS
from training.hyperparameters import HEADS
from training.pipelines.sdk import ParameterFloat, ParameterInteger, ParameterString
from training.pipelines.sentinels import SENTINELS
from training.pipelines.settings import (
    INCUMBENT_MODEL_PARAMETER,
    INCUMBENT_PACKAGE_PARAMETER,
    PipelineSettings,
    floor_parameter_name,
)

APPROVAL_STATUSES = ("PendingManualApproval", "Approved", "Rejected")


@dataclass(frozen=True)
class PipelineParameters:
    input_data: ParameterString
    dataset_layout: ParameterString
    processing_instance_type: ParameterString
    training_instance_type: ParameterString
    transform_instance_type: ParameterString
    epochs: ParameterInteger
    algorithm: ParameterString | None
    learning_rate: ParameterFloat | None
    mini_batch_size: ParameterInteger | None
    min_miou: ParameterFloat
    class_floors: tuple[tuple[str, ParameterFloat], ...]  # (class name, MinIoU<Class> parameter)
    max_regression: ParameterFloat
    approval_status: ParameterString
    incumbent_model: ParameterString
    incumbent_package: ParameterString
    previous_model: ParameterString | None

    @classmethod
    def for_training(cls, settings: PipelineSettings) -> PipelineParameters:
        hp = settings.hyperparameters
        return cls._common(
            settings,
            algorithm=ParameterString("Algorithm", default_value=hp.get("algorithm", "fcn"), enum_values=list(HEADS)),
            learning_rate=ParameterFloat("LearningRate", default_value=float(hp.get("learning_rate", "0.001"))),
            mini_batch_size=ParameterInteger("MiniBatchSize", default_value=int(hp.get("mini_batch_size", "16"))),
            # No default: the S3 URI of the model.tar.gz to continue from must be given at start.
            previous_model=ParameterString("PreviousModelS3Uri") if settings.incremental else None,
        )

    @classmethod
    def for_tuning(cls, settings: PipelineSettings) -> PipelineParameters:
        return cls._common(settings, algorithm=None, learning_rate=None, mini_batch_size=None, previous_model=None)

    @classmethod
    def _common(cls, settings: PipelineSettings, **specific) -> PipelineParameters:
        return cls(
            input_data=ParameterString("InputDataS3Uri", default_value=f"s3://{SENTINELS.datasets_bucket}/{DATASETS.raw}"),
            dataset_layout=ParameterString("DatasetLayout", default_value="cityscapes"),
            processing_instance_type=ParameterString(
                "ProcessingInstanceType", default_value=settings.processing_instance_type
            ),
            training_instance_type=ParameterString(
                "TrainingInstanceType", default_value=settings.training_instance_type
            ),
            transform_instance_type=ParameterString(
                "TransformInstanceType", default_value=settings.transform_instance_type
            ),
            epochs=ParameterInteger("Epochs", default_value=int(settings.hyperparameters.get("epochs", "10"))),
            min_miou=ParameterFloat("MinMIoU", default_value=float(settings.min_miou)),
            class_floors=tuple(
                (name, ParameterFloat(floor_parameter_name(name), default_value=float(floor)))
                for name, floor in settings.safety_iou_floors.items()
            ),
            # The largest IoU a safety-critical class may lose against the incumbent (evaluation.json's regression).
            max_regression=ParameterFloat("MaxIoURegression", default_value=float(settings.incumbent_tolerance)),
            approval_status=ParameterString(
                "ModelApprovalStatus", default_value="PendingManualApproval", enum_values=list(APPROVAL_STATUSES)
            ),
            # The approved model to compare with, filled by `roadseg pipeline start` from the latest Approved package
            # of the group; "" (the default): a first model, judged by the floors alone.
            incumbent_model=ParameterString(INCUMBENT_MODEL_PARAMETER, default_value=""),
            incumbent_package=ParameterString(INCUMBENT_PACKAGE_PARAMETER, default_value=""),
            **specific,
        )

    def as_list(self) -> list:
        ordered = [
            self.input_data,
            self.dataset_layout,
            self.processing_instance_type,
            self.training_instance_type,
            self.transform_instance_type,
            self.epochs,
            self.algorithm,
            self.learning_rate,
            self.mini_batch_size,
            self.min_miou,
            *(p for _, p in self.class_floors),
            self.max_regression,
            self.approval_status,
            self.incumbent_model,
            self.incumbent_package,
            self.previous_model,
        ]
        return [p for p in ordered if p is not None]
