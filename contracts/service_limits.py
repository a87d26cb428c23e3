"""Service limits that a request must fit, and pure checkers of the requests this project builds.

SageMaker validates lengths and counts on the server: botocore checks only minimums on the client, so a request
that is too long passes every offline check (Stubber included) and fails at run time with a ValidationException.
The stacks' contract rules (stacks/checks/service_contracts/limits.py), the drive functions (roadseg_lambda.drive_jobs,
which refuse to send a request that breaks a limit) and the tests share these values and checkers. The values are
the API reference's "Length Constraints" / "Array Members" / "Map Entries" (botocore's service model carries the
same numbers as ``max``).

Lists (class schemes, camera maps) never travel inline: they are files of the job settings asset
(contracts.job_settings), so no argument grows with the configuration.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

APP_SPECIFICATION_DOC = "https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_AppSpecification.html"
CREATE_PROCESSING_JOB_DOC = "https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateProcessingJob.html"
PROCESSING_OUTPUT_CONFIG_DOC = ("https://docs.aws.amazon.com/sagemaker/latest/APIReference/"
                                "API_ProcessingOutputConfig.html")
PROCESSING_S3_INPUT_DOC = "https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_ProcessingS3Input.html"
CREATE_TRAINING_JOB_DOC = "https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateTrainingJob.html"
CREATE_TRANSFORM_JOB_DOC = "https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateTransformJob.html"
CREATE_TUNING_JOB_DOC = ("https://docs.aws.amazon.com/sagemaker/latest/APIReference/"
                         "API_CreateHyperParameterTuningJob.html")
CREATE_COMPILATION_JOB_DOC = ("https://docs.aws.amazon.com/sagemaker/latest/APIReference/"
                              "API_CreateCompilationJob.html")
INPUT_CONFIG_DOC = "https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_InputConfig.html"
OUTPUT_CONFIG_DOC = "https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_OutputConfig.html"
CREATE_PIPELINE_DOC = "https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreatePipeline.html"
CREATE_MODEL_PACKAGE_GROUP_DOC = ("https://docs.aws.amazon.com/sagemaker/latest/APIReference/"
                                  "API_CreateModelPackageGroup.html")
CREATE_MODEL_DOC = "https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateModel.html"
CREATE_ENDPOINT_DOC = "https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateEndpoint.html"
CREATE_ENDPOINT_CONFIG_DOC = ("https://docs.aws.amazon.com/sagemaker/latest/APIReference/"
                              "API_CreateEndpointConfig.html")
TAG_DOC = "https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_Tag.html"
LAMBDA_LIMITS_DOC = "https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html"
S3_USER_METADATA_DOC = "https://docs.aws.amazon.com/AmazonS3/latest/userguide/UsingMetadata.html"
LAMBDA_CREATE_FUNCTION_DOC = "https://docs.aws.amazon.com/lambda/latest/api/API_CreateFunction.html"

# AppSpecification (a Processing job's container): ContainerArguments and ContainerEntrypoint, 1..100 items of
# 0..256 characters each.
MAX_CONTAINER_ARGUMENTS = 100
MAX_CONTAINER_ARGUMENT_LENGTH = 256
MAX_IMAGE_URI_LENGTH = 255
# CreateProcessingJob: Environment 0..100 entries, keys and values 0..256 characters, keys [a-zA-Z_][a-zA-Z0-9_]*;
# ProcessingInputs 0..10 (ProcessingOutputConfig.Outputs 0..10); ProcessingS3Input S3Uri and LocalPath.
MAX_PROCESSING_ENVIRONMENT_ENTRIES = 100
MAX_PROCESSING_ENVIRONMENT_KEY = 256
MAX_PROCESSING_ENVIRONMENT_VALUE = 256
MAX_PROCESSING_INPUTS = 10
MAX_PROCESSING_OUTPUTS = 10
MAX_S3_URI_LENGTH = 1024
MAX_LOCAL_PATH_LENGTH = 256
# CreateTrainingJob: Environment 0..100 entries, keys and values 0..512 characters; HyperParameters 0..100 entries,
# keys 0..256, values 0..2500 characters.
MAX_TRAINING_ENVIRONMENT_ENTRIES = 100
MAX_TRAINING_ENVIRONMENT_KEY = 512
MAX_TRAINING_ENVIRONMENT_VALUE = 512
MAX_HYPERPARAMETERS = 100
MAX_HYPERPARAMETER_KEY = 256
MAX_HYPERPARAMETER_VALUE = 2500
# CreateTransformJob: Environment 0..16 entries, keys 0..1024, values 0..10240 characters.
MAX_TRANSFORM_ENVIRONMENT_ENTRIES = 16
MAX_TRANSFORM_ENVIRONMENT_KEY = 1024
MAX_TRANSFORM_ENVIRONMENT_VALUE = 10240
# SSM PutParameter: a Standard-tier String value is at most 4 KB (4096 characters); Advanced tier allows 8 KB at a
# charge. The scoring settings (naming.label_scoring_settings_parameter) are a Standard parameter.
SSM_PUT_PARAMETER_DOC = "https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_PutParameter.html"
MAX_SSM_STANDARD_PARAMETER_VALUE = 4096
# Tags (every Create* request): 0..50 tags, keys 1..128, values 0..256 characters.
MAX_TAGS = 50
MAX_TAG_KEY = 128
MAX_TAG_VALUE = 256
# CreateCompilationJob: InputConfig.DataInputConfig 1..16384 characters, S3Uri / S3OutputLocation 0..1024.
MAX_DATA_INPUT_CONFIG_LENGTH = 16384
# Lambda: "4 KB, for all environment variables associated with the function, in aggregate" (quotas page). The
# quotas page does not say how the aggregate is counted; counted here as the UTF-8 bytes of every key and value.
MAX_LAMBDA_ENVIRONMENT_BYTES = 4096
MAX_LAMBDA_FUNCTION_NAME = 64  # CreateFunction: FunctionName of a name alone, 1..64 characters
# S3 user-defined metadata: "Within the PUT request header, the user-defined metadata is limited to 2 KB in size. The
# size of user-defined metadata is measured by taking the sum of the number of bytes in the UTF-8 encoding of each key
# and value." The page does not say whether the "x-amz-meta-" prefix counts: counted here without it (the keys as
# the SDKs' Metadata maps hold them); S3_USER_METADATA_HEADER_PREFIX lets a check count it too.
MAX_S3_USER_METADATA_BYTES = 2048
S3_USER_METADATA_HEADER_PREFIX = "x-amz-meta-"

SAGEMAKER_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$")
ENVIRONMENT_KEY = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


# (what, maximum length, name pattern or None, the API page): SageMaker names this project creates.
NAME_LIMITS: dict[str, tuple[int, re.Pattern[str] | None, str]] = {
    "ProcessingJobName": (63, SAGEMAKER_NAME, CREATE_PROCESSING_JOB_DOC),
    "TrainingJobName": (63, SAGEMAKER_NAME, CREATE_TRAINING_JOB_DOC),
    "TransformJobName": (63, SAGEMAKER_NAME, CREATE_TRANSFORM_JOB_DOC),
    "HyperParameterTuningJobName": (32, SAGEMAKER_NAME, CREATE_TUNING_JOB_DOC),
    "CompilationJobName": (63, SAGEMAKER_NAME, CREATE_COMPILATION_JOB_DOC),
    "PipelineName": (256, SAGEMAKER_NAME, CREATE_PIPELINE_DOC),
    "PipelineDisplayName": (256, SAGEMAKER_NAME, CREATE_PIPELINE_DOC),
    "ModelPackageGroupName": (63, SAGEMAKER_NAME, CREATE_MODEL_PACKAGE_GROUP_DOC),
    "ModelName": (63, re.compile(r"^[a-zA-Z0-9]([\-a-zA-Z0-9]*[a-zA-Z0-9])?$"), CREATE_MODEL_DOC),
    "EndpointName": (63, SAGEMAKER_NAME, CREATE_ENDPOINT_DOC),
    "EndpointConfigName": (63, SAGEMAKER_NAME, CREATE_ENDPOINT_CONFIG_DOC),
}


class RequestLimitError(ValueError):
    """A request this project built breaks a service limit; the message is one line naming each problem."""

    def __init__(self, operation: str, problems: list[str]) -> None:
        super().__init__(f"{operation} request breaks SageMaker's limits, not sent: " + "; ".join(problems))
        self.problems = tuple(problems)


def check_name(field: str, value: Any) -> list[str]:
    """``field`` is a key of NAME_LIMITS; a value that is not a string (an unresolved expression) is not judged."""
    if not isinstance(value, str):
        return []
    maximum, pattern, doc = NAME_LIMITS[field]
    problems = []
    if not 1 <= len(value) <= maximum:
        problems.append(f"{field} {value!r} has {len(value)} characters, the limit is {maximum} ({doc})")
    elif pattern is not None and not pattern.match(value):
        problems.append(f"{field} {value!r} does not match {pattern.pattern} ({doc})")
    return problems


def check_container_arguments(arguments: Iterable[Any], what: str = "ContainerArguments",
                              measure: Any = None) -> list[str]:
    """At most 100 items of at most 256 characters. ``measure(item) -> int`` sizes items that are not strings
    (pipeline expressions); by default they count as the empty string (their literal parts are measured by the
    caller's ``measure``)."""
    arguments = list(arguments)
    problems = []
    if len(arguments) > MAX_CONTAINER_ARGUMENTS:
        problems.append(f"{what} has {len(arguments)} items, the limit is {MAX_CONTAINER_ARGUMENTS} "
                        f"({APP_SPECIFICATION_DOC})")
    for index, item in enumerate(arguments):
        size = len(item) if isinstance(item, str) else (measure(item) if measure else 0)
        if size > MAX_CONTAINER_ARGUMENT_LENGTH:
            shown = item[:40] + "..." if isinstance(item, str) else "an expression"
            problems.append(f"{what}[{index}] ({shown!r}) has {size} characters, the limit is "
                            f"{MAX_CONTAINER_ARGUMENT_LENGTH}: pass lists as files (contracts.job_settings) "
                            f"({APP_SPECIFICATION_DOC})")
    return problems


def check_environment(environment: Mapping[str, Any] | None, *, entries: int, key_length: int, value_length: int,
                      doc: str, measure: Any = None) -> list[str]:
    """A SageMaker job's ``Environment`` map: entry count, key pattern and length, value length."""
    environment = environment or {}
    problems = []
    if len(environment) > entries:
        problems.append(f"Environment has {len(environment)} entries, the limit is {entries} ({doc})")
    for key, value in environment.items():
        if not ENVIRONMENT_KEY.match(key) or len(key) > key_length:
            problems.append(f"Environment key {key!r} must match {ENVIRONMENT_KEY.pattern} and have at most "
                            f"{key_length} characters ({doc})")
        size = len(value) if isinstance(value, str) else (measure(value) if measure else 0)
        if size > value_length:
            problems.append(f"Environment {key} has {size} characters, the limit is {value_length} ({doc})")
    return problems


def check_tags(tags: Iterable[Mapping[str, Any]] | None) -> list[str]:
    tags = list(tags or [])
    problems = []
    if len(tags) > MAX_TAGS:
        problems.append(f"{len(tags)} tags, the limit is {MAX_TAGS} ({TAG_DOC})")
    for tag in tags:
        key, value = tag.get("Key", ""), tag.get("Value", "")
        if isinstance(key, str) and not 1 <= len(key) <= MAX_TAG_KEY:
            problems.append(f"tag key {key[:40]!r} has {len(key)} characters, the limit is {MAX_TAG_KEY} ({TAG_DOC})")
        if isinstance(value, str) and len(value) > MAX_TAG_VALUE:
            problems.append(f"tag {key} has a value of {len(value)} characters, the limit is {MAX_TAG_VALUE} "
                            f"({TAG_DOC})")
    return problems


def _check_uri(what: str, uri: Any, doc: str) -> list[str]:
    if isinstance(uri, str) and len(uri) > MAX_S3_URI_LENGTH:
        return [f"{what} has {len(uri)} characters, the limit is {MAX_S3_URI_LENGTH} ({doc})"]
    return []


def check_processing_request(request: Mapping[str, Any]) -> list[str]:
    """Every limit of a CreateProcessingJob request (a drive job's, or a pipeline step's ``Arguments``) that this
    project can break: the job name, the container's entrypoint, arguments and image, the environment, inputs,
    outputs and tags. Empty: it fits."""
    problems = check_name("ProcessingJobName", request["ProcessingJobName"]) if "ProcessingJobName" in request else []
    app = request.get("AppSpecification") or {}
    if isinstance(app.get("ImageUri"), str) and len(app["ImageUri"]) > MAX_IMAGE_URI_LENGTH:
        problems.append(f"ImageUri has {len(app['ImageUri'])} characters, the limit is {MAX_IMAGE_URI_LENGTH} "
                        f"({APP_SPECIFICATION_DOC})")
    problems += check_container_arguments(app.get("ContainerEntrypoint") or [], "ContainerEntrypoint")
    problems += check_container_arguments(app.get("ContainerArguments") or [])
    problems += check_environment(request.get("Environment"), entries=MAX_PROCESSING_ENVIRONMENT_ENTRIES,
                                  key_length=MAX_PROCESSING_ENVIRONMENT_KEY,
                                  value_length=MAX_PROCESSING_ENVIRONMENT_VALUE, doc=CREATE_PROCESSING_JOB_DOC)
    inputs = request.get("ProcessingInputs") or []
    if len(inputs) > MAX_PROCESSING_INPUTS:
        problems.append(f"{len(inputs)} ProcessingInputs, the limit is {MAX_PROCESSING_INPUTS} "
                        f"({CREATE_PROCESSING_JOB_DOC})")
    for channel in inputs:
        s3 = channel.get("S3Input") or {}
        problems += _check_uri(f"input {channel.get('InputName')} S3Uri", s3.get("S3Uri"), PROCESSING_S3_INPUT_DOC)
        local = s3.get("LocalPath")
        if isinstance(local, str) and len(local) > MAX_LOCAL_PATH_LENGTH:
            problems.append(f"input {channel.get('InputName')} LocalPath has {len(local)} characters, the limit is "
                            f"{MAX_LOCAL_PATH_LENGTH} ({PROCESSING_S3_INPUT_DOC})")
    outputs = (request.get("ProcessingOutputConfig") or {}).get("Outputs") or []
    if len(outputs) > MAX_PROCESSING_OUTPUTS:
        problems.append(f"{len(outputs)} ProcessingOutputs, the limit is {MAX_PROCESSING_OUTPUTS} "
                        f"({PROCESSING_OUTPUT_CONFIG_DOC})")
    for output in outputs:
        problems += _check_uri(f"output {output.get('OutputName')} S3Uri", (output.get("S3Output") or {}).get("S3Uri"),
                               PROCESSING_OUTPUT_CONFIG_DOC)
    return problems + check_tags(request.get("Tags"))


def check_compilation_request(request: Mapping[str, Any]) -> list[str]:
    """Every limit of a CreateCompilationJob request that the rollout can break: the job name, the input and
    output locations, the data input config and tags. Empty: it fits."""
    problems = check_name("CompilationJobName", request.get("CompilationJobName"))
    input_config, output_config = request.get("InputConfig") or {}, request.get("OutputConfig") or {}
    problems += _check_uri("InputConfig.S3Uri", input_config.get("S3Uri"), INPUT_CONFIG_DOC)
    problems += _check_uri("OutputConfig.S3OutputLocation", output_config.get("S3OutputLocation"), OUTPUT_CONFIG_DOC)
    data = input_config.get("DataInputConfig")
    if isinstance(data, str) and not 1 <= len(data) <= MAX_DATA_INPUT_CONFIG_LENGTH:
        problems.append(f"DataInputConfig has {len(data)} characters, the limit is 1..{MAX_DATA_INPUT_CONFIG_LENGTH} "
                        f"({INPUT_CONFIG_DOC})")
    return problems + check_tags(request.get("Tags"))


def lambda_environment_bytes(variables: Mapping[str, str]) -> int:
    """The size Lambda's 4 KB limit applies to, counted as the UTF-8 bytes of every key and value."""
    return sum(len(key.encode()) + len(str(value).encode()) for key, value in variables.items())


def check_lambda_environment(variables: Mapping[str, str]) -> list[str]:
    size = lambda_environment_bytes(variables)
    if size <= MAX_LAMBDA_ENVIRONMENT_BYTES:
        return []
    largest = sorted(variables, key=lambda k: len(str(variables[k])), reverse=True)[:3]
    return [f"the environment has {size} bytes, the limit is {MAX_LAMBDA_ENVIRONMENT_BYTES} in aggregate (largest: "
            f"{', '.join(largest)}): move lists into files ({LAMBDA_LIMITS_DOC})"]


# -- CloudWatch (issue 23: the drift monitor reads the per-frame signal metrics and publishes drift metrics) ---------
GET_METRIC_DATA_DOC = "https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_GetMetricData.html"
PUT_METRIC_DATA_DOC = "https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutMetricData.html"
PUT_METRIC_ALARM_DOC = "https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutMetricAlarm.html"
STATISTICS_DOC = "https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/Statistics-definitions.html"
# GetMetricData: "as many as 500 different metrics in a single request, with a total of as many as 100,800 data
# points"; MetricDataQuery Id 1..255 characters, "The first character must be a lowercase letter" and the rest
# letters, digits and underscores (API_MetricDataQuery).
MAX_METRIC_DATA_QUERIES = 500
MAX_METRIC_DATA_POINTS = 100_800
MAX_METRIC_QUERY_ID = 255
METRIC_QUERY_ID = re.compile(r"^[a-z][a-zA-Z0-9_]*$")
# Retention (GetMetricData page): 60-second data points 15 days, 5-minute 63 days, 1-hour 455 days; and the
# period a request must use for older start times: a multiple of 60 s beyond 3 hours, of 300 s beyond 15 days, of
# 3600 s beyond 63 days.
METRIC_RETENTION_DAYS = {60: 15, 300: 63, 3600: 455}
# PutMetricData: at most 1000 different metrics and 1 MB per request, up to 30 dimensions per metric; values NaN and
# +/-Infinity are rejected.
MAX_PUT_METRICS = 1000
MAX_PUT_METRIC_BYTES = 1_000_000
MAX_METRIC_DIMENSIONS = 30
# PutMetricAlarm: Period x EvaluationPeriods at most 7 days (604,800 s); for a period under one hour at most one
# day (86,400 s).
MAX_ALARM_EVALUATION_SECONDS = 604_800
MAX_SUBHOUR_ALARM_EVALUATION_SECONDS = 86_400
# Percentile rank PR(n:m): the percentage of data points in (n, m], "exclusive on the lower bound and inclusive on
# the upper bound"; PR(:m) all <= m, PR(n:) all > n. Needs raw values (EMF and PutMetricData Values give them).


def metric_period_floor(age_seconds: float) -> int:
    """The smallest period (seconds) GetMetricData accepts for data that old (the GetMetricData page's rule)."""
    if age_seconds > 63 * 86_400:
        return 3600
    if age_seconds > 15 * 86_400:
        return 300
    if age_seconds > 3 * 3600:
        return 60
    return 1


def check_metric_query_ids(ids: Iterable[str]) -> list[str]:
    """Each id matches ``METRIC_QUERY_ID`` and is at most 255 characters; no id twice in one request."""
    problems, seen = [], set()
    for query_id in ids:
        if not METRIC_QUERY_ID.match(query_id) or len(query_id) > MAX_METRIC_QUERY_ID:
            problems.append(f"metric query id {query_id!r} must match {METRIC_QUERY_ID.pattern} and have at most "
                            f"{MAX_METRIC_QUERY_ID} characters ({GET_METRIC_DATA_DOC})")
        if query_id in seen:
            problems.append(f"metric query id {query_id!r} is used twice in one request ({GET_METRIC_DATA_DOC})")
        seen.add(query_id)
    return problems


def check_alarm_evaluation(period_seconds: int, evaluation_periods: int) -> list[str]:
    """Period x EvaluationPeriods within PutMetricAlarm's limits."""
    total = period_seconds * evaluation_periods
    limit = MAX_SUBHOUR_ALARM_EVALUATION_SECONDS if period_seconds < 3600 else MAX_ALARM_EVALUATION_SECONDS
    if total > limit:
        return [f"an alarm over {evaluation_periods} periods of {period_seconds} s evaluates {total} s, the limit is "
                f"{limit} s ({PUT_METRIC_ALARM_DOC})"]
    return []


def s3_user_metadata_bytes(metadata: Mapping[str, str], *, with_header_prefix: bool = False) -> int:
    """The size S3's 2 KB user-metadata limit applies to: the UTF-8 bytes of every key and value (optionally with
    each key's "x-amz-meta-" header prefix, the stricter reading of the page)."""
    prefix = len(S3_USER_METADATA_HEADER_PREFIX) if with_header_prefix else 0
    return sum(prefix + len(key.encode()) + len(str(value).encode()) for key, value in metadata.items())


def check_s3_user_metadata(metadata: Mapping[str, str]) -> list[str]:
    """Empty when the user metadata of a PutObject fits S3's limit; else one line naming the size and the largest
    values."""
    size = s3_user_metadata_bytes(metadata)
    if size <= MAX_S3_USER_METADATA_BYTES:
        return []
    largest = sorted(metadata, key=lambda k: len(str(metadata[k]).encode()), reverse=True)[:3]
    return [f"the user metadata has {size} bytes, the limit is {MAX_S3_USER_METADATA_BYTES} (largest: "
            f"{', '.join(largest)}) ({S3_USER_METADATA_DOC})"]
