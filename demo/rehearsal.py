"""The rehearsal's stages, in order, against a moto server on 127.0.0.1 (see demo/__init__.py).

1. resources: the buckets, ingest queue + DLQ, async success/error topics, the S3 notification incoming/ ->
   ingest queue, the execution role, KMS key, model package group and a stand-in of the inference stack
   (CloudFormation, one ``ModelPackageArn`` parameter), all named from ``load_config(env)``;
2. pipelines: both definitions generated as at synth time, placeholders substituted, upserted, one
   execution each started with parameters through ``roadseg pipeline start``;
3. registry and rollout: an evaluation report (``training.evaluate`` on stand-in predictions), a model
   package with it as model metrics, approval through ``roadseg model approve``, the rollout handler on
   the EventBridge event (a real UpdateStack against moto), then the same event again (skipped);
4. frames: generated scenes (JPEG and PNG) plus the broken files, put under incoming/;
5. ingest: the SQS messages moto produced from the bucket notification, to ``ingest.handler`` in batches;
6. async endpoint: the STAND-IN SEGMENTER answers each InvokeEndpointAsync (mask under async-output/,
   notification on the success topic);
7. postprocess: the notifications (via an SQS tap on the topics) to ``postprocess.handler``;
8. real-time: one frame through ``realtime.handler`` (function URL event), answered by the stand-in;
9. outputs: results, overlays, quarantine and side-by-side pictures into the local output folder;
10. drive (``--no-drive`` skips it): a generated two-camera MCAP drive through extraction, the same ingest / async /
    postprocess path with the drives table counting, the drive builder, and its outputs (demo/drive.py).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import io
import json
import re
import shutil
import tarfile
import tempfile
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote_plus

import numpy as np
from PIL import Image

from contracts import naming
from contracts.lambda_env import RolloutEnvironment
from contracts.layout import ARTIFACTS, DATASETS, INFERENCE
from contracts.naming import MODEL_PACKAGE_PARAMETER
from demo import render
from demo.awsenv import AwsClients, LocalMoto, local_aws
from demo.drive import DriveError, DriveOptions, DriveReport, rehearse_drive
from demo.lambdas import SERVICE_NAMES, LambdaContext, Lambdas
from demo.standin import (
    LABEL,
    NOTE,
    TILE,
    AsyncEndpointEmulator,
    SceneFrame,
    StandInRuntime,
    StandInSegmenter,
    degrade,
)
from envconfig.config import EnvironmentConfig, load_config
from roadseg import cli
from segcore.scenes import generate_scene, write_broken_frames, write_cityscapes_tree
from stacks.code_assets import processing_files
from stacks.images import images_by_region
from stacks.preprocessors import preprocessor_environment
from stacks.registry_model import SSM_PARAMETER_TYPE
from stacks.training_pipelines import job_settings, pipeline_settings, resolve_scheme
from training.evaluate import evaluate_dirs

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_REGION = "us-east-1"
CAMERAS = ("front", "left", "right", "rear")
FIRST_TIMESTAMP = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
BROKEN_VEHICLE = "veh-900"
# Output subfolders this rehearsal owns (only these are cleared before a run: --out may be any folder).
OUTPUT_PARTS = ("results", "quarantine", "failures", "realtime", "side-by-side", "pipelines", "registry",
                "rollout", "drive", "logs", "summary.txt", "summary.json", "README.txt")


class RehearsalError(RuntimeError):
    """The rehearsal could not run (configuration, environment); the message says why."""


@dataclass(frozen=True)
class Options:
    env: str = "dev"
    frames: int = 8
    width: int = 1280
    height: int = 640
    out: Path = Path("demo-out")
    seed: int = 2026
    noise: float = 0.05
    readme_picture: Path | None = None
    drive: bool = True  # the drive stage (demo/drive.py)
    drive_seconds: float = 3.0
    drive_hz: float = 5.0


@dataclass(frozen=True)
class Names:
    """Every resource name of the rehearsal, derived from the typed configuration like the stacks do."""

    region: str
    datasets_bucket: str
    artifacts_bucket: str
    inference_bucket: str
    assets_bucket: str
    ingest_queue: str
    ingest_dlq: str
    success_topic: str
    error_topic: str
    postprocess_tap: str
    execution_role: str
    realtime_endpoint: str
    async_endpoint: str
    training_pipeline: str
    tuning_pipeline: str
    model_package_group: str
    inference_stack: str
    serving_parameter: str  # the SSM parameter behind the stack's SSM-typed ModelPackageArn
    drives_table: str

    @classmethod
    def from_config(cls, config: EnvironmentConfig, account: str = "123456789012") -> Names:
        prefix, region = config.prefix, config.region or DEFAULT_REGION
        realtime, async_ = naming.endpoint_names(prefix)
        training, tuning = naming.pipeline_names(prefix)
        return cls(
            region=region,
            datasets_bucket=f"{prefix}-datasets", artifacts_bucket=f"{prefix}-artifacts",
            inference_bucket=f"{prefix}-inference",
            assets_bucket=naming.cdk_assets_bucket(account, region),  # where CDK puts file assets
            ingest_queue=f"{prefix}-ingest", ingest_dlq=f"{prefix}-ingest-dlq",
            success_topic=f"{prefix}-async-success", error_topic=f"{prefix}-async-error",
            postprocess_tap=f"{prefix}-rehearsal-postprocess-tap",
            execution_role=f"{prefix}-sagemaker-execution",
            realtime_endpoint=realtime, async_endpoint=async_,
            training_pipeline=training, tuning_pipeline=tuning,
            model_package_group=naming.model_package_group_name(prefix),
            inference_stack=naming.inference_stack_name(prefix),
            serving_parameter=naming.serving_package_parameter(prefix),
            drives_table=naming.drives_table_name(prefix),
        )


@dataclass
class FrameOutcome:
    key: str
    kind: str  # "good" | "broken"
    status: str = "pending"  # processed | quarantined | failed | pending
    identity: str | None = None
    result: dict[str, Any] | None = None
    result_path: Path | None = None
    overlay_path: Path | None = None
    side_by_side_path: Path | None = None
    reason: dict[str, Any] | None = None
    reason_path: Path | None = None
    version_id: str | None = None  # what PutObject answered: the inference bucket is versioned, as deployed


@dataclass
class PipelineRun:
    name: str
    execution_arn: str
    status: str
    parameters: dict[str, str]
    declared_parameters: list[str]
    definition_path: Path


@dataclass
class Report:
    options: Options
    env: str
    prefix: str
    region: str
    endpoint_url: str = ""
    names: Names | None = None
    frames: list[FrameOutcome] = field(default_factory=list)
    pipelines: list[PipelineRun] = field(default_factory=list)
    model_package_arn: str = ""
    evaluation: dict[str, Any] = field(default_factory=dict)
    rollout: list[dict[str, Any]] = field(default_factory=list)
    update_stack_calls: list[dict[str, Any]] = field(default_factory=list)
    stack_parameter_before: str | None = None
    stack_parameter_after: str | None = None
    ingest_batches: int = 0
    ingest_item_failures: int = 0
    test_events: int = 0
    async_invocations: int = 0
    async_answers: dict[str, int] = field(default_factory=dict)
    postprocess_outcomes: dict[str, int] = field(default_factory=dict)
    realtime: dict[str, Any] = field(default_factory=dict)
    stand_in_labels: dict[str, Any] = field(default_factory=dict)  # metadata and tags of an async-output mask
    stages: list[tuple[str, float]] = field(default_factory=list)
    server_running_after: bool | None = None
    wall_seconds: float = 0.0
    readme_picture: Path | None = None
    drive: DriveReport | None = None

    def count(self, kind: str | None = None, status: str | None = None) -> int:
        return sum(1 for f in self.frames
                   if (kind is None or f.kind == kind) and (status is None or f.status == status))

    @property
    def version_ids_carried(self) -> tuple[int, int]:
        """(documents that carry their upload's VersionId, finished frames): see source_version_problem."""
        finished = [f for f in self.frames if f.status in ("processed", "quarantined")]
        return sum(1 for f in finished if source_version_problem(f) is None), len(finished)

    @property
    def problems(self) -> list[str]:
        """What did not behave as the deployed system must (empty: the rehearsal passed)."""
        found = []
        for frame in self.frames:
            if frame.kind == "good" and frame.status != "processed":
                found.append(f"good frame {frame.key} ended {frame.status}")
            if frame.kind == "broken" and frame.status != "quarantined":
                found.append(f"broken frame {frame.key} ended {frame.status}")
        actions = [r.get("action") for r in self.rollout]
        if actions != ["updated", "skipped"] or len(self.update_stack_calls) != 1:
            found.append(f"rollout: expected one update then one skip, got {actions} with "
                         f"{len(self.update_stack_calls)} UpdateStack call(s)")
        if self.ingest_item_failures:
            found.append(f"ingest reported {self.ingest_item_failures} batch item failure(s)")
        if self.realtime.get("status_code") != 200:
            found.append(f"real-time front answered {self.realtime.get('status_code')}")
        if any(run.status != "Succeeded" for run in self.pipelines) or len(self.pipelines) != 2:
            found.append("pipeline executions did not both succeed")
        if self.options.drive:
            found += self.drive.problems if self.drive is not None else ["the drive stage did not finish"]
        if self.server_running_after:
            found.append("the moto server thread is still running")
        found += [p for p in map(source_version_problem, self.frames) if p]
        return found


def source_version_problem(frame: FrameOutcome) -> str | None:
    """What is wrong with the version id in a finished frame's document (None: right, or not finished). The document
    carries the VersionId its upload got: a quarantine document as ``source_version_id``, a result in its
    ``inference_id`` (segcore.keys.derive_inference_id), so a re-upload of the same key is a new inference and
    the quarantine copy names the version it copied."""
    from segcore.keys import derive_inference_id

    if frame.status not in ("processed", "quarantined"):
        return None
    if not frame.version_id:
        return f"{frame.key}: the upload got no VersionId (is the inference bucket versioned?)"
    if frame.status == "quarantined":
        carried = (frame.reason or {}).get("source_version_id")
        if carried != frame.version_id:
            return (f"{frame.key}: quarantine document source_version_id {carried!r}, upload VersionId "
                    f"{frame.version_id!r}")
        return None
    result = frame.result or {}
    if result.get("inference_id") != derive_inference_id(result.get("source_bucket") or "", frame.key,
                                                         frame.version_id):
        return f"{frame.key}: result inference_id is not derived from the upload's VersionId {frame.version_id!r}"
    return None


def s3_event_with_version_ids(body: str, version_of: Callable[[str, str], str | None]) -> str:
    """An S3 event notification as S3 sends it for a versioned bucket: ``s3.object.versionId`` set (moto leaves it
    out). ``version_of(bucket, key)`` answers the object's current version; test events pass through unchanged."""
    event = json.loads(body)
    records = event.get("Records") if isinstance(event, dict) else None
    if not records:
        return body
    for record in records:
        s3_part = record.get("s3", {})
        obj = s3_part.get("object", {})
        if "key" in obj and "versionId" not in obj:
            version = version_of(s3_part.get("bucket", {}).get("name", ""), unquote_plus(obj["key"]))
            if version:
                obj["versionId"] = version
    return json.dumps(event)


class _Log:
    def __init__(self, path: Path, echo: Callable[[str], None]) -> None:
        self.path, self.echo = path, echo

    def __call__(self, message: str, *, console: bool = True) -> None:
        with self.path.open("a", encoding="utf-8") as log:
            log.write(f"{datetime.now(UTC).isoformat(timespec='milliseconds')} {message}\n")
        if console:
            self.echo(message)


def run(options: Options, echo: Callable[[str], None] = print) -> Report:
    """Run every stage; returns the report (``report.problems`` lists what went wrong)."""
    started = time.perf_counter()
    if options.frames < 1:
        raise RehearsalError("--frames must be at least 1")
    if options.width < 64 or options.height < 32:
        raise RehearsalError("frames must be at least 64x32 pixels")
    if options.drive and not (0 < options.drive_seconds <= 60 and 0 < options.drive_hz <= 30):
        raise RehearsalError("--drive-seconds must be within 0..60 and --drive-hz within 0..30")
    config = load_config(options.env)
    scheme = resolve_scheme(config)
    if scheme.name != "cityscapes":
        raise RehearsalError(f"config/{config.name}.yaml uses the '{scheme.name}' classes: the scene generator "
                             "draws Cityscapes classes only, so the rehearsal needs classes.scheme: cityscapes")
    names = Names.from_config(config)
    out = options.out
    _clear_outputs(out)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    log = _Log(out / "logs" / "rehearsal.log", echo)
    report = Report(options=options, env=config.name, prefix=config.prefix, region=names.region, names=names)
    segmenter = StandInSegmenter(options.noise, options.seed, lambda m: log(m, console=False))

    log(f"roadseg local rehearsal: env {config.name}, prefix {config.prefix}, region {names.region} "
        f"(moto on 127.0.0.1, no AWS account used)")
    log(f"{LABEL}: every mask below is the scene generator's ground truth with {options.noise:.0%} of its "
        f"{TILE}x{TILE} tiles perturbed, NOT a model prediction")

    @contextlib.contextmanager
    def stage(title: str) -> Iterator[None]:
        log(f"-- {title}")
        begin = time.perf_counter()
        try:
            yield
        finally:
            report.stages.append((title, time.perf_counter() - begin))

    server: LocalMoto | None = None
    try:
        begin = time.perf_counter()
        log("-- start moto server, create resources")
        with local_aws(names.region) as (server, aws):
            report.endpoint_url = server.endpoint_url or ""
            log(f"moto server listening on {server.endpoint_url}")
            lambdas = Lambdas(out / "logs" / "lambda.jsonl")
            runtime = StandInRuntime(real=aws("sagemaker-runtime"), segmenter=segmenter,
                                     output_prefix_uri=f"s3://{names.inference_bucket}/{INFERENCE.async_output}",
                                     failure_prefix_uri=f"s3://{names.inference_bucket}/{INFERENCE.async_failures}")
            with lambdas.session(runtime):
                arns = _create_resources(aws, config, names, log)
                report.stages.append(("start moto server, create resources", time.perf_counter() - begin))
                with stage("pipelines: generate, upsert, start"):
                    _pipelines(aws, config, names, arns, report, out, log)
                with stage("registry: evaluate, register, approve; rollout x2"):
                    version = _registry_and_rollout(aws, config, names, arns, scheme, lambdas, report, out, options,
                                                    log)
                env = _function_environment(config, scheme, names, version)
                with stage("frames: generate and upload to incoming/"):
                    frames = _upload_frames(aws, names, options, segmenter, report, log)
                with stage("ingest: SQS batches -> ingest.handler"):
                    _ingest(aws, config, names, arns, lambdas, runtime, env, report, log)
                with stage("async endpoint: STAND-IN SEGMENTER answers"):
                    _answer_async(aws, names, arns, runtime, segmenter, lambdas, report, log)
                with stage("postprocess: SNS notifications -> postprocess.handler"):
                    _postprocess(aws, names, arns, lambdas, env, report, log)
                with stage("real-time front: one frame -> realtime.handler"):
                    _realtime(config, names, lambdas, runtime, env, frames[0], report, out, log)
                with stage("outputs: download results, render side-by-side"):
                    _collect(aws, names, report, out, options, log)
                if options.drive:
                    with stage("drive: MCAP -> extract -> ingest/async/postprocess -> counts -> build"):
                        report.drive = _drive(aws, config, scheme, names, arns, lambdas, runtime, segmenter, env,
                                              options, out, log)
    finally:
        if server is not None:
            report.server_running_after = server.running
    report.wall_seconds = time.perf_counter() - started
    render.write_summary(report, out)
    return report


# ------------------------------------------------------------------------------------------ helpers


def _clear_outputs(out: Path) -> None:
    for part in OUTPUT_PARTS:
        path = out / part
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    out.mkdir(parents=True, exist_ok=True)


def _scene_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _cli(argv: list[str], log: _Log) -> str:
    """Run the ``roadseg`` command in-process (its AWS clients reach the local server through AWS_ENDPOINT_URL)."""
    log(f"$ roadseg {' '.join(argv)}", console=False)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    for line in (out.getvalue() + err.getvalue()).splitlines():
        log(f"  {line}", console=False)
    if code != 0:
        raise RehearsalError(f"roadseg {' '.join(argv[2:4])} failed ({code}): {err.getvalue().strip()}")
    return out.getvalue()


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


# ------------------------------------------------------------------------------------- 1. resources


@dataclass(frozen=True)
class IngestWiring:
    """The ingest path's settings as the rehearsal provisions them; tests/demo checks each against the
    synthesized inference template, so the two cannot drift apart."""

    visibility_timeout_seconds: int
    max_receive_count: int
    retention_seconds: int
    notification_events: tuple[str, ...]
    notification_prefix: str
    notifying_buckets: int  # both data buckets notify the ingest queue

    @classmethod
    def from_config(cls, config: EnvironmentConfig) -> IngestWiring:
        pre = config.preprocessing
        return cls(visibility_timeout_seconds=6 * pre.ingest.timeout_seconds, max_receive_count=pre.max_receive_count,
                   retention_seconds=14 * 86400, notification_events=("s3:ObjectCreated:*",),
                   notification_prefix=INFERENCE.incoming, notifying_buckets=2)


def _create_resources(aws: AwsClients, config: EnvironmentConfig, names: Names, log: _Log) -> dict[str, str]:
    s3, sqs, sns = aws("s3"), aws("sqs"), aws("sns")
    key_arn = aws("kms").create_key(Description=f"{config.prefix}: datasets, model artifacts and inference data")[
        "KeyMetadata"]["Arn"]
    location = {} if names.region == "us-east-1" else {"CreateBucketConfiguration": {
        "LocationConstraint": names.region}}
    for bucket in (names.datasets_bucket, names.artifacts_bucket, names.inference_bucket, names.assets_bucket):
        s3.create_bucket(Bucket=bucket, **location)
        if bucket != names.assets_bucket:  # versioned, SSE-KMS with the project key (moto does not enforce KMS)
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
            s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [{
                "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_arn},
                "BucketKeyEnabled": True}]})
    wiring = IngestWiring.from_config(config)
    encrypted = {"KmsMasterKeyId": key_arn, "MessageRetentionPeriod": str(wiring.retention_seconds)}
    dlq_url = sqs.create_queue(QueueName=names.ingest_dlq, Attributes=encrypted)["QueueUrl"]
    dlq_arn = _queue_arn(sqs, dlq_url)
    queue_url = sqs.create_queue(QueueName=names.ingest_queue, Attributes={
        **encrypted,
        "VisibilityTimeout": str(wiring.visibility_timeout_seconds),
        "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(wiring.max_receive_count)}),
    })["QueueUrl"]
    queue_arn = _queue_arn(sqs, queue_url)
    for bucket in (names.inference_bucket, names.datasets_bucket)[:wiring.notifying_buckets]:
        s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={"QueueConfigurations": [{
            "QueueArn": queue_arn, "Events": list(wiring.notification_events),
            "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": wiring.notification_prefix}]}}}]})
    success_arn = sns.create_topic(Name=names.success_topic, Attributes={"KmsMasterKeyId": key_arn})["TopicArn"]
    error_arn = sns.create_topic(Name=names.error_topic, Attributes={"KmsMasterKeyId": key_arn})["TopicArn"]
    # In AWS both topics invoke the postprocess Lambda; here an SQS queue collects what they deliver.
    tap_url = sqs.create_queue(QueueName=names.postprocess_tap)["QueueUrl"]
    tap_arn = _queue_arn(sqs, tap_url)
    subscriptions = {arn: sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=tap_arn)["SubscriptionArn"]
                     for arn in (success_arn, error_arn)}
    role_arn = aws("iam").create_role(RoleName=names.execution_role, AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                "Principal": {"Service": "sagemaker.amazonaws.com"}}]}))["Role"]["Arn"]
    aws("sagemaker").create_model_package_group(
        ModelPackageGroupName=names.model_package_group,
        ModelPackageGroupDescription=f"roadseg {config.name}: segmentation models (local rehearsal)")
    template = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": f"Local rehearsal stand-in for {names.inference_stack}: only its SSM-typed "
                       f"{MODEL_PACKAGE_PARAMETER} parameter (no endpoints)",
        "Parameters": {MODEL_PACKAGE_PARAMETER: {"Type": SSM_PARAMETER_TYPE, "Default": names.serving_parameter}},
        "Resources": {"ServingPlaceholder": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
        "Outputs": {"ServedModelPackageArn": {"Value": {"Ref": MODEL_PACKAGE_PARAMETER}}},
    }
    from contracts import drive_table

    aws("dynamodb").create_table(  # the drives table (stacks/drives.py DriveTable)
        TableName=names.drives_table, BillingMode="PAY_PER_REQUEST",
        **drive_table.key_schema(),
        SSESpecification={"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": key_arn},
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"})
    # What the data stack's ServingPackageParameter does before the inference stack exists: create it once, "none".
    aws("ssm").put_parameter(Name=names.serving_parameter, Value=naming.NO_MODEL_PACKAGE, Type="String",
                             Overwrite=False)
    resolve_ssm_parameters_like_cloudformation(aws("cloudformation"), aws("ssm"), names.inference_stack,
                                               {MODEL_PACKAGE_PARAMETER: names.serving_parameter})
    aws("cloudformation").create_stack(StackName=names.inference_stack, TemplateBody=json.dumps(template),
                                       Tags=[{"Key": "roadseg:environment", "Value": config.name}])
    log(f"buckets {names.datasets_bucket}, {names.artifacts_bucket}, {names.inference_bucket}; queue "
        f"{names.ingest_queue} (DLQ {names.ingest_dlq}, maxReceiveCount {wiring.max_receive_count}); topics "
        f"{names.success_topic}, {names.error_topic}; S3 {INFERENCE.incoming} -> {names.ingest_queue}; "
        f"table {names.drives_table}; stack {names.inference_stack} ({MODEL_PACKAGE_PARAMETER} <- SSM "
        f"{names.serving_parameter}={naming.NO_MODEL_PACKAGE!r})")
    return {"queue_url": queue_url, "queue_arn": queue_arn, "dlq_url": dlq_url, "success_topic": success_arn,
            "error_topic": error_arn, "tap_url": tap_url, "tap_arn": tap_arn, "role": role_arn, "key": key_arn,
            **{f"subscription:{arn}": sub for arn, sub in subscriptions.items()}}


def _queue_arn(sqs: Any, url: str) -> str:
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


# ------------------------------------------------------------------------------------- 2. pipelines


def _pipelines(aws: AwsClients, config: EnvironmentConfig, names: Names, arns: dict[str, str], report: Report,
               out: Path, log: _Log) -> None:
    from training.pipelines import PLACEHOLDERS, build_training_pipeline, build_tuning_pipeline

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
        arn = _cli(argv, log).strip().splitlines()[-1]
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


# ---------------------------------------------------------------------------- 3. registry and rollout


def _registry_and_rollout(aws: AwsClients, config: EnvironmentConfig, names: Names, arns: dict[str, str], scheme: Any,
                          lambdas: Lambdas, report: Report, out: Path, options: Options, log: _Log) -> str:
    s3, sm = aws("s3"), aws("sagemaker")
    training_run = report.pipelines[0]
    execution_id = training_run.execution_arn.rsplit("/", 1)[-1]
    run_prefix = f"{ARTIFACTS.pipelines}{names.training_pipeline}/{execution_id}/"
    registry_dir = out / "registry"
    with tempfile.TemporaryDirectory(prefix="roadseg-evaluate-") as tmp:
        gt_dir, pred_dir = Path(tmp, "ground_truth"), Path(tmp, "predictions")
        gt_dir.mkdir()
        pred_dir.mkdir()
        for i in range(4):
            _, truth = generate_scene(512, 256, _scene_seed(options.seed + 1, i))
            prediction = degrade(truth, options.noise, np.random.default_rng([options.seed, 1000 + i]))
            Image.fromarray(truth).save(gt_dir / f"val_{i:03d}.png")
            Image.fromarray(prediction).save(pred_dir / f"val_{i:03d}.png")
        evaluation = evaluate_dirs(gt_dir, pred_dir, scheme, registry_dir)
    evaluation["stand_in"] = True
    evaluation["note"] = f"{LABEL}: predictions are ground truth + tile noise ({options.noise:.0%}), not a model"
    evaluation_path = registry_dir / "evaluation.json"
    evaluation_path.write_text(json.dumps(evaluation, indent=1))
    evaluation_key = f"{run_prefix}evaluation/evaluation.json"
    s3.put_object(Bucket=names.artifacts_bucket, Key=evaluation_key, Body=evaluation_path.read_bytes(),
                  ContentType="application/json")
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
        CustomerMetadataProperties={"stand_in": "true", "pipeline_execution": training_run.execution_arn},
    )["ModelPackageArn"]
    report.model_package_arn = arn
    _cli(["--region", names.region, "model", "list", "--group", names.model_package_group, "--with-metrics"], log)
    _cli(["--region", names.region, "model", "approve", arn, "--note",
          f"local rehearsal: stand-in metrics, mIoU {evaluation['metrics']['mIoU']:.3f}"], log)
    package = sm.describe_model_package(ModelPackageName=arn)
    log(f"model package {arn.split('/', 1)[1]} registered with evaluation.json (stand-in mIoU "
        f"{evaluation['metrics']['mIoU']:.3f}) and approved")

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
        "source": "aws.sagemaker", "account": arn.split(":")[4], "time": _iso(datetime.now(UTC))[:19] + "Z",
        "region": region, "resources": [arn], "detail": json.loads(json.dumps(detail, default=str)),
    }


def _stack_parameter(cfn: Any, stack: str) -> str | None:
    """The value the stack's SSM-typed parameter resolved to (``ResolvedValue``) at its last create or update."""
    parameters = cfn.describe_stacks(StackName=stack)["Stacks"][0].get("Parameters", [])
    return next((p.get("ResolvedValue") for p in parameters if p["ParameterKey"] == MODEL_PACKAGE_PARAMETER), None)


def resolve_ssm_parameters_like_cloudformation(cfn: Any, ssm: Any, stack: str, ssm_typed: dict[str, str]) -> None:
    """STAND-IN for CloudFormation's SSM-typed parameters, which moto 5 does not model faithfully, on the client
    ``cfn`` (the rollout's or the rehearsal's). ``ssm_typed``: template parameter -> SSM parameter name.

    - DescribeStacks of ``stack``: moto reports the resolved value as ``ParameterValue`` and no ``ResolvedValue``;
      CloudFormation reports the SSM parameter name as ``ParameterValue`` and the value it resolved at the last
      create or update as ``ResolvedValue``. The response is rewritten to CloudFormation's shape (the value moto
      resolved then becomes ``ResolvedValue``).
    - UpdateStack of ``stack`` with ``UsePreviousValue``: CloudFormation keeps the SSM parameter name and re-reads
      its value; moto keeps the previously resolved value, so it would answer "No updates are to be performed"
      after the rollout wrote a new ARN into SSM. What moto receives names the SSM parameter instead (the same
      previous value, as CloudFormation sees it)."""

    def describe(parsed: dict[str, Any], **_: Any) -> None:
        for found in parsed.get("Stacks") or []:
            if found.get("StackName") != stack:
                continue
            for parameter in found.get("Parameters") or []:
                name = ssm_typed.get(parameter.get("ParameterKey"))
                if name is not None and "ResolvedValue" not in parameter:
                    parameter["ResolvedValue"] = parameter.get("ParameterValue")
                    parameter["ParameterValue"] = name

    def update(params: dict[str, Any], **_: Any) -> None:
        if params.get("StackName") != stack:
            return
        for parameter in params.get("Parameters") or []:
            name = ssm_typed.get(parameter.get("ParameterKey"))
            if name is not None and parameter.get("UsePreviousValue"):
                parameter.pop("UsePreviousValue")
                parameter["ParameterValue"] = name

    cfn.meta.events.register("after-call.cloudformation.DescribeStacks", describe)
    cfn.meta.events.register("before-parameter-build.cloudformation.UpdateStack", update)


def _function_environment(config: EnvironmentConfig, scheme: Any, names: Names, version: str) -> dict[str, str]:
    env = preprocessor_environment(config, scheme, inference_bucket=names.inference_bucket,
                                   async_endpoint_name=names.async_endpoint,
                                   realtime_endpoint_name=names.realtime_endpoint,
                                   model_package_version=version,  # the stack takes it from the package ARN
                                   drives_table=names.drives_table)
    # Rehearsal override: overlays to look at (config: preprocessing.write_overlay).
    return dataclasses.replace(env, write_overlay=True).to_env()


# ---------------------------------------------------------------------------------------- 4. frames


def _upload_frames(aws: AwsClients, names: Names, options: Options, segmenter: StandInSegmenter, report: Report,
                   log: _Log) -> list[tuple[SceneFrame, bytes]]:
    s3 = aws("s3")
    frames: list[tuple[SceneFrame, bytes]] = []
    for i in range(options.frames):
        seed = _scene_seed(options.seed, i)
        rgb, truth = generate_scene(options.width, options.height, seed)
        stamp = _iso(FIRST_TIMESTAMP + timedelta(milliseconds=100 * i))
        fmt, ext, content_type = (("JPEG", "jpg", "image/jpeg") if i % 2 == 0 else ("PNG", "png", "image/png"))
        key = f"{INFERENCE.incoming}veh-{1 + i // len(CAMERAS):03d}/{CAMERAS[i % len(CAMERAS)]}/{stamp}.{ext}"
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, format=fmt, **({"quality": 92} if fmt == "JPEG" else {}))
        frame = SceneFrame(key=key, scene_seed=seed, width=options.width, height=options.height, index=i)
        segmenter.register(frame, truth)
        put = s3.put_object(Bucket=names.inference_bucket, Key=key, Body=buf.getvalue(), ContentType=content_type)
        frames.append((frame, buf.getvalue()))
        report.frames.append(FrameOutcome(key=key, kind="good", version_id=put.get("VersionId")))
    with tempfile.TemporaryDirectory(prefix="roadseg-broken-") as tmp:
        for name in write_broken_frames(tmp):
            key = f"{INFERENCE.incoming}{BROKEN_VEHICLE}/front/{name}"
            put = s3.put_object(Bucket=names.inference_bucket, Key=key, Body=Path(tmp, name).read_bytes())
            report.frames.append(FrameOutcome(key=key, kind="broken", version_id=put.get("VersionId")))
    log(f"{options.frames} frames {options.width}x{options.height} (JPEG and PNG) and "
        f"{report.count('broken')} broken files put under s3://{names.inference_bucket}/{INFERENCE.incoming}")
    return frames


# ---------------------------------------------------------------------------------------- 5. ingest


def _receive_all(sqs: Any, url: str) -> list[dict[str, Any]]:
    messages = []
    while True:
        batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"],
                                    WaitTimeSeconds=0).get("Messages", [])
        if not batch:
            return messages
        messages.extend(batch)


def _ingest(aws: AwsClients, config: EnvironmentConfig, names: Names, arns: dict[str, str], lambdas: Lambdas,
            runtime: StandInRuntime, env: dict[str, str], report: Report, log: _Log) -> None:
    sqs, s3 = aws("sqs"), aws("s3")
    messages = _receive_all(sqs, arns["queue_url"])

    def version_of(bucket: str, key: str) -> str | None:
        return s3.head_object(Bucket=bucket, Key=key).get("VersionId")

    report.test_events = sum(1 for m in messages if '"s3:TestEvent"' in m["Body"])
    size = config.preprocessing.batch_size
    for start in range(0, len(messages), size):  # what the SQS event source mapping hands the function
        batch = messages[start:start + size]
        bodies = [s3_event_with_version_ids(m["Body"], version_of) for m in batch]
        event = {"Records": [{
            "messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": body,
            "attributes": m.get("Attributes", {}), "messageAttributes": {},
            "md5OfBody": hashlib.md5(body.encode()).hexdigest(),  # the body handed on, as SQS reports it
            "eventSource": "aws:sqs", "eventSourceARN": arns["queue_arn"], "awsRegion": names.region,
        } for m, body in zip(batch, bodies, strict=True)]}
        with lambdas.environment({**env, "POWERTOOLS_SERVICE_NAME": SERVICE_NAMES["ingest"]}):
            response = lambdas.ingest.handler(event, LambdaContext(SERVICE_NAMES["ingest"], region=names.region))
        failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
        report.ingest_batches += 1
        report.ingest_item_failures += len(failed)
        for m in batch:  # successes are deleted; failures stay for the retry (then the DLQ)
            if m["MessageId"] not in failed:
                sqs.delete_message(QueueUrl=arns["queue_url"], ReceiptHandle=m["ReceiptHandle"])
    report.async_invocations = len(runtime.async_requests)
    log(f"{len(messages)} SQS messages ({report.test_events} s3:TestEvent) in {report.ingest_batches} batch(es) of "
        f"<= {size}; {len(runtime.async_requests)} async invocations; {report.ingest_item_failures} item failures")


# -------------------------------------------------------------------------------- 6. async endpoint


def _answer_async(aws: AwsClients, names: Names, arns: dict[str, str], runtime: StandInRuntime,
                  segmenter: StandInSegmenter, lambdas: Lambdas, report: Report, log: _Log) -> None:
    emulator = AsyncEndpointEmulator(aws("s3"), aws("sns"), region=names.region,
                                     success_topic_arn=arns["success_topic"], error_topic_arn=arns["error_topic"],
                                     segmenter=segmenter, log=lambda m: log(m, console=False))
    for request in runtime.async_requests:
        status = emulator.answer(request, lambdas.metadata.parse_async_input_metadata)
        report.async_answers[status] = report.async_answers.get(status, 0) + 1
    log(f"{LABEL}: answered {len(runtime.async_requests)} async invocation(s): masks under "
        f"s3://{names.inference_bucket}/{INFERENCE.async_output} (metadata stand-in=true), notifications on "
        f"{names.success_topic}")


# ----------------------------------------------------------------------------------- 7. postprocess


def _postprocess(aws: AwsClients, names: Names, arns: dict[str, str], lambdas: Lambdas, env: dict[str, str],
                 report: Report, log: _Log) -> None:
    sqs = aws("sqs")
    messages = _receive_all(sqs, arns["tap_url"])
    for message in messages:
        envelope = json.loads(message["Body"])
        topic = envelope.get("TopicArn", "")
        record = {  # one SNS record per invocation, as SNS invokes a subscribed Lambda
            "EventSource": "aws:sns", "EventVersion": "1.0",
            "EventSubscriptionArn": arns.get(f"subscription:{topic}", f"{topic}:rehearsal"),
            "Sns": {"Type": envelope.get("Type", "Notification"), "MessageId": envelope.get("MessageId"),
                    "TopicArn": topic, "Subject": envelope.get("Subject"), "Message": envelope.get("Message"),
                    "Timestamp": envelope.get("Timestamp"), "SignatureVersion": envelope.get("SignatureVersion"),
                    "Signature": envelope.get("Signature"), "SigningCertUrl": envelope.get("SigningCertURL"),
                    "UnsubscribeUrl": envelope.get("UnsubscribeURL"), "MessageAttributes": {}},
        }
        with lambdas.environment({**env, "POWERTOOLS_SERVICE_NAME": SERVICE_NAMES["postprocess"]}):
            result = lambdas.postprocess.handler({"Records": [record]},
                                                 LambdaContext(SERVICE_NAMES["postprocess"], region=names.region))
        for outcome in result.get("outcomes", []):
            report.postprocess_outcomes[outcome] = report.postprocess_outcomes.get(outcome, 0) + 1
        sqs.delete_message(QueueUrl=arns["tap_url"], ReceiptHandle=message["ReceiptHandle"])
    log(f"{len(messages)} notification(s) -> postprocess.handler: "
        + ", ".join(f"{k} {v}" for k, v in sorted(report.postprocess_outcomes.items())))


# -------------------------------------------------------------------------------------- 8. real-time


def _realtime(config: EnvironmentConfig, names: Names, lambdas: Lambdas, runtime: StandInRuntime,
              env: dict[str, str], first: tuple[SceneFrame, bytes], report: Report, out: Path, log: _Log) -> None:
    frame, body = first
    pre = config.preprocessing
    imaging = lambdas.imaging
    prepared = imaging.prepare_frame(body, imaging.PrepareOptions(
        target_size=(pre.target_width, pre.target_height), roi=pre.roi, max_bytes=pre.max_input_bytes,
        max_pixels=pre.max_input_pixels, jpeg_quality=pre.jpeg_quality))
    runtime.expect_realtime(prepared.jpeg, frame.key, prepared.crop_box, prepared.output_size)
    now = datetime.now(UTC)
    relative = frame.key  # the function reads vehicle/camera/timestamp from ?key=
    event = {  # Lambda function URL, payload format 2.0 (the stack's RealtimeFrontUrl)
        "version": "2.0", "routeKey": "$default", "rawPath": "/", "rawQueryString": f"key={quote(relative)}",
        "headers": {"content-type": "image/jpeg", "host": "rehearsal.lambda-url.localhost"},
        "queryStringParameters": {"key": relative},
        "requestContext": {"accountId": "123456789012", "apiId": "rehearsal", "domainName": "localhost",
                           "requestId": str(uuid.uuid4()), "routeKey": "$default", "stage": "$default",
                           "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"), "timeEpoch": int(now.timestamp() * 1000),
                           "http": {"method": "POST", "path": "/", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1",
                                    "userAgent": "roadseg-rehearsal"}},
        "body": base64.b64encode(body).decode("ascii"), "isBase64Encoded": True,
    }
    with lambdas.environment({**env, "POWERTOOLS_SERVICE_NAME": SERVICE_NAMES["realtime"]}):
        response = lambdas.realtime.handler(event, LambdaContext(SERVICE_NAMES["realtime"], region=names.region))
    payload = json.loads(response["body"])
    folder = out / "realtime"
    folder.mkdir(parents=True, exist_ok=True)
    report.realtime = {"status_code": response["statusCode"], "key": frame.key}
    if response["statusCode"] == 200:
        mask_path = folder / "frame-0.mask.png"
        mask_path.write_bytes(base64.b64decode(payload.pop("mask_png_base64")))
        payload["stand_in"] = True
        payload["note"] = f"{LABEL}: {NOTE}"
        report.realtime.update(summary=payload["summary"], mask_path=mask_path)
    (folder / "frame-0.response.json").write_text(json.dumps(payload, indent=1))
    log(f"real-time front answered {response['statusCode']} for {frame.key} (mask from the {LABEL})")


# ----------------------------------------------------------------------------------------- 9. outputs


def _collect(aws: AwsClients, names: Names, report: Report, out: Path, options: Options, log: _Log) -> None:
    s3 = aws("s3")
    downloaded = {}
    for prefix in (INFERENCE.results, INFERENCE.quarantine, INFERENCE.failures):
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=names.inference_bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                target = out / obj["Key"]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(s3.get_object(Bucket=names.inference_bucket, Key=obj["Key"])["Body"].read())
                downloaded[obj["Key"]] = target
    masks = s3.list_objects_v2(Bucket=names.inference_bucket, Prefix=INFERENCE.async_output).get("Contents", [])
    if masks:
        key = masks[0]["Key"]
        report.stand_in_labels = {
            "key": key, "metadata": s3.head_object(Bucket=names.inference_bucket, Key=key)["Metadata"],
            "tags": {t["Key"]: t["Value"]
                     for t in s3.get_object_tagging(Bucket=names.inference_bucket, Key=key)["TagSet"]}}
    from segcore.keys import frame_identity, quarantine_keys

    for frame in report.frames:
        identity = frame_identity(frame.key)
        _, reason_key = quarantine_keys(frame.key, INFERENCE.quarantine)
        result_key = f"{INFERENCE.results}{identity}.json"
        if result_key in downloaded:
            frame.status, frame.identity = "processed", identity
            frame.result_path = downloaded[result_key]
            frame.result = json.loads(frame.result_path.read_text())
            frame.overlay_path = downloaded.get(f"{INFERENCE.results}{identity}.overlay.jpg")
        elif reason_key in downloaded:
            frame.status, frame.reason_path = "quarantined", downloaded[reason_key]
            frame.reason = json.loads(frame.reason_path.read_text())
        elif f"{INFERENCE.failures}{identity}.json" in downloaded:
            frame.status = "failed"
    for frame in report.frames:
        if frame.status != "processed" or frame.overlay_path is None:
            continue
        async_input = s3.get_object(Bucket=names.inference_bucket,
                                    Key=f"{INFERENCE.async_input}{frame.identity}.jpg")["Body"].read()
        target = out / "side-by-side" / f"{frame.identity}.png"
        render.side_by_side(Image.open(io.BytesIO(async_input)), Image.open(frame.overlay_path), target,
                            noise=options.noise, title=frame.key)
        frame.side_by_side_path = target
    picture = options.readme_picture
    first = next((f for f in report.frames if f.side_by_side_path is not None), None)
    if picture is not None and first is not None:
        render.readme_picture(first.side_by_side_path, picture)
        report.readme_picture = picture
        log(f"README picture written to {picture} ({picture.stat().st_size // 1024} KiB)")
    (out / "README.txt").write_text(
        "roadseg local rehearsal output (make demo): everything here came from moto on 127.0.0.1.\n"
        f"Masks, overlays, result JSONs and side-by-side pictures are STAND-IN output ({NOTE}).\n"
        "results/     result JSON + overlay per frame, as postprocess.handler wrote them to the inference bucket\n"
        "quarantine/  refused frames and their .reason.json, as ingest.handler wrote them\n"
        "realtime/    the real-time front's response for one frame\n"
        "side-by-side/ frame | overlay pictures; pipelines/ registry/ rollout/ logs/: the other stages\n")
    log(f"outputs in {out}/: {report.count(status='processed')} results with overlays, "
        f"{report.count(status='quarantined')} quarantine reasons")


# ------------------------------------------------------------------------------------------ 10. drive


def _drive(aws: AwsClients, config: EnvironmentConfig, scheme: Any, names: Names, arns: dict[str, str],
           lambdas: Lambdas, runtime: StandInRuntime, segmenter: StandInSegmenter, env: dict[str, str],
           options: Options, out: Path, log: _Log) -> DriveReport:
    """The drive stage (demo/drive.py) with stages 5-7 above as its ingest / async / postprocess path."""
    pre = config.preprocessing

    def process() -> dict[str, Any]:
        # Stages 5-7 on what the drive's frames queued, counted apart: the report's frame counts stay the frames'.
        scratch = Report(options=options, env=report_env, prefix=config.prefix, region=names.region, names=names)
        earlier, runtime.async_requests = runtime.async_requests, []
        try:
            _ingest(aws, config, names, arns, lambdas, runtime, env, scratch, log)
            _answer_async(aws, names, arns, runtime, segmenter, lambdas, scratch, log)
            _postprocess(aws, names, arns, lambdas, env, scratch, log)
        finally:
            runtime.async_requests = earlier + runtime.async_requests
        return {"ingest_batches": scratch.ingest_batches, "ingest_item_failures": scratch.ingest_item_failures,
                "async_invocations": scratch.async_invocations, "async_answers": scratch.async_answers,
                "postprocess_outcomes": scratch.postprocess_outcomes}

    report_env = config.name
    drive_options = DriveOptions(seconds=options.drive_seconds, hz=options.drive_hz, width=options.width,
                                 height=options.height, seed=options.seed, noise=options.noise,
                                 inference_size=(pre.target_width, pre.target_height),
                                 vru_min_pixels=pre.vru_min_pixels)
    try:
        return rehearse_drive(aws, bucket=names.inference_bucket, table=names.drives_table, scheme=scheme,
                              options=drive_options, segmenter=segmenter, process=process,
                              decide_completion=lambdas.drives.decide_completion, out=out, log=log)
    except DriveError as exc:
        raise RehearsalError(str(exc)) from None
