"""Compliance gates run at every synth: cdk-nag 3.x packs through CDK policy validation.

cdk-nag 3 no longer uses Aspects or NagSuppressions: the packs are validation plugins and each finding is
acknowledged on the construct it concerns, one rule at a time, with a reason (``acknowledge``). A grant and the
IAM5 findings it creates are acknowledged in the same call (``acknowledged``, behind ``RoadsegFunction.grant_*``),
computed from the statements the grant adds, so the two cannot drift apart.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from cdk_nag import AwsSolutionsChecks, HIPAASecurityChecks, NIST80053R5Checks
from constructs import IConstruct

NAG_PACKS = (AwsSolutionsChecks, HIPAASecurityChecks, NIST80053R5Checks)
T = TypeVar("T")


def add_compliance_checks(app: cdk.App) -> None:
    """Run the AwsSolutions, HIPAA Security and NIST 800-53 R5 packs; any unacknowledged finding fails synth."""
    cdk.Validations.of(app).add_plugins(*(pack(app, verbose=True) for pack in NAG_PACKS))


def acknowledge(construct: IConstruct, rule: str, reason: str) -> None:
    """Acknowledge exactly one finding (e.g. ``AwsSolutions-IAM5[Action::s3:List*]``) on one construct."""
    if len(reason) < 20:
        raise ValueError(f"acknowledgment of {rule} needs a specific reason, got {reason!r}")
    cdk.Validations.of(construct).acknowledge(cdk.Acknowledgment(id=rule, reason=reason))


def acknowledge_all_packs(construct: IConstruct, rule: str, reason: str) -> None:
    """Acknowledge one control that HIPAA Security and NIST 800-53 R5 both check under the same rule name."""
    for pack in ("HIPAA.Security", "NIST.800.53.R5"):
        acknowledge(construct, f"{pack}-{rule}", reason)


# CDK's grant methods expand to these action wildcards; each is limited to the granted bucket/prefix or key.
GRANT_ACTION_REASONS = {
    "s3:GetObject*": "CDK read grant (GetObject, GetObjectVersion, GetObjectTagging...) limited to the granted "
                     "bucket prefix.",
    "s3:GetBucket*": "CDK read grant: bucket metadata (location, versioning) of the one granted bucket.",
    "s3:List*": "CDK read grant: listing the one granted bucket, needed to read channels and model artifacts.",
    "s3:Abort*": "CDK write grant: aborting this role's own multipart uploads under the granted prefix.",
    "s3:DeleteObject*": "CDK read-write grant: jobs overwrite their own outputs under the granted prefix.",
    "kms:GenerateDataKey*": "CDK key grant: data keys of the project's one customer-managed key for SSE-KMS.",
    "kms:ReEncrypt*": "CDK key grant: re-encryption with the project's one customer-managed key (S3 copies).",
}


def acknowledge_policy(owner: IConstruct, actions: list[str], resources: dict[str, str]) -> None:
    """Acknowledge, on the construct owning an IAM policy, each named action wildcard (reason from
    GRANT_ACTION_REASONS) and each named resource wildcard (with its own reason), plus the inline-policy
    rule, one finding at a time."""
    for action in actions:
        acknowledge(owner, f"AwsSolutions-IAM5[Action::{action}]", GRANT_ACTION_REASONS[action])
    for resource, reason in resources.items():
        acknowledge(owner, f"AwsSolutions-IAM5[Resource::{resource}]", reason)
    acknowledge_inline_policy(owner)


INLINE_POLICY_REASON = ("The policy is generated for and attached to exactly this one role (CDK grants); a managed "
                        "policy would add a reusable artifact without narrowing permissions.")


def acknowledge_inline_policy(owner: IConstruct) -> None:
    """HIPAA/NIST IAMNoInlinePolicy on a role whose default policy CDK's grants generate."""
    acknowledge_all_packs(owner, "IAMNoInlinePolicy", INLINE_POLICY_REASON)


def nag_flatten(value: Any) -> str:
    """A resolved CloudFormation value as cdk-nag writes it into finding ids (a port of cdk-nag's
    ``flattenCfnReference``): ``Fn::Join`` joined, ``Ref`` as ``<Name>``, ``Fn::GetAtt`` as ``<Resource.Attr>``,
    ``Fn::ImportValue`` as the export name, ``${X}`` of ``Fn::Sub`` as ``<X>``."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.replace("${", "<").replace("}", ">")
    if isinstance(value, Mapping):
        if "Fn::Join" in value:
            delimiter, items = value["Fn::Join"]
            return delimiter.join(nag_flatten(item) for item in items)
        if "Fn::Sub" in value:
            return nag_flatten(value["Fn::Sub"])
        if "Fn::GetAtt" in value:
            resource, attribute = value["Fn::GetAtt"]
            return f"<{nag_flatten(resource)}.{nag_flatten(attribute)}>"
        if "Fn::ImportValue" in value:
            return nag_flatten(value["Fn::ImportValue"])
        if "Ref" in value:
            return f"<{nag_flatten(value['Ref'])}>"
    return json.dumps(value, separators=(",", ":"))


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def iam5_findings(scope: IConstruct, statements: Iterable[Mapping[str, Any]]) -> set[str]:
    """The AwsSolutions-IAM5 findings (``Action::<action>``, ``Resource::<flattened ARN>``) that cdk-nag reports
    for these policy statements (statement JSON; tokens are resolved in ``scope``'s stack)."""
    findings: set[str] = set()
    for statement in cdk.Stack.of(scope).resolve(list(statements)) or []:
        if statement.get("Effect") != "Allow":
            continue
        findings.update(f"Action::{a}" for a in _as_list(statement.get("Action")) if "*" in a)
        findings.update(f"Resource::{r}" for r in map(nag_flatten, _as_list(statement.get("Resource"))) if "*" in r)
    return findings


def _default_policy_statements(role: iam.IRole) -> list[dict]:
    policy = role.node.try_find_child("DefaultPolicy")
    document = policy.document.to_json() if isinstance(policy, iam.Policy) else None
    return list((document or {}).get("Statement", []))


def acknowledged(role: iam.IRole, change: Callable[[], T], *, reasons: str | Mapping[str, str],
                 action_reasons: Mapping[str, str] = GRANT_ACTION_REASONS) -> T:
    """Run ``change`` (a CDK grant to ``role``, or ``role``'s ``add_to_policy``) and acknowledge on the role exactly
    the AwsSolutions-IAM5 findings the statements it adds to the role's default policy create: each wildcard
    action with its reason from ``action_reasons``, each wildcard resource with ``reasons`` (one reason for all of
    them, or a reason per resource as written in the statement). The grant and its acknowledgments are one call,
    so they cannot drift apart; an action or resource without a reason, or a reason for a resource the change
    does not add, raises ``ValueError``."""
    before = _default_policy_statements(role)
    result = change()
    added = _default_policy_statements(role)[len(before):]
    created = iam5_findings(role, added)
    per_resource: dict[str, str] = {}
    if not isinstance(reasons, str):
        stack = cdk.Stack.of(role)
        per_resource = {f"Resource::{nag_flatten(stack.resolve(resource))}": reason
                        for resource, reason in reasons.items()}
        stale = sorted(set(per_resource) - created)
        if stale:
            raise ValueError(f"reasons given for {stale}, which the change does not create ({sorted(created)})")
    for finding in sorted(created - iam5_findings(role, before)):
        kind, _, subject = finding.partition("::")
        if kind == "Action":
            reason = action_reasons.get(subject)
        else:
            reason = reasons if isinstance(reasons, str) else per_resource.get(finding)
        if reason is None:
            raise ValueError(f"{role.node.path}: no reason for the AwsSolutions-IAM5 finding {finding}")
        acknowledge(role, f"AwsSolutions-IAM5[{finding}]", reason)
    return result


def nag_account_region(scope: IConstruct) -> tuple[str, str]:
    """Account and region as cdk-nag renders them: literal when pinned, <AWS::AccountId>/<AWS::Region> if not."""
    stack = cdk.Stack.of(scope)
    account = "<AWS::AccountId>" if cdk.Token.is_unresolved(stack.account) else stack.account
    region = "<AWS::Region>" if cdk.Token.is_unresolved(stack.region) else stack.region
    return account, region


def nag_arn(scope: IConstruct, service: str, resource: str, *, regional: bool = True) -> str:
    """An ARN as cdk-nag renders it in findings (see nag_account_region)."""
    account, region = nag_account_region(scope)
    partition = "<AWS::Partition>" if region.startswith("<") else partition_of(region)
    if not regional:
        account = region = ""
    return f"arn:{partition}:{service}:{region}:{account}:{resource}"


def partition_of(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"
