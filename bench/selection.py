"""Benchmark of frame selection (labelling.selection) over a generated 1,000,000-frame drive timeline, against a
plain aggregate scan of the same files in the same run (issue 22: ratio <= 3, peak memory stated).

The timeline: Parquet files with the timeline table's schema (contracts.drive_timeline.TIMELINE_COLUMNS through
drivelogs.timeline.arrow_type, the signal columns included), Hive-partitioned as the table's copy
(``vehicle=/camera=/date=/part-<drive>.parquet``): 10 vehicles x 5 drives x 4 cameras x 5,000 frames (10 Hz, ~8 min
per drive), 97 % processed, 2 % quarantined, 1 % failed; six classes per frame out of 19 (Dirichlet shares), a
person or rider in ~10 %, random dHashes, flicker for all but each camera's first frame. Generated once per run in a
temporary folder.

Timed, each in a fresh child process (the best of ``--repeats``), same files:

  scan       the baseline: pyarrow reads the columns selection reads (Hive partitions included) and reduces them
             (Arrow group-bys: frames per status, mean flicker per camera; numpy: the mean class mix from the
             flattened map): the least any selection must do - read the data once and aggregate it.
  selection  select_frames(budget 1,000 frames, 40 per camera and vehicle cap, near-duplicates 2 s / 6 bits):
             DuckDB reads, filters, counts exclusions and joins; numpy scores; the greedy walk stops at the budget.

Peak memory: each child's peak RSS (VmHWM) after its imports are done is reset (``/proc/self/clear_refs``), so the
figure is the work's own peak; the RSS after imports is printed beside it.

    PYTHONPATH=. python bench/selection.py [--frames-per-camera 5000] [--repeats 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchkit import reset_peak, status_kib  # bench/benchkit.py, beside this file

MIB = 1024 * 1024
VEHICLES, DRIVES, CAMERAS = 10, 5, ("front", "rear", "left", "right")
CLASSES = ("road", "sidewalk", "building", "wall", "fence", "pole", "traffic_light", "traffic_sign", "vegetation",
           "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle")
BASE_NS = 1_767_000_000 * 1_000_000_000
COLUMNS = ["frame_key", "drive_id", "camera", "frame_time_ns", "status", "reason_code", "class_fractions", "flicker",
           "dhash", "vru_present", "mean_entropy", "mean_margin", "region_score", "overlay_uri", "mask_uri"]


def generate(root: Path, per_camera: int) -> int:
    """Write the timeline table's files under ``root``; the frames written."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from contracts.drive_timeline import TIMELINE_COLUMNS, timeline_table_key
    from contracts.layout import INFERENCE
    from drivelogs.timeline import arrow_type

    schema = pa.schema([(c.name, arrow_type(c.glue_type)) for c in TIMELINE_COLUMNS])
    rng = np.random.default_rng(2026)
    total = 0
    for v in range(VEHICLES):
        for d in range(DRIVES):
            vehicle, drive = f"veh-{v:02d}", f"drive-{d:02d}"
            for camera in CAMERAS:
                n = per_camera
                ns = BASE_NS + (v * DRIVES + d) * 3_600_000_000_000 + np.arange(n, dtype=np.int64) * 100_000_000
                status = rng.choice(np.array(["processed", "quarantined", "failed"]), size=n, p=[0.97, 0.02, 0.01])
                processed = status == "processed"
                # six classes a frame: road, building, vegetation, sky, one vehicle class and one more (a VRU in 10 %)
                picks = np.stack([np.zeros(n, int), np.full(n, 2), np.full(n, 8), np.full(n, 10),
                                  rng.choice([13, 14, 15, 16], size=n),
                                  np.where(rng.random(n) < 0.1, rng.choice([11, 12, 18], size=n),
                                           rng.choice([1, 3, 4, 5, 6, 7, 9], size=n))], axis=1)
                shares = rng.dirichlet(np.ones(6), size=n)
                offsets = np.where(processed, 6, 0).cumsum()
                offsets = np.concatenate([[0], offsets]).astype(np.int32)
                keys = pa.array(np.array(CLASSES)[picks[processed]].ravel())
                items = pa.array(shares[processed].ravel())
                fractions = pa.MapArray.from_arrays(pa.array(offsets), keys, items,
                                                    mask=pa.array(~processed))
                frame_keys = [f"{INFERENCE.incoming}{vehicle}/{drive}/{camera}/{t}.jpg" for t in ns.tolist()]
                vru = np.isin(picks[:, 5], [11, 12, 18]) & processed
                flicker = np.where(np.arange(n) == 0, np.nan, rng.beta(1, 20, size=n))
                dhash = [f"{h:016x}" for h in rng.integers(0, 2**63, size=n, dtype=np.int64).tolist()]
                columns = {
                    "drive_id": pa.array([f"{vehicle}/{drive}"] * n), "frame_time": pa.array(ns // 1_000_000,
                                                                                             pa.timestamp("ms")),
                    "frame_time_ns": pa.array(ns), "frame_key": pa.array(frame_keys), "status": pa.array(status),
                    "reason_code": pa.array(np.where(processed, None, np.where(status == "failed", "endpoint_error",
                                                                                "too_dark"))),
                    "class_fractions": fractions,
                    "drivable_area_fraction": pa.array(np.where(processed, shares[:, 0], np.nan), from_pandas=True),
                    "vru_classes": pa.array([[CLASSES[picks[i, 5]]] if vru[i] else [] for i in range(n)],
                                            pa.list_(pa.string())),
                    "overlay_uri": pa.array([f"s3://inference/{k}.overlay.jpg" for k in frame_keys]),
                    "mask_uri": pa.array([f"s3://inference/{k}.mask.png" for k in frame_keys]),
                    "dhash": pa.array(dhash), "flicker": pa.array(flicker, from_pandas=True),
                    "vru_present": pa.array(vru.astype(np.int32)),
                    "brightness": pa.array(rng.random(n)), "frame_width": pa.array(np.full(n, 1920, np.int32)),
                    "frame_height": pa.array(np.full(n, 1080, np.int32)),
                }
                table = pa.table({f.name: columns.get(f.name, pa.nulls(n, f.type)).cast(f.type) for f in schema},
                                 schema=schema)
                day = time.strftime("%Y-%m-%d", time.gmtime(int(ns[0]) // 10**9))
                path = root / timeline_table_key(vehicle, camera, day, drive)
                path.parent.mkdir(parents=True, exist_ok=True)
                pq.write_table(table, path)
                total += n
    return total


def scan(root: Path) -> dict[str, float]:
    """The baseline: read the columns and reduce them with numpy."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    table = ds.dataset(root, format="parquet", partitioning="hive").to_table(columns=COLUMNS)
    counts = {row["status"]: row["status_count"] for row in
              table.group_by("status").aggregate([("status", "count")]).to_pylist()}
    fractions = table.column("class_fractions").combine_chunks()
    entry = pa.struct([("key", fractions.type.key_type), ("value", fractions.type.item_type)])
    entries = pc.list_flatten(fractions.cast(pa.list_(entry)))
    keys = pc.dictionary_encode(entries.field("key"))
    mix = np.bincount(keys.indices.to_numpy(), weights=entries.field("value").to_numpy(),
                      minlength=len(keys.dictionary)) / max(1, counts.get("processed", 0))
    per_camera = {row["camera"]: row["flicker_mean"] for row in
                  table.group_by("camera").aggregate([("flicker", "mean")]).to_pylist()}
    return {"frames": table.num_rows, **counts, "classes": float(len(mix)), **per_camera}


def select(root: Path) -> dict[str, float]:
    from labelling.selection import Budget, NearDuplicates, Quotas, select_frames

    selection = select_frames(root, budget=Budget(frames=1000), quotas=Quotas(per_camera=400, per_vehicle=150),
                              near_duplicates=NearDuplicates(min_gap_s=2.0, max_hamming=6), seed=7)
    acc = selection.accounting
    return {"frames": acc["candidates"], "picked": acc["picked"], "suppressed": sum(acc["suppressed"].values()),
            "not_chosen": sum(acc["not_chosen"].values()), "excluded": sum(acc["excluded"].values())}


def child(kind: str, root: Path) -> None:
    import numpy  # noqa: F401  (imports before the peak is reset: the work's own memory is measured)
    import pyarrow.dataset  # noqa: F401

    if kind == "selection":
        import duckdb  # noqa: F401

        import labelling.selection  # noqa: F401
    reset_peak()  # the peak RSS starts afresh at the current RSS (Linux: clear_refs 5)
    baseline_rss = status_kib("VmRSS") * 1024
    started = time.perf_counter()
    result = (select if kind == "selection" else scan)(root)
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "peak": status_kib("VmHWM") * 1024, "rss_after_imports": baseline_rss,
                      "result": result}))


def measure(kind: str, root: Path) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [".", os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, __file__, "--child", kind, str(root)], capture_output=True, text=True,
                          env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames-per-camera", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="generate into this folder (reused when it holds files)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], Path(args.child[1]))
        return
    with tempfile.TemporaryDirectory(prefix="bench-selection-") as scratch:
        root = args.keep or Path(scratch)
        started = time.perf_counter()
        if not any(root.rglob("*.parquet")):
            frames = generate(root, args.frames_per_camera)
            print(f"generated {frames:,} frames in {len(list(root.rglob('*.parquet')))} files "
                  f"({sum(p.stat().st_size for p in root.rglob('*.parquet')) / MIB:.0f} MiB) in "
                  f"{time.perf_counter() - started:.1f} s")
        runs: dict[str, list[dict[str, object]]] = {"scan": [], "selection": []}
        for _ in range(args.repeats):  # interleaved, so a busy moment of the machine hits both
            for kind in runs:
                runs[kind].append(measure(kind, root))
        best = {kind: min(r, key=lambda x: x["seconds"]) for kind, r in runs.items()}
        for kind, r in best.items():
            each = ", ".join(f"{x['seconds']:.2f}" for x in runs[kind])
            print(f"{kind:10s} {r['seconds']:6.2f} s (best of {args.repeats}: "
                  f"{each}), peak RSS of the work "
                  f"{r['peak'] / MIB:.0f} MiB (after imports {r['rss_after_imports'] / MIB:.0f} MiB)  {r['result']}")
        ratio = best["selection"]["seconds"] / best["scan"]["seconds"]
        print(f"selection / scan: {ratio:.2f}x time (target <= 3), "
              f"{best['selection']['peak'] / best['scan']['peak']:.2f}x peak memory")


if __name__ == "__main__":
    main()
