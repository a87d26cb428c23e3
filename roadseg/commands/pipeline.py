"""``roadseg pipeline``: start the training and tuning pipelines and follow their executions."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from contracts import naming
from contracts.service_limits import MAX_CONTAINER_ARGUMENT_LENGTH
from roadseg.commands.polling import poll_until_terminal
from roadseg.output import Printer, when
from roadseg.session import JobFailed, Session, UserError

TERMINAL_EXECUTION_STATES = ("Succeeded", "Failed", "Stopped")
# What an endpoint that lacks an operation answers: moto raises NotImplementedError in-process and
# returns HTTP 500 (code "500") as a server; AWS-compatible stand-ins use these codes or HTTP 501.
UNSUPPORTED_OPERATION_CODES = frozenset(
    {"NotImplemented", "NotImplementedException", "UnknownOperationException", "InvalidAction",
     "UnsupportedOperation", "500", "501"}
)
PIPELINE_OUTPUTS = {"training": naming.TRAINING_PIPELINE_NAME, "tuning": naming.TUNING_PIPELINE_NAME}


def pipeline_name(session: Session, pipeline: str) -> str:
    """``training`` / ``tuning`` (the environment's pipelines) or an explicit pipeline name."""
    if pipeline in PIPELINE_OUTPUTS:
        return session.name(PIPELINE_OUTPUTS[pipeline], option="--pipeline <name>")
    return pipeline


def parse_params(pairs: Sequence[str]) -> list[dict[str, str]]:
    params: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"--param '{pair}' is not Key=Value")
        if key in params:
            raise UserError(f"--param {key} is given twice")
        params[key] = value
    return [{"Name": k, "Value": v} for k, v in params.items()]


def _check_params(sm: Any, pipeline: str, params: list[dict[str, str]]) -> None:
    """Refuse parameter names the pipeline does not declare (SageMaker would fail the execution later)."""
    if not params:
        return
    definition = sm.describe_pipeline(PipelineName=pipeline).get("PipelineDefinition") or ""
    try:
        declared = {p["Name"] for p in json.loads(definition).get("Parameters", [])}
    except (ValueError, TypeError, KeyError, AttributeError):
        return  # definition not readable here: let SageMaker judge
    unknown = sorted(p["Name"] for p in params if p["Name"] not in declared)
    if unknown:
        raise UserError(f"pipeline {pipeline} has no parameter(s) {', '.join(unknown)}; it takes: "
                        f"{', '.join(sorted(declared)) or 'none'}")


def _declared_parameters(sm: Any, pipeline: str) -> set[str] | None:
    """The parameter names the pipeline's definition declares, None when the definition cannot be read here."""
    definition = sm.describe_pipeline(PipelineName=pipeline).get("PipelineDefinition") or ""
    try:
        return {p["Name"] for p in json.loads(definition).get("Parameters", [])}
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def latest_approved_package(sm: Any, group: str) -> dict[str, Any] | None:
    """DescribeModelPackage of the group's latest Approved model package (the incumbent), None when there is none."""
    from botocore.exceptions import ClientError

    try:
        page = sm.list_model_packages(ModelPackageGroupName=group, ModelApprovalStatus="Approved",
                                      SortBy="CreationTime", SortOrder="Descending", MaxResults=1)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("ResourceNotFound", "ValidationException"):
            return None  # no group yet: nothing was ever registered
        raise
    summaries = page.get("ModelPackageSummaryList", [])
    return sm.describe_model_package(ModelPackageName=summaries[0]["ModelPackageArn"]) if summaries else None


# EvaluateVsIncumbent passes "--incumbent-model-data=<uri>" as one container argument (at most 256 characters).
MAX_INCUMBENT_MODEL_URI = MAX_CONTAINER_ARGUMENT_LENGTH - len("--incumbent-model-data=")


def incumbent_parameters(package: dict[str, Any] | None) -> list[dict[str, str]]:
    """IncumbentModelS3Uri and IncumbentModelPackageArn of the incumbent (DescribeModelPackage), or both "" for a
    first model (the gate then applies the floors alone)."""
    from training.pipelines.settings import INCUMBENT_MODEL_PARAMETER, INCUMBENT_PACKAGE_PARAMETER

    model_data, arn = "", ""
    if package is not None:
        arn = package.get("ModelPackageArn", "")
        containers = package.get("InferenceSpecification", {}).get("Containers", [])
        model_data = containers[0].get("ModelDataUrl", "") if containers else ""
        if not model_data:
            raise UserError(f"the approved model package {arn} names no ModelDataUrl: the gate cannot run it on the "
                            f"validation frames; pass --param {INCUMBENT_MODEL_PARAMETER}=s3://.../model.tar.gz")
        if len(model_data) > MAX_INCUMBENT_MODEL_URI:
            raise UserError(f"the approved model's data URI is {len(model_data)} characters, more than the "
                            f"{MAX_INCUMBENT_MODEL_URI} a job argument can carry: {model_data[:80]}...")
    return [{"Name": INCUMBENT_MODEL_PARAMETER, "Value": model_data},
            {"Name": INCUMBENT_PACKAGE_PARAMETER, "Value": arn}]


def _incumbent(session: Session, out: Printer, sm: Any, declared: set[str] | None,
               parameters: list[dict[str, str]]) -> list[dict[str, str]]:
    """The incumbent's parameters when the pipeline compares with one and the caller named none."""
    from training.pipelines.settings import INCUMBENT_MODEL_PARAMETER

    given = {p["Name"] for p in parameters}
    if declared is None or INCUMBENT_MODEL_PARAMETER not in declared or INCUMBENT_MODEL_PARAMETER in given:
        return []
    try:
        group = session.name(naming.MODEL_PACKAGE_GROUP_NAME)
    except UserError:  # the stack's output missing (a rehearsal, a pipeline named by hand): the name it would have
        group = naming.model_package_group_name(session.config.prefix)
    package = latest_approved_package(sm, group)
    found = [p for p in incumbent_parameters(package) if p["Name"] not in given]
    if package is None:
        out.info(f"no Approved model package in {group}: a first model, gated by the floors alone")
    else:
        out.info(f"incumbent: {group} version {package.get('ModelPackageVersion', '?')} "
                 f"({package['ModelPackageArn']}); the gate refuses a safety-class regression beyond MaxIoURegression")
    return found


def _dataset_version_parameters(session: Session, parameters: list[dict[str, str]],
                                version: str) -> list[dict[str, str]]:
    """InputDataS3Uri and DatasetLayout for a dataset version (labelling.versions), once its manifest says it is
    complete and labelled with the environment's scheme (the Prepare step checks masks against that scheme)."""
    from labelling.versions import VersionError, read_manifest, scheme_document, version_prefix
    from segcore.classes import scheme_from_config

    taken = sorted({"InputDataS3Uri", "DatasetLayout"} & {p["Name"] for p in parameters})
    if taken:
        raise UserError(f"give either --dataset-version or --param {'/'.join(taken)}=..., not both")
    bucket = session.name(naming.DATASETS_BUCKET_NAME)
    try:
        manifest = read_manifest(session.client("s3"), bucket, version)
        scheme = scheme_from_config(session.config.classes)
    except (VersionError, ValueError) as exc:
        raise UserError(str(exc)) from None
    if manifest["scheme"] != scheme_document(scheme):
        raise UserError(f"dataset version {version} is labelled with scheme '{manifest['scheme']['name']}', not the "
                        f"'{scheme.name}' classes of environment '{session.env}' (classes in {session.config_path})")
    return [{"Name": "InputDataS3Uri", "Value": f"s3://{bucket}/{version_prefix(version)}"},
            {"Name": "DatasetLayout", "Value": manifest["layout"]}]


def pipeline_start(session: Session, out: Printer, *, pipeline: str, params: Sequence[str], wait: bool,
                   timeout: float, poll_interval: float, dataset: str | None = None,
                   dataset_version: str | None = None) -> None:
    from contracts.layout import DATASETS

    sm = session.client("sagemaker")
    name = pipeline_name(session, pipeline)
    parameters = parse_params(params)
    if dataset and dataset_version:
        raise UserError("give either --dataset or --dataset-version, not both")
    if dataset_version:
        parameters += _dataset_version_parameters(session, parameters, dataset_version)
    if dataset:
        if any(p["Name"] == "InputDataS3Uri" for p in parameters):
            raise UserError("give either --dataset or --param InputDataS3Uri=..., not both")
        bucket = session.name(naming.DATASETS_BUCKET_NAME)
        parameters.append({"Name": "InputDataS3Uri", "Value": f"s3://{bucket}/{DATASETS.raw}{dataset.strip('/')}/"})
    parameters += _incumbent(session, out, sm, _declared_parameters(sm, name), parameters)
    _check_params(sm, name, parameters)
    request: dict[str, Any] = {"PipelineName": name}
    if parameters:
        request["PipelineParameters"] = parameters
    arn = sm.start_pipeline_execution(**request)["PipelineExecutionArn"]
    out.line(arn)
    state = "Executing"
    if wait:
        execution, state, ended = poll_until_terminal(
            lambda: sm.describe_pipeline_execution(PipelineExecutionArn=arn), "PipelineExecutionStatus",
            TERMINAL_EXECUTION_STATES, out, timeout=timeout, poll_interval=poll_interval)
        if not ended:
            out.document({"execution_arn": arn, "status": state})
            raise JobFailed(f"still {state} after {timeout:g} s; check later with: "
                            f"roadseg pipeline status --execution {arn}")
        out.document({"execution_arn": arn, "status": state})
        if state != "Succeeded":
            reason = execution.get("FailureReason")
            raise JobFailed(f"execution {state}" + (f": {reason}" if reason else ""))
        out.line("execution Succeeded")
        return
    out.document({"execution_arn": arn, "status": state})


def _step_details(sm: Any, arn: str) -> tuple[list[dict[str, Any]] | None, str | None]:
    """Steps of an execution, or ``(None, why)`` when the endpoint does not implement the call."""
    from botocore.exceptions import ClientError

    steps: list[dict[str, Any]] = []
    try:
        request: dict[str, Any] = {"PipelineExecutionArn": arn, "SortOrder": "Ascending"}
        while True:
            page = sm.list_pipeline_execution_steps(**request)
            steps.extend(page.get("PipelineExecutionSteps", []))
            if not page.get("NextToken"):
                return steps, None
            request["NextToken"] = page["NextToken"]
    except NotImplementedError as exc:  # moto, in-process
        return None, str(exc) or "not implemented"
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in UNSUPPORTED_OPERATION_CODES or status == 501:
            message = " ".join(str(error.get("Message", "")).split())[:120]
            return None, f"{code or status}: {message}".rstrip(": ")
        raise


def pipeline_status(session: Session, out: Printer, *, execution_arn: str) -> None:
    sm = session.client("sagemaker")
    execution = sm.describe_pipeline_execution(PipelineExecutionArn=execution_arn)
    state = execution["PipelineExecutionStatus"]
    out.line(f"execution: {execution_arn}", f"status:    {state}",
             f"started:   {when(execution.get('CreationTime'))}",
             f"updated:   {when(execution.get('LastModifiedTime'))}")
    if execution.get("FailureReason"):
        out.line(f"failure:   {execution['FailureReason']}")
    steps, why = _step_details(sm, execution_arn)
    if steps is None:
        out.line(f"note: step details unavailable from this endpoint (ListPipelineExecutionSteps: {why})")
    elif not steps:
        out.line("steps: none started yet")
    else:
        out.table(["STEP", "STATUS", "STARTED", "ENDED", "FAILURE"],
                  [[s.get("StepName", "?"), s.get("StepStatus", "?"), when(s.get("StartTime")),
                    when(s.get("EndTime")), s.get("FailureReason", "")] for s in steps])
    out.document({
        "execution_arn": execution_arn, "status": state, "started": execution.get("CreationTime"),
        "updated": execution.get("LastModifiedTime"), "failure": execution.get("FailureReason"),
        "steps": None if steps is None else [
            {"name": s.get("StepName"), "status": s.get("StepStatus"), "started": s.get("StartTime"),
             "ended": s.get("EndTime"), "failure": s.get("FailureReason")} for s in steps],
        "steps_unavailable": why,
    })


def pipeline_list(session: Session, out: Printer, *, limit: int) -> None:
    sm = session.client("sagemaker")
    rows = []
    for kind in PIPELINE_OUTPUTS:
        name = pipeline_name(session, kind)
        page = sm.list_pipeline_executions(PipelineName=name, SortBy="CreationTime", SortOrder="Descending",
                                           MaxResults=limit)
        for summary in page.get("PipelineExecutionSummaries", []):
            rows.append({"pipeline": name, "execution_arn": summary.get("PipelineExecutionArn"),
                         "status": summary.get("PipelineExecutionStatus"), "started": summary.get("StartTime")})
    out.table(["PIPELINE", "STATUS", "STARTED", "EXECUTION"],
              [[r["pipeline"], r["status"], when(r["started"]), r["execution_arn"]] for r in rows])
    if not rows:
        out.line("no executions yet: roadseg pipeline start")
    out.document(rows)
