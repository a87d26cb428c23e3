"""Integration contracts between AWS services, checked over the synthesized templates (see rules.py).

rules.py holds the first contracts and the registry; the four classes added in the second deploy-truth round each
have a module: limits.py (service limits), deploy_state.py (state a deploy can reset), networks.py (network
completeness in isolated mode), failures.py (no silent failure). Importing them registers their rules.
"""

from stacks.service_contracts import delivery, deploy_state, failures, limits, networks  # noqa: F401  (register the rules)
from stacks.service_contracts.assembly import Assembly
from stacks.service_contracts.rules import RULES, Context, Violation, check

__all__ = ["RULES", "Assembly", "Context", "Violation", "check"]
