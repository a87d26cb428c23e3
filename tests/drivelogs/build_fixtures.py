"""A drive's per-frame outputs made the way the postprocess function makes them: class-index masks (numpy, encoded
with segcore.masks.encode_mask_png), result documents from segcore.results.build_result_document over
segcore.masks.mask_statistics, overlays from segcore.masks.overlay_jpeg, failure and quarantine
documents from their builders, laid out like downloads of the inference bucket's results/, failures/ and
quarantine/ prefixes. Frames are 64x32 (Cityscapes classes): sky above, road below with sidewalks at the sides."""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from PIL import Image

from contracts.drives import DRIVE_MANIFEST_SCHEMA_VERSION
from contracts.lambda_env import DEFAULT_KEY_PATTERN
from segcore.classes import CITYSCAPES
from segcore.keys import frame_identity, parse_frame_key
from segcore.masks import Geometry, encode_mask_png, mask_statistics, overlay_jpeg
from segcore.results import build_failure_document, build_quarantine_document, build_result_document

WIDTH, HEIGHT = 64, 32
BUCKET = "roadseg-dev-inference"
ROAD, SIDEWALK, SKY, RIDER, CAR = (CITYSCAPES.index(n) for n in ("road", "sidewalk", "sky", "rider", "car"))
COLORS = [c.color for c in CITYSCAPES.classes]
VRU_MIN_PIXELS = 10


def stamp(moment: datetime) -> str:
    """The extractor's key stamp: 20261203T235959.000000000Z."""
    return moment.strftime("%Y%m%dT%H%M%S") + f".{moment.microsecond * 1000:09d}Z"


def epoch_ns(moment: datetime) -> int:
    return int(moment.replace(microsecond=0).timestamp()) * 1_000_000_000 + moment.microsecond * 1000


def frame_key(vehicle: str, camera: str, moment: datetime, drive: str | None = None) -> str:
    return f"incoming/{vehicle}/{drive + '/' if drive else ''}{camera}/{stamp(moment)}.jpg"


@dataclass(frozen=True)
class Frame:
    """One frame to make. rider: where the rider blob is ("sidewalk", "ahead" or None); kind: what document."""

    camera: str
    moment: datetime
    kind: str = "result"  # result | quarantine | failure
    rider: str | None = None
    car_blocks_road: bool = False
    overlay_size: tuple[int, int] | None = None  # write the overlay at another size (the video scales it)


def scene_mask(rider: str | None, car_blocks_road: bool) -> np.ndarray:
    mask = np.full((HEIGHT, WIDTH), SKY, dtype=np.uint8)
    mask[16:, :] = ROAD
    mask[16:, :8] = SIDEWALK
    mask[16:, 56:] = SIDEWALK
    if car_blocks_road:
        mask[17:, 10:54] = CAR  # the corridor's road is gone: the drivable area ahead collapses
    if rider == "sidewalk":
        mask[18:24, 0:4] = RIDER  # far from the corridor's road
    elif rider == "ahead":
        mask[20:26, 30:34] = RIDER  # on the road in the middle of the corridor
    return mask


def frame_picture(index: int, size: tuple[int, int] = (WIDTH, HEIGHT)) -> bytes:
    rng = np.random.default_rng(index)
    array = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "JPEG", quality=85)
    return buf.getvalue()


def write_json(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))


def write_drive(root: Path, vehicle: str, frames: list[Frame], drive: str | None = None) -> dict[str, Path]:
    """Write the frames' documents, masks and overlays under root/{results,failures,quarantine}; the folders."""
    folders = {name: root / name for name in ("results", "failures", "quarantine")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    pattern = re.compile(DEFAULT_KEY_PATTERN)
    for index, spec in enumerate(frames):
        key = frame_key(vehicle, spec.camera, spec.moment, drive)
        identity = frame_identity(key)
        frame = parse_frame_key(key, pattern)
        uploaded = spec.moment + timedelta(seconds=1)
        if spec.kind == "quarantine":
            doc = build_quarantine_document(source_bucket=BUCKET, source_key=key, code="truncated",
                                            reason="the JPEG ends early", detected_format="jpeg", size_bytes=120,
                                            quarantined_at=uploaded)
            write_json(folders["quarantine"] / f"{key}.reason.json", doc)
            continue
        if spec.kind == "failure":
            doc = build_failure_document(inference_id=f"{index:032x}", source_bucket=BUCKET, frame=frame,
                                         code="inference_failed", reason="the model container crashed",
                                         endpoint_name="roadseg-dev-async", input_location=None,
                                         uploaded_at=uploaded, failed_at=uploaded + timedelta(seconds=2))
            write_json(folders["failures"] / f"{identity}.json", doc)
            continue
        mask = scene_mask(spec.rider, spec.car_blocks_road)
        stats = mask_statistics(mask, CITYSCAPES.names, ignore_index=255, vru_min_pixels=VRU_MIN_PIXELS,
                                geometry=Geometry.whole((WIDTH, HEIGHT)), vru_classes=CITYSCAPES.vulnerable_road_users)
        mask_key, overlay_key = f"results/{identity}.mask.png", f"results/{identity}.overlay.jpg"
        (folders["results"] / identity).parent.mkdir(parents=True, exist_ok=True)
        (folders["results"] / f"{identity}.mask.png").write_bytes(encode_mask_png(mask))
        picture = frame_picture(index, spec.overlay_size or (WIDTH, HEIGHT))
        (folders["results"] / f"{identity}.overlay.jpg").write_bytes(overlay_jpeg(picture, mask, COLORS))
        doc = build_result_document(
            inference_id=f"{index:032x}", mode="async", source_bucket=BUCKET, frame=frame,
            original_size=(WIDTH, HEIGHT), inference_size=(WIDTH, HEIGHT), crop_box=(0, 0, WIDTH, HEIGHT),
            stats=stats, model_package_version="3", endpoint_name="roadseg-dev-async", uploaded_at=uploaded,
            completed_at=uploaded + timedelta(milliseconds=400 + 10 * index),
            mask_uri=f"s3://{BUCKET}/{mask_key}", overlay_uri=f"s3://{BUCKET}/{overlay_key}")
        write_json(folders["results"] / f"{identity}.json", doc)
    return folders


# The main drive: car-7/2026-12-03, crossing midnight UTC, front camera at 10 Hz, rear camera two frames.
T0 = datetime(2026, 12, 3, 23, 59, 59, tzinfo=UTC)
TICK = timedelta(milliseconds=100)


def front_frames() -> list[Frame]:
    """16 front slots at 10 Hz; slot 9 has no document at all (lost before inference).

    rider ahead in 3-6, 8, 10 (7 quarantined, 9 missing: bridged); a car fills the corridor's road in 12-13
    (14 failed, 15 clear: the collapse ends at 13)."""
    frames = []
    for i in range(16):
        if i == 9:
            continue
        kind = {7: "quarantine", 14: "failure"}.get(i, "result")
        rider = "ahead" if i in (3, 4, 5, 6, 8, 10) else "sidewalk" if i in (0, 1, 2, 11) else None
        frames.append(Frame("front", T0 + i * TICK, kind=kind, rider=rider, car_blocks_road=i in (12, 13),
                            overlay_size=(128, 64) if i == 5 else None))
    return frames


def rear_frames() -> list[Frame]:
    return [Frame("rear", T0, rider=None), Frame("rear", T0 + TICK, rider="ahead")]


def manifest(drive_id: str, extracted: dict[str, int], start: datetime, end: datetime) -> dict:
    """A drive manifest whose counts reconcile (contracts.drives.validate_drive_manifest)."""
    cameras = {
        name: {"topic": f"/cam/{name}/image_raw/compressed", "type": "sensor_msgs/msg/CompressedImage",
               "rate_hz": 10.0, "messages": count, "messages_read": count, "messages_lost": 0, "extracted": count,
               "skipped": {}, "out_of_order": 0, "stamps_from_log_time": 0, "first_stamp": stamp(start),
               "last_stamp": stamp(end), "bytes_written": 1000 * count}
        for name, count in extracted.items()}
    total = sum(extracted.values())
    ns = {"start_ns": epoch_ns(start), "end_ns": epoch_ns(end)}
    return {
        "schema_version": DRIVE_MANIFEST_SCHEMA_VERSION, "drive_id": drive_id, "status": "complete",
        "created_at": "2026-12-04T00:10:00.000000Z", "destination": f"s3://{BUCKET}/incoming/",
        "options": {"rate_hz": 10.0, "max_bytes": 20_000_000, "max_pixels": 40_000_000, "cameras": None},
        "logs": [{"name": "drive.mcap", "size_bytes": 12345, "format": "mcap", "library": "mcap 1.2",
                  "messages_read": total, "complete": True}],
        "topics": [{"name": c["topic"], "type": c["type"], "messages": c["messages"], "camera": name}
                   for name, c in cameras.items()],
        "time_range": {"start": stamp(start), "end": stamp(end), **ns},
        "cameras": cameras, "problems": [],
        "totals": {"messages": total, "messages_read": total, "messages_lost": 0, "extracted": total,
                   "skipped": {}, "out_of_order": 0, "bytes_written": 1000 * total},
    }
