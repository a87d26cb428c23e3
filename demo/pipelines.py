"""Stage 2: both pipeline definitions generated as at synth time, their placeholders substituted with the assets the
rehearsal uploads, upserted, and one execution each started through ``roadseg pipeline start``."""

from __future__ import annotations

import hashlib
import io
import json
import re
import tempfile
import zipfile
from pathlib import Path

from contracts.layout import DATASETS
from demo.awsenv import AwsClients
from demo.log import RehearsalLog, run_roadseg
from demo.options import Names, RehearsalError
from demo.report import PipelineRun, Report
from envconfig.classes import resolve_scheme
from envconfig.config import EnvironmentConfig
from envconfig.job_settings import job_settings
from segcore.scenes import write_cityscapes_tree
from stacks.code_assets import processing_files

ROOT = Path(__file__).resolve().parent.parent


def _fn_sub(template: str, values: dict[str, str]) -> str:
    """What CloudFormation's Fn::Sub does to a pipeline body: ${Name} -> value, ${!Literal} -> ${Literal}."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name.startswith("!"):
            return "${" + name[1:] + "}"
        if name not in values:
            raise RehearsalError(f"the pipeline definition uses the placeholder ${{{name}}}, which has no value")
        return values[name]

    return re.sub(r"\$\{([^}]*)\}", substitute, template)


def run_pipelines(aws: AwsClients, config: EnvironmentConfig, names: Names, arns: dict[str, str], report: Report,
                  out: Path, log: RehearsalLog) -> None:
    # Imported here, not at the top: the definition builders and images_by_region load the SageMaker SDK, and
    # pipeline_settings and images_by_region still live in CDK modules (stacks/), so `import demo.rehearsal` stays
    # free of both (tests/demo/test_imports.py); only this stage pays for them.
    from stacks.images import images_by_region
    from stacks.training_pipelines import pipeline_settings
    from training.pipelines.definition import build_training_pipeline, build_tuning_pipeline
    from training.pipelines.placeholders import PLACEHOLDERS

    s3, sm = aws("s3"), aws("sagemaker")
    images = images_by_region().get(names.region)
    if images is None:
        raise RehearsalError(f"the semantic-segmentation algorithm has no image in {names.region}")
    entry = (ROOT / "jobs" / "processing_entry.py").read_bytes()
    package = _zip_training_package()
    entry_key = f"{hashlib.sha256(entry).hexdigest()}.py"
    package_key = f"{hashlib.sha256(package).hexdigest()}.zip"
    s3.put_object(Bucket=names.assets_bucket, Key=entry_key, Body=entry)
    s3.put_object(Bucket=names.assets_bucket, Key=package_key, Body=package)
    # moto runs no processing job, so ExportModel's wheels are never installed here: the rehearsal ships their list
    # (the stack ships the wheels themselves, stacks/training_pipelines.py).
    wheels = _zip_export_requirements()
    wheels_key = f"{hashlib.sha256(wheels).hexdigest()}.zip"
    s3.put_object(Bucket=names.assets_bucket, Key=wheels_key, Body=wheels)
    settings_zip = _zip_job_settings(config)
    settings_key = f"{hashlib.sha256(settings_zip).hexdigest()}.zip"
    s3.put_object(Bucket=names.assets_bucket, Key=settings_key, Body=settings_zip)
    values = {
        "RoleArn": arns["role"], "DatasetsBucket": names.datasets_bucket, "ArtifactsBucket": names.artifacts_bucket,
        "KmsKeyArn": arns["key"], "AlgorithmImage": images.algorithm, "ProcessingImage": images.processing,
        "CodeEntryUri": f"s3://{names.assets_bucket}/{entry_key}",
        "CodePackageUri": f"s3://{names.assets_bucket}/{package_key}",
        "ExportImage": images.export, "ExportWheelsUri": f"s3://{names.assets_bucket}/{wheels_key}",
        "JobSettingsUri": f"s3://{names.assets_bucket}/{settings_key}",
    }
    if set(values) != set(PLACEHOLDERS):
        raise RehearsalError(f"placeholders changed: the pipelines expect {sorted(PLACEHOLDERS)}")
    arns["algorithm_image"] = images.algorithm

    with tempfile.TemporaryDirectory(prefix="roadseg-rehearsal-") as tmp:
        write_cityscapes_tree(tmp, n_train=2, n_val=2, width=256, height=128, seed=1)
        raw_prefix = f"{DATASETS.raw}rehearsal-cityscapes/"
        for path in sorted(Path(tmp).rglob("*.png")):
            s3.put_object(Bucket=names.datasets_bucket, Key=raw_prefix + path.relative_to(tmp).as_posix(),
                          Body=path.read_bytes())
    input_uri = f"s3://{names.datasets_bucket}/{raw_prefix}"

    settings = pipeline_settings(config, resolve_scheme(config))
    runs = (
        (names.training_pipeline, build_training_pipeline, "Prepare, train, transform, evaluate, gate and register",
         {"InputDataS3Uri": input_uri, "DatasetLayout": "cityscapes", "Epochs": "2"}),
        (names.tuning_pipeline, build_tuning_pipeline, "Prepare, tune, evaluate the best model, gate and register",
         {"InputDataS3Uri": input_uri, "DatasetLayout": "cityscapes", "Epochs": "3"}),
    )
    (out / "pipelines").mkdir(parents=True, exist_ok=True)
    for name, build, description, parameters in runs:
        definition = _fn_sub(build(settings), values)
        path = out / "pipelines" / f"{name}.definition.json"
        path.write_text(json.dumps(json.loads(definition), indent=1))
        request = {"PipelineName": name, "PipelineDisplayName": name, "PipelineDescription": description,
                   "PipelineDefinition": definition, "RoleArn": arns["role"]}
        existing = {p["PipelineName"] for p in sm.list_pipelines(PipelineNamePrefix=name)["PipelineSummaries"]}
        if name in existing:  # upsert, as CloudFormation does for AWS::SageMaker::Pipeline
            sm.update_pipeline(**request)
            verb = "updated"
        else:
            sm.create_pipeline(**request)
            verb = "created"
        declared = [p["Name"] for p in json.loads(sm.describe_pipeline(PipelineName=name)["PipelineDefinition"])
                    .get("Parameters", [])]
        argv = ["--region", names.region, "pipeline", "start", "--pipeline", name]
        for key, value in parameters.items():
            argv += ["--param", f"{key}={value}"]
        arn = run_roadseg(argv, log).strip().splitlines()[-1]
        execution = sm.describe_pipeline_execution(PipelineExecutionArn=arn)
        listed = sm.list_pipeline_parameters_for_execution(PipelineExecutionArn=arn)["PipelineParameters"]
        run = PipelineRun(name=name, execution_arn=arn, status=execution["PipelineExecutionStatus"],
                          parameters={p["Name"]: p["Value"] for p in listed}, declared_parameters=declared,
                          definition_path=path)
        report.pipelines.append(run)
        log(f"pipeline {name} {verb} ({len(declared)} parameters, {len(json.loads(definition)['Steps'])} top-level "
            f"steps); execution {arn.rsplit('/', 1)[-1]} {run.status} with "
            + ", ".join(f"{k}={v}" for k, v in run.parameters.items()))


def _zip_export_requirements() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.write(ROOT / "export" / "requirements.txt", "export-requirements.txt")
    return buffer.getvalue()


def _zip_job_settings(config: EnvironmentConfig) -> bytes:
    """The job settings as the stacks ship them (the JobSettings directory asset, zipped by CDK)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in sorted(job_settings(config, resolve_scheme(config)).items()):
            archive.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), text)
    return buffer.getvalue()


def _zip_training_package() -> bytes:
    """training/ and contracts/ as the stack ships them (the TrainingPackage asset: stacks.code_assets)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, path in processing_files():
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            archive.writestr(info, path.read_bytes())
    return buf.getvalue()
