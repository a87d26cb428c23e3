"""What the endpoints of an environment cost: idle cost and cost per 1,000 frames, from a dated price table.

The prices and the throughput assumption live in ``config/prices/sagemaker-inference.yaml`` (on-demand list
prices of one region, with the date they were copied: re-check them). For each endpoint of a configuration:

- idle cost: ``min_capacity`` instances billed around the clock (the async endpoint scales to zero, so its
  idle cost is 0 when ``min_capacity`` is 0; the real-time endpoint always keeps at least one instance);
- cost per 1,000 frames on a busy instance: ``USD per instance-hour / (assumed frames/s x 3600) x 1000``.
  Idle real-time instances bill whether frames arrive or not, so at low traffic the idle cost dominates.

    python -m stacks.costs [ENV ...]   # the README's cost table (default: every environment in config/)
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from stacks.config import CONFIG_DIR, ConfigError, EnvironmentConfig, available_environments, load_config

PRICES_FILE = CONFIG_DIR / "prices" / "sagemaker-inference.yaml"
SECONDS_PER_HOUR = 3600
PositiveFloat = Annotated[float, Field(gt=0)]


class PriceTable(BaseModel):
    """``config/prices/sagemaker-inference.yaml``: USD per instance-hour and the assumed throughput per type."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    as_of: dt.date
    region: str
    currency: Literal["USD"]
    source: str
    hours_per_month: PositiveFloat = 730
    usd_per_instance_hour: dict[str, PositiveFloat]
    assumed_frames_per_second: dict[str, PositiveFloat]

    def price(self, instance_type: str) -> float:
        return self._lookup(self.usd_per_instance_hour, "usd_per_instance_hour", instance_type)

    def throughput(self, instance_type: str) -> float:
        return self._lookup(self.assumed_frames_per_second, "assumed_frames_per_second", instance_type)

    @staticmethod
    def _lookup(table: Mapping[str, float], key: str, instance_type: str) -> float:
        if instance_type not in table:
            raise ConfigError(f"{PRICES_FILE}: {key}: no entry for {instance_type} (has: {', '.join(sorted(table))}); "
                              "add it with its list price / measured throughput")
        return table[instance_type]


def load_prices(path: Path = PRICES_FILE) -> PriceTable:
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the price table: {exc}") from None
    try:
        return PriceTable.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '<top level>'}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{path}: {problems}") from None


@dataclass(frozen=True)
class EndpointCost:
    environment: str
    endpoint: str  # "real-time" | "async"
    instance_type: str
    min_capacity: int
    max_capacity: int
    usd_per_instance_hour: float
    frames_per_second: float
    hours_per_month: float

    @property
    def idle_usd_per_hour(self) -> float:
        return self.min_capacity * self.usd_per_instance_hour

    @property
    def idle_usd_per_month(self) -> float:
        return self.idle_usd_per_hour * self.hours_per_month

    @property
    def usd_per_1000_frames(self) -> float:
        return self.usd_per_instance_hour / (self.frames_per_second * SECONDS_PER_HOUR) * 1000

    @property
    def max_usd_per_hour(self) -> float:
        return self.max_capacity * self.usd_per_instance_hour


def endpoint_costs(config: EnvironmentConfig, prices: PriceTable,
                   frames_per_second: Mapping[str, float] | None = None) -> list[EndpointCost]:
    """Real-time and async endpoint costs of one environment; ``frames_per_second`` overrides the table."""
    override = dict(frames_per_second or {})
    costs = []
    for endpoint, cfg in (("real-time", config.realtime_endpoint), ("async", config.async_endpoint)):
        itype = cfg.instance_type
        costs.append(EndpointCost(
            environment=config.name, endpoint=endpoint, instance_type=itype, min_capacity=cfg.min_capacity,
            max_capacity=cfg.max_capacity, usd_per_instance_hour=prices.price(itype),
            frames_per_second=override.get(itype) or prices.throughput(itype), hours_per_month=prices.hours_per_month,
        ))
    return costs


def cost_table(configs: Sequence[EnvironmentConfig], prices: PriceTable) -> str:
    """The README's Costs table (markdown), with the price table's date, region and source."""
    lines = [
        f"Computed by `python -m stacks.costs` from `{PRICES_FILE.relative_to(CONFIG_DIR.parent)}`: on-demand "
        f"list prices, {prices.currency}, {prices.region}, as of {prices.as_of.isoformat()} (re-check them; other "
        f"regions differ), {prices.hours_per_month:g} hours per month.",
        "",
        "| environment | endpoint | instance type | instances (min-max) | USD per instance-hour | idle USD per month "
        "| USD per 1,000 frames (busy) | assumed frames/s per instance |",
        "|---|---|---|---|---:|---:|---:|---:|",
    ]
    for config in configs:
        for c in endpoint_costs(config, prices):
            lines.append(
                f"| {c.environment} | {c.endpoint} | {c.instance_type} | {c.min_capacity}-{c.max_capacity} "
                f"| {c.usd_per_instance_hour:.3f} | {c.idle_usd_per_month:,.2f} | {c.usd_per_1000_frames:.3f} "
                f"| {c.frames_per_second:g} |"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    names = list(argv if argv is not None else sys.argv[1:]) or available_environments()
    try:
        print(cost_table([load_config(name) for name in names], load_prices()))
    except ConfigError as exc:
        print(f"roadseg: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
