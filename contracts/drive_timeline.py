"""The drive timeline table and the drive builder's documents (scenes, summary). Standard library only.

The drive builder (drivelogs/build.py) turns a drive's per-frame documents (results, failures, quarantine
reasons) into, per drive:

- the TIMELINE: one row per frame, columns ``TIMELINE_COLUMNS`` (names, Glue/Athena types, comments: the one place
  they are written down; the builder's Parquet schema is derived from them). Two copies:
  ``DriveOutputs(drive).timeline`` (one file, every column including the partition keys, for a quick look), and the
  TABLE's copy, Hive-partitioned by ``TIMELINE_PARTITION_KEYS`` under ``TIMELINE_TABLE_PREFIX``:
  ``drive-outputs/timeline/vehicle=<v>/camera=<c>/date=<yyyy-mm-dd>/part-<drive>.parquet`` (``timeline_table_key``).
  The table's files do NOT lie under the per-drive prefix ``drive-outputs/<vehicle>/<drive>/``: a Glue table has one
  location, and partitions by (vehicle, camera, date) must span every drive. A vehicle named ``timeline`` would put its
  drive outputs at ``drive-outputs/timeline/<drive>/``, inside the table location (harmless for registered or
  projected partitions, which only read ``vehicle=`` folders, but confusing for a crawler), so DriveId should refuse
  that vehicle name. Partition key files hold no partition columns (Hive/Athena take them from the path).
- SCENES (``DriveOutputs.scenes``): time windows per camera where a vulnerable road user touches the drivable area
  ahead of the vehicle, or where the drivable area ahead collapses (``DRIVE_SCENES_SCHEMAS``).
- a review video per camera (``DriveOutputs.video(camera)``) and the SUMMARY (``DriveOutputs.summary``,
  ``DRIVE_SUMMARY_SCHEMAS``).

"Ahead of the vehicle" is the ego corridor: a trapezoid given as fractions of the frame (``CORRIDOR_DEFAULT``; x to
the right, y down, 0..1). A pixel is in the corridor when its centre is. The drivable area ahead fraction is the
share of the corridor's labelled pixels (the mask's ignore value excluded) whose class is drivable. A VRU class is
IN THE DRIVABLE AREA AHEAD when at least one of its pixels lies within ``touch_px`` pixels (8-neighbourhood,
Chebyshev distance) of a drivable pixel inside the corridor, and the result document lists the class (at least the
postprocess function's ``vru_min_pixels`` pixels in the frame).

Documents are versioned like those in contracts/documents.py: extra keys are allowed; removing or retyping a key is
a new version.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from contracts.documents import INT, NUMBER, STR, ListOf, MapOf, Nullable, _validate
from contracts.layout import INFERENCE
from contracts.signals import FRAME_SIGNALS

# 1.1: the per-frame signals (contracts.signals.FRAME_SIGNALS) appended as columns; Athena reads Parquet columns by
# name, so files of 1.0 (without them) read as nulls in those columns.
TIMELINE_SCHEMA_VERSION = "1.1"
DRIVE_SCENES_SCHEMA_VERSION = "1.0"
DRIVE_SUMMARY_SCHEMA_VERSION = "1.0"

TIMELINE_TABLE_PREFIX = f"{INFERENCE.drive_outputs}timeline/"  # the Glue table's location in the inference bucket
TIMELINE_TABLE_NAME = "drive_timeline"  # the name the example query uses; the stack's Glue table may add a prefix

FRAME_STATUSES = ("processed", "quarantined", "failed")
SCENE_KINDS = ("vru_in_drivable_ahead", "drivable_ahead_collapse")


@dataclass(frozen=True)
class Column:
    name: str
    glue_type: str  # Glue/Hive type string, as a Glue table's StorageDescriptor.Columns[].Type takes it
    comment: str


TIMELINE_COLUMNS: tuple[Column, ...] = (
    Column("drive_id", "string", "<vehicle>/<drive>"),
    Column("frame_time", "timestamp", "frame time, UTC, millisecond precision (exact value: frame_time_ns)"),
    Column("frame_time_ns", "bigint", "frame time in nanoseconds since the Unix epoch (UTC)"),
    Column("frame_key", "string", "the frame's key under incoming/"),
    Column("status", "string", "processed | quarantined | failed"),
    Column("reason_code", "string", "quarantine or failure code; null when processed"),
    Column("reason", "string", "quarantine or failure reason; null when processed"),
    Column("class_fractions", "map<string,double>", "class -> share of the frame's mask pixels (present classes)"),
    Column("drivable_area_fraction", "double", "share of the frame that is drivable"),
    Column("drivable_ahead_fraction", "double",
           "share of the ego corridor's labelled pixels that are drivable; null without a mask"),
    Column("vru_classes", "array<string>", "vulnerable road user classes in the frame (result document)"),
    Column("vru_classes_ahead", "array<string>",
           "VRU classes touching the drivable area inside the ego corridor; null without a mask"),
    Column("vru_ahead_pixels", "int",
           "pixels of the VRU classes ahead that lie inside the ego corridor; null without a mask"),
    Column("vru_boxes", "array<struct<class:string,x0:int,y0:int,x1:int,y1:int>>",
           "per VRU class: box in original frame pixels, x1/y1 exclusive"),
    Column("frame_width", "int", "original frame width"),
    Column("frame_height", "int", "original frame height"),
    Column("latency_ms", "bigint", "upload to result (processed) or to failure"),
    Column("model_package_version", "string", "the model package that segmented the frame"),
    Column("result_uri", "string", "s3:// URI of the result, failure or quarantine document"),
    Column("mask_uri", "string", "s3:// URI of the mask PNG"),
    Column("overlay_uri", "string", "s3:// URI of the overlay JPEG"),
    # The per-frame signals, one column each, named and typed once in contracts/signals.py: input signals from the
    # result document (ingest -> postprocess), output signals from it or from the mask, flicker from the builder,
    # model signals only for scored candidates (null otherwise).
    *(Column(s.name, s.glue_type, f"{s.kind} signal ({s.unit}): {s.comment}") for s in FRAME_SIGNALS),
)
TIMELINE_PARTITION_KEYS: tuple[Column, ...] = (
    Column("vehicle", "string", "vehicle name"),
    Column("camera", "string", "camera name"),
    Column("date", "date", "UTC day of the frame (yyyy-mm-dd)"),
)


def timeline_table_key(vehicle: str, camera: str, day: str, drive: str) -> str:
    """Key of one drive's part of one partition (``day`` is yyyy-mm-dd). Values are %-escaped like Hive's (names
    of letters, digits, '.', '_' and '-' are unchanged)."""
    v, c, d = (quote(value, safe="") for value in (vehicle, camera, drive))
    return f"{TIMELINE_TABLE_PREFIX}vehicle={v}/camera={c}/date={day}/part-{d}.parquet"


# The example query a team runs in Athena: "front-camera frames with a cyclist in the drivable area last week".
# Parameters (``?``: Athena's ExecutionParameters / EXECUTE ... USING, DuckDB's prepared parameters): the first and
# the last day. Only constructs common to Athena (Trino) and DuckDB: ``contains(array, value)``, ``CAST(? AS date)``
# and BETWEEN on a date, a double-quoted identifier (``"date"`` is reserved in Athena's DDL, so quoted to be safe),
# OR, ORDER BY. Checked by running it with DuckDB over the builder's files (tests/drivelogs/test_build.py) and
# against Trino's documented functions and syntax (no Athena in the tests). For "the last 7 days" relative to today
# write ``"date" >= current_date - INTERVAL '7' DAY`` (valid in both). Cityscapes cyclists are the classes rider and
# bicycle; CamVid's is bicyclist.
CYCLIST_AHEAD_QUERY = f"""
SELECT drive_id, camera, frame_time, frame_key, vru_classes_ahead, overlay_uri
FROM {TIMELINE_TABLE_NAME}
WHERE camera = 'front'
  AND "date" BETWEEN CAST(? AS date) AND CAST(? AS date)
  AND status = 'processed'
  AND (contains(vru_classes_ahead, 'rider') OR contains(vru_classes_ahead, 'bicycle')
       OR contains(vru_classes_ahead, 'bicyclist'))
ORDER BY frame_time, drive_id
""".strip()


# ------------------------------------------------------------------------------------------- documents

_CORRIDOR = {"top": NUMBER, "bottom": NUMBER, "top_left": NUMBER, "top_right": NUMBER, "bottom_left": NUMBER,
             "bottom_right": NUMBER, "touch_px": INT}
_SCENE_PARAMETERS = {"corridor": _CORRIDOR, "collapse_below": NUMBER, "max_gap_frames": INT,
                     "min_duration_s": NUMBER, "min_frames": INT}
_SCENE = {
    "kind": STR,  # SCENE_KINDS
    "camera": STR,
    "start": STR,  # ISO 8601 UTC with nanoseconds: the first active frame
    "end": STR,  # the last active frame
    "start_ns": INT,
    "end_ns": INT,
    "duration_s": NUMBER,  # end - start
    "frames": INT,  # active frames in the window
    "gap_frames": INT,  # missing, quarantined, failed or unmeasured frames bridged inside the window
    "first_frame_key": STR,
    "last_frame_key": STR,
    "peak_frame_key": STR,  # the frame with the most VRU pixels ahead / the least drivable area ahead
    "classes": ListOf(STR),  # VRU classes ahead in the window (empty for a collapse)
    "peak_vru_ahead_pixels": Nullable(INT),
    "min_drivable_ahead_fraction": Nullable(NUMBER),
}
DRIVE_SCENES_SCHEMAS: dict[str, dict[str, Any]] = {
    "1.0": {
        "schema_version": STR,
        "drive_id": STR,
        "parameters": _SCENE_PARAMETERS,
        "scenes": ListOf(_SCENE),
    },
}

_STATUS_COUNTS = {"processed": INT, "quarantined": INT, "failed": INT, "total": INT}
_LATENCY = {"count": INT, "mean": NUMBER, "p50": NUMBER, "p90": NUMBER, "max": NUMBER}
DRIVE_SUMMARY_SCHEMAS: dict[str, dict[str, Any]] = {
    "1.0": {
        "schema_version": STR,
        "drive_id": STR,
        "created_at": STR,
        "scheme": STR,
        "cameras": ListOf(STR),
        "time_range": Nullable({"start": STR, "end": STR, "start_ns": INT, "end_ns": INT, "duration_s": NUMBER}),
        "frames": MapOf(_STATUS_COUNTS),  # camera -> counts per status
        "totals": _STATUS_COUNTS,
        "reasons": MapOf(MapOf(INT)),  # camera -> reason code -> frames (quarantined and failed)
        "missing_frames": MapOf(INT),  # camera -> frames inferred missing from gaps in the frame times
        "frame_rate_hz": MapOf(Nullable(NUMBER)),  # camera -> the rate the scenes and the video use
        "latency_ms": Nullable(_LATENCY),  # processed frames with a latency (upload -> result)
        "class_fraction_means": MapOf(NUMBER),  # class -> mean over processed frames (absent class = 0)
        "drivable_area_fraction_mean": Nullable(NUMBER),
        "drivable_ahead_fraction_mean": Nullable(NUMBER),
        "vru_frames": MapOf({"present": INT, "ahead": INT, "by_class": MapOf(INT), "ahead_by_class": MapOf(INT)}),
        "scenes": {"counts": MapOf(INT), "top": ListOf(_SCENE)},
        "videos": MapOf(Nullable({"key": STR, "codec": STR, "fps": NUMBER, "frames": INT, "width": INT,
                                  "height": INT})),
        "outputs": {"timeline": STR, "timeline_table": ListOf(STR), "scenes": STR, "summary": STR},
        "manifest": Nullable({"status": STR, "extracted": MapOf(INT)}),
        "warnings": ListOf(STR),
    },
}


def validate_drive_scenes(doc: Any) -> dict[str, Any]:
    """The document itself if it is a valid scenes document, else DocumentError naming the key."""
    return _validate("drive scenes", doc, DRIVE_SCENES_SCHEMAS)


def validate_drive_summary(doc: Any) -> dict[str, Any]:
    """The document itself if it is a valid drive summary, else DocumentError naming the key."""
    return _validate("drive summary", doc, DRIVE_SUMMARY_SCHEMAS)
