"""The steps both pipelines share, in the order they run: PrepareDataset before the model, then, from the candidate's
model artifact, PrepareServingValidation, CreateCandidateModel -> TransformValidation -> EvaluateModel ->
QualityGate -> (ExportModel -> RegisterModel) | GateFailed. The training and tuning jobs between them:
training_job.py, tuning_job.py.

``ModelBuilder.build()`` runs before ``register()`` on the same builder: ``register()`` alone looks the default
bucket up in S3 (SDK 3.27).
"""

from __future__ import annotations

import logging
import re

from contracts.job_settings import classes_path
from training.pipelines.blocks import (
    artifact_uri,
    code_inputs,
    decimal_argument,
    entry_processor,
    networking,
    prepared_prefix,
    processing_input,
    processing_output,
    settings_input,
    volume_kms_key,
)
from training.pipelines.parameters import PipelineParameters
from training.pipelines.placeholders import WHEELS_DIR
from training.pipelines.sdk import (
    ConditionGreaterThanOrEqualTo,
    ConditionStep,
    FailStep,
    Join,
    JsonGet,
    MetricsSource,
    ModelBuilder,
    ModelMetrics,
    ModelStep,
    PipelineSession,
    ProcessingStep,
    PropertyFile,
    Transformer,
    TransformStep,
)
from training.pipelines.sentinels import SENTINELS
from training.pipelines.settings import PipelineSettings

# Step names (the order in which they run).
PREPARE = "PrepareDataset"
SERVE = "PrepareServingValidation"
TRAIN = "TrainSegmentation"
TUNE = "TuneSegmentation"
CREATE_MODEL = "CreateCandidateModel"
TRANSFORM = "TransformValidation"
EVALUATE = "EvaluateModel"
GATE = "QualityGate"
EXPORT = "ExportModel"
REGISTER = "RegisterModel"
FAIL = "GateFailed"

PREPARED_CHANNELS = ("train", "validation", "train_annotation", "validation_annotation", "label_map")
# PrepareServingValidation's outputs: the serving-resolution JPEGs (the transform's input) and geometry.json.
SERVING_VALIDATION = "serving_validation"
SERVING_GEOMETRY = "serving_geometry"
SERVING_OUTPUTS = (SERVING_VALIDATION, SERVING_GEOMETRY)
EXPORT_BUNDLE = "bundle"
# GPU instance types listed in the model package besides the transform instance type.
INFERENCE_INSTANCE_TYPES = ("ml.g4dn.xlarge", "ml.g4dn.2xlarge", "ml.p3.2xlarge")


def prepare_step(
    session: PipelineSession, settings: PipelineSettings, params: PipelineParameters
) -> tuple[ProcessingStep, PropertyFile]:
    """PrepareDataset: raw frames -> algorithm channels under s3://<datasets>/prepared/<execution id>/."""
    outputs = [
        processing_output(name, Join(on="/", values=prepared_prefix(name))) for name in (*PREPARED_CHANNELS, "report")
    ]
    step_args = entry_processor(session, settings, f"{settings.prefix}-prepare", params).run(
        inputs=[
            *code_inputs(),
            settings_input(),
            processing_input("data", params.input_data, "/opt/ml/processing/input/data"),
        ],
        outputs=outputs,
        arguments=[
            "prepare",
            "--layout",
            params.dataset_layout,
            "--input",
            "/opt/ml/processing/input/data",
            "--output",
            "/opt/ml/processing/output",
            # report.json goes to the `report` output, where the PreparationReport property file reads it.
            "--report-dir",
            "/opt/ml/processing/output/report",
            *_scheme_arguments(settings),
            "--max-bad-fraction",
            decimal_argument(settings.max_bad_pair_fraction),
        ],
    )
    report = PropertyFile(name="PreparationReport", output_name="report", path="report.json")
    return ProcessingStep(name=PREPARE, step_args=step_args, property_files=[report]), report


def evaluate_and_register(
    session: PipelineSession,
    settings: PipelineSettings,
    pipeline_name: str,
    params: PipelineParameters,
    prepare: ProcessingStep,
    model_data,
    *,
    head,
) -> list:
    """PrepareServingValidation, CreateCandidateModel -> TransformValidation -> EvaluateModel -> QualityGate
    (ExportModel -> RegisterModel | GateFailed). ``head``: the candidate's ``algorithm`` (a parameter or a property),
    recorded."""
    builder = ModelBuilder(
        image_uri=SENTINELS.algorithm_image,
        s3_model_data_url=model_data,
        role_arn=SENTINELS.role_arn,
        sagemaker_session=session,
        network=networking(settings),
        log_level=logging.ERROR,  # its default (DEBUG) overrides the SDK logger level set by sdk.quiet_sdk
    )
    serving = _serving_step(session, settings, params, prepare)
    create_model = ModelStep(name=CREATE_MODEL, step_args=builder.build())
    transform = _transform_step(session, settings, pipeline_name, params, serving, create_model)
    evaluate, evaluation_report = _evaluate_step(session, settings, pipeline_name, params, prepare, serving, transform,
                                                 head=head)
    evaluation_json = Join(
        on="/",
        values=[evaluate.properties.ProcessingOutputConfig.Outputs["evaluation"].S3Output.S3Uri, "evaluation.json"],
    )
    export = _export_step(session, settings, pipeline_name, params, serving, evaluate, model_data)
    # The same builder: register() without an earlier build() looks the default bucket up in S3.
    register = ModelStep(
        name=REGISTER,
        step_args=builder.register(
            model_package_group_name=settings.model_package_group,
            approval_status=params.approval_status,
            content_types=["image/jpeg"],
            response_types=["image/png"],
            inference_instances=_inference_instance_types(settings),
            transform_instances=_inference_instance_types(settings),
            model_metrics=ModelMetrics(
                model_statistics=MetricsSource(content_type="application/json", s3_uri=evaluation_json)
            ),
            customer_metadata_properties={
                "ClassScheme": settings.class_scheme,
                "NumClasses": str(settings.num_classes),
                # The edge bundle of this model: an approval carries it (and the rollout compiles it for Neo). Values
                # are 1-256 characters of letters, digits, spaces and _.:/=+-@ (CustomerMetadataMap in botocore's
                # sagemaker model; https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateModelPackage.html):
                # the longest bundle URI fits (tests/training/test_pipelines.py).
                "EdgeBundle": export.properties.ProcessingOutputConfig.Outputs[EXPORT_BUNDLE].S3Output.S3Uri,
                # The network's fixed input size (the serving resolution): Neo's data shape [1, 3, H, W].
                "ServingSize": f"{settings.serving_preprocessing.target_width}x"
                               f"{settings.serving_preprocessing.target_height}",
            },
        ),
    )
    gate = _quality_gate(
        params, evaluation_report, if_passed=[export, register], if_failed=_gate_failed(params, evaluation_report)
    )
    return [serving, create_model, transform, evaluate, gate]


def _serving_step(
    session: PipelineSession, settings: PipelineSettings, params: PipelineParameters, prepare: ProcessingStep
) -> ProcessingStep:
    """PrepareServingValidation: each validation image as the ingest function sends it (``<name>.jpg``, its
    ``prepare_frame`` with the environment's preprocessing, passed as the functions' own environment variables) and
    ``geometry.json`` (per frame: original size, crop box, inference size) under s3://<datasets>/prepared/<execution
    id>/serving_validation/ and serving_geometry/ (training/serving.py)."""
    validation = "/opt/ml/processing/input/validation"
    processor = entry_processor(session, settings, f"{settings.prefix}-serving", params,
                                env=settings.serving_preprocessing.frame_preparation_env())
    step_args = processor.run(
        inputs=[
            *code_inputs(),
            processing_input(
                "validation", prepare.properties.ProcessingOutputConfig.Outputs["validation"].S3Output.S3Uri, validation
            ),
        ],
        outputs=[processing_output(name, Join(on="/", values=prepared_prefix(name))) for name in SERVING_OUTPUTS],
        arguments=[
            "serving",
            "--input",
            validation,
            "--output",
            f"/opt/ml/processing/output/{SERVING_VALIDATION}",
            "--geometry-dir",
            f"/opt/ml/processing/output/{SERVING_GEOMETRY}",
        ],
    )
    return ProcessingStep(name=SERVE, step_args=step_args)


def _transform_step(
    session: PipelineSession,
    settings: PipelineSettings,
    pipeline_name: str,
    params: PipelineParameters,
    serving: ProcessingStep,
    create_model: ModelStep,
) -> TransformStep:
    """TransformValidation: one PNG class-index mask per serving-resolution JPEG (``<name>.jpg.out``), on a GPU."""
    transformer = Transformer(
        model_name=create_model.properties.ModelName,
        instance_count=1,
        instance_type=params.transform_instance_type,
        strategy="SingleRecord",  # one image per request
        assemble_with="None",
        accept="image/png",
        output_path=Join(on="/", values=artifact_uri(pipeline_name, "predictions")),
        output_kms_key=SENTINELS.kms_key_arn,
        volume_kms_key=volume_kms_key(settings.transform_instance_type),
        base_transform_job_name=f"{settings.prefix}-transform",
        sagemaker_session=session,
    )
    step_args = transformer.transform(
        data=serving.properties.ProcessingOutputConfig.Outputs[SERVING_VALIDATION].S3Output.S3Uri,
        data_type="S3Prefix",
        content_type="image/jpeg",
        split_type="None",
    )
    return TransformStep(name=TRANSFORM, step_args=step_args)


def _evaluate_step(
    session: PipelineSession,
    settings: PipelineSettings,
    pipeline_name: str,
    params: PipelineParameters,
    prepare: ProcessingStep,
    serving: ProcessingStep,
    transform: TransformStep,
    *,
    head,
) -> tuple[ProcessingStep, PropertyFile]:
    """EvaluateModel: predictions, mapped back with the serving geometry, vs. validation annotations -> evaluation.json
    (metrics and gate values, the serving resolution, ROI and head)."""
    ground_truth = "/opt/ml/processing/input/ground_truth"
    predictions = "/opt/ml/processing/input/predictions"
    geometry = "/opt/ml/processing/input/serving_geometry"
    output = "/opt/ml/processing/output/evaluation"
    step_args = entry_processor(session, settings, f"{settings.prefix}-evaluate", params).run(
        inputs=[
            *code_inputs(),
            settings_input(),
            processing_input(
                "ground_truth",
                prepare.properties.ProcessingOutputConfig.Outputs["validation_annotation"].S3Output.S3Uri,
                ground_truth,
            ),
            processing_input("predictions", transform.properties.TransformOutput.S3OutputPath, predictions),
            processing_input(
                SERVING_GEOMETRY,
                serving.properties.ProcessingOutputConfig.Outputs[SERVING_GEOMETRY].S3Output.S3Uri,
                geometry,
            ),
        ],
        outputs=[
            processing_output("evaluation", Join(on="/", values=artifact_uri(pipeline_name, "evaluation")), output)
        ],
        arguments=[
            "evaluate",
            "--ground-truth",
            ground_truth,
            "--predictions",
            predictions,
            "--serving-geometry",
            f"{geometry}/geometry.json",
            "--head",
            head,
            "--output",
            output,
            *_scheme_arguments(settings),
        ],
    )
    report = PropertyFile(name="EvaluationReport", output_name="evaluation", path="evaluation.json")
    return ProcessingStep(name=EVALUATE, step_args=step_args, property_files=[report]), report


def _export_step(
    session: PipelineSession,
    settings: PipelineSettings,
    pipeline_name: str,
    params: PipelineParameters,
    serving: ProcessingStep,
    evaluate: ProcessingStep,
    model_data,
) -> ProcessingStep:
    """ExportModel: the candidate's ``model.tar.gz`` -> the edge bundle under pipelines/<name>/<execution>/bundle/
    (export/model.py), in the Python 3.11 export image with the shipped wheels. Fails when the parameters do not
    match the rebuilt network or ONNX Runtime disagrees with MXNet on the serving validation frames."""
    model, validation = "/opt/ml/processing/input/model", "/opt/ml/processing/input/serving_validation"
    evaluation, output = "/opt/ml/processing/input/evaluation", f"/opt/ml/processing/output/{EXPORT_BUNDLE}"
    # The serving resolution, ROI and limits reach the export as the serving step's (the functions') environment.
    processor = entry_processor(session, settings, f"{settings.prefix}-export", params,
                                env=settings.serving_preprocessing.frame_preparation_env(),
                                image=SENTINELS.export_image)
    step_args = processor.run(
        inputs=[
            *code_inputs(),
            settings_input(),
            processing_input("wheels", SENTINELS.export_wheels_uri, WHEELS_DIR),
            processing_input("model", model_data, model),
            processing_input(
                "serving_validation",
                serving.properties.ProcessingOutputConfig.Outputs[SERVING_VALIDATION].S3Output.S3Uri,
                validation,
            ),
            processing_input(
                "evaluation",
                evaluate.properties.ProcessingOutputConfig.Outputs["evaluation"].S3Output.S3Uri,
                evaluation,
            ),
        ],
        outputs=[processing_output(EXPORT_BUNDLE, Join(on="/", values=artifact_uri(pipeline_name, EXPORT_BUNDLE)),
                                    output)],
        arguments=[
            "export",
            "--model",
            model,
            "--validation",
            validation,
            "--evaluation",
            f"{evaluation}/evaluation.json",
            "--output",
            output,
            "--max-logit-difference",
            decimal_argument(settings.export_max_logit_difference),
            "--min-argmax-agreement",
            decimal_argument(settings.export_min_argmax_agreement),
            "--max-parity-frames",
            str(settings.export_parity_frames),
            *_scheme_arguments(settings),
        ],
    )
    return ProcessingStep(name=EXPORT, step_args=step_args)


def _scheme_arguments(settings: PipelineSettings) -> list[str]:
    """--scheme, plus the class list's file in the job settings for a custom scheme (never the list inline: an
    argument holds at most 256 characters)."""
    custom = ["--classes-file", classes_path()] if settings.custom_classes_json else []
    return ["--scheme", settings.class_scheme, *custom]


def _quality_gate(
    params: PipelineParameters, evaluation_report: PropertyFile, *, if_passed: list, if_failed: FailStep
) -> ConditionStep:
    """QualityGate: mIoU >= MinMIoU and, for every safety-critical class, IoU >= MinIoU<Class> (all must hold)."""
    conditions = [
        ConditionGreaterThanOrEqualTo(left=_gate_value(evaluation_report, "mIoU"), right=params.min_miou),
        *(
            ConditionGreaterThanOrEqualTo(left=_gate_value(evaluation_report, name), right=floor)
            for name, floor in params.class_floors
        ),
    ]
    return ConditionStep(name=GATE, conditions=conditions, if_steps=if_passed, else_steps=[if_failed])


def _gate_failed(params: PipelineParameters, evaluation_report: PropertyFile) -> FailStep:
    """GateFailed: names every measured value next to its threshold (-1 = class absent from validation)."""
    values: list = [
        "Quality gate failed: mIoU=",
        _gate_value(evaluation_report, "mIoU"),
        " (min ",
        params.min_miou,
        ")",
    ]
    for name, floor in params.class_floors:
        values += [f"; {name} IoU=", _gate_value(evaluation_report, name), " (floor ", floor, ")"]
    values.append("; an IoU of -1 means the class is absent from the validation set")
    return FailStep(name=FAIL, error_message=Join(on="", values=values))


def _gate_value(evaluation_report: PropertyFile, key: str) -> JsonGet:
    return JsonGet(step_name=EVALUATE, property_file=evaluation_report, json_path=gate_json_path(key))


def gate_json_path(key: str) -> str:
    """JsonPath of ``evaluation.json["gate"][key]``: dot notation, brackets for names like ``traffic light``."""
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        return f"gate.{key}"
    return f"gate['{key}']"


def _inference_instance_types(settings: PipelineSettings) -> list[str]:
    return list(dict.fromkeys((settings.transform_instance_type, *INFERENCE_INSTANCE_TYPES)))
