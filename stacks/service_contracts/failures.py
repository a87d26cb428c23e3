"""Class (d) of the integration contracts: no silent failure (every asynchronous job type and every dead-letter queue
reaches the alarm topic). Rules register with ``stacks.service_contracts.rules.rule``."""

from __future__ import annotations
