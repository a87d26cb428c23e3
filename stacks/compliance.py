"""Compliance gates run at every synth: cdk-nag 3.x packs through CDK policy validation.

cdk-nag 3 no longer uses Aspects or NagSuppressions: the packs are validation plugins and each finding is
acknowledged on the construct it concerns, one rule at a time, with a reason (``acknowledge``).
"""

from __future__ import annotations

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks, HIPAASecurityChecks, NIST80053R5Checks
from constructs import IConstruct

NAG_PACKS = (AwsSolutionsChecks, HIPAASecurityChecks, NIST80053R5Checks)


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
    acknowledge_all_packs(owner, "IAMNoInlinePolicy",
                          "The policy is generated for and attached to exactly this one role (CDK grants); a "
                          "managed policy would add a reusable artifact without narrowing permissions.")


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
