"""``roadseg label score``: the model signals of a candidate pool, computed in AWS by a SageMaker Processing job (the
approved edge bundle on ONNX Runtime: labelling.scoring, whose docstring says why and what 1,000 frames cost).

fetch -> pure -> act:
- fetch: the inference stack's ``LabelScoringJob`` output (the name of the SSM parameter holding the settings: role,
  image, code, wheels, network; a parameter because in isolated mode they embed imports) and the data stack's
  ``InferenceBucketName`` and ``DataKeyArn`` (not in that output: cfn-lint W6001), the bundle (``--bundle``,
  or the serving package's ``EdgeBundle`` through the serving SSM parameter and DescribeModelPackage), whether each
  pool frame is in the inference bucket (HeadObject);
- pure: labelling.scoring_job (the job name, the manifest files, the CreateProcessingJob request, its limits);
- act: the pool and the two manifest files under ``label-scores/<job>/input/``, CreateProcessingJob; with ``--wait``
  the job's end, the summary and (``--output``) a local copy of ``model-scores.parquet`` for ``roadseg label select
  --model-scores``.

Counts reconcile: pool = sent + absent (frames not in the bucket, left out of the manifest and listed); in the job,
sent = scored + refused + missing (scoring-summary.json). Exit codes: 0 started (or, with --wait, completed),
1 the job failed or stopped, 2 bad input, 3 AWS access.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from contracts import naming
from contracts.service_limits import RequestLimitError
from labelling.scoring import SCORES_FILE, SUMMARY_FILE
from labelling.scoring_job import (
    BUNDLE_MANIFEST,
    DEFAULT_INSTANCE_TYPE,
    FRAMES_MANIFEST,
    POOL_OBJECT,
    ScoringJobError,
    ScoringJobSettings,
    approved_bundle,
    bundle_manifest,
    frames_manifest,
    input_key,
    job_name,
    normalise_bundle_uri,
    output_prefix,
    pool_digest,
    read_pool,
    scoring_request,
)
from roadseg.commands.polling import poll_until_terminal
from roadseg.output import Printer
from roadseg.session import JobFailed, Session, UserError

TERMINAL_STATES = ("Completed", "Failed", "Stopped")
HEAD_WORKERS = 16  # boto3 clients are thread-safe; HeadObject per frame of a pool of a few thousand


def _frame_exists(s3: Any, bucket: str, key: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        s3.head_object(Bucket=bucket, Key=key)
        return True
    except ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey", "NotFound"):
            return False
        raise


def _settings_text(session: Session) -> tuple[str, str]:
    """The settings JSON in the SSM parameter the ``LabelScoringJob`` output names, and where it came from."""
    from botocore.exceptions import ClientError

    parameter = session.name(naming.LABEL_SCORING_JOB)
    where = f"SSM parameter {parameter} (output LabelScoringJob)"
    try:
        return session.client("ssm").get_parameter(Name=parameter)["Parameter"]["Value"], where
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code == "ParameterNotFound":
            raise UserError(f"{where} does not exist: redeploy the inference stack of environment "
                            f"'{session.env}'") from None
        if code in ("ValidationException", "InvalidParameterException"):
            raise UserError(f"{where} is not a parameter name ({exc.response['Error'].get('Message')}): redeploy "
                            f"the inference stack of environment '{session.env}'") from None
        raise


def _bundle(session: Session, bundle: str | None) -> str:
    """The bundle folder, refused unless it lies where the job's role may read (normalise_bundle_uri)."""
    artifacts = session.name(naming.ARTIFACTS_BUCKET_NAME)
    try:
        if bundle:
            return normalise_bundle_uri(bundle, artifacts)
        from botocore.exceptions import ClientError

        parameter = naming.serving_package_parameter(session.config.prefix)
        try:
            value = session.client("ssm").get_parameter(Name=parameter)["Parameter"]["Value"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ParameterNotFound":
                raise
            value = None
        describe = None
        if value and value.strip() != naming.NO_MODEL_PACKAGE:
            describe = session.client("sagemaker").describe_model_package(ModelPackageName=value.strip())
        return approved_bundle(value, describe, artifacts)
    except ScoringJobError as exc:
        raise UserError(str(exc)) from None


def label_score(session: Session, out: Printer, *, pool: Path, bundle: str | None = None,
                instance_type: str = DEFAULT_INSTANCE_TYPE, wait: bool = False, output: Path | None = None,
                timeout: float = 0, poll_interval: float = 30.0, region: int | None = None) -> None:
    try:
        keys = read_pool(pool.read_text(encoding="utf-8"), str(pool))
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"pool {pool}: cannot read it: {exc}") from None
    except ScoringJobError as exc:
        raise UserError(str(exc)) from None
    if output is not None and not wait:
        raise UserError("--output needs --wait: the scores exist once the job has completed")
    text, where = _settings_text(session)
    try:
        settings = ScoringJobSettings.from_output(text, bucket=session.name(naming.INFERENCE_BUCKET_NAME),
                                                  kms_key_arn=session.name(naming.DATA_KEY_ARN), where=where)
    except ScoringJobError as exc:
        raise UserError(str(exc)) from None
    bundle_uri = _bundle(session, bundle)
    name = job_name(settings.prefix, keys, bundle_uri, datetime.now(UTC))
    try:
        request = scoring_request(settings, name=name, pool_sha256=pool_digest(keys, bundle_uri),
                                  instance_type=instance_type, region=region)
    except (ScoringJobError, RequestLimitError) as exc:
        raise UserError(str(exc)) from None

    s3, bucket = session.client("s3"), settings.bucket
    with ThreadPoolExecutor(max_workers=HEAD_WORKERS) as threads:
        found = list(threads.map(lambda key: _frame_exists(s3, bucket, key), keys))
    present = [k for k, ok in zip(keys, found, strict=True) if ok]
    absent = [k for k, ok in zip(keys, found, strict=True) if not ok]
    if not present:
        raise UserError(f"none of the {len(keys)} pool frames is in s3://{bucket}/ (first: {keys[0]}): is this the "
                        f"pool of environment '{session.env}'?")
    if absent:
        out.warn(f"{len(absent)} of {len(keys)} pool frames are not in s3://{bucket}/ and are left out "
                 f"(first: {absent[0]})")
    for file, body in ((POOL_OBJECT, "".join(k + "\n" for k in present)),
                       (FRAMES_MANIFEST, json.dumps(frames_manifest(bucket, present))),
                       (BUNDLE_MANIFEST, json.dumps(bundle_manifest(bundle_uri)))):
        s3.put_object(Bucket=bucket, Key=input_key(name, file), Body=body.encode())
    session.client("sagemaker").create_processing_job(**request)
    scores_uri = f"s3://{bucket}/{output_prefix(name)}"
    document: dict[str, Any] = {"job_name": name, "bundle": bundle_uri, "instance_type": instance_type,
                                "pool": len(keys), "sent": len(present), "absent": len(absent),
                                "absent_keys": absent[:100], "scores": scores_uri + SCORES_FILE, "status": "InProgress"}
    out.line(f"started {name}: {len(present)} frames on {instance_type} with {bundle_uri}")
    if not wait:
        out.line(f"scores will be at {scores_uri}{SCORES_FILE}")
        out.document(document)
        return
    _wait_and_fetch(session, out, document, bucket, output=output, timeout=timeout, poll_interval=poll_interval)


def _wait_and_fetch(session: Session, out: Printer, document: dict[str, Any], bucket: str, *,
                    output: Path | None, timeout: float, poll_interval: float) -> None:
    sm, name = session.client("sagemaker"), document["job_name"]
    scores_uri = f"s3://{bucket}/{output_prefix(name)}"
    described, state, ended = poll_until_terminal(lambda: sm.describe_processing_job(ProcessingJobName=name),
                                                  "ProcessingJobStatus", TERMINAL_STATES, out,
                                                  timeout=timeout, poll_interval=poll_interval)
    if not ended:
        out.document({**document, "status": state})
        raise JobFailed(f"{name} still {state} after {timeout:g} s; the scores will be at {scores_uri}")
    document["status"] = state
    if state != "Completed":
        out.document(document)
        reason = described.get("FailureReason") or described.get("ExitMessage")
        raise JobFailed(f"scoring job {name} {state}" + (f": {reason}" if reason else "") + " (its logs: "
                        "/aws/sagemaker/ProcessingJobs)")
    s3, prefix = session.client("s3"), output_prefix(name)
    summary = json.loads(s3.get_object(Bucket=bucket, Key=prefix + SUMMARY_FILE)["Body"].read())
    document["summary"] = {k: summary.get(k) for k in ("pool", "scored", "refused", "missing", "provider",
                                                       "frames_per_second", "seconds")}
    if output is not None:
        output.mkdir(parents=True, exist_ok=True)
        for file in (SCORES_FILE, SUMMARY_FILE):
            s3.download_file(bucket, prefix + file, str(output / file))
        document["local_scores"] = str(output / SCORES_FILE)
    out.line(f"{name} Completed: scored {summary.get('scored')} of {summary.get('pool')} frames, refused "
             f"{sum((summary.get('refused') or {}).values())}, missing {summary.get('missing')}")
    out.document(document)
