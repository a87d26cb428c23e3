"""``roadseg env capacity``: the capacity and cost model of the asynchronous path (:mod:`.model`, where its
assumptions are written down), the report of one simulation (:mod:`.report`) and its plot (:mod:`.plot`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from roadseg.capacity.model import (
    DEFAULT_STARTUP_SECONDS,
    CapacityInputError,
    Simulation,
    model_inputs,
    simulate,
    traffic_from_options,
)
from roadseg.capacity.plot import write_plot
from roadseg.capacity.report import report_tables, summarize


def run(config: Any, prices: Any, *, rate: float | None = None, burst: str | None = None,
        profile: Path | None = None, hours: float | None = None, frames_per_second: float | None = None,
        startup_seconds: float = DEFAULT_STARTUP_SECONDS, ingest_seconds_per_batch: float | None = None,
        plot: Path | None = None) -> tuple[dict[str, Any], Simulation]:
    """Simulate an environment on one traffic pattern; the report, and the simulation (for a plot)."""
    traffic = traffic_from_options(rate, burst, profile)
    fleet, ingest = model_inputs(config, prices, frames_per_second=frames_per_second,
                                 startup_seconds=startup_seconds, ingest_seconds_per_batch=ingest_seconds_per_batch)
    sim = simulate(traffic, fleet, ingest, hours)
    report = summarize(sim)
    report["environment"] = getattr(config, "name", None)
    if plot is not None:
        write_plot(sim, plot, f"{report['environment']}: {traffic.description} on {fleet.instance_type} "
                              f"({fleet.min_capacity}-{fleet.max_capacity} instances)")
        report["plot"] = str(plot)
    return report, sim


def command(out: Any, config: Any, *, plot: Path | None = None, **options: Any) -> dict[str, Any]:
    """``roadseg env capacity``: print the report (text or ``--json``) through a ``roadseg.output.Printer``."""
    from envconfig.config import ConfigError
    from envconfig.costs import load_prices
    from roadseg.session import UserError

    try:
        report, _ = run(config, load_prices(), plot=plot, **options)
    except (CapacityInputError, ConfigError) as exc:
        raise UserError(str(exc)) from None
    for title, headers, rows in report_tables(report):
        out.line(title)
        out.table(headers, rows)
        out.line("")
    for note in report["notes"]:
        out.line(f"note: {note}")
    if plot is not None:
        out.info(f"wrote {plot}")
    out.document(report)
    return report
