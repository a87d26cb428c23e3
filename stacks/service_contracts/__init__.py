"""Integration contracts between AWS services, checked over the synthesized templates (see rules.py)."""

from stacks.service_contracts.assembly import Assembly
from stacks.service_contracts.rules import RULES, Context, Violation, check

__all__ = ["RULES", "Assembly", "Context", "Violation", "check"]
