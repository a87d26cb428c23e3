"""Class (b) of the integration contracts: state that a runtime actor sets must survive every deployer (``cdk
deploy``, the delivery pipeline's CloudFormation actions, a manual update). Rules register with
``stacks.service_contracts.rules.rule``.

The runtime actor here is a function whose role may ``cloudformation:UpdateStack`` a stack and whose environment
names the stack parameter it sets (``PARAMETER_NAME``, contracts.lambda_env.RolloutEnvironment: the rollout). A
deploy that passes no value for a parameter gives it its template default ("If you don't specify a key and value
for a particular parameter, CloudFormation uses the default value": API_Parameter), and the CodePipeline
CloudFormation action has no "use previous value" (cloudformation-coverage-roadmap#1789). So the parameter must be
SSM-typed (re-resolved on every create and update), the actor must write that SSM parameter, and nothing a deploy
runs may write it: no ``AWS::SSM::Parameter`` resource (CloudFormation puts its template value on every update of
the resource) and a creator that never overwrites (``PutParameter`` with ``Overwrite: false``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import fields

from contracts.lambda_env import RolloutEnvironment
from stacks.service_contracts.assembly import Assembly, Resource
from stacks.service_contracts.rules import Context, Violation, _arn, _role_of_function, rule

CFN_PARAMETER_DEFAULT_DOC = "https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_Parameter.html"
SSM_PARAMETER_TYPES_DOC = ("https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/"
                           "parameters-section-structure.html#aws-ssm-parameter-types")
SSM_PARAMETER_RESOURCE_DOC = ("https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/"
                              "aws-resource-ssm-parameter.html")
PUT_PARAMETER_DOC = "https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_PutParameter.html"
CODEPIPELINE_CFN_ACTION_DOC = ("https://docs.aws.amazon.com/codepipeline/latest/userguide/"
                               "action-reference-CloudFormation.html")
SSM_TYPE_PREFIX = "AWS::SSM::Parameter::Value<"

# The environment variable in which a stack-updating function names the parameter it sets.
PARAMETER_VARIABLE = next(f.metadata["env"].name for f in fields(RolloutEnvironment) if f.name == "parameter_name")
STACK_VARIABLE = next(f.metadata["env"].name for f in fields(RolloutEnvironment) if f.name == "stack_name")


def runtime_set_parameters(assembly: Assembly) -> Iterator[tuple[Resource, Resource, str, str]]:
    """(function, its role, stack, parameter name) for every function that updates a stack of the assembly and
    names the parameter it sets in its environment."""
    for function in assembly.resources("AWS::Lambda::Function"):
        variables = (function.properties.get("Environment") or {}).get("Variables") or {}
        parameter = variables.get(PARAMETER_VARIABLE)
        role = _role_of_function(assembly, function)
        if not isinstance(parameter, str) or role is None:
            continue
        target = assembly.text(function.stack, variables.get(STACK_VARIABLE, ""))
        for stack in assembly.templates:
            if target and target != stack:
                continue
            stack_arn = _arn(assembly, stack, "cloudformation", f"stack/{stack}/00000000-stack-id")
            if assembly.role_allows(role, "cloudformation:UpdateStack", stack_arn):
                yield function, role, stack, parameter


def _creators(assembly: Assembly, name: str) -> list[tuple[Resource, dict]]:
    """Custom::AWS resources (CDK AwsCustomResource) whose calls PutParameter ``name``, with their calls."""
    found = []
    for resource in assembly.resources("Custom::AWS"):
        calls = {}
        for event in ("Create", "Update"):
            raw = resource.properties.get(event)
            try:
                call = json.loads(raw) if isinstance(raw, str) else None
            except json.JSONDecodeError:
                call = None
            if call and call.get("action") == "putParameter" and (call.get("parameters") or {}).get("Name") == name:
                calls[event] = call
        if calls:
            found.append((resource, calls))
    return found


@rule("runtime-set-parameter-survives-deploys")
def runtime_set_parameters_survive(assembly: Assembly, _: Context) -> Iterator[Violation]:
    name = "runtime-set-parameter-survives-deploys"
    for function, role, stack, parameter in runtime_set_parameters(assembly):
        declared = assembly.parameters(stack).get(parameter)
        if declared is None:
            yield Violation(name, function.path, f"sets parameter {parameter} of {stack}, which the template does not "
                            "declare", CFN_PARAMETER_DEFAULT_DOC)
            continue
        if not str(declared.get("Type", "")).startswith(SSM_TYPE_PREFIX):
            yield Violation(name, function.path, f"sets parameter {parameter} of {stack} (type "
                            f"{declared.get('Type', 'String')}): every deploy that passes no value for it (the "
                            "delivery pipeline's CloudFormation actions, a manual update) resets it to its default "
                            f"{declared.get('Default')!r}; make it SSM-typed and write the SSM parameter",
                            CFN_PARAMETER_DEFAULT_DOC)
            continue
        ssm_name = str(declared.get("Default", ""))
        ssm_arn = _arn(assembly, stack, "ssm", f"parameter/{ssm_name.lstrip('/')}")
        if not assembly.role_allows(role, "ssm:PutParameter", ssm_arn):
            yield Violation(name, role.path, f"{function.path} sets {parameter} of {stack}, which resolves the SSM "
                            f"parameter {ssm_name}, but its role lacks ssm:PutParameter on it", PUT_PARAMETER_DOC)
        for resource in assembly.resources("AWS::SSM::Parameter"):
            if assembly.text(resource.stack, resource.properties.get("Name")) == ssm_name:
                yield Violation(name, resource.path, f"is the SSM parameter {ssm_name} that {function.path} writes at "
                                "run time: CloudFormation puts its template value whenever it updates this resource, "
                                "resetting what the function set; create it once (PutParameter, Overwrite false)",
                                SSM_PARAMETER_RESOURCE_DOC)
        creators = _creators(assembly, ssm_name)
        if not creators:
            yield Violation(name, function.path, f"{stack}'s {parameter} resolves the SSM parameter {ssm_name}, which "
                            "no stack of the app creates: the stack cannot deploy until it exists", PUT_PARAMETER_DOC)
        for resource, calls in creators:
            for event, call in calls.items():
                if (call.get("parameters") or {}).get("Overwrite") is not False:
                    yield Violation(name, resource.path, f"its {event} call PutParameter {ssm_name} without "
                                    "Overwrite false: a deploy would reset what the rollout wrote", PUT_PARAMETER_DOC)
                elif not str(call.get("ignoreErrorCodesMatching", "")).startswith("ParameterAlreadyExists"):
                    yield Violation(name, resource.path, f"its {event} call fails with ParameterAlreadyExists once "
                                    f"{ssm_name} exists (ignoreErrorCodesMatching): the deploy would fail",
                                    PUT_PARAMETER_DOC)


@rule("pipeline-deploys-pass-no-parameter-overrides")
def pipeline_deploys_pass_no_overrides(assembly: Assembly, _: Context) -> Iterator[Violation]:
    """The delivery pipeline's CloudFormation actions must not set parameters: a value passed there replaces, on
    every run, what a runtime actor set (the runtime-set parameters of the stage stacks are SSM-typed instead)."""
    name = "pipeline-deploys-pass-no-parameter-overrides"
    for pipeline in assembly.resources("AWS::CodePipeline::Pipeline"):
        for stage in pipeline.properties.get("Stages") or []:
            for action in stage.get("Actions") or []:
                if (action.get("ActionTypeId") or {}).get("Provider") != "CloudFormation":
                    continue
                overrides = (action.get("Configuration") or {}).get("ParameterOverrides")
                if overrides:
                    yield Violation(name, pipeline.path, f"action {stage.get('Name')}/{action.get('Name')} passes "
                                    f"ParameterOverrides {assembly.text(pipeline.stack, overrides)[:200]}: every run "
                                    "would reset what the rollout set; keep runtime state in SSM-typed parameters",
                                    CODEPIPELINE_CFN_ACTION_DOC)
