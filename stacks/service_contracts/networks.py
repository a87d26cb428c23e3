"""Class (c) of the integration contracts: network completeness in isolated mode (every job and compilation request
carries VpcConfig; security groups admit their own members wherever a job can run on several instances). Rules
register with ``stacks.service_contracts.rules.rule``."""

from __future__ import annotations
