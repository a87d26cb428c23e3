"""Drives: the facts shared by the drive extraction job, the ingest and postprocess functions (which count a
drive's frames), the drive builder, the stacks and the operator command. Standard library only.

A drive log is uploaded under ``drives/`` of the inference bucket (contracts.layout.INFERENCE.drives):

    drives/<vehicle>/<drive>.mcap            an MCAP file (ROS 2's default storage since Iron, or any MCAP)
    drives/<vehicle>/<drive>.bag             a ROS 1 bag
    drives/<vehicle>/<drive>/metadata.yaml   a ROS 2 bag directory (sqlite3 or MCAP storage): the directory is
                                             extracted when its metadata.yaml arrives (the command uploads it last)

The drive id is ``<vehicle>/<drive>``. Extracted frames go to ``incoming/<vehicle>/<drive>/<camera>/<timestamp>.<ext>``
(the ingest function's default key pattern, whose drive segment is optional: two drives never share a key) with the
drive id in the object's user metadata (``DRIVE_ID_METADATA``), so the existing ingest path validates, quarantines,
de-duplicates and infers them. Everything roadseg writes about a drive lies under
``drive-outputs/<vehicle>/<drive>/`` (``DriveOutputs``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from contracts.documents import BOOL, INT, NUMBER, STR, DocumentError, ListOf, MapOf, Nullable, _validate
from contracts.layout import INFERENCE

DRIVE_ID_METADATA = "drive-id"  # S3 user metadata (x-amz-meta-drive-id) on every extracted frame
LOG_SUFFIXES = (".mcap", ".bag")
ROS2_METADATA = "metadata.yaml"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# drive-outputs/timeline/ is the Glue table's location (contracts.drive_timeline): no vehicle may own it.
RESERVED_VEHICLES = ("timeline",)


class DriveKeyError(ValueError):
    """An object key under drives/ that is not a drive log."""


@dataclass(frozen=True)
class DriveId:
    vehicle: str
    drive: str

    def __str__(self) -> str:
        return f"{self.vehicle}/{self.drive}"

    @classmethod
    def parse(cls, text: str) -> DriveId:
        vehicle, _, drive = text.partition("/")
        for part, value in (("vehicle", vehicle), ("drive", drive)):
            if not _NAME.match(value or ""):
                # 64 + 64: the jobs' local output paths (/opt/ml/processing/output/drive-outputs/<v>/<d>) stay well
                # under SageMaker's 256-character LocalPath.
                raise DriveKeyError(
                    f"drive id {text!r}: the {part} must be 1-64 letters, digits, '.', '_' or '-'"
                    " (e.g. car-7/2026-12-03)"
                )
        if vehicle in RESERVED_VEHICLES:
            raise DriveKeyError(f"drive id {text!r}: {vehicle!r} is reserved (the drive timeline table's folder); "
                                "name the vehicle otherwise")
        return cls(vehicle, drive)


def drive_of_log_key(key: str) -> DriveId:
    """The drive a log object belongs to, from its key under ``drives/``; DriveKeyError for anything else."""
    if not key.startswith(INFERENCE.drives):
        raise DriveKeyError(f"{key}: drive logs live under {INFERENCE.drives}")
    parts = key[len(INFERENCE.drives):].split("/")
    if len(parts) == 2 and parts[1].endswith(LOG_SUFFIXES):
        vehicle, name = parts
        return DriveId.parse(f"{vehicle}/{name.rsplit('.', 1)[0]}")
    if len(parts) == 3 and parts[2] == ROS2_METADATA:
        return DriveId.parse(f"{parts[0]}/{parts[1]}")
    raise DriveKeyError(
        f"{key}: expected {INFERENCE.drives}<vehicle>/<drive>.mcap, <drive>.bag or <drive>/{ROS2_METADATA}"
    )


@dataclass(frozen=True)
class DriveOutputs:
    """Where roadseg writes what it knows about one drive (keys in the inference bucket)."""

    drive: DriveId

    @property
    def prefix(self) -> str:
        return f"{INFERENCE.drive_outputs}{self.drive.vehicle}/{self.drive.drive}/"

    @property
    def manifest(self) -> str:
        return self.prefix + "manifest.json"

    @property
    def timeline(self) -> str:
        return self.prefix + "timeline.parquet"

    @property
    def scenes(self) -> str:
        return self.prefix + "scenes.json"

    @property
    def summary(self) -> str:
        return self.prefix + "summary.json"

    @property
    def sidecar(self) -> str:
        """The drive's results as a sidecar MCAP on the log's clock (drivelogs/sidecar.py), next to the videos."""
        return self.prefix + "sidecar.mcap"

    def video(self, camera: str) -> str:
        return self.prefix + f"videos/{camera}.mp4"


# ------------------------------------------------------------------------------------- drive manifest
# Written by the extraction job (drivelogs/extract.py) next to the drive's other outputs
# (DriveOutputs.manifest). Versioned like the documents in contracts/documents.py: extra keys are allowed; removing
# or retyping one is a new version.

DRIVE_MANIFEST_SCHEMA_VERSION = "1.0"

# Why a message on a camera topic did not become a frame (the keys of ``skipped``). Every message read on a camera
# topic is either extracted or skipped for exactly one of these; messages the library could not read at all (a lost
# chunk) are ``messages_lost``.
SKIP_REASONS = (
    "duplicate_stamp",        # the same stamp as a frame already extracted on this camera (the key would collide)
    "key_exists",             # the destination already holds this key (an earlier run, another shard): not overwritten
    "rate_limited",           # closer than 1/rate_hz after the last kept frame
    "too_large_bytes",        # above the ingest's MAX_INPUT_BYTES (the ingest's BadFrame code)
    "too_many_pixels",        # above the ingest's MAX_INPUT_PIXELS (the ingest's BadFrame code)
    "unsupported_format",     # a CompressedImage that is neither JPEG nor PNG by its magic bytes
    "unknown_encoding",       # an Image whose encoding is not one the extractor converts
    "malformed",              # an Image whose data is shorter than step x height, or with a zero size
    "undecodable",            # the message bytes do not deserialise with the topic's schema
    "unsupported_message_encoding",  # the topic's serialisation (not CDR/ROS 1) or schema language is not readable
    "not_an_image",           # a configured camera topic whose type is not an image message
)
# What can go wrong with a log as a whole (``problems[].kind``).
PROBLEM_KINDS = (
    "truncated",              # the log ends early: read up to ``offset``; later messages unknown (messages_lost null)
    "lost_chunk",             # a chunk in the middle could not be read; ``messages_lost`` from the chunk index
    "read_error",             # the library stopped reading; counted loss from the index where it has one
    "undecompressable",       # message-compressed payloads (one zstd frame each) that do not decompress: counted
                              # lost, one problem per topic, messages_lost = how many
    "unsupported_message_encoding",
    "no_image_topics",
    "camera_topic_missing",   # a configured camera topic is not in the log
    "camera_name_collision",  # two topics derived the same camera name; each is named after its whole topic
    "unaccounted_messages",   # the log counts more messages on a camera topic than were read or lost: counted lost
    "count_mismatch",         # the log counts fewer messages on a camera topic than were read
)
# Problems that make a drive "partial" whatever their messages_lost (besides any with messages_lost null or > 0).
PARTIAL_PROBLEMS = ("count_mismatch",)

_DRIVE_CAMERA = {
    "topic": STR,
    "type": Nullable(STR),
    "rate_hz": Nullable(NUMBER),
    "messages": INT,          # messages on the topic known to exist: read + lost
    "messages_read": INT,     # = extracted + sum(skipped)
    "messages_lost": INT,     # in chunks the library could not read (counted from the index)
    "extracted": INT,
    "skipped": MapOf(INT),    # reason (SKIP_REASONS) -> count
    "out_of_order": INT,      # stamps earlier than one already seen on this camera (still extracted)
    "stamps_from_log_time": INT,  # header.stamp was zero: the log time was used
    "first_stamp": Nullable(STR),
    "last_stamp": Nullable(STR),
    "bytes_written": INT,
}
DRIVE_MANIFEST_SCHEMAS: dict[str, dict[str, Any]] = {
    "1.0": {
        "schema_version": STR,
        "drive_id": STR,
        "status": STR,  # "complete" (every image message extracted or skipped with a reason) | "partial" | ...
        "created_at": STR,
        "destination": STR,  # s3://bucket/incoming/ or a local directory
        "options": {"rate_hz": Nullable(NUMBER), "max_bytes": INT, "max_pixels": INT,
                    "cameras": Nullable(MapOf(STR))},
        "logs": ListOf({"name": STR, "size_bytes": INT, "format": STR, "library": STR, "messages_read": INT,
                        "complete": BOOL}),
        "topics": ListOf({"name": STR, "type": Nullable(STR), "messages": INT, "camera": Nullable(STR)}),
        "time_range": Nullable({"start": STR, "end": STR, "start_ns": INT, "end_ns": INT}),
        "cameras": MapOf(_DRIVE_CAMERA),
        "problems": ListOf({"kind": STR, "log": Nullable(STR), "topic": Nullable(STR), "offset": Nullable(INT),
                            "messages_lost": Nullable(INT), "detail": STR}),
        "totals": {"messages": INT, "messages_read": INT, "messages_lost": INT, "extracted": INT,
                   "skipped": MapOf(INT), "out_of_order": INT, "bytes_written": INT},
    },
}


def validate_drive_manifest(doc: Any) -> dict[str, Any]:
    """The document itself if it is a valid drive manifest whose counts reconcile, else DocumentError naming the key:
    per camera messages = messages_read + messages_lost and messages_read = extracted + sum(skipped); the totals are
    the sums over the cameras; skip reasons and problem kinds are the known ones. A ``complete`` drive has no problem
    that lost messages (or may have, or is in PARTIAL_PROBLEMS) and each camera's messages equal its topic's count."""
    _validate("drive manifest", doc, DRIVE_MANIFEST_SCHEMAS)

    def fail(key: str, problem: str) -> None:
        raise DocumentError("drive manifest", key, problem)

    sums = {"messages": 0, "messages_read": 0, "messages_lost": 0, "extracted": 0, "out_of_order": 0,
            "bytes_written": 0}
    skipped_total: dict[str, int] = {}
    for name, camera in doc["cameras"].items():
        unknown = sorted(set(camera["skipped"]) - set(SKIP_REASONS))
        if unknown:
            fail(f"cameras.{name}.skipped.{unknown[0]}", f"unknown reason (known: {', '.join(SKIP_REASONS)})")
        skipped = sum(camera["skipped"].values())
        if camera["messages_read"] != camera["extracted"] + skipped:
            fail(f"cameras.{name}.messages_read", f"is {camera['messages_read']} but extracted + skipped is "
                 f"{camera['extracted']} + {skipped}")
        if camera["messages"] != camera["messages_read"] + camera["messages_lost"]:
            fail(f"cameras.{name}.messages", f"is {camera['messages']} but read + lost is "
                 f"{camera['messages_read']} + {camera['messages_lost']}")
        for key in sums:
            sums[key] += camera[key]
        for reason, count in camera["skipped"].items():
            skipped_total[reason] = skipped_total.get(reason, 0) + count
    totals = doc["totals"]
    for key, value in sums.items():
        if totals[key] != value:
            fail(f"totals.{key}", f"is {totals[key]} but the cameras add up to {value}")
    if {k: v for k, v in totals["skipped"].items() if v} != {k: v for k, v in skipped_total.items() if v}:
        fail("totals.skipped", f"is {totals['skipped']} but the cameras add up to {skipped_total}")
    for index, problem in enumerate(doc["problems"]):
        if problem["kind"] not in PROBLEM_KINDS:
            fail(f"problems[{index}].kind", f"unknown kind {problem['kind']!r} (known: {', '.join(PROBLEM_KINDS)})")
        if doc["status"] == "complete" and (problem["messages_lost"] is None or problem["messages_lost"] > 0
                                            or problem["kind"] in PARTIAL_PROBLEMS):
            fail("status", f"is complete but problems[{index}] ({problem['kind']}) says messages were lost or "
                 "miscounted")
    if doc["status"] == "complete":
        counts = {topic["name"]: topic["messages"] for topic in doc["topics"]}
        for name, camera in doc["cameras"].items():
            if camera["topic"] in counts and counts[camera["topic"]] != camera["messages"]:
                fail("status", f"is complete but camera {name} has {camera['messages']} messages where its topic "
                     f"{camera['topic']} counts {counts[camera['topic']]}")
    return doc
