"""Drive timeline files for the selection tests: the timeline's own Arrow schema (drivelogs.timeline, from
contracts.drive_timeline.TIMELINE_COLUMNS, the signal columns included), written Hive-partitioned like the table's
copy; ``signals=False`` writes a timeline from before the signal columns."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from contracts.drive_timeline import TIMELINE_COLUMNS, TIMELINE_PARTITION_KEYS, timeline_table_key
from contracts.signals import SIGNALS
from drivelogs.timeline import arrow_type

BASE_NS = 1_767_000_000 * 1_000_000_000  # 2025-12-29T09:20:00Z


def frame(vehicle: str, drive: str, camera: str, second: float, *, status: str = "processed",
          fractions: Mapping[str, float] | None = None, flicker: float | None = None, dhash: str | None = None,
          reason_code: str | None = None, vru: Sequence[str] = ()) -> dict[str, Any]:
    ns = BASE_NS + int(second * 1e9)
    processed = status == "processed"
    return {
        "vehicle": vehicle, "camera": camera, "drive": drive,
        "drive_id": f"{vehicle}/{drive}", "frame_time": ns // 1_000_000, "frame_time_ns": ns,
        "frame_key": f"incoming/{vehicle}/{drive}/{camera}/{ns}.jpg", "status": status,
        "reason_code": None if processed else (reason_code or "bad_frame"),
        "reason": None if processed else "reason",
        "class_fractions": (dict(fractions or {"road": 0.6, "sky": 0.4}) if processed else None),
        "drivable_area_fraction": 0.5 if processed else None, "drivable_ahead_fraction": None,
        "vru_classes": list(vru), "vru_classes_ahead": None, "vru_ahead_pixels": None, "vru_boxes": [],
        "frame_width": 64, "frame_height": 32, "latency_ms": 10, "model_package_version": "3",
        "result_uri": f"s3://inference/results/{ns}.json",
        "mask_uri": f"s3://inference/masks/{ns}.png" if processed else None,
        "overlay_uri": f"s3://inference/overlays/{vehicle}/{drive}/{camera}/{ns}.jpg" if processed else None,
        "flicker": flicker, "dhash": dhash, "vru_present": (1 if vru else 0) if processed else None,
    }


def write_table(root: Path, frames: Sequence[Mapping[str, Any]], *, signals: bool = True) -> list[Path]:
    """The table's copy: one file per (vehicle, camera, day, drive), no partition columns inside."""
    columns = [(c.name, c.glue_type) for c in TIMELINE_COLUMNS if signals or c.name not in SIGNALS]
    schema = pa.schema([(name, arrow_type(kind)) for name, kind in columns])
    groups: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
    for f in frames:
        groups.setdefault((f["vehicle"], f["camera"], f["drive"]), []).append(f)
    written = []
    for (vehicle, camera, drive), rows in sorted(groups.items()):
        key = timeline_table_key(vehicle, camera, "2025-12-29", drive)
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({n: [r.get(n) for r in rows] for n, _ in columns}, schema=schema), path)
        written.append(path)
    return written


def write_drive_file(path: Path, frames: Sequence[Mapping[str, Any]]) -> Path:
    """The per-drive ``timeline.parquet``: every column, the partition keys (vehicle, camera, date) included."""
    columns = [(c.name, c.glue_type) for c in (*TIMELINE_PARTITION_KEYS, *TIMELINE_COLUMNS)]
    schema = pa.schema([(name, arrow_type(kind)) for name, kind in columns])
    day = dt.date(2025, 12, 29)
    rows = [{**f, "date": day} for f in frames]
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({n: [r.get(n) for r in rows] for n, _ in columns}, schema=schema), path)
    return path
