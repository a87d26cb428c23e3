"""Class (a) of the integration contracts: service limits (lengths, sizes, counts) that a synthesized template or a
request built at run time must fit. Rules register with ``stacks.service_contracts.rules.rule``."""

from __future__ import annotations
