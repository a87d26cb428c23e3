"""Class (b) of the integration contracts: state that a runtime actor sets must survive every deployer (``cdk
deploy``, the delivery pipeline's CloudFormation actions, a manual update). Rules register with
``stacks.service_contracts.rules.rule``."""

from __future__ import annotations
