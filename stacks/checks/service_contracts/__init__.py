"""Integration contracts between AWS services, checked over the synthesized templates (see rules.py).

rules.py holds the first contracts and the registry; the four classes added in the second deploy-truth round each
have a module: limits.py and delivery.py (service limits), deploy_state.py (state a deploy can reset), networks.py
(network completeness in isolated mode), failures.py (no silent failure); queue_senders.py holds the key contract of
functions that send to an encrypted queue themselves, drift.py the drift monitor's metrics against its alarms.
Importing them registers their rules (docs/contracts.md).
"""

from stacks.checks.service_contracts import (  # noqa: F401  (importing a module registers its rules)
    delivery,
    deploy_state,
    drift,
    failures,
    limits,
    networks,
    queue_senders,
)
from stacks.checks.service_contracts.assembly import Assembly
from stacks.checks.service_contracts.rules import RULES, Context, Violation, check

__all__ = ["RULES", "Assembly", "Context", "Violation", "check"]
