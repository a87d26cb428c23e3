"""The drive's results as a sidecar MCAP on the source log's clock, to open beside the original in Foxglove or Rerun.

Every message's log and publish times are the frame's capture time (the timeline's ``frame_time_ns``), so the
sidecar lines up with the drive's own log when both are opened together. Per camera ``<c>``:

- ``/roadseg/<c>/overlay``: ``foxglove.CompressedImage`` (the overlay JPEG of each processed frame);
- ``/roadseg/<c>/class_ids``: ``foxglove.RawImage``, ``mono8``, one class index per pixel at the frame's size;
- ``/roadseg/<c>/vru``: ``foxglove.ImageAnnotations``, a box and a label per vulnerable road user (empty when none,
  so the previous frame's boxes are cleared), in the frame's pixels;
- ``/roadseg/<c>/stats``: JSON (``jsonschema``), every frame of the timeline, processed or not: status, reason,
  class fractions, drivable area (whole frame and ahead), the VRU classes, latency;

and ``/roadseg/scenes``: ``foxglove.Event`` per scene (start and end times, metadata: kind, camera, frames,
classes, peak frame). Written with the mcap writer; the protobuf schemas are those of foxglove-schemas-protobuf,
registered by mcap-protobuf-support. Messages are written in time order, one frame's files read at a time.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from foxglove_schemas_protobuf.Color_pb2 import Color
from foxglove_schemas_protobuf.CompressedImage_pb2 import CompressedImage
from foxglove_schemas_protobuf.Event_pb2 import Event
from foxglove_schemas_protobuf.ImageAnnotations_pb2 import ImageAnnotations
from foxglove_schemas_protobuf.KeyValuePair_pb2 import KeyValuePair
from foxglove_schemas_protobuf.Point2_pb2 import Point2
from foxglove_schemas_protobuf.PointsAnnotation_pb2 import PointsAnnotation
from foxglove_schemas_protobuf.RawImage_pb2 import RawImage
from foxglove_schemas_protobuf.TextAnnotation_pb2 import TextAnnotation
from google.protobuf.timestamp_pb2 import Timestamp
from mcap.well_known import MessageEncoding, SchemaEncoding
from mcap.writer import CompressionType, Writer
from mcap_protobuf.schema import register_schema

from contracts.drives import DriveId, DriveOutputs
from contracts.layout import INFERENCE
from drivelogs.timeline import FileIndex, FrameRecord, load_mask
from segcore.masks import MaskError

SIDECAR_NAME = "sidecar.mcap"  # the last part of DriveOutputs.sidecar
SCENES_TOPIC = "/roadseg/scenes"
STATS_SCHEMA = {
    "title": "roadseg.FrameStatistics",
    "type": "object",
    "properties": {
        "frame_key": {"type": "string"}, "status": {"type": "string"}, "reason_code": {"type": ["string", "null"]},
        "drivable_area_fraction": {"type": ["number", "null"]}, "drivable_ahead_fraction": {"type": ["number", "null"]},
        "class_fractions": {"type": "object", "additionalProperties": {"type": "number"}},
        "vru_classes": {"type": "array", "items": {"type": "string"}},
        "vru_classes_ahead": {"type": "array", "items": {"type": "string"}},
        "vru_ahead_pixels": {"type": ["integer", "null"]}, "latency_ms": {"type": ["integer", "null"]},
    },
}
_BOX_COLOR = Color(r=1.0, g=0.2, b=0.2, a=1.0)
_TEXT_COLOR = Color(r=1.0, g=1.0, b=1.0, a=1.0)
_TEXT_BACKGROUND = Color(r=0.0, g=0.0, b=0.0, a=0.6)


def sidecar_key(drive: DriveId) -> str:
    """The sidecar's key in the inference bucket, next to the drive's videos (``DriveOutputs.sidecar``)."""
    return DriveOutputs(drive).sidecar


def topic(camera: str, kind: str) -> str:
    return f"/roadseg/{camera}/{kind}"


@dataclass
class SidecarInfo:
    key: str
    messages: int = 0
    frames: dict[str, int] = field(default_factory=dict)  # camera -> frames with a stats message (every frame)
    overlays: dict[str, int] = field(default_factory=dict)  # camera -> overlay images written
    class_images: dict[str, int] = field(default_factory=dict)
    boxes: dict[str, int] = field(default_factory=dict)
    scenes: int = 0
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "messages": self.messages, "frames": self.frames, "overlays": self.overlays,
                "class_images": self.class_images, "boxes": self.boxes, "scenes": self.scenes}


def _stamp(time_ns: int) -> Timestamp:
    return Timestamp(seconds=time_ns // 1_000_000_000, nanos=time_ns % 1_000_000_000)


def vru_annotations(record: FrameRecord) -> ImageAnnotations:
    """A closed box and a label per vulnerable road user of the frame (pixel corners of the result's bbox)."""
    stamp = _stamp(record.time_ns)
    message = ImageAnnotations()
    for box in record.vru_boxes or ():
        x0, y0, x1, y1 = (float(box[k]) for k in ("x0", "y0", "x1", "y1"))
        message.points.append(PointsAnnotation(
            timestamp=stamp, type=PointsAnnotation.Type.LINE_LOOP, outline_color=_BOX_COLOR, thickness=2.0,
            points=[Point2(x=x0, y=y0), Point2(x=x1, y=y0), Point2(x=x1, y=y1), Point2(x=x0, y=y1)]))
        message.texts.append(TextAnnotation(
            timestamp=stamp, position=Point2(x=x0, y=y0), text=box["class"], font_size=12.0,
            text_color=_TEXT_COLOR, background_color=_TEXT_BACKGROUND))
    return message


def frame_statistics(record: FrameRecord) -> dict[str, Any]:
    return {"frame_key": record.frame_key, "status": record.status, "reason_code": record.reason_code,
            "drivable_area_fraction": record.drivable_area_fraction,
            "drivable_ahead_fraction": record.drivable_ahead_fraction,
            "class_fractions": dict(record.class_fractions or {}), "vru_classes": list(record.vru_classes or ()),
            "vru_classes_ahead": list(record.vru_classes_ahead or ()), "vru_ahead_pixels": record.vru_ahead_pixels,
            "latency_ms": record.latency_ms}


def scene_event(scene: Mapping[str, Any]) -> Event:
    keys = ("kind", "camera", "frames", "gap_frames", "classes", "first_frame_key", "last_frame_key",
            "peak_frame_key", "peak_vru_ahead_pixels", "min_drivable_ahead_fraction")
    metadata = [KeyValuePair(key=k, value=", ".join(scene[k]) if isinstance(scene[k], list) else
                             "" if scene[k] is None else str(scene[k])) for k in keys if k in scene]
    return Event(start_time=_stamp(scene["start_ns"]), end_time=_stamp(scene["end_ns"]), metadata=metadata)


class _Channels:
    """Channels registered on first use: protobuf ones through mcap-protobuf-support, the statistics as JSON."""

    def __init__(self, writer: Writer) -> None:
        self.writer = writer
        self._schemas: dict[str, int] = {}
        self._channels: dict[str, int] = {}

    def write(self, name: str, message: Any, time_ns: int) -> None:
        if name not in self._channels:
            if isinstance(message, dict):
                schema = self._schemas.get("json")
                if schema is None:
                    schema = self._schemas["json"] = self.writer.register_schema(
                        name=STATS_SCHEMA["title"], encoding=SchemaEncoding.JSONSchema,
                        data=json.dumps(STATS_SCHEMA).encode())
                encoding = MessageEncoding.JSON
            else:
                full_name = type(message).DESCRIPTOR.full_name
                schema = self._schemas.get(full_name)
                if schema is None:
                    schema = self._schemas[full_name] = register_schema(self.writer, type(message))
                encoding = MessageEncoding.Protobuf
            self._channels[name] = self.writer.register_channel(topic=name, message_encoding=encoding,
                                                                schema_id=schema)
        data = (json.dumps(message, sort_keys=True).encode() if isinstance(message, dict)
                else message.SerializeToString())
        self.writer.add_message(channel_id=self._channels[name], log_time=time_ns, publish_time=time_ns, data=data)


def _events(records: Sequence[FrameRecord], scenes: Sequence[Mapping[str, Any]]) -> Iterator[tuple]:
    """Frames and scenes in time order (scenes after the frame they start on)."""
    frames = sorted(((r.time_ns, 0, r.camera, i) for i, r in enumerate(records)))
    starts = sorted(((s["start_ns"], 1, s["camera"], i) for i, s in enumerate(scenes)))
    return heapq.merge(frames, starts)


def write_sidecar(path: Path, drive: DriveId, records: Sequence[FrameRecord], scenes: Sequence[Mapping[str, Any]],
                  overlays: FileIndex, masks: FileIndex) -> SidecarInfo:
    """Write the drive's sidecar MCAP at ``path``; what it holds (and the frames whose files were missing)."""
    info = SidecarInfo(sidecar_key(drive))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as stream:
        writer = Writer(stream, compression=CompressionType.ZSTD)
        writer.start(profile="", library="roadseg drivelogs.sidecar")
        channels = _Channels(writer)
        for time_ns, is_scene, camera, index in _events(records, scenes):
            if is_scene:
                channels.write(SCENES_TOPIC, scene_event(scenes[index]), time_ns)
                info.scenes += 1
                info.messages += 1
                continue
            record = records[index]
            for name in ("frames", "overlays", "class_images", "boxes"):
                getattr(info, name).setdefault(camera, 0)
            channels.write(topic(camera, "stats"), frame_statistics(record), time_ns)
            info.frames[camera] += 1
            info.messages += 1
            if record.status != "processed":
                continue
            stamp = _stamp(time_ns)
            overlay = overlays.find(record.overlay_uri, f"{INFERENCE.results}{record.identity}.overlay.jpg")
            if overlay is None:
                info.warnings.append(f"{record.frame_key}: no overlay for the sidecar")
            else:
                channels.write(topic(camera, "overlay"), CompressedImage(
                    timestamp=stamp, frame_id=camera, data=overlay.read_bytes(), format="jpeg"), time_ns)
                info.overlays[camera] += 1
                info.messages += 1
            mask_path = masks.find(record.mask_uri, f"{INFERENCE.results}{record.identity}.mask.png")
            try:
                mask = load_mask(mask_path, record) if mask_path is not None else None
            except (MaskError, OSError) as exc:
                info.warnings.append(f"{record.frame_key}: mask {mask_path} unusable for the sidecar: {exc}")
                mask = None
            if mask is None:
                if mask_path is None:
                    info.warnings.append(f"{record.frame_key}: no mask for the sidecar")
            else:
                height, width = mask.shape
                channels.write(topic(camera, "class_ids"), RawImage(
                    timestamp=stamp, frame_id=camera, width=width, height=height, encoding="mono8", step=width,
                    data=mask.astype("uint8", copy=False).tobytes()), time_ns)
                info.class_images[camera] += 1
                info.messages += 1
            channels.write(topic(camera, "vru"), vru_annotations(record), time_ns)
            info.boxes[camera] += len(record.vru_boxes or ())
            info.messages += 1
        writer.finish()
    return info
