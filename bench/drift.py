"""Benchmark and detection table of label-free drift per camera (run: .venv/bin/python bench/drift.py).

1. Detection (monitoring.simulate streams, hourly windows of 2 Hz = 7,200 frames, reference: 2,000 gate frames in
   chunks of 200): for each injected drift (night, remount, obstruction, class_mix) the windows from the onset
   until the verdict is "drift" and until the alarm (``--alarm-windows`` drifted windows in a row, the config's
   ``monitoring.alarm_windows``), the worst over ``--seeds`` streams, at the anchors' thresholds (PSI and JS 0.1)
   and at 0.2; each drift at the issue's size (x1) and at a quarter of it (x0.25). None: not within 12 windows.
2. False alarms: ``--weeks`` undrifted weeks (168 hourly windows each): the share of windows judged drifted and
   the alarms per week, at both thresholds.
3. Performance: a week of per-frame signals for ``--cameras`` cameras at 2 Hz (12.1 million frames, 12 signals)
   in Parquet files (one per camera), read and judged hour by hour (histograms over the fixed bins, PSI,
   Jensen-Shannon distance, band: ``monitoring.drift``) against, as the baseline in the same run, a plain read of
   the same files into numpy (pyarrow). Ratio printed; median of ``--runs``. This is the local recompute (a drive
   timeline, a notebook); the deployed function asks CloudWatch for the histograms instead (monitoring.queries).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from contracts.signal_metrics import PUBLISHED_SIGNALS
from monitoring import simulate
from monitoring.drift import DriftThresholds, camera_verdict, window_from_values
from segcore.signals import reference_profile

FRAMES_PER_HOUR = 7200  # 2 Hz
THRESHOLDS = {"anchors (PSI 0.1, JS 0.1)": DriftThresholds(), "PSI 0.2, JS 0.2": DriftThresholds(psi=0.2, js=0.2)}


def verdicts(profile: dict, windows: list[simulate.Window], thresholds: DriftThresholds) -> list[bool]:
    return [camera_verdict("cam", profile, {s: window_from_values(s, v) for s, v in w.signals.items()},
                           thresholds).drifted for w in windows]


def first_run_end(flags: list[bool], start: int, length: int) -> int | None:
    """Windows from ``start`` (counting ``start`` as 1) until ``length`` drifted windows in a row."""
    run = 0
    for index in range(start, len(flags)):
        run = run + 1 if flags[index] else 0
        if run >= length:
            return index - start + 1
    return None


def alarms(flags: list[bool], length: int) -> int:
    count = run = 0
    for flag in flags:
        run = run + 1 if flag else 0
        count += run == length
    return count


SEVERITIES = (1.0, 0.25)  # the drifts, and a quarter of each


def detection(profile: dict, seeds: int, alarm_windows: int, frames: int) -> dict:
    onset, after = 2, 12
    table: dict = {}
    for drift, severity in ((d, s) for d in simulate.DRIFTS for s in SEVERITIES):
        row = f"{drift} x{severity:g}"
        streams = [list(simulate.stream(100 + seed, onset + after, frames, drift, onset, severity))
                   for seed in range(seeds)]
        for name, thresholds in THRESHOLDS.items():
            found, alarmed = [], []
            for windows in streams:
                flags = verdicts(profile, windows, thresholds)
                found.append(first_run_end(flags, onset, 1))
                alarmed.append(first_run_end(flags, onset, alarm_windows))
            table.setdefault(row, {})[name] = {
                "windows_to_verdict": None if None in found else max(found),
                "windows_to_alarm": None if None in alarmed else max(alarmed)}
    return table


def false_alarms(profile: dict, weeks: int, alarm_windows: int, frames: int) -> dict:
    streams = [list(simulate.stream(500 + week, 168, frames)) for week in range(weeks)]
    out = {}
    for name, thresholds in THRESHOLDS.items():
        flags = [verdicts(profile, windows, thresholds) for windows in streams]
        out[name] = {"drifted_window_share": round(sum(map(sum, flags)) / (168 * weeks), 4),
                     "alarms_per_week": round(sum(alarms(f, alarm_windows) for f in flags) / weeks, 2),
                     "alarms_per_week_each": [alarms(f, alarm_windows) for f in flags]}
    return out


def write_week(directory: Path, cameras: int, hours: int) -> list[Path]:
    paths = []
    for camera in range(cameras):
        windows = simulate.stream(900 + camera, hours, FRAMES_PER_HOUR)
        columns = {s: [] for s in PUBLISHED_SIGNALS}
        for window in windows:
            for s in PUBLISHED_SIGNALS:
                columns[s].append(window.signals[s].astype(np.float32))
        table = pa.table({s: np.concatenate(v) for s, v in columns.items()})
        path = directory / f"camera{camera}.parquet"
        pq.write_table(table, path, compression="zstd")
        paths.append(path)
    return paths


def plain_read(paths: list[Path]) -> float:
    total = 0.0
    for path in paths:
        table = pq.read_table(path)
        for name in table.column_names:
            total += float(table.column(name).to_numpy()[-1])
    return total


def judge_week(paths: list[Path], profile: dict, hours: int) -> int:
    drifted = 0
    thresholds = DriftThresholds()
    for path in paths:
        table = pq.read_table(path)
        columns = {name: table.column(name).to_numpy() for name in table.column_names}
        for hour in range(hours):
            part = slice(hour * FRAMES_PER_HOUR, (hour + 1) * FRAMES_PER_HOUR)
            windows = {s: window_from_values(s, columns[s][part]) for s in PUBLISHED_SIGNALS}
            drifted += camera_verdict(path.stem, profile, windows, thresholds).drifted
    return drifted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--weeks", type=int, default=4)
    parser.add_argument("--alarm-windows", type=int, default=3)
    parser.add_argument("--cameras", type=int, default=10)
    parser.add_argument("--hours", type=int, default=168)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write the figures here as JSON")
    args = parser.parse_args()

    profile = reference_profile(simulate.reference_records(1, 2000), chunk_size=200)
    started = time.perf_counter()
    table = detection(profile, args.seeds, args.alarm_windows, FRAMES_PER_HOUR)
    false = false_alarms(profile, args.weeks, args.alarm_windows, FRAMES_PER_HOUR)
    print(f"detection and false alarms: {time.perf_counter() - started:.1f} s")
    print(f"\nwindows from the onset (worst of {args.seeds} streams; alarm: {args.alarm_windows} drifted windows "
          "in a row), hourly windows of 7,200 frames")
    names = list(THRESHOLDS)
    print("| drift | " + " | ".join(f"{n}: verdict / alarm" for n in names) + " |")
    print("|---|" + "---:|" * len(names))
    for drift, row in table.items():
        print(f"| {drift} | " + " | ".join(f"{row[n]['windows_to_verdict']} / {row[n]['windows_to_alarm']}"
                                          for n in names) + " |")
    print(f"\nundrifted, {args.weeks} weeks of 168 hourly windows:")
    for name, figures in false.items():
        print(f"  {name}: drifted windows {figures['drifted_window_share']:.1%}, alarms per week "
              f"{figures['alarms_per_week']} ({figures['alarms_per_week_each']})")

    with tempfile.TemporaryDirectory(prefix="roadseg-drift-bench-") as folder:
        written = time.perf_counter()
        paths = write_week(Path(folder), args.cameras, args.hours)
        frames = args.cameras * args.hours * FRAMES_PER_HOUR
        size = sum(p.stat().st_size for p in paths)
        print(f"\n{args.cameras} cameras x {args.hours} h x 2 Hz = {frames:,} frames x {len(PUBLISHED_SIGNALS)} "
              f"signals, {size / 1e6:.0f} MB Parquet (written in {time.perf_counter() - written:.1f} s)")
        plain, judged = [], []
        for _ in range(args.runs):  # interleaved, so both see the same page cache and machine load
            t = time.perf_counter()
            plain_read(paths)
            plain.append(time.perf_counter() - t)
            t = time.perf_counter()
            drifted = judge_week(paths, profile, args.hours)
            judged.append(time.perf_counter() - t)
        p, j = statistics.median(plain), statistics.median(judged)
        print(f"plain read {p:.2f} s, read + {args.cameras * args.hours:,} hourly verdicts {j:.2f} s: "
              f"ratio {j / p:.2f} (median of {args.runs}); {drifted} drifted windows")
    if args.json:
        args.json.write_text(json.dumps({"detection": table, "false_alarms": false, "plain_read_s": p,
                                         "judge_s": j, "ratio": j / p, "frames": frames}, indent=2))


if __name__ == "__main__":
    main()
