"""Stage 3: an evaluation report on stand-in predictions, a model package with it as model metrics, approval through
``roadseg model approve``, then the rollout handler on the approval event twice (one update, then a skip)."""

from __future__ import annotations

import io
import json
import tarfile
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from contracts.lambda_env import RolloutEnvironment
from contracts.layout import ARTIFACTS
from contracts.naming import MODEL_PACKAGE_PARAMETER
from contracts.signals import REFERENCE_PROFILE_FILE, reference_profile_uri
from demo.awsenv import AwsClients
from demo.frames import iso_timestamp, scene_seed
from demo.lambdas import SERVICE_NAMES, LambdaContext, Lambdas
from demo.log import RehearsalLog, run_roadseg
from demo.options import Names, Options
from demo.report import Report
from demo.resources import resolve_ssm_parameters_like_cloudformation
from demo.standin import LABEL, degrade
from envconfig.config import EnvironmentConfig
from segcore.scenes import generate_scene
from training.evaluate import evaluate_dirs


def register_and_roll_out(aws: AwsClients, config: EnvironmentConfig, names: Names, arns: dict[str, str],
                          scheme: Any, lambdas: Lambdas, report: Report, out: Path, options: Options,
                          log: RehearsalLog) -> str:
    """Registers and approves the stand-in package, rolls it out; returns its version (the functions' environment)."""
    s3, sm = aws("s3"), aws("sagemaker")
    training_run = report.pipelines[0]
    execution_id = training_run.execution_arn.rsplit("/", 1)[-1]
    run_prefix = f"{ARTIFACTS.pipelines}{names.training_pipeline}/{execution_id}/"
    registry_dir = out / "registry"
    with tempfile.TemporaryDirectory(prefix="roadseg-evaluate-") as tmp:
        gt_dir, pred_dir, frames_dir = Path(tmp, "ground_truth"), Path(tmp, "predictions"), Path(tmp, "frames")
        for folder in (gt_dir, pred_dir, frames_dir):
            folder.mkdir()
        for i in range(4):
            image, truth = generate_scene(512, 256, scene_seed(options.seed + 1, i))
            prediction = degrade(truth, options.noise, np.random.default_rng([options.seed, 1000 + i]))
            Image.fromarray(truth).save(gt_dir / f"val_{i:03d}.png")
            Image.fromarray(prediction).save(pred_dir / f"val_{i:03d}.png")
            Image.fromarray(image).save(frames_dir / f"val_{i:03d}.jpg", quality=90)  # the frames "served"
        # As EvaluateModel does: evaluation.json and the reference profile of the gated frames next to it.
        evaluation = evaluate_dirs(gt_dir, pred_dir, scheme, registry_dir, serving_frames_dir=frames_dir)
    evaluation["stand_in"] = True
    evaluation["note"] = f"{LABEL}: predictions are ground truth + tile noise ({options.noise:.0%}), not a model"
    evaluation_path = registry_dir / "evaluation.json"
    evaluation_path.write_text(json.dumps(evaluation, indent=1))
    evaluation_key = f"{run_prefix}evaluation/evaluation.json"
    s3.put_object(Bucket=names.artifacts_bucket, Key=evaluation_key, Body=evaluation_path.read_bytes(),
                  ContentType="application/json")
    profile_key = f"{run_prefix}evaluation/{REFERENCE_PROFILE_FILE}"
    s3.put_object(Bucket=names.artifacts_bucket, Key=profile_key,
                  Body=(registry_dir / REFERENCE_PROFILE_FILE).read_bytes(), ContentType="application/json")
    model_key = f"{run_prefix}model/model.tar.gz"
    s3.put_object(Bucket=names.artifacts_bucket, Key=model_key, Body=_stand_in_model_archive())
    floors = config.classes.safety_critical_iou_floors
    report.evaluation = {"mIoU": evaluation["metrics"]["mIoU"], "min_miou": config.training.min_miou,
                         "safety": {c: (evaluation["gate"].get(c), floors[c]) for c in floors}}

    arn = sm.create_model_package(
        ModelPackageGroupName=names.model_package_group,
        ModelPackageDescription=f"{LABEL} package of the local rehearsal (no model was trained)",
        InferenceSpecification={
            "Containers": [{"Image": arns["algorithm_image"],
                            "ModelDataUrl": f"s3://{names.artifacts_bucket}/{model_key}"}],
            "SupportedContentTypes": ["image/jpeg", "image/png"], "SupportedResponseMIMETypes": ["image/png"],
            "SupportedRealtimeInferenceInstanceTypes": [config.realtime_endpoint.instance_type],
            "SupportedTransformInstanceTypes": [config.training.transform_instance_type]},
        ModelApprovalStatus="PendingManualApproval",
        ModelMetrics={"ModelQuality": {"Statistics": {"ContentType": "application/json",
                                                      "S3Uri": f"s3://{names.artifacts_bucket}/{evaluation_key}"}}},
        # Where RegisterModel records the reference profile (contracts.signals.reference_profile_uri reads it).
        DriftCheckBaselines={"ModelDataQuality": {"Statistics": {
            "ContentType": "application/json", "S3Uri": f"s3://{names.artifacts_bucket}/{profile_key}"}}},
        CustomerMetadataProperties={"stand_in": "true", "pipeline_execution": training_run.execution_arn},
    )["ModelPackageArn"]
    report.model_package_arn = arn
    run_roadseg(["--region", names.region, "model", "list", "--group", names.model_package_group, "--with-metrics"],
                log)
    run_roadseg(["--region", names.region, "model", "approve", arn, "--note",
                 f"local rehearsal: stand-in metrics, mIoU {evaluation['metrics']['mIoU']:.3f}"], log)
    package = sm.describe_model_package(ModelPackageName=arn)
    log(f"model package {arn.split('/', 1)[1]} registered with evaluation.json (stand-in mIoU "
        f"{evaluation['metrics']['mIoU']:.3f}) and approved; its reference profile: {reference_profile_uri(package)}")

    event = _approval_event(package, names.region)
    (out / "rollout").mkdir(parents=True, exist_ok=True)
    (out / "rollout" / "event.json").write_text(json.dumps(event, indent=1))
    cfn = aws("cloudformation")
    report.stack_parameter_before = _stack_parameter(cfn, names.inference_stack)
    rollout = lambdas.rollout
    env = RolloutEnvironment(stack_name=names.inference_stack, model_package_group=names.model_package_group,
                             parameter_name=MODEL_PACKAGE_PARAMETER, service_name=SERVICE_NAMES["rollout"]).to_env()
    with lambdas.environment(env):
        # Recorded as the rollout sends them (before the stand-in below rewrites what moto receives).
        rollout.cloudformation_client().meta.events.register(
            "provide-client-params.cloudformation.UpdateStack",
            lambda params, **_: report.update_stack_calls.append(json.loads(json.dumps(params, default=str))))
        resolve_ssm_parameters_like_cloudformation(rollout.cloudformation_client(), aws("ssm"), names.inference_stack,
                                                   {MODEL_PACKAGE_PARAMETER: names.serving_parameter})
        for delivery in (1, 2):  # EventBridge delivers at least once: the same event again must do nothing
            result = rollout.handler(event, LambdaContext(SERVICE_NAMES["rollout"], region=names.region))
            report.rollout.append({"delivery": delivery, **result})
    report.stack_parameter_after = _stack_parameter(cfn, names.inference_stack)
    (out / "rollout" / "results.json").write_text(json.dumps(
        {"deliveries": report.rollout, "update_stack_calls": report.update_stack_calls,
         "stack_parameter_before": report.stack_parameter_before,
         "stack_parameter_after": report.stack_parameter_after}, indent=1, default=str))
    for result in report.rollout:
        log(f"rollout delivery {result['delivery']}: {result['action']} ({result['reason']})")
    return str(package.get("ModelPackageVersion") or arn.rsplit("/", 1)[-1])


def _stand_in_model_archive() -> bytes:
    text = f"{LABEL}: the local rehearsal trains nothing; this archive only marks where model.tar.gz goes.\n"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as archive:
        info = tarfile.TarInfo("STAND-IN.txt")
        info.size = len(text)
        archive.addfile(info, io.BytesIO(text.encode()))
    return buf.getvalue()


def _approval_event(package: dict[str, Any], region: str) -> dict[str, Any]:
    """The "SageMaker Model Package State Change" event as EventBridge delivers it (moto emits none)."""
    arn = package["ModelPackageArn"]
    created = package.get("CreationTime")
    detail = {
        "ModelPackageGroupName": package["ModelPackageGroupName"],
        "ModelPackageVersion": package.get("ModelPackageVersion"),
        "ModelPackageArn": arn,
        "ModelPackageDescription": package.get("ModelPackageDescription"),
        "CreationTime": int(created.timestamp() * 1000) if isinstance(created, datetime) else created,
        "InferenceSpecification": package.get("InferenceSpecification"),
        "ModelApprovalStatus": package["ModelApprovalStatus"],
        "ModelPackageStatus": package.get("ModelPackageStatus"),
    }
    return {
        "version": "0", "id": str(uuid.uuid4()), "detail-type": "SageMaker Model Package State Change",
        "source": "aws.sagemaker", "account": arn.split(":")[4], "time": iso_timestamp(datetime.now(UTC))[:19] + "Z",
        "region": region, "resources": [arn], "detail": json.loads(json.dumps(detail, default=str)),
    }


def _stack_parameter(cfn: Any, stack: str) -> str | None:
    """The value the stack's SSM-typed parameter resolved to (``ResolvedValue``) at its last create or update."""
    parameters = cfn.describe_stacks(StackName=stack)["Stacks"][0].get("Parameters", [])
    return next((p.get("ResolvedValue") for p in parameters if p["ParameterKey"] == MODEL_PACKAGE_PARAMETER), None)
