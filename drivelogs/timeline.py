"""The drive timeline: one record per frame from the drive's result, failure and quarantine documents.

Fetch -> decide -> act:

- ``load_documents`` reads every ``*.json`` under the given directories (the Processing job's downloads of
  ``results/``, ``failures/``, ``quarantine/``) and tells result, failure and quarantine documents apart by their
  keys, validating each (``BuildError`` names the file and the offending key);
- ``frame_records`` (pure) attributes them to frames: vehicle, camera and time from the document's fields, else from
  its frame key (contracts.lambda_env.DEFAULT_KEY_PATTERN; the time from the key's ``YYYYMMDDTHHMMSS.nnnnnnnnnZ``
  stamp, or ISO 8601). When one frame has several documents, processed beats failed beats quarantined, then the
  newest document wins (a frame re-uploaded after a failure);
- ``measure_ahead`` reads each processed frame's mask (a ``FileIndex`` finds it by the key in ``mask_uri``, else by
  ``<identity>.mask.png``) and fills in what lies ahead (drivelogs/scenes.py) and the label flicker against the
  camera's previous frame (segcore.signals.label_flicker; null for a camera's first frame and after a frame without a
  usable mask: quarantined, failed or its mask missing);
- the per-frame signals (contracts.signals.FRAME_SIGNALS, one timeline column each): a result document's optional
  ``signals`` object (input signals carried from the ingest function, output and model signals), the output signals
  it lacks computed from its class fractions (segcore.signals.output_signals_from_fractions: a document written
  before the postprocess function wrote signals gets them too), flicker from the builder; quarantined and failed
  frames have none (their status and reason say why);
- ``timeline_table`` / ``write_timeline`` turn the records into Arrow tables with the schema derived from
  contracts.drive_timeline.TIMELINE_COLUMNS and write the per-drive file and the table's Hive partitions.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from contracts.documents import DocumentError, validate_failure, validate_quarantine, validate_result
from contracts.drive_timeline import TIMELINE_COLUMNS, TIMELINE_PARTITION_KEYS, Column, timeline_table_key
from contracts.drives import DriveId
from contracts.lambda_env import DEFAULT_KEY_PATTERN
from contracts.layout import INFERENCE
from contracts.signals import OUTPUT_SIGNALS, RESULT_SIGNALS_KEY, SIGNALS, validate_result_signals
from drivelogs.scenes import EgoCorridor, FrameState, ahead_of_vehicle
from segcore.keys import frame_identity, parse_frame_key
from segcore.masks import Geometry, MaskError, decode_mask_png, restore_to_original
from segcore.signals import downscale_mask, label_flicker, output_signals_from_fractions

_KEY_PATTERN = re.compile(DEFAULT_KEY_PATTERN)
_STAMP = re.compile(r"^(\d{8}T\d{6})(?:\.(\d{1,9}))?Z$")
_STATUS_RANK = {"processed": 2, "failed": 1, "quarantined": 0}


class BuildError(ValueError):
    """Bad input to the drive builder: the message names the file (and key) at fault."""


# ------------------------------------------------------------------------------------------------- fetch


@dataclass(frozen=True)
class Document:
    kind: str  # "result" | "failure" | "quarantine"
    path: Path
    body: dict[str, Any]


def document_kind(body: Any) -> str | None:
    """Which of the per-frame documents this is, by its keys (their schemas share no required key set)."""
    if not isinstance(body, dict):
        return None
    if "class_fractions" in body or "pixels" in body or "inference_size" in body:
        return "result"
    if body.get("status") == "failed" or "failed_at" in body:
        return "failure"
    if "quarantined_at" in body or "source_key" in body:
        return "quarantine"
    return None


_VALIDATORS = {"result": validate_result, "failure": validate_failure, "quarantine": validate_quarantine}


def load_documents(directories: Iterable[Path]) -> list[Document]:
    documents = []
    for directory in directories:
        if not directory.is_dir():
            raise BuildError(f"{directory}: not a directory")
        for path in sorted(directory.rglob("*.json")):
            try:
                body = json.loads(path.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise BuildError(f"{path}: not a readable JSON document: {exc}") from None
            kind = document_kind(body)
            if kind is None:
                raise BuildError(f"{path}: neither a result, a failure nor a quarantine document")
            try:
                _VALIDATORS[kind](body)
                if kind == "result" and body.get(RESULT_SIGNALS_KEY) is not None:
                    validate_result_signals(body[RESULT_SIGNALS_KEY])
            except DocumentError as exc:
                raise BuildError(f"{path}: {exc}") from None
            documents.append(Document(kind, path, body))
    return documents


class FileIndex:
    """Files under a directory, found by an S3 key: the file whose path is the longest tail of the key.

    The Processing job downloads some prefix of the bucket into the directory, so ``s3://b/results/car-7/front/x.png``
    may be ``<dir>/front/x.png``, ``<dir>/car-7/front/x.png`` or ``<dir>/results/car-7/front/x.png``.
    """

    def __init__(self, root: Path | None) -> None:
        self.root = root
        self._by_name: dict[str, list[tuple[str, ...]]] = {}
        if root is not None:
            if not root.is_dir():
                raise BuildError(f"{root}: not a directory")
            for path in root.rglob("*"):
                if path.is_file():
                    parts = path.relative_to(root).parts
                    self._by_name.setdefault(parts[-1], []).append(parts)

    def find(self, *keys: str | None) -> Path | None:
        for key in keys:
            if not key:
                continue
            if key.startswith("s3://"):
                key = key[5:].partition("/")[2]
            wanted = tuple(p for p in key.split("/") if p)
            if not wanted or self.root is None:
                continue
            best, best_len = None, 0
            for parts in self._by_name.get(wanted[-1], ()):
                common = 0
                while common < min(len(parts), len(wanted)) and parts[-1 - common] == wanted[-1 - common]:
                    common += 1
                if common > best_len:
                    best, best_len = parts, common
            if best is not None:
                return self.root.joinpath(*best)
        return None


# ------------------------------------------------------------------------------------------ decide (pure)


@dataclass(frozen=True)
class FrameRecord:
    drive_id: str
    vehicle: str
    camera: str
    time_ns: int
    frame_key: str
    status: str
    reason_code: str | None = None
    reason: str | None = None
    class_fractions: Mapping[str, float] | None = None
    drivable_area_fraction: float | None = None
    vru_classes: tuple[str, ...] | None = None
    vru_boxes: tuple[dict[str, Any], ...] | None = None
    frame_width: int | None = None
    frame_height: int | None = None
    latency_ms: int | None = None
    model_package_version: str | None = None
    result_uri: str | None = None
    mask_uri: str | None = None
    overlay_uri: str | None = None
    drivable_ahead_fraction: float | None = None
    vru_classes_ahead: tuple[str, ...] | None = None
    vru_ahead_pixels: int | None = None
    signals: Mapping[str, Any] = field(default_factory=dict)  # FRAME_SIGNALS name -> value (absent: null)
    document: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    document_time: str = ""

    @property
    def identity(self) -> str:
        return frame_identity(self.frame_key)

    @property
    def day(self) -> str:
        return datetime.fromtimestamp(self.time_ns // 1_000_000_000, UTC).strftime("%Y-%m-%d")

    def state(self) -> FrameState:
        return FrameState(self.camera, self.time_ns, self.frame_key, self.status, self.vru_classes_ahead,
                          self.vru_ahead_pixels, self.drivable_ahead_fraction)


def parse_frame_time(text: str | None) -> int | None:
    """Nanoseconds since the epoch of ``20261203T101500.123456789Z`` (the extractor's stamps) or ISO 8601."""
    if not text:
        return None
    match = _STAMP.match(text)
    if match:
        moment = datetime.strptime(match.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=UTC)
        return int(moment.timestamp()) * 1_000_000_000 + int((match.group(2) or "0").ljust(9, "0"))
    iso = re.match(r"^(.*?)(?:\.(\d{1,9}))?(Z|[+-]\d\d:?\d\d)?$", text)
    zone = iso.group(3) if iso and iso.group(3) not in (None, "Z") else "+00:00"
    try:
        moment = datetime.fromisoformat(iso.group(1) + zone) if iso else None
    except ValueError:
        return None
    if moment is None:
        return None
    return int(moment.timestamp()) * 1_000_000_000 + int((iso.group(2) or "0").ljust(9, "0"))


def _bucket_of(*uris: str | None) -> str | None:
    for uri in uris:
        if uri and uri.startswith("s3://"):
            return uri[5:].partition("/")[0]
    return None


def _record(drive: DriveId, document: Document) -> FrameRecord | str:
    """The frame record of one document, or why it cannot be attributed to a frame."""
    body = document.body
    key = body.get("source_key") if document.kind == "quarantine" else body.get("frame_key")
    if not key:
        return "names no frame key"
    parsed = parse_frame_key(key, _KEY_PATTERN)
    if parsed.drive and parsed.drive != drive.drive:  # two drives of one vehicle may share stamps (time since boot)
        return f"belongs to drive {parsed.drive}"
    vehicle = body.get("vehicle") or parsed.vehicle
    camera = body.get("camera") or parsed.camera
    time_ns = parse_frame_time(body.get("timestamp") or parsed.timestamp)
    if not vehicle or not camera or time_ns is None:
        return f"frame key {key!r} gives no vehicle, camera and time"
    common = {"drive_id": str(drive), "vehicle": vehicle, "camera": camera, "time_ns": time_ns, "frame_key": key,
              "document": body}
    bucket = body.get("source_bucket") or _bucket_of(body.get("mask_uri"), body.get("overlay_uri"))
    identity = frame_identity(key)
    if document.kind == "result":
        objects = body["vulnerable_road_users"]["objects"]
        return FrameRecord(
            **common, status="processed",
            class_fractions=dict(body["class_fractions"]),
            drivable_area_fraction=body["drivable_area_fraction"],
            vru_classes=tuple(sorted({o["class"] for o in objects})),
            vru_boxes=tuple({"class": o["class"], "x0": o["bbox"][0], "y0": o["bbox"][1], "x1": o["bbox"][2],
                             "y1": o["bbox"][3]} for o in objects),
            signals={k: v for k, v in (body.get(RESULT_SIGNALS_KEY) or {}).items() if v is not None},
            frame_width=body["original_size"]["width"], frame_height=body["original_size"]["height"],
            latency_ms=body["latency_ms"], model_package_version=body["model_package_version"],
            result_uri=f"s3://{bucket}/{INFERENCE.results}{identity}.json" if bucket else None,
            mask_uri=body["mask_uri"], overlay_uri=body["overlay_uri"], document_time=body["completed_at"])
    if document.kind == "failure":
        return FrameRecord(
            **common, status="failed", reason_code=body["code"], reason=body["reason"],
            latency_ms=body["latency_ms"], model_package_version=body["model_package_version"],
            result_uri=f"s3://{bucket}/{INFERENCE.failures}{identity}.json" if bucket else None,
            document_time=body["failed_at"])
    return FrameRecord(
        **common, status="quarantined", reason_code=body["code"], reason=body["reason"],
        result_uri=f"s3://{body['source_bucket']}/{INFERENCE.quarantine}{key}.reason.json",
        document_time=body["quarantined_at"])


@dataclass
class Attribution:
    records: list[FrameRecord]
    excluded: dict[str, int]  # why -> documents left out
    superseded: int  # documents of a frame that another document of the same frame beat


def frame_records(drive: DriveId, documents: Sequence[Document],
                  time_range_ns: tuple[int, int] | None = None) -> Attribution:
    """One record per frame of ``drive``: documents of other vehicles, outside the drive's time range (the
    manifest's, when known) or without a frame are left out and counted."""
    excluded: dict[str, int] = {}
    best: dict[str, FrameRecord] = {}
    superseded = 0
    for document in documents:
        record = _record(drive, document)
        if isinstance(record, str):
            why = f"{document.kind} document {record}"
        elif record.vehicle != drive.vehicle:
            why = f"another vehicle ({record.vehicle})"
        elif time_range_ns and not time_range_ns[0] <= record.time_ns <= time_range_ns[1]:
            why = "outside the drive's time range"
        else:
            current = best.get(record.frame_key)
            if current is not None:
                superseded += 1
                rank = (_STATUS_RANK[record.status], record.document_time)
                if rank <= (_STATUS_RANK[current.status], current.document_time):
                    continue
            best[record.frame_key] = record
            continue
        excluded[why] = excluded.get(why, 0) + 1
    records = sorted(best.values(), key=lambda r: (r.camera, r.time_ns, r.frame_key))
    return Attribution(records, excluded, superseded)


# ------------------------------------------------------------------------------------------------ act


@dataclass(frozen=True)
class ClassIndices:
    drivable: tuple[int, ...]
    vru: Mapping[int, str]
    ignore_index: int = 255
    names: tuple[str, ...] = ()  # the scheme's class names in train-id order

    @property
    def drivable_names(self) -> tuple[str, ...]:
        return tuple(self.names[i] for i in self.drivable if i < len(self.names))


def with_output_signals(record: FrameRecord, classes: ClassIndices) -> FrameRecord:
    """A processed record whose document lacks output signals gets them from its class fractions (pure)."""
    if record.status != "processed" or record.class_fractions is None \
            or all(record.signals.get(name) is not None for name in OUTPUT_SIGNALS):
        return record
    present = bool(record.document.get("vulnerable_road_users", {}).get("present", bool(record.vru_classes)))
    computed = output_signals_from_fractions(record.class_fractions, vru_classes=tuple(classes.vru.values()),
                                             drivable_classes=classes.drivable_names, vru_present=present)
    return replace(record, signals={**{k: v for k, v in computed.items() if v is not None}, **record.signals})


def load_mask(path: Path, record: FrameRecord) -> np.ndarray:
    """The mask at the frame's original size: a mask at the inference size is mapped back through the crop box."""
    mask = decode_mask_png(path.read_bytes())
    body = record.document
    width, height = body["original_size"]["width"], body["original_size"]["height"]
    if mask.shape == (height, width):
        return mask
    inference = body["inference_size"]
    if mask.shape == (inference["height"], inference["width"]):
        return restore_to_original(mask, Geometry((width, height), tuple(body["crop_box"])))
    return mask  # another size: the corridor is in fractions, so it still applies


def measure_ahead(records: Sequence[FrameRecord], masks: FileIndex, classes: ClassIndices,
                  corridor: EgoCorridor) -> tuple[list[FrameRecord], list[str]]:
    """Records with what lies ahead and the label flicker filled in for processed frames with a mask, and the output
    signals a result document lacks; problems as warnings. ``records`` are in (camera, time) order (frame_records):
    a frame's flicker compares its mask with the previous record's of the same camera, when that one had a mask."""
    out, warnings = [], []
    previous: tuple[str, np.ndarray | None] | None = None  # (camera, downscaled mask) of the previous record
    for record in records:
        record = with_output_signals(record, classes)
        before = previous[1] if previous is not None and previous[0] == record.camera else None
        previous = (record.camera, None)
        if record.status != "processed":
            out.append(record)
            continue
        path = masks.find(record.mask_uri, f"{INFERENCE.results}{record.identity}.mask.png")
        if path is None:
            warnings.append(f"{record.frame_key}: no mask found ({record.mask_uri})")
            out.append(record)
            continue
        try:
            mask = load_mask(path, record)
        except (MaskError, OSError) as exc:
            warnings.append(f"{record.frame_key}: mask {path} unusable: {exc}")
            out.append(record)
            continue
        ahead = ahead_of_vehicle(mask, drivable=classes.drivable, vru=classes.vru, corridor=corridor,
                                 ignore_index=classes.ignore_index, allowed_vru=record.vru_classes)
        small = downscale_mask(mask)
        previous = (record.camera, small)
        flicker = label_flicker(before, small, ignore_index=classes.ignore_index)
        out.append(replace(record, drivable_ahead_fraction=ahead.drivable_fraction,
                           vru_classes_ahead=ahead.vru_classes, vru_ahead_pixels=ahead.vru_pixels,
                           signals={**record.signals, "flicker": flicker}))
    return out, warnings


# ------------------------------------------------------------------------------------------ Arrow schema


def _split_top_level(text: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for index, char in enumerate(text):
        depth += {"<": 1, ">": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(text[start:index])
            start = index + 1
    parts.append(text[start:])
    return [p.strip() for p in parts]


def arrow_type(glue_type: str) -> Any:
    """The Arrow type of a Glue/Hive type string (the subset TIMELINE_COLUMNS uses)."""
    import pyarrow as pa

    simple = {"string": pa.string(), "bigint": pa.int64(), "int": pa.int32(), "double": pa.float64(),
              "boolean": pa.bool_(), "date": pa.date32(),
              # milliseconds, no zone: what Athena's timestamp is; the values are UTC
              "timestamp": pa.timestamp("ms")}
    text = glue_type.strip()
    if text in simple:
        return simple[text]
    outer, _, rest = text.partition("<")
    if not rest.endswith(">"):
        raise ValueError(f"unsupported Glue type {glue_type!r}")
    inner = _split_top_level(rest[:-1])
    if outer == "array" and len(inner) == 1:
        return pa.list_(arrow_type(inner[0]))
    if outer == "map" and len(inner) == 2:
        return pa.map_(arrow_type(inner[0]), arrow_type(inner[1]))
    if outer == "struct":
        return pa.struct([(name, arrow_type(kind)) for name, _, kind in (f.partition(":") for f in inner)])
    raise ValueError(f"unsupported Glue type {glue_type!r}")


def glue_type(arrow: Any) -> str:
    """The Glue/Hive type string of an Arrow type (the inverse of ``arrow_type``)."""
    import pyarrow as pa

    if pa.types.is_list(arrow):
        return f"array<{glue_type(arrow.value_type)}>"
    if pa.types.is_map(arrow):
        return f"map<{glue_type(arrow.key_type)},{glue_type(arrow.item_type)}>"
    if pa.types.is_struct(arrow):
        return "struct<" + ",".join(f"{f.name}:{glue_type(f.type)}" for f in arrow) + ">"
    names = {pa.string(): "string", pa.int64(): "bigint", pa.int32(): "int", pa.float64(): "double",
             pa.bool_(): "boolean", pa.date32(): "date", pa.timestamp("ms"): "timestamp"}
    return names[arrow]


def arrow_schema(columns: Sequence[Column] = TIMELINE_COLUMNS) -> Any:
    import pyarrow as pa

    return pa.schema([pa.field(c.name, arrow_type(c.glue_type), nullable=True,
                               metadata={"comment": c.comment}) for c in columns])


def _value(record: FrameRecord, name: str) -> Any:
    if name == "frame_time":
        return record.time_ns // 1_000_000
    if name == "frame_time_ns":
        return record.time_ns
    if name == "date":
        return datetime.strptime(record.day, "%Y-%m-%d").date()
    if name in SIGNALS:
        value = record.signals.get(name)
        if value is None or SIGNALS[name].glue_type == "string":
            return value
        return int(value) if SIGNALS[name].glue_type == "int" else float(value)
    value = getattr(record, name)
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Mapping):
        return dict(value)
    return value


def timeline_table(records: Sequence[FrameRecord], columns: Sequence[Column]) -> Any:
    import pyarrow as pa

    schema = arrow_schema(columns)
    return pa.table({c.name: pa.array([_value(r, c.name) for r in records], type=schema.field(c.name).type)
                     for c in columns}, schema=schema)


def write_timeline(records: Sequence[FrameRecord], drive: DriveId, drive_file: Path,
                   table_root: Path) -> list[str]:
    """Write the per-drive file (every column) and the table's partitions (no partition columns) under
    ``table_root`` (the local folder of the bucket's ``drive-outputs/``). The table's keys written, sorted."""
    import pyarrow.parquet as pq

    drive_file.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(timeline_table(records, (*TIMELINE_PARTITION_KEYS, *TIMELINE_COLUMNS)), drive_file)
    groups: dict[tuple[str, str, str], list[FrameRecord]] = {}
    for record in records:
        groups.setdefault((record.vehicle, record.camera, record.day), []).append(record)
    keys = []
    for (vehicle, camera, day), rows in sorted(groups.items()):
        key = timeline_table_key(vehicle, camera, day, drive.drive)
        path = table_root / key[len(INFERENCE.drive_outputs):]
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(timeline_table(rows, TIMELINE_COLUMNS), path)
        keys.append(key)
    return keys
