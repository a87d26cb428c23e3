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
