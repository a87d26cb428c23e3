"""The candidate-pool scoring job (issue 22 section 1) as a SageMaker Processing job: pure builders of its
CreateProcessingJob request and of the files it reads; ``roadseg label score`` fetches, calls these and sends.

Why a Processing job with the approved edge bundle on ONNX Runtime (not the async endpoint's probability output),
and its cost per 1,000 frames: labelling.scoring's docstring. The job runs ``python -m labelling.scoring`` through
jobs/processing_entry.py (``score``), in the processing image (Python 3.12) with the drive wheelhouse
(drivelogs/requirements.txt: numpy, pillow, pyarrow and the CPU ``onnxruntime`` wheel, installed without an index).

- INPUTS (all downloaded by SageMaker, so the job runs with network isolation and, in isolated-network mode, in the
  VPC's private subnets with the S3 gateway endpoint):
  the entry script, the processing package and the wheels (the stack's assets);
  ``bundle``: a manifest file (``S3DataType=ManifestFile``, API_S3DataSource) listing the four bundle files scoring
  reads (bundle.json, model.onnx, classes.json, preprocessing.json), not the MXNet graph or the Neo archive;
  ``frames``: a manifest file of the pool's frames, prefix ``s3://<inference bucket>/incoming/``, so each frame lands
  as ``<frames>/<vehicle>/<drive>/<camera>/<stamp>.jpg`` and ``--key-prefix incoming/`` rebuilds its key;
  ``pool``: the pool file itself (its order and its keys: a key without its frame is counted ``missing``).
- OUTPUT: ``label-scores/<job>/output/`` of the inference bucket (contracts.layout INFERENCE.label_scores):
  ``model-scores.parquet`` (what ``roadseg label select --model-scores`` joins) and ``scoring-summary.json``.
- The inputs the command writes (manifests, pool) go under ``label-scores/<job>/input/``; the job role reads the
  bundles, the frames and that folder and writes only ``label-scores/*/output/`` (stacks/label_scoring.py).
- Every request is checked against SageMaker's limits before it is sent (contracts.service_limits
  .check_processing_request): RequestLimitError names each problem.

https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateProcessingJob.html
https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_S3DataSource.html (the manifest file's format)
https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_ProcessingClusterConfig.html (VolumeKmsKeyId is refused
for instance types with local storage)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from contracts.bundle import BUNDLE
from contracts.instances import GPU_FAMILIES, has_local_instance_storage, instance_family
from contracts.layout import ARTIFACTS, INFERENCE, PROCESSING_CODE_DIR, PROCESSING_ENTRYPOINT
from contracts.naming import NO_MODEL_PACKAGE, label_scoring_job_name
from contracts.service_limits import RequestLimitError, check_processing_request

CREATE_PROCESSING_JOB_DOC = "https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateProcessingJob.html"
ENTRYPOINT = list(PROCESSING_ENTRYPOINT)
ENTRY_MODULE = "score"  # jobs/processing_entry.py's name for labelling.scoring
PACKAGE_DIR = "/opt/ml/processing/input/package"
WHEELS_DIR = "/opt/ml/processing/input/wheels"
BUNDLE_DIR = "/opt/ml/processing/input/bundle"
FRAMES_DIR = "/opt/ml/processing/input/frames"
POOL_DIR = "/opt/ml/processing/input/pool"
OUTPUT_DIR = "/opt/ml/processing/output/scores"
POOL_OBJECT = "pool.txt"
FRAMES_MANIFEST = "frames.manifest"
BUNDLE_MANIFEST = "bundle.manifest"
# The bundle files labelling.scoring.load_bundle reads (the rest of a bundle is not downloaded).
BUNDLE_FILES = (BUNDLE.manifest, BUNDLE.onnx, BUNDLE.classes, BUNDLE.preprocessing)
# vCPUs of the instance types offered (SageMaker's instance-type pages). On a CPU instance ONNX Runtime's intra-op
# threads use every core for one frame (one worker); on a GPU instance one worker per vCPU overlaps the CPU work of
# frames with the GPU's forward (labelling.scoring.score_frames).
INSTANCE_VCPUS = {"ml.m5.xlarge": 4, "ml.m5.2xlarge": 8, "ml.m5.4xlarge": 16, "ml.c5.xlarge": 4, "ml.c5.2xlarge": 8,
                  "ml.c5.4xlarge": 16, "ml.g4dn.xlarge": 4, "ml.g4dn.2xlarge": 8}
DEFAULT_INSTANCE_TYPE = "ml.m5.xlarge"
EDGE_BUNDLE_METADATA = "EdgeBundle"  # the model package's CustomerMetadataProperties key (training/pipelines/steps.py)
TAG_POOL = "roadseg:label-pool"


class ScoringJobError(ValueError):
    """Bad input to the scoring job: one line naming what, where and how to fix it (the CLI exits 2)."""


@dataclass(frozen=True)
class ScoringJobSettings:
    """What the job needs: the inference stack's output ``LabelScoringJob`` (a JSON object of these keys but
    ``bucket`` and ``kms_key_arn``) and the data stack's outputs ``InferenceBucketName`` and ``DataKeyArn`` (an
    output that embedded the data stack's exports would fail cfn-lint W6001, so the command joins the two)."""

    prefix: str  # the environment's prefix (job names)
    bucket: str  # the inference bucket: frames under incoming/, scores under label-scores/
    role_arn: str
    image_uri: str  # the processing image (Python 3.12, CPU)
    code_entry_uri: str
    code_package_uri: str
    wheels_uri: str
    kms_key_arn: str  # the data key: volumes and the uploaded scores
    volume_size_gb: int
    max_runtime_seconds: int
    subnets: tuple[str, ...] = ()
    security_group_ids: tuple[str, ...] = ()
    # A GPU instance needs an image with CUDA and the onnxruntime-gpu wheels; empty while the stack ships none.
    gpu_image_uri: str = ""
    gpu_wheels_uri: str = ""

    @classmethod
    def from_output(cls, text: str, *, bucket: str, kms_key_arn: str,
                    where: str = "output LabelScoringJob") -> ScoringJobSettings:
        """``text``: the value of the settings SSM parameter that the LabelScoringJob output names; ``bucket`` and
        ``kms_key_arn``: the data stack's inference bucket and data key (they win over any such keys in ``text``: a
        stack deployed before they left it)."""
        if not bucket or not kms_key_arn:
            raise ScoringJobError("the inference bucket and the data key ARN are both needed (the data stack's "
                                  "outputs InferenceBucketName and DataKeyArn): redeploy the data stack")
        try:
            document = json.loads(text)
        except (TypeError, json.JSONDecodeError) as exc:
            raise ScoringJobError(f"{where} is not JSON ({exc}): redeploy the inference stack") from None
        if not isinstance(document, dict):
            raise ScoringJobError(f"{where} must be a JSON object: redeploy the inference stack")
        names = {f.name for f in fields(cls)}
        joined = {"bucket": bucket, "kms_key_arn": kms_key_arn}
        required = {"prefix", "role_arn", "image_uri", "code_entry_uri", "code_package_uri", "wheels_uri",
                    "volume_size_gb", "max_runtime_seconds"}
        missing = sorted(required - set(document))
        if missing:
            raise ScoringJobError(f"{where} lacks {', '.join(missing)}: redeploy the inference stack")
        values = {**{k: v for k, v in document.items() if k in names}, **joined}
        for key in ("subnets", "security_group_ids"):
            raw = values.get(key) or ()
            values[key] = tuple(s for s in (raw.split(",") if isinstance(raw, str) else raw) if s)
        try:
            values["volume_size_gb"] = int(values["volume_size_gb"])
            values["max_runtime_seconds"] = int(values["max_runtime_seconds"])
        except (TypeError, ValueError):
            raise ScoringJobError(f"{where}: volume_size_gb and max_runtime_seconds must be integers") from None
        return cls(**values)


# ------------------------------------------------------------------------------------------------ the pool


def read_pool(text: str, where: str) -> list[str]:
    """The pool's frame keys in order, without duplicates: ``pool.txt`` (one key a line, labelling.selection
    .write_pool) or a selection manifest (``selection.json``: its picks' ``frame_key``). Every key must be a frame
    under the inference bucket's incoming/."""
    stripped = text.lstrip()
    if stripped.startswith("{"):
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ScoringJobError(f"pool {where}: not valid JSON ({exc})") from None
        picks = document.get("picks") if isinstance(document, dict) else None
        if not isinstance(picks, list):
            raise ScoringJobError(f"pool {where}: a JSON pool is a selection manifest with a picks list "
                                  "(roadseg label select's selection.json)")
        keys = [p.get("frame_key") if isinstance(p, dict) else None for p in picks]
        if any(not isinstance(k, str) or not k for k in keys):
            raise ScoringJobError(f"pool {where}: every pick needs a frame_key")
    else:
        keys = [line.strip() for line in text.splitlines() if line.strip()]
    keys = list(dict.fromkeys(keys))
    if not keys:
        raise ScoringJobError(f"pool {where} lists no frames: pass the pool.txt that roadseg label select wrote")
    outside = [k for k in keys if not k.startswith(INFERENCE.incoming) or k.endswith("/") or "/../" in f"/{k}"]
    if outside:
        raise ScoringJobError(f"pool {where}: {len(outside)} key(s) are not frames under {INFERENCE.incoming} of the "
                              f"inference bucket (first: {outside[0]!r}); the pool lists frame keys, one a line")
    return keys


def pool_digest(keys: Sequence[str], bundle_uri: str) -> str:
    """SHA-256 of the pool's keys and the bundle: names the job and tags it."""
    return hashlib.sha256(("\n".join(keys) + "\n" + bundle_uri).encode()).hexdigest()


def job_name(prefix: str, keys: Sequence[str], bundle_uri: str, now: datetime) -> str:
    return label_scoring_job_name(prefix, now.strftime("%Y%m%d%H%M%S"), pool_digest(keys, bundle_uri))


def job_prefix(name: str) -> str:
    """Where one job's inputs and outputs live in the inference bucket: ``label-scores/<job>/``."""
    return f"{INFERENCE.label_scores}{name}/"


def input_key(name: str, file: str) -> str:
    return f"{job_prefix(name)}input/{file}"


def output_prefix(name: str) -> str:
    return f"{job_prefix(name)}output/"


def frames_manifest(bucket: str, keys: Iterable[str]) -> list[Any]:
    """The frames' manifest file (API_S3DataSource): prefix ``s3://<bucket>/incoming/``, then each key below it."""
    return [{"prefix": f"s3://{bucket}/{INFERENCE.incoming}"}, *(k[len(INFERENCE.incoming):] for k in keys)]


def bundle_manifest(bundle_uri: str) -> list[Any]:
    """The bundle's manifest file: the bundle's prefix, then the files scoring reads."""
    return [{"prefix": normalise_bundle_uri(bundle_uri)}, *BUNDLE_FILES]


def normalise_bundle_uri(uri: str, artifacts_bucket: str | None = None) -> str:
    """``uri`` as ``s3://bucket/prefix/``. With ``artifacts_bucket``: refused unless it is an ExportModel bundle
    folder of that bucket (``pipelines/<pipeline>/<execution>/bundle/``): the scoring job's role reads only
    ``pipelines/*/bundle/*`` there (stacks/label_scoring.py), so another location would fail in the job, after the
    upload and the start - refused here instead."""
    if not uri.startswith("s3://") or len(uri.rstrip("/").split("/", 3)) < 4:
        raise ScoringJobError(f"bundle {uri!r} is not an s3://bucket/prefix/ of an edge bundle (the ExportModel "
                              "step's bundle/ folder)")
    normalised = uri.rstrip("/") + "/"
    if artifacts_bucket is not None:
        bucket, key = normalised[len("s3://"):].split("/", 1)
        parts = key.split("/")
        if (bucket != artifacts_bucket or not key.startswith(ARTIFACTS.pipelines) or len(parts) < 4
                or parts[-2] != "bundle" or any(not part for part in parts[:-1])):
            raise ScoringJobError(f"bundle {uri!r} is not an edge bundle of this environment: the scoring job reads "
                                  f"only s3://{artifacts_bucket}/{ARTIFACTS.pipelines}<pipeline>/<execution>/bundle/ "
                                  "(the ExportModel step's output); pass such a folder")
    return normalised


def approved_bundle(parameter_value: str | None, describe: Mapping[str, Any] | None,
                    artifacts_bucket: str | None = None) -> str:
    """The serving package's edge bundle: the serving SSM parameter's package ARN -> DescribeModelPackage's
    CustomerMetadataProperties["EdgeBundle"] (the ExportModel step's output, recorded by the pipeline)."""
    arn = (parameter_value or "").strip()
    if not arn or arn == NO_MODEL_PACKAGE:
        raise ScoringJobError("no model package is approved for serving yet: approve one (roadseg model approve) or "
                              "pass --bundle s3://.../bundle/")
    uri = ((describe or {}).get("CustomerMetadataProperties") or {}).get(EDGE_BUNDLE_METADATA)
    if not uri:
        raise ScoringJobError(f"model package {arn} records no {EDGE_BUNDLE_METADATA} (trained before the ExportModel "
                              "step): pass --bundle s3://.../bundle/ of an exported bundle")
    return normalise_bundle_uri(uri, artifacts_bucket)


# --------------------------------------------------------------------------------------------- the request


def is_gpu(instance_type: str) -> bool:
    return instance_family(instance_type) in GPU_FAMILIES


def _input(name: str, uri: str, local: str, data_type: str = "S3Prefix") -> dict[str, Any]:
    return {"InputName": name, "AppManaged": False,
            "S3Input": {"S3Uri": uri, "LocalPath": local, "S3DataType": data_type, "S3InputMode": "File",
                        "S3DataDistributionType": "FullyReplicated", "S3CompressionType": "None"}}


def scoring_request(settings: ScoringJobSettings, *, name: str, pool_sha256: str,
                    instance_type: str = DEFAULT_INSTANCE_TYPE, region: int | None = None) -> dict[str, Any]:
    """CreateProcessingJob of one scoring job named ``name`` (``job_name``), whose input files the command has
    written at ``input_key(name, ...)``. Raises ScoringJobError for an instance type it cannot run on and
    RequestLimitError for a request over SageMaker's limits."""
    if instance_type not in INSTANCE_VCPUS:
        raise ScoringJobError(f"--instance-type {instance_type}: scoring runs on {', '.join(INSTANCE_VCPUS)}")
    gpu = is_gpu(instance_type)
    if gpu and not (settings.gpu_image_uri and settings.gpu_wheels_uri):
        raise ScoringJobError(f"--instance-type {instance_type}: this environment ships no GPU scoring image "
                              "(LabelScoringJob has no gpu_image_uri/gpu_wheels_uri): use a CPU type such as "
                              f"{DEFAULT_INSTANCE_TYPE}")
    bucket = settings.bucket
    arguments = [ENTRY_MODULE, "--bundle", BUNDLE_DIR, "--frames", FRAMES_DIR, "--pool", f"{POOL_DIR}/{POOL_OBJECT}",
                 "--key-prefix", INFERENCE.incoming, "--output", OUTPUT_DIR, "--device", "cuda" if gpu else "cpu",
                 "--workers", str(INSTANCE_VCPUS[instance_type] if gpu else 1)]
    if region is not None:
        arguments += ["--region", str(region)]
    cluster: dict[str, Any] = {"InstanceCount": 1, "InstanceType": instance_type,
                               "VolumeSizeInGB": settings.volume_size_gb}
    if not has_local_instance_storage(instance_type):  # refused with local storage (API_ProcessingClusterConfig)
        cluster["VolumeKmsKeyId"] = settings.kms_key_arn
    network: dict[str, Any] = {"EnableNetworkIsolation": True}
    if settings.subnets:
        network["VpcConfig"] = {"Subnets": list(settings.subnets),
                                "SecurityGroupIds": list(settings.security_group_ids)}
    request = {
        "ProcessingJobName": name,
        "RoleArn": settings.role_arn,
        "AppSpecification": {"ImageUri": settings.gpu_image_uri if gpu else settings.image_uri,
                             "ContainerEntrypoint": ENTRYPOINT, "ContainerArguments": arguments},
        "ProcessingInputs": [
            _input("code", settings.code_entry_uri, PROCESSING_CODE_DIR),
            _input("package", settings.code_package_uri, PACKAGE_DIR),
            _input("wheels", settings.gpu_wheels_uri if gpu else settings.wheels_uri, WHEELS_DIR),
            _input("bundle", f"s3://{bucket}/{input_key(name, BUNDLE_MANIFEST)}", BUNDLE_DIR, "ManifestFile"),
            _input("frames", f"s3://{bucket}/{input_key(name, FRAMES_MANIFEST)}", FRAMES_DIR, "ManifestFile"),
            _input("pool", f"s3://{bucket}/{input_key(name, POOL_OBJECT)}", POOL_DIR),
        ],
        "ProcessingOutputConfig": {"KmsKeyId": settings.kms_key_arn, "Outputs": [
            {"OutputName": "scores", "AppManaged": False,
             "S3Output": {"S3Uri": f"s3://{bucket}/{output_prefix(name)}", "LocalPath": OUTPUT_DIR,
                          "S3UploadMode": "EndOfJob"}}]},
        "ProcessingResources": {"ClusterConfig": cluster},
        "StoppingCondition": {"MaxRuntimeInSeconds": settings.max_runtime_seconds},
        "NetworkConfig": network,
        "Tags": [{"Key": TAG_POOL, "Value": pool_sha256[:32]}],
    }
    problems = check_processing_request(request)
    if problems:
        raise RequestLimitError("CreateProcessingJob", problems)
    return request
