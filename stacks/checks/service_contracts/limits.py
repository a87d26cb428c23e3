"""Class (a) of the integration contracts: service limits (lengths, sizes, counts) that a synthesized template or a
request built at run time must fit. Rules register with ``stacks.checks.service_contracts.rules.rule``.

The limit values and the request checkers live in ``contracts.service_limits`` (shared with the drive functions,
which check their requests before sending them). Here they are applied to what the templates say:

- every step of every pipeline definition (Processing: container arguments and entrypoint, environment, inputs and
  outputs; Training and Tuning: environment and hyperparameters; Transform: environment);
- the names CloudFormation passes to SageMaker and Lambda;
- every function's environment (Lambda's 4 KB in aggregate);
- every Standard-tier SSM parameter's value (4 KB);
- the filter patterns of event source mappings on DynamoDB streams (the ``dynamodb`` key only).

Values that are not literal in the template are bounded, never guessed silently:

- CloudFormation references (``{{Stack/LogicalId.Attribute}}`` once resolved, see assembly.py) count as the longest
  value their resource type documents (RESOURCE_BOUNDS, each with its page), else DEFAULT_TOKEN_BOUND;
- pseudo parameters count as their longest value (PSEUDO_BOUNDS); ``Fn::FindInMap`` as the mapping's longest value;
  any other intrinsic the graph cannot resolve (``Fn::Select`` of a split ARN, an import of another app) as
  DEFAULT_TOKEN_BOUND;
- pipeline expressions (``Get``, ``Std:Join``, execution variables) are measured by their literal parts; a
  ``Parameters.<Name>`` reference counts as the parameter's default value (what a plain start uses; an override at
  start is the starter's to size), any other ``Get`` (a step's property, the execution id) as 0: SageMaker does not
  document their lengths, so the rule checks what is knowable and says so.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from contracts.service_limits import (
    CREATE_PROCESSING_JOB_DOC,
    CREATE_TRAINING_JOB_DOC,
    CREATE_TRANSFORM_JOB_DOC,
    CREATE_TUNING_JOB_DOC,
    LAMBDA_CREATE_FUNCTION_DOC,
    LAMBDA_LIMITS_DOC,
    MAX_HYPERPARAMETER_KEY,
    MAX_HYPERPARAMETER_VALUE,
    MAX_HYPERPARAMETERS,
    MAX_LAMBDA_ENVIRONMENT_BYTES,
    MAX_LAMBDA_FUNCTION_NAME,
    MAX_PROCESSING_ENVIRONMENT_ENTRIES,
    MAX_PROCESSING_ENVIRONMENT_KEY,
    MAX_PROCESSING_ENVIRONMENT_VALUE,
    MAX_PROCESSING_INPUTS,
    MAX_PROCESSING_OUTPUTS,
    MAX_SSM_STANDARD_PARAMETER_VALUE,
    MAX_TRAINING_ENVIRONMENT_ENTRIES,
    MAX_TRAINING_ENVIRONMENT_KEY,
    MAX_TRAINING_ENVIRONMENT_VALUE,
    MAX_TRANSFORM_ENVIRONMENT_ENTRIES,
    MAX_TRANSFORM_ENVIRONMENT_KEY,
    MAX_TRANSFORM_ENVIRONMENT_VALUE,
    NAME_LIMITS,
    PROCESSING_OUTPUT_CONFIG_DOC,
    SSM_PUT_PARAMETER_DOC,
    check_container_arguments,
    check_environment,
    check_name,
)
from stacks.checks.service_contracts.assembly import Assembly, Resource
from stacks.checks.service_contracts.rules import Context, Violation, rule

DDB_EVENT_FILTER_DOC = "https://docs.aws.amazon.com/lambda/latest/dg/with-ddb-filtering.html"
S3_BUCKET_NAMING_DOC = "https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html"
DYNAMODB_NAMING_DOC = ("https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/"
                       "HowItWorks.NamingRulesDataTypes.html")
IAM_QUOTAS_DOC = "https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html"
SQS_QUEUE_NAME_DOC = "https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_CreateQueue.html"
SNS_TOPIC_NAME_DOC = "https://docs.aws.amazon.com/sns/latest/api/API_CreateTopic.html"
KMS_KEY_ARN_DOC = "https://docs.aws.amazon.com/kms/latest/developerguide/concepts.html#key-id-key-ARN"
CFN_STACK_NAME_DOC = "https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_CreateStack.html"

# The longest ARN prefix: partition aws-us-gov (10), region ap-southeast-4 (14), a 12-digit account.
_ARN = len("arn:aws-us-gov:") + len("ap-southeast-4:") + len("123456789012:")
# Longest value of a pseudo parameter (the ARN prefix's parts; a stack name: 1..128 characters, CFN_STACK_NAME_DOC).
PSEUDO_BOUNDS = {"AWS::AccountId": 12, "AWS::Region": 14, "AWS::Partition": 10, "AWS::URLSuffix": 16,
                 "AWS::StackName": 128}
# (resource type, attribute) -> longest value, from each name's documented maximum (page in the comment).
RESOURCE_BOUNDS: dict[tuple[str, str], int] = {
    ("AWS::S3::Bucket", "Ref"): 63,  # S3_BUCKET_NAMING_DOC: 3..63 characters
    ("AWS::S3::Bucket", "Arn"): len("arn:aws-us-gov:s3:::") + 63,
    ("AWS::DynamoDB::Table", "Ref"): 255,  # DYNAMODB_NAMING_DOC: 3..255 characters
    ("AWS::DynamoDB::Table", "Arn"): _ARN + len("dynamodb::table/") + 255,
    ("AWS::IAM::Role", "Ref"): 64,  # IAM_QUOTAS_DOC: role names 64 characters; CDK roles have no path
    ("AWS::IAM::Role", "Arn"): _ARN + len("role/") + 64,
    ("AWS::KMS::Key", "Ref"): 36,  # KMS_KEY_ARN_DOC: a key id is a UUID
    ("AWS::KMS::Key", "Arn"): _ARN + len("kms::key/") + 36,
    ("AWS::SQS::Queue", "Ref"): len("https://sqs.ap-southeast-4.amazonaws.com.cn/123456789012/") + 80,  # 80: name
    ("AWS::SQS::Queue", "Arn"): _ARN + len("sqs::") + 80,  # SQS_QUEUE_NAME_DOC: up to 80 characters
    ("AWS::SNS::Topic", "Ref"): _ARN + len("sns::") + 256,  # SNS_TOPIC_NAME_DOC: up to 256 characters
    ("AWS::Lambda::Function", "Ref"): MAX_LAMBDA_FUNCTION_NAME,
    ("AWS::Lambda::Function", "Arn"): _ARN + len("lambda::function:") + MAX_LAMBDA_FUNCTION_NAME,
}
# Any other reference: a generous bound (no single page documents "the longest CloudFormation attribute").
DEFAULT_TOKEN_BOUND = 256
_TOKEN = re.compile(r"\{\{([^/}]+)/([^.}]+)\.([^}]+)\}\}")
_PSEUDO = re.compile(r"\$\{(AWS::[A-Za-z]+)\}")
# What assembly.py leaves of other intrinsics (``${Select}``, ``${Split}``, ``${Import:...}``, ...).
_OTHER = re.compile(r"\$\{(?!AWS::)[^}!]+\}")


# -- bounding what is not literal -------------------------------------------------------------------------------

def _inline_find_in_map(template: dict, value: Any) -> Any:
    """``value`` with every ``Fn::FindInMap`` replaced by the longest value the mapping can give for its key."""
    if isinstance(value, list):
        return [_inline_find_in_map(template, v) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Fn::FindInMap"}:
        name, _, second = value["Fn::FindInMap"]
        mapping = template.get("Mappings", {}).get(name, {}) if isinstance(name, str) else {}
        candidates = [str(entries[second]) for entries in mapping.values()
                      if isinstance(second, str) and isinstance(entries, dict) and second in entries]
        return max(candidates, key=len) if candidates else "x" * DEFAULT_TOKEN_BOUND
    return {k: _inline_find_in_map(template, v) for k, v in value.items()}


def bounded_length(assembly: Assembly, stack: str, value: Any) -> int:
    """The longest ``value`` can be once CloudFormation resolves it (see the module docstring)."""
    text = assembly.text(stack, _inline_find_in_map(assembly.templates[stack], value))
    size = len(text.encode())

    def token(match: re.Match) -> int:
        resource = assembly.templates.get(match[1], {}).get("Resources", {}).get(match[2], {})
        return RESOURCE_BOUNDS.get((resource.get("Type", ""), match[3]), DEFAULT_TOKEN_BOUND) - len(match[0])

    size += sum(token(m) for m in _TOKEN.finditer(text))
    size += sum(PSEUDO_BOUNDS.get(m[1], DEFAULT_TOKEN_BOUND) - len(m[0]) for m in _PSEUDO.finditer(text))
    size += sum(DEFAULT_TOKEN_BOUND - len(m[0]) for m in _OTHER.finditer(text))
    return size


def _expression_length(expression: Any, defaults: dict[str, str]) -> int:
    """Pipeline expressions: literal parts, parameters at their default, any other ``Get`` as 0."""
    if isinstance(expression, str):
        return len(expression)
    if isinstance(expression, (int, float)):
        return len(str(expression))
    if isinstance(expression, dict):
        if "Get" in expression:
            reference = str(expression["Get"])
            return len(defaults.get(reference.removeprefix("Parameters."), "")) \
                if reference.startswith("Parameters.") else 0
        join = expression.get("Std:Join")
        if isinstance(join, dict):
            values = join.get("Values") or []
            return sum(_expression_length(v, defaults) for v in values) + \
                len(str(join.get("On", ""))) * max(len(values) - 1, 0)
    return 0


def _definition(assembly: Assembly, pipeline: Resource) -> dict:
    body = (pipeline.properties.get("PipelineDefinition") or {}).get("PipelineDefinitionBody")
    try:
        return json.loads(assembly.text(pipeline.stack, body)) if body is not None else {}
    except json.JSONDecodeError:
        return {}


def _flat_steps(steps: list[dict]) -> Iterator[dict]:
    for step in steps:
        yield step
        if step.get("Type") == "Condition":
            arguments = step.get("Arguments") or {}
            yield from _flat_steps([*(arguments.get("IfSteps") or []), *(arguments.get("ElseSteps") or [])])


# -- pipelines ---------------------------------------------------------------------------------------------------

def step_problems(step: dict, defaults: dict[str, str]) -> list[tuple[str, str]]:
    """(problem, doc) of one pipeline step's job request against the limits of its Create*Job API."""
    arguments, kind = step.get("Arguments") or {}, step.get("Type")

    def measure(value: Any) -> int:
        return _expression_length(value, defaults)

    found: list[tuple[str, str]] = []
    if kind == "Processing":
        app = arguments.get("AppSpecification") or {}
        found += [(p, CREATE_PROCESSING_JOB_DOC) for p in
                  check_container_arguments(app.get("ContainerEntrypoint") or [], "ContainerEntrypoint", measure)
                  + check_container_arguments(app.get("ContainerArguments") or [], measure=measure)
                  + check_environment(arguments.get("Environment"), entries=MAX_PROCESSING_ENVIRONMENT_ENTRIES,
                                      key_length=MAX_PROCESSING_ENVIRONMENT_KEY,
                                      value_length=MAX_PROCESSING_ENVIRONMENT_VALUE, doc=CREATE_PROCESSING_JOB_DOC,
                                      measure=measure)]
        inputs = arguments.get("ProcessingInputs") or []
        outputs = (arguments.get("ProcessingOutputConfig") or {}).get("Outputs") or []
        if len(inputs) > MAX_PROCESSING_INPUTS:
            found.append((f"{len(inputs)} ProcessingInputs, the limit is {MAX_PROCESSING_INPUTS}",
                          CREATE_PROCESSING_JOB_DOC))
        if len(outputs) > MAX_PROCESSING_OUTPUTS:
            found.append((f"{len(outputs)} ProcessingOutputs, the limit is {MAX_PROCESSING_OUTPUTS}",
                          PROCESSING_OUTPUT_CONFIG_DOC))
    elif kind in ("Training", "Tuning"):
        definition = arguments.get("TrainingJobDefinition") or {} if kind == "Tuning" else arguments
        doc = CREATE_TUNING_JOB_DOC if kind == "Tuning" else CREATE_TRAINING_JOB_DOC
        found += [(p, doc) for p in check_environment(
            definition.get("Environment"), entries=MAX_TRAINING_ENVIRONMENT_ENTRIES,
            key_length=MAX_TRAINING_ENVIRONMENT_KEY, value_length=MAX_TRAINING_ENVIRONMENT_VALUE, doc=doc,
            measure=measure)]
        hyperparameters = definition.get("StaticHyperParameters" if kind == "Tuning" else "HyperParameters") or {}
        if len(hyperparameters) > MAX_HYPERPARAMETERS:
            found.append((f"{len(hyperparameters)} hyperparameters, the limit is {MAX_HYPERPARAMETERS}", doc))
        for key, value in hyperparameters.items():
            size = measure(value)
            if len(key) > MAX_HYPERPARAMETER_KEY or size > MAX_HYPERPARAMETER_VALUE:
                found.append((f"hyperparameter {key} ({len(key)} + {size} characters) breaks the limits "
                              f"{MAX_HYPERPARAMETER_KEY} + {MAX_HYPERPARAMETER_VALUE}", doc))
    elif kind == "Transform":
        found += [(p, CREATE_TRANSFORM_JOB_DOC) for p in check_environment(
            arguments.get("Environment"), entries=MAX_TRANSFORM_ENVIRONMENT_ENTRIES,
            key_length=MAX_TRANSFORM_ENVIRONMENT_KEY, value_length=MAX_TRANSFORM_ENVIRONMENT_VALUE,
            doc=CREATE_TRANSFORM_JOB_DOC, measure=measure)]
    return found


@rule("pipeline-step-requests-within-limits")
def pipeline_step_requests(assembly: Assembly, _: Context) -> Iterator[Violation]:
    """Every job a pipeline starts fits its Create*Job limits: container arguments at most 256 characters and 100
    items, environments, hyperparameters, inputs and outputs (contracts.service_limits)."""
    name = "pipeline-step-requests-within-limits"
    for pipeline in assembly.resources("AWS::SageMaker::Pipeline"):
        definition = _definition(assembly, pipeline)
        defaults = {p.get("Name"): str(p.get("DefaultValue", "")) for p in definition.get("Parameters") or []}
        for step in _flat_steps(definition.get("Steps") or []):
            for problem, doc in step_problems(step, defaults):
                # The checkers cite their page inside the message; the violation names it once.
                yield Violation(name, pipeline.path, f"step {step.get('Name')}: {problem.split(' (https')[0]}", doc)


# -- names -------------------------------------------------------------------------------------------------------

NAMED_RESOURCES: tuple[tuple[str, str, str], ...] = (
    # (resource type, property, NAME_LIMITS key)
    ("AWS::SageMaker::Pipeline", "PipelineName", "PipelineName"),
    ("AWS::SageMaker::Pipeline", "PipelineDisplayName", "PipelineDisplayName"),
    ("AWS::SageMaker::ModelPackageGroup", "ModelPackageGroupName", "ModelPackageGroupName"),
    ("AWS::SageMaker::Model", "ModelName", "ModelName"),
    ("AWS::SageMaker::Endpoint", "EndpointName", "EndpointName"),
    ("AWS::SageMaker::EndpointConfig", "EndpointConfigName", "EndpointConfigName"),
)


@rule("resource-names-within-limits")
def resource_names(assembly: Assembly, _: Context) -> Iterator[Violation]:
    """Names the templates give SageMaker resources (contracts.service_limits.NAME_LIMITS, each with its API page)
    and Lambda functions (1..64 characters). Names CloudFormation generates, or that hold references, are left to
    CloudFormation (it generates them within the limits)."""
    name = "resource-names-within-limits"
    for resource_type, prop, field in NAMED_RESOURCES:
        for resource in assembly.resources(resource_type):
            value = resource.properties.get(prop)
            text = assembly.text(resource.stack, value) if value is not None else None
            if text is None or "{{" in text or "${" in text:
                continue
            for problem in check_name(field, text):
                yield Violation(name, resource.path, problem.split(" (https")[0], NAME_LIMITS[field][2])
    for function in assembly.resources("AWS::Lambda::Function"):
        value = function.properties.get("FunctionName")
        text = assembly.text(function.stack, value) if value is not None else None
        if text and "{{" not in text and "${" not in text and len(text) > MAX_LAMBDA_FUNCTION_NAME:
            yield Violation(name, function.path, f"FunctionName {text!r} has {len(text)} characters, the limit is "
                            f"{MAX_LAMBDA_FUNCTION_NAME}", LAMBDA_CREATE_FUNCTION_DOC)


# -- Lambda environments -----------------------------------------------------------------------------------------

def lambda_environment_bound(assembly: Assembly, function: Resource) -> int:
    """The most bytes the function's environment can take once deployed (keys and bounded values)."""
    variables = ((function.properties.get("Environment") or {}).get("Variables") or {})
    return sum(len(key.encode()) + bounded_length(assembly, function.stack, value) for key, value in variables.items())


@rule("lambda-environment-within-4kb")
def lambda_environments(assembly: Assembly, _: Context) -> Iterator[Violation]:
    """Every function's environment fits Lambda's 4 KB in aggregate, references counted at their longest: a list
    in an environment variable grows with the configuration until the deploy fails."""
    name = "lambda-environment-within-4kb"
    for function in assembly.resources("AWS::Lambda::Function"):
        size = lambda_environment_bound(assembly, function)
        if size > MAX_LAMBDA_ENVIRONMENT_BYTES:
            variables = (function.properties.get("Environment") or {}).get("Variables") or {}
            largest = sorted(variables, key=lambda k: bounded_length(assembly, function.stack, variables[k]),
                             reverse=True)[:3]
            yield Violation(name, function.path, f"its environment can take {size} bytes, the limit is "
                            f"{MAX_LAMBDA_ENVIRONMENT_BYTES} in aggregate (largest: {', '.join(largest)}): move lists "
                            "into files", LAMBDA_LIMITS_DOC)


# -- SSM parameters ----------------------------------------------------------------------------------------------

@rule("ssm-standard-parameter-values-within-4kb")
def ssm_standard_parameter_values(assembly: Assembly, _: Context) -> Iterator[Violation]:
    """Every Standard-tier ``AWS::SSM::Parameter`` value fits 4 KB (SSM_PUT_PARAMETER_DOC), references counted at
    their longest: a JSON of settings (the scoring job's) grows with subnets, groups and ARNs until the deploy fails.
    No Tier means Standard (the CloudFormation default); Advanced allows 8 KB and Intelligent-Tiering upgrades on its
    own, so neither is bounded here."""
    name = "ssm-standard-parameter-values-within-4kb"
    for parameter in assembly.resources("AWS::SSM::Parameter"):
        if parameter.properties.get("Tier", "Standard") != "Standard":
            continue
        size = bounded_length(assembly, parameter.stack, parameter.properties.get("Value", ""))
        if size > MAX_SSM_STANDARD_PARAMETER_VALUE:
            yield Violation(name, parameter.path, f"its value can take {size} characters, a Standard parameter holds "
                            f"at most {MAX_SSM_STANDARD_PARAMETER_VALUE}: shorten it or split it",
                            SSM_PUT_PARAMETER_DOC)


# -- event filters -----------------------------------------------------------------------------------------------

def _reads_dynamodb_stream(assembly: Assembly, mapping: Resource) -> bool:
    """The source is a table's stream of the app, or a literal DynamoDB stream ARN."""
    source = mapping.properties.get("EventSourceArn")
    if assembly.target(mapping.stack, source, "AWS::DynamoDB::Table", "AWS::DynamoDB::GlobalTable") is not None:
        return True
    return ":dynamodb:" in assembly.text(mapping.stack, source)


@rule("dynamodb-stream-filters-on-the-dynamodb-key")
def dynamodb_stream_filters(assembly: Assembly, _: Context) -> Iterator[Violation]:
    """A filter pattern of an event source mapping on a DynamoDB stream may only name the record's ``dynamodb``
    key: "DynamoDB event source mappings only support filtering on the dynamodb key" (DDB_EVENT_FILTER_DOC). A
    pattern on ``eventName`` or any other top-level key does not select what it says."""
    name = "dynamodb-stream-filters-on-the-dynamodb-key"
    for mapping in assembly.resources("AWS::Lambda::EventSourceMapping"):
        if not _reads_dynamodb_stream(assembly, mapping):
            continue
        for entry in (mapping.properties.get("FilterCriteria") or {}).get("Filters") or []:
            try:
                pattern = json.loads(assembly.text(mapping.stack, entry.get("Pattern", "{}")))
            except json.JSONDecodeError:
                yield Violation(name, mapping.path, "a filter pattern is not JSON", DDB_EVENT_FILTER_DOC)
                continue
            other = sorted(set(pattern) - {"dynamodb"}) if isinstance(pattern, dict) else ["(not an object)"]
            if other:
                yield Violation(name, mapping.path, f"the filter pattern names {', '.join(other)} besides dynamodb: "
                                "DynamoDB event source mappings only support filtering on the dynamodb key (filter "
                                "INSERT/MODIFY with dynamodb.NewImage, which a REMOVE record lacks)",
                                DDB_EVENT_FILTER_DOC)

