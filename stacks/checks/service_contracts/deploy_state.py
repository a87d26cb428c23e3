"""Class (b) of the integration contracts: state that a runtime actor sets must survive every deployer (``cdk
deploy``, the delivery pipeline's CloudFormation actions, a manual update). Rules register with
``stacks.checks.service_contracts.rules.rule``.

The runtime actor here is a function whose role may ``cloudformation:UpdateStack`` a stack and whose environment
names the stack parameter it sets (``PARAMETER_NAME``, contracts.lambda_env.RolloutEnvironment: the rollout). A
deploy that passes no value for a parameter gives it its template default ("If you don't specify a key and value
for a particular parameter, CloudFormation uses the default value": API_Parameter), and the CodePipeline
CloudFormation action has no "use previous value" (cloudformation-coverage-roadmap#1789). So the parameter must be
SSM-typed (re-resolved on every create and update), the actor must write that SSM parameter, and nothing a deploy
runs may write it: no ``AWS::SSM::Parameter`` resource (CloudFormation puts its template value on every update of
the resource) and a creator that never overwrites (``PutParameter`` with ``Overwrite: false``).

The deployers themselves must be able to resolve every SSM-typed parameter: CloudFormation reads them with the
caller's credentials when it creates a change set (SSM_PARAMETER_TYPES_DOC), and `cdk deploy` and the pipeline's
CloudFormation actions call it as the bootstrap deploy role, which the bootstrap template lets read only the bootstrap
version parameter (BOOTSTRAP_TEMPLATE_DOC, statement ``ReadVersion``). So a stack that deploys before the referencing
one must grant that role ``ssm:GetParameters`` on each of them (stacks.deploy_role_access).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import fields

from contracts.lambda_env import RolloutEnvironment
from stacks.checks.service_contracts.assembly import Assembly, Resource
from stacks.checks.service_contracts.rules import Context, Violation, _arn, _role_of_function, rule

CFN_PARAMETER_DEFAULT_DOC = "https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_Parameter.html"
SSM_PARAMETER_TYPES_DOC = ("https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/"
                           "parameters-section-structure.html#aws-ssm-parameter-types")
SSM_PARAMETER_RESOURCE_DOC = ("https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/"
                              "aws-resource-ssm-parameter.html")
PUT_PARAMETER_DOC = "https://docs.aws.amazon.com/systems-manager/latest/APIReference/API_PutParameter.html"
CODEPIPELINE_CFN_ACTION_DOC = ("https://docs.aws.amazon.com/codepipeline/latest/userguide/"
                               "action-reference-CloudFormation.html")
SSM_TYPE_PREFIX = "AWS::SSM::Parameter::Value<"
# The deploy role's ReadVersion statement (the pinned CLI's copy: node_modules/aws-cdk/lib/api/bootstrap/).
BOOTSTRAP_TEMPLATE_DOC = ("https://github.com/aws/aws-cdk-cli/blob/main/packages/aws-cdk/lib/api/bootstrap/"
                          "bootstrap-template.yaml")

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


# -- the deployers can resolve the SSM-typed parameters -------------------------------------------------------------

# The default synthesizer's bootstrap version parameter (its default: /cdk-bootstrap/<qualifier>/version), which the
# bootstrap template already lets the deploy role read.
_BOOTSTRAP_VERSION = re.compile(r"^/cdk-bootstrap/([^/]+)/version$")
DEPLOY_ROLE_NAME = "cdk-{qualifier}-deploy-role-${{AWS::AccountId}}-${{AWS::Region}}"


def bootstrap_qualifier(assembly: Assembly, stack: str) -> str | None:
    """The qualifier of the bootstrap stack ``stack`` deploys through; None when its template does not check a
    bootstrap version (another synthesizer: no bootstrap deploy role is involved)."""
    for declared in assembly.parameters(stack).values():
        match = _BOOTSTRAP_VERSION.match(str(declared.get("Default", "")))
        if match and str(declared.get("Type", "")).startswith(SSM_TYPE_PREFIX):
            return match.group(1)
    return None


def _imports(value) -> Iterator:
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "Fn::ImportValue":
                yield inner
            else:
                yield from _imports(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _imports(inner)


def deployed_before(assembly: Assembly) -> dict[str, set[str]]:
    """stack -> the stacks it imports exports of, directly or through others. CloudFormation refuses an import of an
    export that does not exist yet, so these always deploy first, whichever deployer runs them."""
    exporters = {}
    for stack, template in assembly.templates.items():
        for output in template.get("Outputs", {}).values():
            name = (output.get("Export") or {}).get("Name")
            if name is not None:
                exporters[assembly.text(stack, name)] = stack
    direct = {stack: {exporters[name] for name in (assembly.text(stack, v) for v in _imports(template))
                      if name in exporters and exporters[name] != stack}
              for stack, template in assembly.templates.items()}
    closure: dict[str, set[str]] = {}
    for stack in direct:
        seen, todo = set(), list(direct[stack])
        while todo:
            found = todo.pop()
            if found not in seen:
                seen.add(found)
                todo += direct.get(found, ())
        closure[stack] = seen
    return closure


def _policies_of_role(assembly: Assembly, role_name: str) -> Iterator[Resource]:
    """IAM policies of the assembly attached to a role outside it named ``role_name`` (as CloudFormation renders it)."""
    for policy in assembly.resources("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        if any(assembly.text(policy.stack, r) == role_name for r in policy.properties.get("Roles") or []):
            yield policy


@rule("cdk-deploy-role-can-resolve-ssm-parameters")
def deploy_role_resolves_ssm_parameters(assembly: Assembly, _: Context) -> Iterator[Violation]:
    """Every SSM-typed parameter of a stack deployed through the bootstrap roles (but the bootstrap version) is
    readable by the deploy role through a policy of a stack that deploys before it: a grant in the same stack comes
    too late (the change set that would create it is the one that fails)."""
    name = "cdk-deploy-role-can-resolve-ssm-parameters"
    before = deployed_before(assembly)
    for stack in assembly.templates:
        qualifier = bootstrap_qualifier(assembly, stack)
        if qualifier is None:
            continue
        role_name = assembly.pseudo(stack, DEPLOY_ROLE_NAME.format(qualifier=qualifier))
        policies = list(_policies_of_role(assembly, role_name))
        for key, declared in assembly.parameters(stack).items():
            ssm_name = str(declared.get("Default", ""))
            if not str(declared.get("Type", "")).startswith(SSM_TYPE_PREFIX) or _BOOTSTRAP_VERSION.match(ssm_name):
                continue
            where = f"{stack}/{key}"
            if not ssm_name:
                yield Violation(name, where, "is SSM-typed without a default: which SSM parameter the deploy role must "
                                "read cannot be checked; give it the parameter name as its default",
                                SSM_PARAMETER_TYPES_DOC)
                continue
            arn = _arn(assembly, stack, "ssm", f"parameter/{ssm_name.lstrip('/')}")
            granting = [p for p in policies if any(
                s.allows_action("ssm:GetParameters") and s.covers_resource(arn)
                for s in assembly.statements(p.stack, p.properties.get("PolicyDocument")))]
            if any(p.stack in before[stack] for p in granting):
                continue
            if granting:
                yield Violation(name, where, f"resolves the SSM parameter {ssm_name}; {role_name} may read it only "
                                f"through {', '.join(p.path for p in granting)}, in a stack that does not deploy "
                                f"before {stack} (it imports none of its exports): the first deploy fails",
                                SSM_PARAMETER_TYPES_DOC)
            else:
                yield Violation(name, where, f"resolves the SSM parameter {ssm_name} with the deployer's credentials, "
                                f"and no stack of the app grants {role_name} ssm:GetParameters on it (the bootstrap "
                                f"template grants only the bootstrap version, {BOOTSTRAP_TEMPLATE_DOC}): `cdk deploy` "
                                "and the pipeline fail with AccessDenied", SSM_PARAMETER_TYPES_DOC)
