"""The rehearsal's drive stage: one generated drive from its log to the drive builder's summary (``make demo``).

1. log: two cameras (front, rear) x a few seconds at a few Hz, frames from the scene generator at the rehearsal's
   size, written as an MCAP file with ROS 2 ``sensor_msgs/msg/CompressedImage`` messages (mcap_ros2's writer, as
   tests/drivelogs/ write theirs) and put under ``drives/<vehicle>/<drive>.mcap``. The front camera's middle
   third shows scenes whose ground truth has a person or rider touching the road inside the ego corridor
   (drivelogs/scenes.py), every other frame none: the builder must find exactly that window;
2. extraction: the DRIVE item as the launcher creates it, then ``drivelogs.extract`` with its S3 sink into the
   inference bucket (frames under ``incoming/`` with the ``drive-id`` metadata; the bucket notification queues them
   for ingest), the manifest under ``drive-outputs/``, and the job's end recorded on the DRIVE item with the
   extraction job's own ``record_share``. Each extracted frame's ground truth is registered with the STAND-IN
   SEGMENTER by its key;
3. ingest -> async endpoint (STAND-IN SEGMENTER) -> postprocess: the rehearsal's own path (``process``), with the
   drives table in the functions' environment, so ingest carries the drive id on and postprocess counts outcomes;
4. counts: the DRIVE item's counters must reconcile (extracted = processed + quarantined + failed, one FRAME item per
   frame) and the completion function's decision (``drives.decide_completion``) must be to build;
5. build: the documents the FRAME items name (``drive_jobs.build_input_keys``, what the builder job downloads) into a
   temporary folder, ``drivelogs.build.build_drive``, its outputs uploaded under ``drive-outputs/``
   (``DriveOutputs``); summary.json, scenes.json, the review videos and one decoded video frame into ``<out>/drive/``.

Every mask, overlay, scene and video frame here comes from the STAND-IN SEGMENTER (ground truth + tile noise).
"""

from __future__ import annotations

import io
import json
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from contracts import drive_table as T
from contracts.drive_timeline import validate_drive_scenes, validate_drive_summary
from contracts.drives import DRIVE_ID_METADATA, DriveId, DriveOutputs
from contracts.layout import INFERENCE
from demo.standin import LABEL, NOTE, TILE, SceneFrame, StandInSegmenter
from drivelogs.build import build_drive
from drivelogs.decode import COMPRESSED_IMAGE_TYPE
from drivelogs.extract import extract_drive
from drivelogs.extractor import CameraConfig, ExtractOptions
from drivelogs.msgdefs import COMPRESSED_IMAGE_MSGDEF
from drivelogs.naming import frame_key
from drivelogs.scenes import VRU_AHEAD, EgoCorridor, ahead_of_vehicle
from drivelogs.sinks import S3Sink
from segcore.classes import DRIVABLE_CLASSES, ClassScheme
from segcore.scenes import generate_scene

DRIVE_ID = DriveId("veh-100", "rehearsal-drive")
DRIVE_START = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
CAMERAS = {"front": "/cam/front/image_raw/compressed", "rear": "/cam/rear/image_raw/compressed"}
CAMERA_OFFSET_NS = {"front": 0, "rear": 20_000_000}  # the rear camera fires 20 ms after the front one
VRU_CAMERA = "front"
PEOPLE = ("person", "rider")  # the classes the planned scene shows touching the road ahead
SEED_TRIES = 60  # candidate scenes per wanted frame before giving up (about half of all scenes qualify)


class DriveError(RuntimeError):
    """The drive stage could not run (e.g. no suitable scenes for the size); the message says why."""


@dataclass(frozen=True)
class DriveOptions:
    seconds: float = 3.0
    hz: float = 5.0
    width: int = 1280
    height: int = 640
    seed: int = 2026
    noise: float = 0.05
    inference_size: tuple[int, int] = (1024, 512)  # the ingest's target size (frames are never upscaled)
    vru_min_pixels: int = 50  # the postprocess function's threshold at the inference size

    @property
    def frames_per_camera(self) -> int:
        return max(3, round(self.seconds * self.hz))


@dataclass(frozen=True)
class PlannedFrame:
    camera: str
    index: int  # per camera
    stamp_ns: int
    seed: int
    vru_ahead: bool  # the ground truth puts a person / rider on the road ahead


@dataclass
class DriveReport:
    drive_id: str
    options: DriveOptions
    planned: list[PlannedFrame] = field(default_factory=list)
    mcap_path: Path | None = None
    mcap_key: str = ""
    mcap_bytes: int = 0
    manifest: dict[str, Any] = field(default_factory=dict)
    frame_keys: list[str] = field(default_factory=list)
    frame_metadata: dict[str, str] = field(default_factory=dict)  # the user metadata every extracted frame has
    path_counts: dict[str, Any] = field(default_factory=dict)  # the ingest / async / postprocess path's counts
    counters: dict[str, int] = field(default_factory=dict)  # the DRIVE item's, at the end
    frame_items: int = 0
    status: str = ""
    completion: dict[str, str] = field(default_factory=dict)
    build_inputs: int = 0
    summary: dict[str, Any] = field(default_factory=dict)
    scenes: dict[str, Any] = field(default_factory=dict)
    uploaded: list[str] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)  # summary, scenes, manifest, video:<camera>, frame
    frame_picture: dict[str, Any] = field(default_factory=dict)  # camera, index, time, scene
    seconds: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def reconciled(self) -> bool:
        c = self.counters
        return bool(c) and c.get(T.EXTRACTED) == sum(c.get(o, 0) for o in T.OUTCOMES) == self.frame_items

    @property
    def vru_scenes(self) -> list[dict[str, Any]]:
        return [s for s in self.scenes.get("scenes", []) if s["kind"] == VRU_AHEAD]

    def document(self, out: Path) -> dict[str, Any]:
        def rel(path: Path | None) -> str | None:
            return str(path.relative_to(out)) if path else None

        return {
            "stand_in": True,
            "note": f"{LABEL}: masks, overlays, scenes and videos of the drive are {NOTE}",
            "drive_id": self.drive_id,
            "log": {"key": self.mcap_key, "bytes": self.mcap_bytes, "local": rel(self.mcap_path),
                    "cameras": sorted(CAMERAS), "seconds": self.options.seconds, "hz": self.options.hz,
                    "frame_size": {"width": self.options.width, "height": self.options.height},
                    "planned_vru_frames": [p.index for p in self.planned if p.vru_ahead]},
            "extraction": {"status": self.manifest.get("status"), "totals": self.manifest.get("totals"),
                           "frame_metadata": self.frame_metadata},
            "path": self.path_counts,
            "drives_table": {"counters": self.counters, "frame_items": self.frame_items, "status": self.status,
                             "reconciled": self.reconciled, "completion": self.completion},
            "summary": self.summary, "scenes": self.scenes.get("scenes", []),
            "uploaded": self.uploaded,
            "files": {name: rel(path) for name, path in self.files.items()},
            "frame_picture": self.frame_picture,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "problems": self.problems,
        }


# ------------------------------------------------------------------------------------------------ 1. the log


def _inference_scale(options: DriveOptions) -> float:
    width, height = options.inference_size
    return min(1.0, width / options.width, height / options.height)


def classify_scene(truth: np.ndarray, scheme: ClassScheme, options: DriveOptions) -> str | None:
    """"vru": a person or rider touches the drivable area inside the ego corridor, with enough pixels to be listed
    in the result; "quiet": no vulnerable road user anywhere near the corridor's road (a margin of three noise
    tiles) and the road ahead clearly drivable; None: neither (not used)."""
    drivable = tuple(scheme.index(n) for n in DRIVABLE_CLASSES if n in scheme.names)
    vru = {scheme.index(n): n for n in scheme.vulnerable_road_users}
    area = _inference_scale(options) ** 2
    listed = [name for index, name in vru.items()
              if int((truth == index).sum()) * area >= 2 * options.vru_min_pixels]
    ahead = ahead_of_vehicle(truth, drivable=drivable, vru=vru, corridor=EgoCorridor(),
                             ignore_index=scheme.ignore_index, allowed_vru=listed)
    if set(ahead.vru_classes) & set(PEOPLE) and ahead.vru_pixels * area >= options.vru_min_pixels:
        return "vru"
    margin = EgoCorridor(touch_px=max(1, round(3 * TILE / _inference_scale(options))))
    near = ahead_of_vehicle(truth, drivable=drivable, vru=vru, corridor=margin, ignore_index=scheme.ignore_index)
    if not near.vru_classes and (near.drivable_fraction or 0.0) >= 0.4:
        return "quiet"
    return None


def plan_drive(options: DriveOptions, scheme: ClassScheme) -> tuple[list[PlannedFrame], dict[int, tuple]]:
    """Frames per camera in time order, each with a scene seed; seed -> (rgb, truth) of the chosen scenes."""
    n = options.frames_per_camera
    window = range(n // 3, n // 3 + max(2, n // 3))
    wanted = {"vru": len(window), "quiet": 2 * n - len(window)}
    found: dict[str, list[int]] = {"vru": [], "quiet": []}
    scenes: dict[int, tuple] = {}
    for attempt in range(SEED_TRIES * 2 * n):
        if all(len(found[k]) >= wanted[k] for k in wanted):
            break
        seed = int(np.random.SeedSequence([options.seed, 13, attempt]).generate_state(1)[0])
        rgb, truth = generate_scene(options.width, options.height, seed)
        kind = classify_scene(truth, scheme, options)
        if kind is not None and len(found[kind]) < wanted[kind]:
            found[kind].append(seed)
            scenes[seed] = (rgb, truth)
    if any(len(found[k]) < wanted[k] for k in wanted):
        raise DriveError(f"found {len(found['vru'])}/{wanted['vru']} scenes with a person or rider on the road ahead "
                         f"and {len(found['quiet'])}/{wanted['quiet']} without at {options.width}x{options.height}: "
                         "use larger frames")
    period_ns = round(1e9 / options.hz)
    start_ns = int(DRIVE_START.timestamp()) * 1_000_000_000
    vru_seeds, quiet_seeds = iter(found["vru"]), iter(found["quiet"])
    planned = []
    for camera in CAMERAS:
        for index in range(n):
            ahead = camera == VRU_CAMERA and index in window
            planned.append(PlannedFrame(camera, index, start_ns + index * period_ns + CAMERA_OFFSET_NS[camera],
                                        next(vru_seeds) if ahead else next(quiet_seeds), ahead))
    return planned, scenes


def _jpeg(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def write_mcap(path: Path, planned: list[PlannedFrame], jpegs: Mapping[int, bytes]) -> Path:
    """The drive log: one CompressedImage message per planned frame, in time order, through mcap_ros2's writer."""
    from mcap.writer import CompressionType
    from mcap_ros2.writer import Writer

    with path.open("wb") as handle:
        writer = Writer(handle, compression=CompressionType.ZSTD)
        schema = writer.register_msgdef(COMPRESSED_IMAGE_TYPE, COMPRESSED_IMAGE_MSGDEF)
        for frame in sorted(planned, key=lambda f: (f.stamp_ns, f.camera)):
            sec, nanosec = divmod(frame.stamp_ns, 1_000_000_000)
            writer.write_message(CAMERAS[frame.camera], schema, {
                "header": {"stamp": {"sec": sec, "nanosec": nanosec}, "frame_id": f"camera_{frame.camera}"},
                "format": "jpeg", "data": jpegs[frame.seed]}, log_time=frame.stamp_ns, publish_time=frame.stamp_ns)
        writer.finish()
    return path


class RecordingSink:
    """The extractor's S3 sink, remembering the keys it wrote (the frames to register with the stand-in)."""

    def __init__(self, inner: S3Sink) -> None:
        self.inner, self.keys = inner, []

    def put_frame(self, key: str, body: bytes, content_type: str, metadata: Mapping[str, str]) -> bool:
        written = self.inner.put_frame(key, body, content_type, metadata)
        if written:
            self.keys.append(key)
        return written

    def describe(self) -> str:
        return self.inner.describe()


# -------------------------------------------------------------------------------------------------- the stage


def rehearse_drive(aws: Any, *, bucket: str, table: str, scheme: ClassScheme, options: DriveOptions,
                   segmenter: StandInSegmenter, process: Callable[[], dict[str, Any]],
                   decide_completion: Callable[..., Any] | None, out: Path,
                   log: Callable[[str], None]) -> DriveReport:
    """Run the drive stage against the local server (``aws``: the rehearsal's clients); ``process`` runs ingest,
    the async endpoint and postprocess over whatever the ingest queue holds and returns their counts."""
    report = DriveReport(str(DRIVE_ID), options)
    folder = out / "drive"
    folder.mkdir(parents=True, exist_ok=True)
    s3, dynamodb = aws("s3"), aws("dynamodb")
    outputs = DriveOutputs(DRIVE_ID)
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        report.seconds[name] = now - clock
        clock = now

    # 1. the log
    report.planned, scenes = plan_drive(options, scheme)
    jpegs = {seed: _jpeg(rgb) for seed, (rgb, _) in scenes.items()}
    report.mcap_path = write_mcap(folder / f"{DRIVE_ID.drive}.mcap", report.planned, jpegs)
    report.mcap_bytes = report.mcap_path.stat().st_size
    report.mcap_key = f"{INFERENCE.drives}{DRIVE_ID.vehicle}/{DRIVE_ID.drive}.mcap"
    s3.put_object(Bucket=bucket, Key=report.mcap_key, Body=report.mcap_path.read_bytes())
    planned_vru = [p.index for p in report.planned if p.vru_ahead]
    log(f"drive {DRIVE_ID}: {len(report.planned)} frames ({len(CAMERAS)} cameras x {options.frames_per_camera} at "
        f"{options.hz:g} Hz, {options.width}x{options.height} JPEG) written as MCAP ({report.mcap_bytes // 1024} KiB) "
        f"to s3://{bucket}/{report.mcap_key}; {VRU_CAMERA} frames {planned_vru[0]}-{planned_vru[-1]} show a "
        "person/rider on the road ahead")
    lap("log")

    # 2. extraction (the launcher's DRIVE item, the job's extract + record_share)
    from drivelogs.job import record_share

    dynamodb.put_item(TableName=table, Item={
        T.PARTITION_KEY: {"S": str(DRIVE_ID)}, T.SORT_KEY: {"S": T.DRIVE_ITEM}, T.STATUS: {"S": T.EXTRACTING},
        T.LOG_KEYS: {"L": [{"S": report.mcap_key}]}, T.EXTRACTION_JOB: {"S": "rehearsal (in-process extraction)"},
        "created_at": {"S": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")}},
        ConditionExpression="attribute_not_exists(#pk)", ExpressionAttributeNames={"#pk": T.PARTITION_KEY})
    with tempfile.TemporaryDirectory(prefix="roadseg-drive-log-") as tmp:
        local = Path(tmp) / Path(report.mcap_key).name
        local.write_bytes(s3.get_object(Bucket=bucket, Key=report.mcap_key)["Body"].read())  # the job's download
        sink = RecordingSink(S3Sink(bucket, client=s3))
        extract_options = ExtractOptions(cameras={topic: CameraConfig(name) for name, topic in CAMERAS.items()})
        report.manifest = extract_drive(DRIVE_ID, [local], sink, extract_options)
    report.frame_keys = sink.keys
    s3.put_object(Bucket=bucket, Key=outputs.manifest, Body=json.dumps(report.manifest, indent=2).encode(),
                  ContentType="application/json")
    record_share(dynamodb, table, str(DRIVE_ID), "algo-1", int(report.manifest["totals"]["extracted"]), 1)
    by_key = {frame_key(DRIVE_ID, p.camera, p.stamp_ns, "jpg"): p for p in report.planned}
    for number, key in enumerate(sink.keys):
        planned = by_key.get(key)
        if planned is None:
            report.problems.append(f"drive: the extractor wrote {key}, which no planned frame has")
            continue
        frame = SceneFrame(key=key, scene_seed=planned.seed, width=options.width, height=options.height,
                           index=10_000 + number)
        segmenter.register(frame, scenes[planned.seed][1])
    seen = [s3.head_object(Bucket=bucket, Key=key)["Metadata"] for key in sink.keys]
    report.frame_metadata = seen[0] if seen and all(m == seen[0] for m in seen) else {}
    if report.frame_metadata.get(DRIVE_ID_METADATA) != str(DRIVE_ID):
        report.problems.append(f"drive: extracted frames lack the {DRIVE_ID_METADATA} metadata ({seen[:1]})")
    totals = report.manifest["totals"]
    log(f"extraction ({report.manifest['status']}): {totals['extracted']} of {totals['messages']} messages -> "
        f"s3://{bucket}/{INFERENCE.incoming}{DRIVE_ID.vehicle}/{DRIVE_ID.drive}/<camera>/<stamp>.jpg with metadata "
        f"{DRIVE_ID_METADATA}={DRIVE_ID}; manifest {outputs.manifest}; DRIVE item extracted={totals['extracted']}")
    lap("extract")

    # 3. ingest -> async endpoint (stand-in) -> postprocess
    report.path_counts = process()
    lap("ingest, async, postprocess")

    # 4. the drives table
    # The DRIVE item and its counter items (COUNTS#nn), summed as the completion function and the CLI sum them.
    from boto3.dynamodb.types import TypeDeserializer

    plain_value = TypeDeserializer().deserialize
    state_items = [{k: plain_value(v) for k, v in found.items()}
                   for found in dynamodb.query(**T.state_query(table, str(DRIVE_ID)))["Items"]]
    drive_item, outcome_counts = T.drive_state(state_items)
    drive_item = drive_item or {}
    report.counters = {T.EXTRACTED: int(drive_item.get(T.EXTRACTED) or 0), **outcome_counts}
    report.status = str(drive_item.get(T.STATUS, ""))
    frame_documents = []
    for page in dynamodb.get_paginator("query").paginate(
            TableName=table, KeyConditionExpression="#pk = :drive AND begins_with(#item, :frame)",
            ExpressionAttributeNames={"#pk": T.PARTITION_KEY, "#item": T.SORT_KEY},
            ExpressionAttributeValues={":drive": {"S": str(DRIVE_ID)}, ":frame": {"S": T.FRAME_ITEM_PREFIX}},
            ConsistentRead=True):
        for frame_item in page.get("Items", []):
            documents = frame_item.get(T.DOCUMENTS, {}).get("M", {})
            frame_documents.append({role: value["S"] for role, value in documents.items() if "S" in value})
    report.frame_items = len(frame_documents)
    if decide_completion is not None:
        decision = decide_completion(drive_item, drive_item, outcome_counts)  # as on the DRIVE item's last image
        report.completion = {"action": decision.action, "reason": decision.reason}
    c = report.counters
    log(f"drives table {table}: extracted {c[T.EXTRACTED]} = processed {c[T.PROCESSED]} + quarantined "
        f"{c[T.QUARANTINED]} + failed {c[T.FAILED]} ({report.frame_items} FRAME items, status {report.status})"
        + (f"; completion function: {report.completion['action']} ({report.completion['reason']})"
           if report.completion else ""))
    if not report.reconciled:
        report.problems.append(f"drive counts do not reconcile: {c} with {report.frame_items} FRAME items")
    if c[T.EXTRACTED] != len(report.planned):
        report.problems.append(f"drive: {c[T.EXTRACTED]} frames extracted of {len(report.planned)} written")
    if report.completion and report.completion["action"] != "claim":
        report.problems.append(f"drive: the completion function would not build ({report.completion})")
    lap("counts")

    # 5. build, upload, copy
    from roadseg_lambda.drive_jobs import build_input_keys

    keys = build_input_keys(DRIVE_ID, frame_documents)
    report.build_inputs = len(keys)
    with tempfile.TemporaryDirectory(prefix="roadseg-drive-build-") as tmp:
        docs, built = Path(tmp) / "documents", Path(tmp) / "drive-outputs"
        for key in keys:  # what SageMaker downloads from the builder's input manifest file
            target = docs / key
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        for prefix in (INFERENCE.results, INFERENCE.failures, INFERENCE.quarantine):
            (docs / prefix).mkdir(parents=True, exist_ok=True)  # as drivelogs.job build does
        summary = build_drive(DRIVE_ID, results=docs / INFERENCE.results, failures=docs / INFERENCE.failures,
                              quarantine=docs / INFERENCE.quarantine, masks=docs, overlays=docs,
                              manifest_path=docs / outputs.manifest, output=built, scheme=scheme)
        report.summary = validate_drive_summary(summary)
        local = built / outputs.prefix[len(INFERENCE.drive_outputs):]
        report.scenes = validate_drive_scenes(json.loads((local / "scenes.json").read_text()))
        for path in sorted(p for p in built.rglob("*") if p.is_file()):
            key = INFERENCE.drive_outputs + path.relative_to(built).as_posix()
            s3.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())
            report.uploaded.append(key)
        for name in ("summary.json", "scenes.json"):
            shutil.copyfile(local / name, folder / name)
            report.files[name.split(".")[0]] = folder / name
        (folder / "videos").mkdir(exist_ok=True)
        for camera, video in sorted(report.summary["videos"].items()):
            if video:
                target = folder / "videos" / f"{camera}.mp4"
                shutil.copyfile(local / "videos" / f"{camera}.mp4", target)
                report.files[f"video:{camera}"] = target
        sidecar = built / outputs.sidecar[len(INFERENCE.drive_outputs):]  # build_drive writes it by default
        if sidecar.is_file():
            shutil.copyfile(sidecar, folder / sidecar.name)
            report.files["sidecar"] = folder / sidecar.name
    manifest_copy = folder / "manifest.json"
    manifest_copy.write_text(json.dumps(report.manifest, indent=2))
    report.files["manifest"] = manifest_copy
    lap("build")

    _frame_picture(report, folder)
    (folder / "README.txt").write_text(
        f"roadseg local rehearsal: drive {DRIVE_ID} (make demo), everything from moto on 127.0.0.1.\n"
        f"Masks, overlays, scenes, summary and videos here are STAND-IN output ({NOTE}).\n"
        f"{DRIVE_ID.drive}.mcap   the generated drive log (ROS 2 CompressedImage, 2 cameras), as put under drives/\n"
        "manifest.json   the extraction's manifest; summary.json, scenes.json: the drive builder's documents\n"
        "videos/         the review videos (overlays in time order); scene-frame.png: one decoded video frame\n"
        "sidecar.mcap    the results on the log's clock (overlays, class ids, VRU boxes, stats, scenes): open it\n"
        "                beside the drive's MCAP in Foxglove or Rerun\n")
    lap("outputs")
    _check(report)
    found = report.summary["scenes"]["counts"]
    log(f"drive builder: {report.summary['totals']['total']} frames, scenes "
        + ", ".join(f"{k} {v}" for k, v in found.items())
        + f"; {len(report.uploaded)} objects under s3://{bucket}/{INFERENCE.drive_outputs}; "
        f"copies and {report.files.get('frame', Path('-')).name} in {folder}/ ({LABEL} masks)")
    side = report.summary.get("sidecar") or {}
    log(f"sidecar {side.get('key', '-')}: {side.get('messages', 0)} messages, overlays "
        + ", ".join(f"{c} {n}" for c, n in sorted(side.get("overlays", {}).items()))
        + f", VRU boxes {sum(side.get('boxes', {}).values())}, scenes {side.get('scenes', 0)}; "
        f"copy in {folder}/sidecar.mcap")
    return report


def _frame_picture(report: DriveReport, folder: Path) -> None:
    """The review video's frame at the top scene's peak (else the first frame), decoded with PyAV, as PNG."""
    import av

    from demo import render

    scene = next(iter(report.vru_scenes), None)
    camera = scene["camera"] if scene else VRU_CAMERA
    video = report.files.get(f"video:{camera}")
    if video is None:
        report.problems.append(f"drive: no review video for camera {camera}")
        return
    frames = sorted(p.stamp_ns for p in report.planned if p.camera == camera)
    peak = scene["peak_frame_key"] if scene else None
    wanted = next((i for i, p in enumerate(sorted((p for p in report.planned if p.camera == camera),
                                                    key=lambda p: p.stamp_ns))
                   if peak == frame_key(DRIVE_ID, camera, p.stamp_ns, "jpg")), 0)
    picture = None
    with av.open(str(video)) as container:
        for index, decoded in enumerate(container.decode(video=0)):
            if index == wanted:
                picture = decoded.to_image()
                break
    if picture is None:
        report.problems.append(f"drive: {video.name} has no frame {wanted}")
        return
    title = (f"{video.name} frame {wanted} ({_clock(frames[wanted])}): "
             + (f"{', '.join(scene['classes'])} in the drivable area ahead" if scene else "no scene found"))
    target = render.video_frame(picture, folder / "scene-frame.png", title=title, noise=report.options.noise)
    report.files["frame"] = target
    report.frame_picture = {"camera": camera, "index": wanted, "time": _clock(frames[wanted]),
                            "frame_key": peak, "size": list(picture.size)}


def _clock(stamp_ns: int) -> str:
    seconds, nanos = divmod(stamp_ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%H:%M:%S") + f".{nanos // 1_000_000:03d}"


def _check(report: DriveReport) -> None:
    totals = report.summary.get("totals", {})
    if totals.get("total") != len(report.planned):
        report.problems.append(f"drive summary counts {totals.get('total')} frames, {len(report.planned)} written")
    planned = {frame_key(DRIVE_ID, p.camera, p.stamp_ns, "jpg") for p in report.planned if p.vru_ahead}
    if not any(s["camera"] == VRU_CAMERA and ({s["first_frame_key"], s["last_frame_key"]} & planned)
               for s in report.vru_scenes):
        report.problems.append(f"drive: no {VRU_AHEAD} scene on {VRU_CAMERA} where the person/rider was planned")
    if "frame" not in report.files:
        report.problems.append("drive: no review video frame picture")
    side = report.summary.get("sidecar") or {}
    if "sidecar" not in report.files:
        report.problems.append("drive: the builder wrote no sidecar MCAP")
    elif side.get("overlays") != {c: f["processed"] for c, f in report.summary.get("frames", {}).items()}:
        report.problems.append(f"drive: the sidecar holds overlays {side.get('overlays')}, not one per processed frame")
