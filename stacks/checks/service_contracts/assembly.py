"""The synthesized templates of one environment as one graph: ``Ref``, ``Fn::GetAtt`` and ``Fn::ImportValue`` are
followed across stacks, so a rule can ask "which key encrypts the queue this rule's dead letters go to" even when
the key lives in another stack.

Values are resolved to a :class:`ResourceRef` when an expression names one resource, otherwise rendered to text
in which resources appear as ``{{Stack/LogicalId.Attribute}}`` and pseudo parameters as ``${AWS::Region}``, so
ARN patterns of IAM statements can be matched against them with shell-style wildcards.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from contracts import cloud_assembly

PSEUDO_PARAMETERS = ("AWS::Region", "AWS::AccountId", "AWS::Partition", "AWS::StackName", "AWS::StackId",
                     "AWS::URLSuffix", "AWS::NotificationARNs")
_SUB_VARIABLE = re.compile(r"\$\{([^}!][^}]*)\}")


@dataclass(frozen=True)
class ResourceRef:
    stack: str
    logical_id: str
    attribute: str = "Ref"

    def __str__(self) -> str:
        return "{{" + f"{self.stack}/{self.logical_id}.{self.attribute}" + "}}"


@dataclass(frozen=True)
class Resource:
    stack: str
    logical_id: str
    type: str
    properties: dict
    metadata: dict

    @property
    def path(self) -> str:
        """The construct path (what a developer searches for), else stack/logical id."""
        return self.metadata.get("aws:cdk:path") or f"{self.stack}/{self.logical_id}"

    def ref(self, attribute: str = "Ref") -> ResourceRef:
        return ResourceRef(self.stack, self.logical_id, attribute)


@dataclass(frozen=True)
class Statement:
    """One IAM or key-policy statement, with its principal, actions, resources and conditions rendered."""

    effect: str
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    principals: tuple[str, ...]
    conditions: dict

    def allows_action(self, action: str) -> bool:
        return self.effect == "Allow" and any(fnmatchcase(action.lower(), a.lower()) for a in self.actions)

    def covers_resource(self, target: str) -> bool:
        return any(fnmatchcase(target, pattern) for pattern in self.resources)

    def condition_values(self, key: str) -> list[str]:
        found = []
        for operator in self.conditions.values():
            for name, value in operator.items():
                if name.lower() == key.lower():
                    found += value if isinstance(value, list) else [value]
        return found


class Assembly:
    """Templates by stack name (from a cloud assembly directory or from dictionaries, as the tests build them)."""

    def __init__(self, templates: dict[str, dict], environments: dict[str, tuple[str, str]] | None = None,
                 directory: Path | None = None) -> None:
        """``environments``: (account, region) of stacks synthesized for a pinned environment, whose templates
        carry literal ARNs (``arn:aws:logs:eu-west-1:1111...``) where env-agnostic ones carry pseudo parameters.
        ``directory``: the cloud assembly directory the templates were read from (None when built from
        dictionaries); rules over what the directory holds (its size, its staged assets) need it."""
        self.templates = templates
        self.environments = environments or {}
        self.directory = directory
        self._exports: dict[str, tuple[str, Any]] = {}
        for stack, template in templates.items():
            for output in template.get("Outputs", {}).values():
                export = output.get("Export", {}).get("Name")
                if isinstance(export, str):
                    self._exports[export] = (stack, output["Value"])

    @classmethod
    def from_directory(cls, outdir: Path) -> Assembly:
        templates, environments = {}, {}
        for stack, template in cloud_assembly.stack_templates(outdir):
            templates[stack.name] = template
            if stack.environment is not None:
                environments[stack.name] = stack.environment
        return cls(templates, environments, outdir)

    def pseudo(self, stack: str, text: str) -> str:
        """``text`` with ${AWS::AccountId}, ${AWS::Region} and ${AWS::Partition} as this stack's template has them."""
        if stack not in self.environments:
            return text
        account, region = self.environments[stack]
        partition = "aws-cn" if region.startswith("cn-") else "aws-us-gov" if region.startswith("us-gov-") else "aws"
        return (text.replace("${AWS::AccountId}", account).replace("${AWS::Region}", region)
                .replace("${AWS::Partition}", partition))

    # -- resources ------------------------------------------------------------------------------------------------

    def resources(self, *types: str) -> Iterator[Resource]:
        for stack, template in self.templates.items():
            for logical_id, body in template.get("Resources", {}).items():
                if not types or body.get("Type") in types:
                    yield Resource(stack, logical_id, body.get("Type", ""), body.get("Properties", {}),
                                   body.get("Metadata", {}))

    def resource(self, ref: ResourceRef | None) -> Resource | None:
        if not isinstance(ref, ResourceRef):
            return None
        body = self.templates.get(ref.stack, {}).get("Resources", {}).get(ref.logical_id)
        if body is None:
            return None
        return Resource(ref.stack, ref.logical_id, body.get("Type", ""), body.get("Properties", {}),
                        body.get("Metadata", {}))

    def target(self, stack: str, value: Any, *types: str) -> Resource | None:
        """The resource an expression (Ref, GetAtt, ImportValue, ...) names, if it is one of ``types``."""
        found = self.resource(self.resolve(stack, value))
        if found is not None and (not types or found.type in types):
            return found
        return None

    def parameters(self, stack: str) -> dict[str, dict]:
        return self.templates[stack].get("Parameters", {})

    # -- values ---------------------------------------------------------------------------------------------------

    def resolve(self, stack: str, value: Any) -> Any:
        """A ResourceRef if ``value`` names exactly one resource, else plain data with intrinsics rendered."""
        if isinstance(value, list):
            return [self.resolve(stack, v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) != 1:
            return {k: self.resolve(stack, v) for k, v in value.items()}
        (function, argument), = value.items()
        template = self.templates[stack]
        if function == "Ref":
            if argument in template.get("Resources", {}):
                return ResourceRef(stack, argument)
            return self.pseudo(stack, "${" + argument + "}")
        if function == "Fn::GetAtt":
            logical_id, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
            return ResourceRef(stack, logical_id, attribute)
        if function == "Fn::ImportValue":
            name = self.text(stack, argument)
            if name in self._exports:
                exporter, exported = self._exports[name]
                return self.resolve(exporter, exported)
            return "${Import:" + name + "}"
        if function == "Fn::Join":
            separator, parts = argument
            return separator.join(self.text(stack, p) for p in self.resolve(stack, parts))
        if function == "Fn::Sub":
            body, variables = (argument, {}) if isinstance(argument, str) else argument
            return _SUB_VARIABLE.sub(lambda m: self._sub_variable(stack, m.group(1), variables), body)
        if function == "Fn::If":
            return self.resolve(stack, argument[1])  # the branch taken when the condition holds
        if function == "Fn::Select":
            index, items = argument
            items = self.resolve(stack, items)
            return items[int(index)] if isinstance(items, list) else "${Select}"
        if function.startswith("Fn::"):
            return "${" + function.removeprefix("Fn::") + "}"
        return {function: self.resolve(stack, argument)}

    def _sub_variable(self, stack: str, name: str, variables: dict) -> str:
        if name in variables:
            return self.text(stack, variables[name])
        if name in PSEUDO_PARAMETERS:
            return self.pseudo(stack, "${" + name + "}")
        logical_id, _, attribute = name.partition(".")
        if logical_id in self.templates[stack].get("Resources", {}):
            return str(ResourceRef(stack, logical_id, attribute or "Ref"))
        return "${" + name + "}"

    def text(self, stack: str, value: Any) -> str:
        resolved = self.resolve(stack, value)
        if isinstance(resolved, (dict, list)):
            return json.dumps(resolved, default=str, sort_keys=True)
        return str(resolved)

    # -- policies -------------------------------------------------------------------------------------------------

    def statements(self, stack: str, document: Any) -> list[Statement]:
        document = document or {}
        raw = document.get("Statement", [])
        found = []
        for s in raw if isinstance(raw, list) else [raw]:
            principal = s.get("Principal", {})
            principals: list[str] = []
            if isinstance(principal, dict):
                for kind, value in principal.items():
                    values = value if isinstance(value, list) else [value]
                    principals += [f"{kind}:{self.text(stack, v)}" for v in values]
            elif principal:
                principals.append(str(principal))
            actions = s.get("Action", [])
            resources = s.get("Resource", [])
            resources = resources if isinstance(resources, list) else [resources]
            found.append(Statement(
                effect=s.get("Effect", "Allow"),
                actions=tuple(actions if isinstance(actions, list) else [actions]),
                resources=tuple(self.text(stack, r) for r in resources),
                principals=tuple(principals),
                conditions=self.resolve(stack, s.get("Condition", {})),
            ))
        return found

    def identity_statements(self, role: Resource) -> list[Statement]:
        """Every statement attached to a role: its inline policies, AWS::IAM::Policy and ManagedPolicy resources
        of the assembly that name it."""
        found = []
        for policy in role.properties.get("Policies", []):
            found += self.statements(role.stack, policy.get("PolicyDocument"))
        role_ref = role.ref()
        for policy in self.resources("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            if any(self.resolve(policy.stack, r) == role_ref for r in policy.properties.get("Roles", [])):
                found += self.statements(policy.stack, policy.properties.get("PolicyDocument"))
        for arn in role.properties.get("ManagedPolicyArns", []):
            managed = self.target(role.stack, arn, "AWS::IAM::ManagedPolicy")
            if managed is not None:
                found += self.statements(managed.stack, managed.properties.get("PolicyDocument"))
        return found

    def role_allows(self, role: Resource, action: str, target: str) -> bool:
        """True if some statement attached to ``role`` allows ``action`` on the ARN text ``target``."""
        return any(s.allows_action(action) and s.covers_resource(target) for s in self.identity_statements(role))

    def key_policy(self, key: Resource) -> list[Statement]:
        return self.statements(key.stack, key.properties.get("KeyPolicy"))

    def arn(self, resource: Resource) -> str:
        """The ARN text of a resource as statements name it (``{{Stack/Id.Arn}}``; topics' Ref is their ARN)."""
        attribute = "Ref" if resource.type in ("AWS::SNS::Topic", "AWS::IAM::ManagedPolicy") else "Arn"
        return str(resource.ref(attribute))
