"""Pure builders of the whole-drive Processing jobs (CreateProcessingJob request dicts) and of what they read.

- ``extraction_request``: the drive's log object(s) -> drivelogs.job extract (frames under incoming/ with the
  drive id in their metadata, the manifest, the DRIVE item's ``extracted``/``status``). Split MCAP/bag files of one
  drive are ``ShardedByS3Key`` over up to ``extraction_max_instances`` instances; a ROS 2 bag directory is one input
  (the whole ``drives/<vehicle>/<drive>/`` prefix) on one instance. Network isolation is OFF: the job itself puts
  frames with S3 user metadata (a ProcessingOutput cannot set metadata) and updates the drives table, both through
  the job role (limited to incoming/, drive-outputs/, drives/ and the table).
- ``build_request``: the builder (drivelogs.job build), its inputs downloaded by SageMaker from a manifest
  file (``S3DataType=ManifestFile``, ``input_manifest``) listing the drive's documents, outputs uploaded by SageMaker
  to the drive's ``DriveOutputs`` prefix and the timeline table location; network isolation ON (it reads and writes
  nothing but what SageMaker downloads and uploads).

https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateProcessingJob.html
https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_ProcessingS3Input.html (ManifestFile, ShardedByS3Key)
https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_S3DataSource.html (the manifest file's format)

Lists (the custom class list, the camera map) reach both jobs as files of the job settings (contracts.job_settings,
the ``settings`` input), never inline. Each request is checked against SageMaker's limits before it is returned
(contracts.service_limits.check_processing_request): one that would break a limit raises RequestLimitError, one
line naming each problem, instead of a ValidationException from CreateProcessingJob after the DRIVE item exists.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, timedelta
from typing import Any

from contracts.drive_timeline import TIMELINE_TABLE_PREFIX
from contracts.drives import ROS2_METADATA, DriveId, DriveOutputs
from contracts.job_settings import SETTINGS_DIR, SETTINGS_INPUT
from contracts.layout import INFERENCE, PROCESSING_CODE_DIR, PROCESSING_ENTRYPOINT
from contracts.naming import drive_job_name
from contracts.service_limits import RequestLimitError, check_processing_request

# The entry script keeps its asset's key name (<hash>.py): the shared entrypoint runs whichever .py arrived.
ENTRYPOINT = list(PROCESSING_ENTRYPOINT)
PACKAGE_DIR = "/opt/ml/processing/input/package"
WHEELS_DIR = "/opt/ml/processing/input/wheels"
LOGS_DIR = "/opt/ml/processing/input/logs"
DOCUMENTS_DIR = "/opt/ml/processing/input/documents"
OUTPUT_DIR = "/opt/ml/processing/output/drive-outputs"
MANIFEST_OUTPUT_DIR = "/opt/ml/processing/output/manifest"
BUILD_INPUTS = "build-inputs.manifest"  # under the drive's DriveOutputs prefix
EXTRACT_INPUTS = "extract-inputs.manifest"


def _network(env: Any, *, isolated: bool) -> dict[str, Any]:
    """NetworkConfig: network isolation as given; in isolated-network mode the VPC's subnets and security groups
    (the jobs then reach S3 and DynamoDB through the VPC's endpoints)."""
    network: dict[str, Any] = {"EnableNetworkIsolation": isolated}
    if not isolated:
        network["EnableInterContainerTrafficEncryption"] = True
    if env.job_subnets:
        network["VpcConfig"] = {"Subnets": list(env.job_subnets), "SecurityGroupIds": list(env.job_security_groups)}
    return network


def s3_uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def _input(name: str, uri: str, local: str, *, data_type: str = "S3Prefix",
           distribution: str = "FullyReplicated") -> dict[str, Any]:
    return {"InputName": name, "AppManaged": False,
            "S3Input": {"S3Uri": uri, "LocalPath": local, "S3DataType": data_type, "S3InputMode": "File",
                        "S3DataDistributionType": distribution, "S3CompressionType": "None"}}


def _code_inputs(env: Any) -> list[dict[str, Any]]:
    """The entry script, the package, the drive wheels and, when the stack ships them, the job settings."""
    inputs = [_input("code", env.code_entry_uri, PROCESSING_CODE_DIR),
              _input("package", env.code_package_uri, PACKAGE_DIR),
              _input("wheels", env.drive_wheels_uri, WHEELS_DIR)]
    if env.settings_uri:
        inputs.append(_input(SETTINGS_INPUT, env.settings_uri, SETTINGS_DIR))
    return inputs


def _resources(env: Any, instance_type: str, count: int) -> dict[str, Any]:
    return {"ClusterConfig": {"InstanceCount": count, "InstanceType": instance_type,
                              "VolumeSizeInGB": env.volume_size_gb, "VolumeKmsKeyId": env.kms_key_arn}}


def _job_request(env: Any, drive: DriveId, kind: str, role_arn: str, arguments: list[str], inputs: list[dict],
                 instance_type: str, count: int, *, isolated: bool) -> dict[str, Any]:
    """What both drive jobs' requests share: name, role, the entry script's ``drive-job`` module, code inputs,
    resources, runtime, network and the drive tag."""
    return {
        "ProcessingJobName": drive_job_name(env.job_prefix, kind, str(drive)),
        "RoleArn": role_arn,
        "AppSpecification": {"ImageUri": env.processing_image, "ContainerEntrypoint": ENTRYPOINT,
                             "ContainerArguments": ["drive-job", *arguments]},
        "ProcessingInputs": _code_inputs(env) + inputs,
        "ProcessingResources": _resources(env, instance_type, count),
        "StoppingCondition": {"MaxRuntimeInSeconds": env.max_runtime_seconds},
        "NetworkConfig": _network(env, isolated=isolated),
        "Tags": [{"Key": "roadseg:drive", "Value": str(drive)}],
    }


def within_limits(request: dict[str, Any]) -> dict[str, Any]:
    """``request`` if it fits CreateProcessingJob's limits; else RequestLimitError (one line, every problem)."""
    problems = check_processing_request(request)
    if problems:
        raise RequestLimitError("CreateProcessingJob", problems)
    return request


def shard_keys(log_keys: Sequence[str]) -> list[str]:
    """The keys worth sharding across instances: a ROS 2 bag directory stored as several MCAP files (each MCAP file
    is self-contained; sqlite3 storage is not split). Empty: one instance reads the drive."""
    if not any(key.endswith("/" + ROS2_METADATA) for key in log_keys):
        return []
    storage = [key for key in log_keys if not key.endswith("/" + ROS2_METADATA)]
    return sorted(storage) if len(storage) > 1 and all(key.endswith(".mcap") for key in storage) else []


def extraction_request(env: Any, drive: DriveId, log_keys: Sequence[str], *, shard_manifest_uri: str | None = None,
                       max_bytes: int | None = None, max_pixels: int | None = None) -> dict[str, Any]:
    """CreateProcessingJob of the extraction (``env``: contracts.lambda_env.DrivesEnvironment). ``log_keys``: the
    log object, or every object of a ROS 2 bag directory; ``shard_manifest_uri``: where ``input_manifest`` of
    ``shard_keys(log_keys)`` was written, when there are keys to shard."""
    if not log_keys:
        raise ValueError(f"drive {drive}: no log objects to extract")
    bucket = env.inference_bucket
    outputs = DriveOutputs(drive)
    shards = shard_keys(log_keys)
    if shards:
        if not shard_manifest_uri:
            raise ValueError(f"drive {drive}: {len(shards)} MCAP files to shard need their manifest file")
        # SageMaker gives each instance a share of the listed files (ShardedByS3Key); each extracts and counts its
        # share. metadata.yaml is left out: every MCAP file is read on its own.
        count = min(len(shards), env.extraction_max_instances)
        logs = [_input("logs", shard_manifest_uri, LOGS_DIR, data_type="ManifestFile", distribution="ShardedByS3Key")]
    elif any(key.endswith("/" + ROS2_METADATA) for key in log_keys):
        prefix = f"{INFERENCE.drives}{drive.vehicle}/{drive.drive}/"
        logs, count = [_input("logs", s3_uri(bucket, prefix), f"{LOGS_DIR}/{drive.drive}")], 1
    elif len(log_keys) == 1:
        logs, count = [_input("logs", s3_uri(bucket, log_keys[0]), LOGS_DIR)], 1
    else:
        raise ValueError(f"drive {drive}: several log objects {list(log_keys)} outside a ROS 2 bag directory")
    arguments = ["extract", "--drive-id", str(drive), "--log-dir", LOGS_DIR, "--bucket", bucket,
                 "--manifest", f"{MANIFEST_OUTPUT_DIR}/manifest.json", "--table", env.drives_table,
                 "--manifest-key", outputs.manifest, "--instances", str(count)]
    for name, value in sorted((env.extraction_arguments or {}).items()):
        arguments += [name, str(value)]
    if env.cameras and "--cameras-json" not in arguments:  # inline: runs without the settings asset only
        arguments += ["--cameras-json", json.dumps(env.cameras, sort_keys=True)]
    if env.rate_hz:
        arguments += ["--rate-hz", f"{env.rate_hz:g}"]
    if max_bytes:
        arguments += ["--max-bytes", str(max_bytes)]
    if max_pixels:
        arguments += ["--max-pixels", str(max_pixels)]
    # Network isolation OFF on purpose (see the module docstring): frames need S3 user metadata, the counters DynamoDB.
    return within_limits(_job_request(env, drive, "extract", env.extraction_role_arn, arguments, logs,
                                      env.extraction_instance_type, count, isolated=False))


def build_request(env: Any, drive: DriveId, input_manifest_uri: str) -> dict[str, Any]:
    """CreateProcessingJob of the builder; ``input_manifest_uri``: the manifest file ``input_manifest`` wrote."""
    bucket, outputs = env.inference_bucket, DriveOutputs(drive)
    docs = DOCUMENTS_DIR
    arguments = ["build", "--drive-id", str(drive), "--results", f"{docs}/{INFERENCE.results}",
                 "--failures", f"{docs}/{INFERENCE.failures}", "--quarantine", f"{docs}/{INFERENCE.quarantine}",
                 "--masks", docs, "--overlays", docs, "--manifest", f"{docs}/{outputs.manifest}",
                 "--output", OUTPUT_DIR]
    for name, value in sorted((env.builder_arguments or {}).items()):
        arguments += [name, str(value)]
    drive_local = f"{OUTPUT_DIR}/{drive.vehicle}/{drive.drive}"
    timeline_local = f"{OUTPUT_DIR}/{TIMELINE_TABLE_PREFIX[len(INFERENCE.drive_outputs):].rstrip('/')}"
    return within_limits({
        **_job_request(env, drive, "build", env.builder_role_arn, arguments,
                       [_input("documents", input_manifest_uri, DOCUMENTS_DIR, data_type="ManifestFile")],
                       env.builder_instance_type, 1, isolated=True),
        "ProcessingOutputConfig": {"KmsKeyId": env.kms_key_arn, "Outputs": [
            {"OutputName": "drive", "AppManaged": False,
             "S3Output": {"S3Uri": s3_uri(bucket, outputs.prefix), "LocalPath": drive_local,
                          "S3UploadMode": "EndOfJob"}},
            {"OutputName": "timeline", "AppManaged": False,
             "S3Output": {"S3Uri": s3_uri(bucket, TIMELINE_TABLE_PREFIX), "LocalPath": timeline_local,
                          "S3UploadMode": "EndOfJob"}},
        ]},
    })


def input_manifest(bucket: str, keys: Iterable[str]) -> list[Any]:
    """A SageMaker manifest file (API_S3DataSource): the bucket as prefix, then the keys, sorted, no duplicates."""
    return [{"prefix": f"s3://{bucket}/"}, *sorted(set(keys))]


def build_input_keys(drive: DriveId, frame_documents: Iterable[Mapping[str, str | None]]) -> list[str]:
    """What the builder reads: every document of the drive's frames (result, mask, overlay, failure, quarantine
    reason; not the quarantined frame itself) and the drive manifest."""
    keys = {DriveOutputs(drive).manifest}
    for documents in frame_documents:
        keys.update(key for role, key in documents.items() if key and role != "quarantine")
    return sorted(keys)


def _day(stamp: str) -> date:
    """The UTC day of a manifest stamp: the extractor's compact form (20261203T101500.123456789Z) or extended ISO."""
    digits = stamp[:10].replace("-", "")[:8]
    return date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))


def timeline_partitions(drive: DriveId, manifest: Mapping[str, Any]) -> list[dict[str, str]]:
    """The (vehicle, camera, date) partitions the builder may write for this drive, from the drive manifest: every
    camera with extracted frames, every UTC day from its first to its last stamp."""
    found = []
    for camera, info in sorted((manifest.get("cameras") or {}).items()):
        first, last = info.get("first_stamp"), info.get("last_stamp")
        if not info.get("extracted") or not first or not last:
            continue
        day, end = _day(first), _day(last)
        while day <= end:
            found.append({"vehicle": drive.vehicle, "camera": camera, "date": day.isoformat()})
            day += timedelta(days=1)
    return found


def partition_inputs(table_descriptor: Mapping[str, Any], partitions: Sequence[Mapping[str, str]]) -> list[dict]:
    """BatchCreatePartition's PartitionInputList: the table's storage descriptor with each partition's location
    (``timeline_table_key``'s folders, Hive style; values in TIMELINE_PARTITION_KEYS order)."""
    from urllib.parse import quote

    base = table_descriptor["Location"].rstrip("/")
    inputs = []
    for p in partitions:
        v, c = quote(p["vehicle"], safe=""), quote(p["camera"], safe="")
        descriptor = {**table_descriptor, "Location": f"{base}/vehicle={v}/camera={c}/date={p['date']}/"}
        inputs.append({"Values": [p["vehicle"], p["camera"], p["date"]], "StorageDescriptor": descriptor})
    return inputs
