"""What the endpoints of an environment cost: idle cost and cost per 1,000 frames, from a dated price table.

The prices and the throughput assumption live in ``config/prices/sagemaker-inference.yaml`` (on-demand list
prices of one region, with the date they were copied: re-check them). For each endpoint of a configuration:

- idle cost: ``min_capacity`` instances billed around the clock (the async endpoint scales to zero, so its
  idle cost is 0 when ``min_capacity`` is 0; the real-time endpoint always keeps at least one instance);
- cost per 1,000 frames on a busy instance: ``USD per instance-hour / (frames/s per instance x 3600) x 1000``.
  Idle real-time instances bill whether frames arrive or not, so at low traffic the idle cost dominates.

Frames/s per instance is MEASURED where ``config/measurements/`` holds a result of ``roadseg endpoint bench``
(``endpoint-<env>-<kind>-<UTC timestamp>.json``) for the row's instance type and endpoint kind, taken at the
environment's serving settings (head, target size and ROI; a figure measured at other settings does not
describe this endpoint): the newest such file wins. Otherwise it is the price file's ASSUMPTION, stated for
frames of ``assumed_at_size`` (1024x512) and scaled by pixel count to the environment's target size
(``preprocessing.target_width`` x ``target_height``): GPU time taken as roughly linear in pixels, as it is for
the convolutions of a fully convolutional network (an assumption, not a measurement; far below the stated size a
GPU is not kept busy and the scaled figure is optimistic). Each table row says which ("measured <date>",
"assumed", or "assumed, scaled from 1024x512") and the serving resolution the figure is for.

    python -m envconfig.costs [ENV ...]   # docs/costs-and-sizing.md's cost table (default: every environment)
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from envconfig.config import CONFIG_DIR, ConfigError, EnvironmentConfig, available_environments, load_config

PRICES_FILE = CONFIG_DIR / "prices" / "sagemaker-inference.yaml"
# Results of `roadseg endpoint bench` (roadseg/endpoint_bench.py writes them, this module reads them).
MEASUREMENTS_DIR = CONFIG_DIR / "measurements"
MEASUREMENT_SCHEMA_VERSION = "1.0"
# Endpoint kind in a measurement file -> the endpoint column of the table.
KIND_LABELS = {"realtime": "real-time", "async": "async"}
SECONDS_PER_HOUR = 3600
PositiveFloat = Annotated[float, Field(gt=0)]
PositiveInt = Annotated[int, Field(gt=0)]
Roi = tuple[float, float, float, float]


def serving_head(config: EnvironmentConfig) -> str:
    """The segmentation head the environment trains and serves: its ``training.hyperparameters.algorithm``,
    else the default of ``training/hyperparameters.py``."""
    from training.hyperparameters import Hyperparameters

    configured = config.training.hyperparameters.get("algorithm")
    return str(configured) if configured is not None else str(Hyperparameters.model_fields["algorithm"].default)


def serving_target(config: EnvironmentConfig) -> tuple[tuple[int, int], Roi | None]:
    """The inference size frames are fitted into and the ROI cut first (``preprocessing``), as the ingest uses them."""
    pre = config.preprocessing
    return (pre.target_width, pre.target_height), (tuple(float(v) for v in pre.roi) if pre.roi else None)


def pixel_scale(reference: tuple[int, int], target: tuple[int, int]) -> float:
    """Throughput factor from frames of ``reference`` size to frames of ``target`` size: reference pixels / target
    pixels (GPU time assumed roughly linear in pixels for a fully convolutional network)."""
    return (reference[0] * reference[1]) / (target[0] * target[1])


def describe_resolution(target: tuple[int, int], roi: Roi | None) -> str:
    """``1024x512``, or ``1024x512 (ROI 0,0,1,0.88)`` with a region of interest (fractions of the frame)."""
    text = f"{target[0]}x{target[1]}"
    return text + (f" (ROI {','.join(f'{v:g}' for v in roi)})" if roi else "")


class Measurement(BaseModel):
    """The fields of a ``roadseg endpoint bench`` result file this module reads (the file holds more)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    schema_version: Annotated[str, Field(pattern=r"^1\.")]
    env: str
    kind: Literal["realtime", "async"]
    endpoint: str
    instance_type: str
    head: str
    resolution: tuple[int, int]
    target_size: tuple[int, int]
    roi: Roi | None = None
    # None: nothing was measured per instance (no request succeeded, or no instance was in service).
    frames_per_second_per_instance: Annotated[float, Field(ge=0)] | None
    measured_at: dt.datetime
    file: str = ""  # the file's name, filled in by load_measurements

    @property
    def usable(self) -> bool:
        return bool(self.frames_per_second_per_instance)

    def matches(self, instance_type: str, kind: str, head: str, target: tuple[int, int], roi: Roi | None) -> bool:
        """Measured on this instance type and endpoint kind, at these serving settings."""
        mine = (self.instance_type, self.kind, self.head, tuple(self.target_size), tuple(self.roi or ()))
        return mine == (instance_type, kind, head, tuple(target), tuple(roi or ()))


def load_measurements(directory: Path | None = MEASUREMENTS_DIR) -> tuple[Measurement, ...]:
    """Every ``*.json`` result in ``directory`` (none when it does not exist or is None), oldest first."""
    if directory is None or not Path(directory).is_dir():
        return ()
    found = []
    for path in sorted(Path(directory).glob("*.json")):
        try:
            raw = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{path}: cannot read the measurement: {exc}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: a measurement is a JSON object (roadseg endpoint bench writes it)")
        try:
            found.append(Measurement.model_validate({**raw, "file": path.name}))
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '<top level>'}: {e['msg']}" for e in exc.errors())
            raise ConfigError(f"{path}: {problems}") from None
    return tuple(sorted(found, key=lambda m: (_utc(m.measured_at), m.file)))


def _utc(value: dt.datetime) -> dt.datetime:
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class PriceTable(BaseModel):
    """``config/prices/sagemaker-inference.yaml``: USD per instance-hour and the assumed throughput per type at
    ``assumed_at_size`` (width, height)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    as_of: dt.date
    region: str
    currency: Literal["USD"]
    source: str
    hours_per_month: PositiveFloat = 730
    usd_per_instance_hour: dict[str, PositiveFloat]
    assumed_at_size: tuple[PositiveInt, PositiveInt]
    assumed_frames_per_second: dict[str, PositiveFloat]
    # The measurements read next to the price file by load_prices (not a key of the price file).
    _measurements: tuple[Measurement, ...] = PrivateAttr(default=())

    @property
    def measurements(self) -> tuple[Measurement, ...]:
        return self._measurements

    def with_measurements(self, measurements: Sequence[Measurement]) -> PriceTable:
        table = self.model_copy()
        table._measurements = tuple(sorted(measurements, key=lambda m: (_utc(m.measured_at), m.file)))
        return table

    def price(self, instance_type: str) -> float:
        return self._lookup(self.usd_per_instance_hour, "usd_per_instance_hour", instance_type)

    def throughput(self, instance_type: str, target: tuple[int, int] | None = None) -> float:
        """The ASSUMED frames per second of one instance: the price file's figure at ``assumed_at_size``, scaled by
        pixel count to frames of ``target`` (width, height) when given."""
        figure = self._lookup(self.assumed_frames_per_second, "assumed_frames_per_second", instance_type)
        return figure * pixel_scale(self.assumed_at_size, target) if target else figure

    def measured(self, instance_type: str, kind: str, head: str, target: tuple[int, int],
                 roi: Roi | None) -> Measurement | None:
        """The newest usable measurement of this instance type and endpoint kind at these serving settings."""
        matching = [m for m in self._measurements if m.usable and m.matches(instance_type, kind, head, target, roi)]
        return matching[-1] if matching else None

    @staticmethod
    def _lookup(table: Mapping[str, float], key: str, instance_type: str) -> float:
        if instance_type not in table:
            raise ConfigError(f"{PRICES_FILE}: {key}: no entry for {instance_type} (has: {', '.join(sorted(table))}); "
                              "add it with its list price / measured throughput")
        return table[instance_type]


def load_prices(path: Path = PRICES_FILE, measurements_dir: Path | None = MEASUREMENTS_DIR) -> PriceTable:
    """The price table, with the throughput measurements of ``measurements_dir`` (None: assumptions only)."""
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the price table: {exc}") from None
    try:
        table = PriceTable.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '<top level>'}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{path}: {problems}") from None
    return table.with_measurements(load_measurements(measurements_dir))


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
    resolution: str = ""  # serving resolution (target size, ROI), see describe_resolution
    head: str = ""
    frames_per_second_source: str = "assumed"  # "assumed" | "measured" | "given" (the caller's override)
    measured_at: dt.date | None = None
    measurement: str | None = None  # the result file's name under config/measurements/
    # An assumed figure scaled by pixel count: the size the price file states it for ("1024x512"); None otherwise.
    scaled_from: str | None = None

    @property
    def frames_per_second_label(self) -> str:
        if self.frames_per_second_source == "measured" and self.measured_at:
            return f"measured {self.measured_at.isoformat()}"
        if self.frames_per_second_source == "assumed" and self.scaled_from:
            return f"assumed, scaled from {self.scaled_from}"
        return self.frames_per_second_source

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
    """Real-time and async endpoint costs of one environment. Frames/s per instance: ``frames_per_second``
    (by instance type) when given, else the newest matching measurement, else the price file's assumption scaled
    by pixel count to the environment's target size."""
    override = dict(frames_per_second or {})
    head = serving_head(config)
    target, roi = serving_target(config)
    reference = tuple(prices.assumed_at_size)
    scaled_from = None if reference == target else f"{reference[0]}x{reference[1]}"
    costs = []
    for kind, cfg in (("realtime", config.realtime_endpoint), ("async", config.async_endpoint)):
        itype = cfg.instance_type
        measured = prices.measured(itype, kind, head, target, roi)
        if override.get(itype):
            fps, source = override[itype], "given"
        elif measured is not None:
            fps, source = measured.frames_per_second_per_instance, "measured"
        else:
            fps, source = prices.throughput(itype, target), "assumed"
        costs.append(EndpointCost(
            environment=config.name, endpoint=KIND_LABELS[kind], instance_type=itype, min_capacity=cfg.min_capacity,
            max_capacity=cfg.max_capacity, usd_per_instance_hour=prices.price(itype), frames_per_second=fps,
            hours_per_month=prices.hours_per_month, resolution=describe_resolution(target, roi), head=head,
            frames_per_second_source=source,
            measured_at=_utc(measured.measured_at).date() if source == "measured" else None,
            measurement=measured.file if source == "measured" else None,
            scaled_from=scaled_from if source == "assumed" else None,
        ))
    return costs


def _number(value: float) -> str:
    """6 -> "6", 6.834 -> "6.83", 1234.5 -> "1,234.5"."""
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def cost_table(configs: Sequence[EnvironmentConfig], prices: PriceTable) -> str:
    """The Costs table of docs/costs-and-sizing.md (markdown), with the price table's date, region and source."""
    lines = [
        f"Computed by `python -m envconfig.costs` from `{PRICES_FILE.relative_to(CONFIG_DIR.parent)}`: on-demand "
        f"list prices, {prices.currency}, {prices.region}, as of {prices.as_of.isoformat()} (re-check them; other "
        f"regions differ), {prices.hours_per_month:g} hours per month. Frames/s per instance: the newest "
        f"`roadseg endpoint bench` result in `{MEASUREMENTS_DIR.relative_to(CONFIG_DIR.parent)}/` for the row's "
        "instance type, endpoint kind, serving resolution and head (\"measured <date>\"), else the price file's "
        f"assumption for {prices.assumed_at_size[0]}x{prices.assumed_at_size[1]} frames (\"assumed\"), scaled by pixel "
        "count to another serving target size (\"assumed, scaled from ...\"; GPU time taken as roughly linear in "
        "pixels for a fully convolutional network). An assumed figure is for frames that fill the target size; an ROI "
        "or another aspect ratio sends fewer pixels, so such a row's cost errs high.",
        "",
        "| environment | endpoint | instance type | instances (min-max) | serving resolution | head "
        "| USD per instance-hour | idle USD per month | USD per 1,000 frames (busy) | frames/s per instance "
        "| frames/s figure |",
        "|---|---|---|---|---|---|---:|---:|---:|---:|---|",
    ]
    for config in configs:
        for c in endpoint_costs(config, prices):
            lines.append(
                f"| {c.environment} | {c.endpoint} | {c.instance_type} | {c.min_capacity}-{c.max_capacity} "
                f"| {c.resolution} | {c.head} | {c.usd_per_instance_hour:.3f} | {c.idle_usd_per_month:,.2f} "
                f"| {c.usd_per_1000_frames:.3f} | {_number(c.frames_per_second)} | {c.frames_per_second_label} |"
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
