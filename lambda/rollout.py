"""Rollout: a model package approved in the registry becomes the inference stack's ``ModelPackageArn``.

Trigger (handler string ``rollout.handler``): the EventBridge event SageMaker sends when a model package
changes, ``source: aws.sagemaker``, ``detail-type: SageMaker Model Package State Change``; the fields used
are ``id`` and ``detail.ModelPackageGroupName``, ``detail.ModelPackageArn`` (else ``resources[0]``),
``detail.ModelApprovalStatus`` and ``detail.ModelPackageVersion``.

The stack's ``ModelPackageArn`` is SSM-typed (``AWS::SSM::Parameter::Value<String>``): its value is the name of
the serving SSM parameter, and CloudFormation re-reads that parameter on every create and update (``ResolvedValue``
in DescribeStacks). The function writes the approved ARN into the SSM parameter, then re-deploys the stack's
previous template with every parameter ``UsePreviousValue`` (tags, role and notifications left as they are), and
the endpoints' deployment policy does the rest. What it wrote survives every later deploy (`cdk deploy`, the
delivery pipeline, a manual update), none of which passes the parameter. Steps:

1. ignore events of another group or with a status other than Approved (no AWS call);
2. ignore the event if the package is no longer Approved (``DescribeModelPackage``: events may arrive
   late or out of order, e.g. approved then rejected a minute later);
3. ``DescribeStacks``: the parameter already resolves to the ARN -> skipped (a re-delivered event does nothing
   twice); the parameter is not SSM-typed (no ``ResolvedValue``) or the stack is in a state no update can leave
   (ROLLBACK_COMPLETE, *_FAILED, DELETE_*) -> :class:`RolloutError`;
4. ``PutParameter`` of the ARN into the serving SSM parameter (from now on every deploy serves it);
5. the stack is ``*_IN_PROGRESS`` (e.g. a pipeline deploy): wait, polling DescribeStacks every
   ``WAIT_POLL_SECONDS``, until it settles or the invocation's time runs out -> :class:`RolloutRetryableError`
   (Lambda retries the async invocation twice, then it lands in the DLQ; the next deploy serves the package anyway);
6. ``UpdateStack`` with ``ClientRequestToken`` derived from the event id (retries of one event are one
   request to CloudFormation). "No updates are to be performed" -> skipped. Any other error is raised.

7. SageMaker Neo (only with NEO_TARGETS): for an approved package, rolled out now or before, one compilation job per
   target from its edge bundle (``EdgeBundle`` and ``ServingSize`` in the package's customer metadata, written by the
   pipeline's ExportModel/RegisterModel steps): input ``<bundle>neo/model.tar.gz`` (framework MXNET 1.8, data
   ``[1, 3, H, W]``), output ``<bundle>compiled/<target>/``. Job names are per version and target, so a redelivered
   event finds its jobs (a failed create is confirmed with DescribeCompilationJob) and creates nothing twice. In
   isolated-network mode (NEO_SUBNETS, NEO_SECURITY_GROUPS) each job gets that ``VpcConfig`` (https://docs.aws.amazon.com/sagemaker/latest/dg/neo-vpc.html).
   :func:`compilation_jobs` is the pure part.

Environment (``contracts.lambda_env.RolloutEnvironment``): STACK_NAME (required, the inference stack),
MODEL_PACKAGE_GROUP (required), PARAMETER_NAME (default ``ModelPackageArn``), NEO_TARGETS, NEO_ROLE_ARN,
NEO_KMS_KEY_ARN, NEO_JOB_PREFIX, NEO_SUBNETS, NEO_SECURITY_GROUPS. Returns ``{"action": "ignored" | "skipped" |
"updated", "reason": ..., "compilation_jobs": [...], ...}``. The decision is the pure function :func:`decide`; the
handler only fetches its inputs and acts.

IAM: cloudformation:DescribeStacks and cloudformation:UpdateStack on the stack; sagemaker:DescribeModelPackage
on the group's packages; ssm:PutParameter on the serving parameter, ssm:GetParameters on the stack's SSM-typed
parameters (UpdateStack resolves them with the caller's credentials); plus what the stack update itself needs (the
caller's credentials are used unless the stack has a service role).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from botocore.config import Config
from botocore.exceptions import ClientError

from contracts.bundle import BUNDLE, NEO_FRAMEWORK, NEO_FRAMEWORK_VERSION, neo_data_input_config
from contracts.lambda_env import SERVICE_NAMES, EnvironmentContractError, RolloutEnvironment
from contracts.naming import MODEL_PACKAGE_PARAMETER, neo_compilation_job_name

DEFAULT_PARAMETER_NAME = MODEL_PACKAGE_PARAMETER
EVENT_SOURCE = "aws.sagemaker"
EVENT_DETAIL_TYPE = "SageMaker Model Package State Change"
APPROVED = "Approved"
CAPABILITIES = ("CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND")
# States from which UpdateStack cannot succeed: an operator has to act (delete, continue rollback, ...).
BLOCKED_STATES = frozenset(
    {
        "CREATE_FAILED",
        "ROLLBACK_COMPLETE",
        "ROLLBACK_FAILED",
        "DELETE_COMPLETE",
        "DELETE_FAILED",
        "UPDATE_ROLLBACK_FAILED",
        "IMPORT_ROLLBACK_FAILED",
    }
)
NO_UPDATES = "No updates are to be performed"
# The model package's customer metadata that the pipeline writes (training/pipelines/steps.py RegisterModel).
EDGE_BUNDLE_KEY, SERVING_SIZE_KEY = "EdgeBundle", "ServingSize"
NEO_MAX_RUNTIME_SECONDS = 900
_SERVING_SIZE = re.compile(r"^(\d{2,4})x(\d{2,4})$")
_BUSY_MESSAGE = re.compile(r"_IN_PROGRESS state", re.I)
_TOKEN_CHARS = re.compile(r"[^a-zA-Z0-9-]")
# Waiting for a busy stack: poll this often, and stop this long before the invocation's timeout.
WAIT_POLL_SECONDS, WAIT_MARGIN_SECONDS = 20, 30
_CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=20)

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", SERVICE_NAMES["rollout"]))


class RolloutError(Exception):
    """The approval cannot be rolled out; raised so the event ends in the function's DLQ."""


class RolloutRetryableError(RolloutError):
    """The stack is busy (an operation is in progress): Lambda's async retries should try again later."""


@dataclass(frozen=True)
class ApprovalEvent:
    event_id: str
    group: str | None
    arn: str | None
    status: str | None
    version: int | None
    source: str | None
    detail_type: str | None

    @classmethod
    def parse(cls, event: Mapping[str, Any]) -> ApprovalEvent:
        if not isinstance(event, Mapping):
            raise RolloutError(f"the event is a {type(event).__name__}, not an EventBridge event object")
        detail = event.get("detail") if isinstance(event.get("detail"), Mapping) else {}
        resources = event.get("resources") if isinstance(event.get("resources"), list) else []
        arn = detail.get("ModelPackageArn") or next((r for r in resources if ":model-package/" in str(r)), None)
        version = detail.get("ModelPackageVersion")
        try:
            version = int(version) if version is not None else None
        except (TypeError, ValueError):
            version = None
        return cls(
            event_id=str(event.get("id") or ""),
            group=detail.get("ModelPackageGroupName"),
            arn=arn,
            status=detail.get("ModelApprovalStatus"),
            version=version,
            source=event.get("source"),
            detail_type=event.get("detail-type"),
        )


@dataclass(frozen=True)
class Decision:
    """What to do with one event. ``action``: ignored, skipped, update, retry or blocked. ``serving_parameter``: the
    SSM parameter the stack's package parameter reads (update and retry write the ARN there first)."""

    action: str
    reason: str
    model_package_arn: str | None = None
    model_package_version: int | None = None
    previous_arn: str | None = None
    parameters: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    client_request_token: str | None = None
    serving_parameter: str | None = None


def client_request_token(event_id: str, arn: str) -> str:
    """A CloudFormation ClientRequestToken (``[a-zA-Z][-a-zA-Z0-9]*``, <= 128) for this event."""
    basis = event_id or f"{arn.rsplit('/', 2)[-2]}-{arn.rsplit('/', 1)[-1]}"
    return ("roadseg-rollout-" + _TOKEN_CHARS.sub("-", basis))[:128]


def screen(event: Mapping[str, Any], model_package_group: str) -> Decision | None:
    """An "ignored" decision for events this function must not act on; None for relevant ones."""
    approval = ApprovalEvent.parse(event)
    if approval.source not in (None, EVENT_SOURCE) or approval.detail_type not in (None, EVENT_DETAIL_TYPE):
        return Decision(
            "ignored",
            f"not a model package state change ({approval.source} / {approval.detail_type})",
            approval.arn,
            approval.version,
        )
    if approval.group != model_package_group:
        return Decision(
            "ignored",
            f"model package group {approval.group!r} is not {model_package_group!r}",
            approval.arn,
            approval.version,
        )
    if approval.status != APPROVED:
        return Decision(
            "ignored", f"approval status is {approval.status!r}, not {APPROVED!r}", approval.arn, approval.version
        )
    if not approval.arn or ":model-package/" not in approval.arn:
        raise RolloutError(
            f"approved event {approval.event_id or '(no id)'} carries no model package ARN "
            "(detail.ModelPackageArn or resources)"
        )
    return None


def decide(
    event: Mapping[str, Any],
    current_parameters: Sequence[Mapping[str, Any]] | None,
    stack_status: str | None,
    *,
    model_package_group: str,
    parameter_name: str = DEFAULT_PARAMETER_NAME,
    current_approval_status: str | None = None,
) -> Decision:
    """The whole rollout decision, without AWS.

    ``current_parameters`` is the stack's ``Parameters`` list from DescribeStacks (``ParameterKey`` /
    ``ParameterValue``), ``stack_status`` its ``StackStatus``; ``current_approval_status`` is what
    DescribeModelPackage says now (None: not checked).
    """
    ignored = screen(event, model_package_group)
    if ignored is not None:
        return ignored
    approval = ApprovalEvent.parse(event)
    arn, version = approval.arn, approval.version
    if current_approval_status is not None and current_approval_status != APPROVED:
        return Decision("ignored", f"the package is no longer approved (now {current_approval_status})", arn, version)
    entries = {p.get("ParameterKey"): p for p in current_parameters or []}
    if parameter_name not in entries:
        return Decision(
            "blocked",
            f"the stack has no parameter {parameter_name!r} (it has: "
            f"{', '.join(sorted(str(k) for k in entries)) or 'none'})",
            arn,
            version,
        )
    entry = entries[parameter_name]
    if "ResolvedValue" not in entry:
        return Decision(
            "blocked",
            f"the stack's parameter {parameter_name!r} is not SSM-typed (DescribeStacks gives it no ResolvedValue): "
            "deploy the current template once (make deploy or the pipeline), then approve again",
            arn,
            version,
        )
    serving_parameter, previous = entry.get("ParameterValue"), entry.get("ResolvedValue")
    if previous == arn:
        return Decision("skipped", "already deployed", arn, version, previous, serving_parameter=serving_parameter)
    status = stack_status or ""
    if status in BLOCKED_STATES:
        return Decision(
            "blocked", f"the stack is {status}: it cannot be updated until an operator fixes it", arn, version, previous
        )
    # Every parameter as it was: the SSM-typed one re-resolves to what the function writes into SSM first.
    parameters = tuple({"ParameterKey": key, "UsePreviousValue": True} for key in entries)
    token = client_request_token(approval.event_id, arn)
    if status.endswith("_IN_PROGRESS"):
        return Decision("retry", f"the stack is {status}: another operation is running", arn, version, previous,
                        parameters, token, serving_parameter)
    return Decision(
        "update",
        f"deploy version {version}" if version is not None else "deploy the approved package",
        arn,
        version,
        previous,
        parameters,
        token,
        serving_parameter,
    )


def wait_budget_seconds(remaining_ms: int | None) -> float:
    """How long this invocation may still wait for a busy stack (0 without a Lambda context)."""
    if remaining_ms is None:
        return 0.0
    return max(0.0, remaining_ms / 1000 - WAIT_MARGIN_SECONDS)


def compilation_jobs(
    metadata: Mapping[str, str] | None,
    version: int | None,
    *,
    targets: Sequence[str],
    job_prefix: str,
    role_arn: str,
    kms_key_arn: str | None,
    subnets: Sequence[str] = (),
    security_groups: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """CreateCompilationJob requests for an approved package's edge bundle, one per Neo target; RolloutError when
    the package does not say where its bundle is or at which size it was exported. With ``subnets`` (isolated
    network mode) every job runs in the VPC (``VpcConfig``: neo-vpc.html)."""
    if not targets:
        return []
    metadata = metadata or {}
    bundle, size = metadata.get(EDGE_BUNDLE_KEY), _SERVING_SIZE.match(metadata.get(SERVING_SIZE_KEY, ""))
    if not bundle or not bundle.startswith("s3://") or size is None or version is None:
        raise RolloutError(
            f"the package (version {version}) has no {EDGE_BUNDLE_KEY} s3:// URI and {SERVING_SIZE_KEY} WxH in its "
            f"customer metadata (got {dict(metadata)}): only packages registered by the pipeline's ExportModel step "
            "can be compiled; compile it by hand or set training.export.neo_targets to []"
        )
    bundle = bundle.rstrip("/") + "/"
    width, height = int(size[1]), int(size[2])
    jobs = []
    for target in targets:
        output = {"S3OutputLocation": f"{bundle}compiled/{target}/", "TargetDevice": target}
        if kms_key_arn:
            output["KmsKeyId"] = kms_key_arn
        jobs.append({
            "CompilationJobName": neo_compilation_job_name(job_prefix, version, target),
            "RoleArn": role_arn,
            "InputConfig": {
                "S3Uri": bundle + BUNDLE.neo_archive,
                "DataInputConfig": neo_data_input_config(height, width),
                "Framework": NEO_FRAMEWORK,
                "FrameworkVersion": NEO_FRAMEWORK_VERSION,
            },
            "OutputConfig": output,
            "StoppingCondition": {"MaxRuntimeInSeconds": NEO_MAX_RUNTIME_SECONDS},
        })
        if subnets:
            jobs[-1]["VpcConfig"] = {"Subnets": list(subnets), "SecurityGroupIds": list(security_groups)}
    return jobs


# ------------------------------------------------------------------------------------------- handler


@lru_cache(maxsize=1)
def cloudformation_client() -> Any:
    return boto3.client("cloudformation", config=_CLIENT_CONFIG)


@lru_cache(maxsize=1)
def sagemaker_client() -> Any:
    return boto3.client("sagemaker", config=_CLIENT_CONFIG)


@lru_cache(maxsize=1)
def ssm_client() -> Any:
    return boto3.client("ssm", config=_CLIENT_CONFIG)


def _sleep(seconds: float) -> None:
    time.sleep(seconds)


def _environment() -> RolloutEnvironment:
    try:
        env = RolloutEnvironment.from_env(os.environ)
    except EnvironmentContractError as exc:
        if exc.missing:
            raise RolloutError(f"environment variable(s) {', '.join(exc.missing)} not set") from None
        raise RolloutError(str(exc)) from None
    if env.neo_targets and not (env.neo_role_arn and env.neo_job_prefix):
        raise RolloutError("NEO_TARGETS is set without NEO_ROLE_ARN and NEO_JOB_PREFIX")
    if bool(env.neo_subnets) != bool(env.neo_security_groups):
        raise RolloutError("NEO_SUBNETS and NEO_SECURITY_GROUPS must be set together (the jobs' VpcConfig)")
    return env


def _compile(env: RolloutEnvironment, package: Mapping[str, Any], version: int | None) -> list[dict[str, str]]:
    """Create the package's Neo compilation jobs (none without NEO_TARGETS); an existing one is left as it is."""
    requests = compilation_jobs(package.get("CustomerMetadataProperties"), version, targets=env.neo_targets,
                                job_prefix=env.neo_job_prefix or "", role_arn=env.neo_role_arn or "",
                                kms_key_arn=env.neo_kms_key_arn, subnets=env.neo_subnets or (),
                                security_groups=env.neo_security_groups or ())
    created = []
    sagemaker = sagemaker_client()
    for request in requests:
        name = request["CompilationJobName"]
        try:
            sagemaker.create_compilation_job(**request)
            state = "created"
        except ClientError:
            # CreateCompilationJob documents ResourceInUse and ResourceLimitExceeded but no code for "a job of that
            # name exists" (CREATE_COMPILATION_JOB_DOC): the job's own description is the answer, not the code.
            if not compilation_job_exists(sagemaker, name):
                raise
            state = "exists"
        created.append({"name": name, "target": request["OutputConfig"]["TargetDevice"], "state": state})
    return created


CREATE_COMPILATION_JOB_DOC = "https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateCompilationJob.html"


def compilation_job_exists(sagemaker: Any, name: str) -> bool:
    """Does a compilation job of this name exist? A missing job answers ResourceNotFound (DescribeCompilationJob's
    documented error); anything else is raised."""
    try:
        sagemaker.describe_compilation_job(CompilationJobName=name)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("ResourceNotFound", "ValidationException"):
            return False
        raise
    return True


def _result(
    decision: Decision, stack_name: str, action: str | None = None, reason: str | None = None, **extra: Any
) -> dict[str, Any]:
    result = {
        "action": action or decision.action,
        "reason": reason or decision.reason,
        "stack_name": stack_name,
        "model_package_arn": decision.model_package_arn,
        "model_package_version": decision.model_package_version,
        **extra,
    }
    logger.info(f"rollout {result['action']}: {result['reason']}", extra=result)
    return result


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    env = _environment()
    stack_name, group, parameter_name = env.stack_name, env.model_package_group, env.parameter_name
    logger.append_keys(event_id=(event or {}).get("id") if isinstance(event, dict) else None)
    ignored = screen(event, group)
    if ignored is not None:
        return _result(ignored, stack_name)

    arn = ApprovalEvent.parse(event).arn
    package = sagemaker_client().describe_model_package(ModelPackageName=arn)
    approval = package.get("ModelApprovalStatus")

    def fetch_and_decide() -> Decision:
        stacks = cloudformation_client().describe_stacks(StackName=stack_name)["Stacks"]
        if not stacks:
            raise RolloutError(f"stack {stack_name} not found")
        return decide(event, stacks[0].get("Parameters", []), stacks[0].get("StackStatus"),
                      model_package_group=group, parameter_name=parameter_name, current_approval_status=approval)

    decision = fetch_and_decide()
    if decision.action == "ignored":
        return _result(decision, stack_name)
    if decision.action == "skipped":
        return _result(decision, stack_name, compilation_jobs=_compile(env, package, decision.model_package_version))
    if decision.action == "blocked":
        raise RolloutError(f"{stack_name}: {decision.reason}; {arn} was not rolled out")
    # First the SSM parameter: from here on every deploy of the stack (this update, a pipeline run, cdk deploy)
    # serves the package, even if this invocation ends before the stack is free.
    ssm_client().put_parameter(Name=decision.serving_parameter, Value=arn, Type="String", Overwrite=True)
    budget = wait_budget_seconds(context.get_remaining_time_in_millis() if context is not None else None)
    waited = 0.0
    while decision.action == "retry" and waited + WAIT_POLL_SECONDS <= budget:
        _sleep(WAIT_POLL_SECONDS)
        waited += WAIT_POLL_SECONDS
        decision = fetch_and_decide()
    if decision.action in ("skipped", "ignored"):  # another invocation rolled it out (or it was withdrawn) meanwhile
        return _result(decision, stack_name, compilation_jobs=_compile(env, package, decision.model_package_version)
                       if decision.action == "skipped" else [])
    if decision.action == "retry":
        raise RolloutRetryableError(f"{stack_name}: {decision.reason} (waited {waited:.0f} s); {arn} is in "
                                    f"{decision.serving_parameter}, so the next deploy serves it; retry rolling out")
    if decision.action == "blocked":
        raise RolloutError(f"{stack_name}: {decision.reason}; {arn} was not rolled out")

    try:
        response = cloudformation_client().update_stack(
            StackName=stack_name,
            UsePreviousTemplate=True,
            Parameters=list(decision.parameters),
            Capabilities=list(CAPABILITIES),
            ClientRequestToken=decision.client_request_token,
        )
    except ClientError as exc:
        message = str(exc.response.get("Error", {}).get("Message", ""))
        if NO_UPDATES.lower() in message.lower():
            return _result(decision, stack_name, action="skipped", reason="no updates are to be performed",
                           compilation_jobs=_compile(env, package, decision.model_package_version))
        if _BUSY_MESSAGE.search(message):
            raise RolloutRetryableError(f"{stack_name}: {message}; retry rolling out {arn}") from exc
        raise
    return _result(
        decision,
        stack_name,
        action="updated",
        stack_id=response.get("StackId"),
        previous_model_package_arn=decision.previous_arn,
        client_request_token=decision.client_request_token,
        compilation_jobs=_compile(env, package, decision.model_package_version),
    )
