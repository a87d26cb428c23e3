"""Benchmark of the capacity model (run: .venv/bin/python bench/capacity.py; `make bench` runs it).

What is timed: one `roadseg env capacity` computation without printing, i.e. roadseg.capacity.model.simulate()
(the 1-second step loop over the horizon) plus roadseg.capacity.report.summarize() (latency percentiles,
oldest-request ages, S3 rates), on an environment's config (default prod).

  measured  24 hours at 1,000 frames/s
  baseline  the same 24 hours at 10 frames/s, timed in the same run (interleaved round-robin, median of --runs)

The model aggregates arrivals per step, so its cost depends on the number of steps (86,400), not on the number
of frames: the ratio measured/baseline should stay near 1 although the measured run has 100x the frames.
Target: the measured run under 5 s on the 2-core build machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from envconfig.config import load_config
from envconfig.costs import load_prices
from roadseg.capacity import model
from roadseg.capacity.report import summarize

TARGET_SECONDS = 5.0
HOURS = 24.0
RATES = {"measured": 1000.0, "baseline": 10.0}


def one_run(fleet: model.Fleet, ingest: model.Ingest, rate: float) -> tuple[float, dict]:
    started = time.perf_counter()
    report = summarize(model.simulate(model.steady(rate), fleet, ingest, HOURS))
    return time.perf_counter() - started, report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="prod", help="environment whose config is simulated (default prod)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per rate (median reported)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()

    fleet, ingest = model.model_inputs(load_config(args.env), load_prices())
    one_run(fleet, ingest, 1.0)  # warm-up: imports, numpy's first calls
    seconds: dict[str, list[float]] = {name: [] for name in RATES}
    reports: dict[str, dict] = {}
    for _ in range(args.runs):
        for name, rate in RATES.items():
            elapsed, reports[name] = one_run(fleet, ingest, rate)
            seconds[name].append(elapsed)
    median = {name: statistics.median(values) for name, values in seconds.items()}
    ratio = median["measured"] / median["baseline"]
    steps = int(HOURS * 3600 / model.STEP_SECONDS)
    print(f"capacity model, {args.env} config ({fleet.instance_type}, {fleet.min_capacity}-{fleet.max_capacity} "
          f"instances), {HOURS:g} h in {steps:,} steps of {model.STEP_SECONDS:g} s, median of {args.runs} runs, "
          f"{os.cpu_count()} CPUs")
    for name, rate in RATES.items():
        frames = reports[name]["traffic"]["frames"]
        print(f"  {name:<8} {rate:>6g} frames/s  {frames:>12,} frames  {median[name]:7.3f} s wall")
    print(f"  measured/baseline = {ratio:.2f}")
    met = median["measured"] < TARGET_SECONDS
    print(f"\nTARGET\n  {'met ' if met else 'MISS'}  24 h at 1,000 frames/s in {median['measured']:.3f} s "
          f"(< {TARGET_SECONDS:g} s)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"env": args.env, "runs": args.runs, "median_seconds": median,
                                         "all_seconds": seconds, "measured_over_baseline": ratio,
                                         "target_seconds": TARGET_SECONDS, "target_met": met}, indent=2))
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
