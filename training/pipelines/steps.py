"""The steps both pipelines share, in the order they run: PrepareDataset before the model, then, from the candidate's
model artifact, PrepareServingValidation, CreateCandidateModel -> TransformValidation -> EvaluateModel -> IsFirstModel,
which runs one of two tails:

- first model (IncumbentModelS3Uri ""): QualityGate -> (ExportModel -> RegisterModel) | GateFailed;
- with an incumbent: CreateIncumbentModel -> TransformIncumbent -> EvaluateVsIncumbent -> QualityGateVsIncumbent
  -> (ExportModelVsIncumbent -> RegisterModelVsIncumbent) | GateFailedVsIncumbent.

Two tails, because a pipeline cannot join branches again: SageMaker does not run a step that depends on a step of the
branch a ConditionStep did not take (the SDK's local executor, sagemaker.mlops.local.pipeline._ConditionStepExecutor,
blocks the whole sub-DAG below the branch not taken), so a gate after the incumbent's transform never runs for a first
model unless it sits inside the incumbent's branch. The tails differ in the incumbent's steps and the gate's
conditions only; both register the candidate with the same arguments. The training and tuning jobs before them:
training_job.py, tuning_job.py.

``ModelBuilder.build()`` runs before ``register()`` on the same builder: ``register()`` alone looks the default
bucket up in S3 (SDK 3.27).
"""

from __future__ import annotations

import logging
import re

from contracts.job_settings import classes_path
from contracts.signals import REFERENCE_PROFILE_FILE
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
    ConditionEquals,
    ConditionGreaterThanOrEqualTo,
    ConditionLessThanOrEqualTo,
    ConditionStep,
    DriftCheckBaselines,
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
IS_FIRST_MODEL = "IsFirstModel"
GATE = "QualityGate"
EXPORT = "ExportModel"
REGISTER = "RegisterModel"
FAIL = "GateFailed"
# The tail with an incumbent (the approved model, scored on the same serving frames).
CREATE_INCUMBENT = "CreateIncumbentModel"
TRANSFORM_INCUMBENT = "TransformIncumbent"
EVALUATE_VS_INCUMBENT = "EvaluateVsIncumbent"
VS_INCUMBENT = "VsIncumbent"  # suffix of the incumbent tail's gate, export, register and fail steps

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
    """PrepareServingValidation, CreateCandidateModel -> TransformValidation -> EvaluateModel -> IsFirstModel and its
    two tails (the module's docstring). ``head``: the candidate's ``algorithm`` (a parameter or a property),
    recorded."""
    builder = _model_builder(session, settings, model_data)
    serving = _serving_step(session, settings, params, prepare)
    create_model = ModelStep(name=CREATE_MODEL, step_args=builder.build())
    transform = _transform_step(session, settings, pipeline_name, params, serving, create_model)
    evaluate, evaluation_report = _evaluate_step(session, settings, pipeline_name, params, prepare, serving, transform,
                                                 head=head)
    # Written by EvaluateModel whichever tail runs: the candidate's signals on the frames it is gated on.
    profile = Join(on="/", values=[_evaluation_output(evaluate), REFERENCE_PROFILE_FILE])

    def passed(evaluated: ProcessingStep, suffix: str) -> list:
        # One tail runs per execution: both export to the same bundle/ prefix.
        export = _export_step(session, settings, pipeline_name, params, serving, evaluated, model_data,
                              name=EXPORT + suffix)
        register = _register_step(builder, settings, params, evaluated, export, profile, name=REGISTER + suffix)
        return [export, register]

    first_gate = _quality_gate(params, EVALUATE, evaluation_report, if_passed=passed(evaluate, ""),
                               if_failed=_gate_failed(params, EVALUATE, evaluation_report))
    incumbent_steps = _incumbent_tail(session, settings, pipeline_name, params, prepare, serving, transform, head,
                                      passed)
    is_first_model = ConditionStep(
        name=IS_FIRST_MODEL,
        conditions=[ConditionEquals(left=params.incumbent_model, right="")],
        if_steps=[first_gate],
        else_steps=incumbent_steps,
    )
    return [serving, create_model, transform, evaluate, is_first_model]


def _model_builder(session: PipelineSession, settings: PipelineSettings, model_data) -> ModelBuilder:
    return ModelBuilder(
        image_uri=SENTINELS.algorithm_image,
        s3_model_data_url=model_data,
        role_arn=SENTINELS.role_arn,
        sagemaker_session=session,
        network=networking(settings),
        log_level=logging.ERROR,  # its default (DEBUG) overrides the SDK logger level set by sdk.quiet_sdk
    )


def _incumbent_tail(
    session: PipelineSession,
    settings: PipelineSettings,
    pipeline_name: str,
    params: PipelineParameters,
    prepare: ProcessingStep,
    serving: ProcessingStep,
    transform: TransformStep,
    head,
    passed,
) -> list:
    """CreateIncumbentModel -> TransformIncumbent (the approved model on the SAME serving frames) ->
    EvaluateVsIncumbent (both scored on the same pixels) -> QualityGateVsIncumbent (the floors, and no safety-critical
    class losing more than MaxIoURegression IoU) -> (ExportModelVsIncumbent -> RegisterModelVsIncumbent) |
    GateFailedVsIncumbent."""
    incumbent_builder = _model_builder(session, settings, params.incumbent_model)
    create_incumbent = ModelStep(name=CREATE_INCUMBENT, step_args=incumbent_builder.build())
    transform_incumbent = _transform_step(session, settings, pipeline_name, params, serving, create_incumbent,
                                          name=TRANSFORM_INCUMBENT, output="incumbent-predictions")
    evaluate, report = _evaluate_step(session, settings, pipeline_name, params, prepare, serving, transform,
                                      head=head, incumbent=transform_incumbent)
    gate = _quality_gate(params, EVALUATE_VS_INCUMBENT, report, if_passed=passed(evaluate, VS_INCUMBENT),
                         if_failed=_gate_failed(params, EVALUATE_VS_INCUMBENT, report, name=FAIL + VS_INCUMBENT),
                         name=GATE + VS_INCUMBENT, against_incumbent=True)
    return [create_incumbent, transform_incumbent, evaluate, gate]


def _evaluation_output(evaluate: ProcessingStep):
    return evaluate.properties.ProcessingOutputConfig.Outputs["evaluation"].S3Output.S3Uri


def _register_step(builder: ModelBuilder, settings: PipelineSettings, params: PipelineParameters,
                   evaluate: ProcessingStep, export: ProcessingStep, profile: Join, *, name: str) -> ModelStep:
    """RegisterModel: the evaluated candidate, its evaluation.json as model quality statistics and the reference
    profile as model data quality statistics of its drift check baselines (contracts.signals.reference_profile_uri
    reads it back from DescribeModelPackage)."""
    evaluation_json = Join(on="/", values=[_evaluation_output(evaluate), "evaluation.json"])
    # The same builder: register() without an earlier build() looks the default bucket up in S3.
    return ModelStep(
        name=name,
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
            # DriftCheckBaselines.ModelDataQuality.Statistics: "the statistics of the data used to train/validate the
            # model", a MetricsSource (ContentType, S3Uri) like ModelMetrics'
            # (https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_DriftCheckBaselines.html,
            # API_DriftCheckModelDataQuality.html). SageMaker stores it and never reads the file; roadseg's drift
            # monitor does (contracts.signals.reference_profile_uri).
            drift_check_baselines=DriftCheckBaselines(
                model_data_statistics=MetricsSource(content_type="application/json", s3_uri=profile)
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
    *,
    name: str = TRANSFORM,
    output: str = "predictions",
) -> TransformStep:
    """TransformValidation (TransformIncumbent): one PNG class-index mask per serving-resolution JPEG
    (``<name>.jpg.out``), on a GPU, under pipelines/<name>/<execution>/<output>/."""
    transformer = Transformer(
        model_name=create_model.properties.ModelName,
        instance_count=1,
        instance_type=params.transform_instance_type,
        strategy="SingleRecord",  # one image per request
        assemble_with="None",
        accept="image/png",
        output_path=Join(on="/", values=artifact_uri(pipeline_name, output)),
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
    return TransformStep(name=name, step_args=step_args)


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
    incumbent: TransformStep | None = None,
) -> tuple[ProcessingStep, PropertyFile]:
    """EvaluateModel: predictions, mapped back with the serving geometry, vs. validation annotations -> evaluation.json
    (metrics and gate values, the serving resolution, ROI and head) and the reference profile of the serving frames.

    With ``incumbent`` (TransformIncumbent), EvaluateVsIncumbent: the same scoring of both models on the same pixels
    -> evaluation.json with ``incumbent`` (its metrics, per-class delta and regression; training/evaluate.py) under
    pipelines/<name>/<execution>/evaluation-vs-incumbent/; no reference profile (EvaluateModel wrote it)."""
    ground_truth = "/opt/ml/processing/input/ground_truth"
    predictions = "/opt/ml/processing/input/predictions"
    geometry = "/opt/ml/processing/input/serving_geometry"
    frames = f"/opt/ml/processing/input/{SERVING_VALIDATION}"
    incumbent_predictions = "/opt/ml/processing/input/incumbent_predictions"
    output = "/opt/ml/processing/output/evaluation"
    inputs = [
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
    ]
    arguments = [
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
    ]
    if incumbent is None:
        inputs.append(processing_input(
            SERVING_VALIDATION,
            serving.properties.ProcessingOutputConfig.Outputs[SERVING_VALIDATION].S3Output.S3Uri,
            frames,
        ))
        # The reference profile's vru_present as the postprocess function measures it (its VRU_MIN_PIXELS).
        arguments += ["--serving-frames", frames,
                      "--vru-min-pixels", str(settings.serving_preprocessing.vru_min_pixels)]
    else:
        inputs.append(processing_input("incumbent_predictions", incumbent.properties.TransformOutput.S3OutputPath,
                                       incumbent_predictions))
        # "--option=value" in one argument: the package ARN may be "" (model data given by hand), and an empty
        # argument would read as a missing value.
        arguments += [
            "--incumbent-predictions", incumbent_predictions,
            Join(on="", values=["--incumbent-model-data=", params.incumbent_model]),
            Join(on="", values=["--incumbent-model-package=", params.incumbent_package]),
            "--incumbent-tolerance", params.max_regression.to_string(),
        ]
    name, artifact = (EVALUATE, "evaluation") if incumbent is None else (EVALUATE_VS_INCUMBENT,
                                                                         "evaluation-vs-incumbent")
    step_args = entry_processor(session, settings, f"{settings.prefix}-evaluate", params).run(
        inputs=inputs,
        outputs=[processing_output("evaluation", Join(on="/", values=artifact_uri(pipeline_name, artifact)), output)],
        arguments=arguments,
    )
    report_name = "EvaluationReport" if incumbent is None else "IncumbentEvaluationReport"
    report = PropertyFile(name=report_name, output_name="evaluation", path="evaluation.json")
    return ProcessingStep(name=name, step_args=step_args, property_files=[report]), report


def _export_step(
    session: PipelineSession,
    settings: PipelineSettings,
    pipeline_name: str,
    params: PipelineParameters,
    serving: ProcessingStep,
    evaluate: ProcessingStep,
    model_data,
    *,
    name: str = EXPORT,
) -> ProcessingStep:
    """ExportModel (ExportModelVsIncumbent): the candidate's ``model.tar.gz`` -> the edge bundle under
    pipelines/<name>/<execution>/bundle/ (export/model.py), in the Python 3.11 export image with the shipped wheels.
    Fails when the parameters do not match the rebuilt network or ONNX Runtime disagrees with MXNet on the serving
    validation frames."""
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
    return ProcessingStep(name=name, step_args=step_args)


def _scheme_arguments(settings: PipelineSettings) -> list[str]:
    """--scheme, plus the class list's file in the job settings for a custom scheme (never the list inline: an
    argument holds at most 256 characters)."""
    custom = ["--classes-file", classes_path()] if settings.custom_classes_json else []
    return ["--scheme", settings.class_scheme, *custom]


def _quality_gate(
    params: PipelineParameters,
    step_name: str,
    evaluation_report: PropertyFile,
    *,
    if_passed: list,
    if_failed: FailStep,
    name: str = GATE,
    against_incumbent: bool = False,
) -> ConditionStep:
    """QualityGate: mIoU >= MinMIoU and, for every safety-critical class, IoU >= MinIoU<Class> (all must hold).
    ``against_incumbent`` (QualityGateVsIncumbent) adds, for every safety-critical class, its regression against the
    incumbent (``incumbent.regression.<class>``: incumbent minus candidate IoU) <= MaxIoURegression."""
    conditions = [
        ConditionGreaterThanOrEqualTo(left=_gate_value(step_name, evaluation_report, "mIoU"), right=params.min_miou),
        *(
            ConditionGreaterThanOrEqualTo(left=_gate_value(step_name, evaluation_report, cls), right=floor)
            for cls, floor in params.class_floors
        ),
    ]
    if against_incumbent:
        conditions += [
            ConditionLessThanOrEqualTo(left=_regression_value(step_name, evaluation_report, cls),
                                       right=params.max_regression)
            for cls, _ in params.class_floors
        ]
    return ConditionStep(name=name, conditions=conditions, if_steps=if_passed, else_steps=[if_failed])


def _gate_failed(params: PipelineParameters, step_name: str, evaluation_report: PropertyFile, *,
                 name: str = FAIL) -> FailStep:
    """GateFailed: names every measured value next to its threshold (-1 = class absent from validation);
    GateFailedVsIncumbent also every safety-critical class's IoU regression against the incumbent and its limit."""
    values: list = [
        "Quality gate failed: mIoU=",
        _gate_value(step_name, evaluation_report, "mIoU"),
        " (min ",
        params.min_miou,
        ")",
    ]
    for cls, floor in params.class_floors:
        values += [f"; {cls} IoU=", _gate_value(step_name, evaluation_report, cls), " (floor ", floor, ")"]
    if name != FAIL:
        for cls, _ in params.class_floors:
            values += [f"; {cls} IoU regression vs incumbent=", _regression_value(step_name, evaluation_report, cls),
                       " (max ", params.max_regression, ")"]
    values.append("; an IoU of -1 means the class is absent from the validation set")
    return FailStep(name=name, error_message=Join(on="", values=values))


def _gate_value(step_name: str, evaluation_report: PropertyFile, key: str) -> JsonGet:
    return JsonGet(step_name=step_name, property_file=evaluation_report, json_path=gate_json_path(key))


def _regression_value(step_name: str, evaluation_report: PropertyFile, key: str) -> JsonGet:
    return JsonGet(step_name=step_name, property_file=evaluation_report,
                   json_path=gate_json_path(key, root="incumbent.regression"))


def gate_json_path(key: str, root: str = "gate") -> str:
    """JsonPath of ``evaluation.json["gate"][key]`` (or under another dotted ``root``, such as
    ``incumbent.regression``): dot notation, brackets for names like ``traffic light``."""
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        return f"{root}.{key}"
    return f"{root}['{key}']"


def _inference_instance_types(settings: PipelineSettings) -> list[str]:
    return list(dict.fromkeys((settings.transform_instance_type, *INFERENCE_INSTANCE_TYPES)))
