"""From results to a drive: the timeline, scenes, review videos and summary of one drive, from local folders.

Run when every frame of a drive has been processed, quarantined or failed (the SageMaker Processing job downloads the
drive's documents, masks and overlays into local folders and uploads ``--output``)::

    python -m drivelogs.build --drive-id car-7/2026-12-03 --results in/results --failures in/failures \\
        --quarantine in/quarantine --masks in/results --overlays in/results --manifest in/manifest.json \\
        --output out/ [--scheme cityscapes] [--fps 10] [--corridor 0.55,1,0.4,0.6,0.15,0.85]

``--output`` is the local copy of the inference bucket's ``drive-outputs/`` prefix (upload it there): the keys
written are those of contracts.drives.DriveOutputs (``<vehicle>/<drive>/timeline.parquet``, ``scenes.json``,
``summary.json``, ``videos/<camera>.mp4``,
``sidecar.mcap`` of drivelogs/sidecar.py) and the timeline table's partitions (``timeline/vehicle=.../camera=.../
date=.../part-<drive>.parquet``, contracts.drive_timeline). The manifest is optional: without it the frame rates
come from the frame times alone and the summary says so. Frames of the drive are the documents of its vehicle,
within the manifest's time range when there is one.

The timeline has one column per frame signal (contracts/signals.py): from the result documents, their class
fractions where a document carries no output signals, and label flicker between consecutive masks of a camera
(drivelogs/timeline.py).

The frame rate of a camera (scenes' missing frames, the video): ``--fps``, else the median interval between its
frames, else the manifest's extraction rate, else 1 frame per second.

Exit codes: 0 built, 2 bad input (the message names the file and key), 1 anything else.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from contracts.documents import DocumentError
from contracts.drive_timeline import (
    DRIVE_SCENES_SCHEMA_VERSION,
    DRIVE_SUMMARY_SCHEMA_VERSION,
    FRAME_STATUSES,
    SCENE_KINDS,
    validate_drive_scenes,
    validate_drive_summary,
)
from contracts.drives import DriveId, DriveKeyError, DriveOutputs, validate_drive_manifest
from contracts.layout import INFERENCE
from drivelogs.scenes import (
    EgoCorridor,
    SceneParameters,
    find_scenes,
    frame_interval_ns,
    iso_ns,
    missing_before,
    rank_scenes,
)
from drivelogs.timeline import (
    BuildError,
    ClassIndices,
    FileIndex,
    FrameRecord,
    frame_records,
    load_documents,
    measure_ahead,
    write_timeline,
)
from segcore.classes import DRIVABLE_CLASSES, ClassScheme, add_scheme_arguments, scheme_from_arguments

DEFAULT_FPS = 1.0


def read_manifest(path: Path | None, drive: DriveId) -> tuple[dict[str, Any] | None, list[str]]:
    """The drive manifest when it is there, valid and this drive's; otherwise None and why (never raises)."""
    if path is None:
        return None, ["no manifest given: frame rates from the frame times only, extraction counts unknown"]
    try:
        doc = validate_drive_manifest(json.loads(path.read_text()))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, DocumentError) as exc:
        return None, [f"manifest {path} not used: {exc}"]
    if doc["drive_id"] != str(drive):
        return None, [f"manifest {path} not used: it is drive {doc['drive_id']}'s, not {drive}'s"]
    return doc, []


def class_indices(scheme: ClassScheme) -> ClassIndices:
    return ClassIndices(
        drivable=tuple(scheme.index(n) for n in DRIVABLE_CLASSES if n in scheme.names),
        vru={scheme.index(n): n for n in scheme.vulnerable_road_users},
        ignore_index=scheme.ignore_index,
        names=scheme.names,
    )


def camera_intervals(records: Sequence[FrameRecord], fps: float | None,
                     manifest: Mapping[str, Any] | None) -> dict[str, int | None]:
    """Camera -> frame interval in ns (``--fps``, the median interval, the manifest's rate; None: unknown)."""
    manifest_rate = ((manifest or {}).get("options") or {}).get("rate_hz")
    intervals: dict[str, int | None] = {}
    for camera in sorted({r.camera for r in records}):
        if fps:
            intervals[camera] = round(1e9 / fps)
            continue
        interval = frame_interval_ns([r.time_ns for r in records if r.camera == camera])
        if interval is None and manifest_rate:
            interval = round(1e9 / manifest_rate)
        intervals[camera] = interval
    return intervals


def _latency(values: Sequence[int]) -> dict[str, float] | None:
    if not values:
        return None
    ordered = sorted(values)

    def rank(p: float) -> float:  # nearest rank
        return float(ordered[max(0, min(len(ordered) - 1, round(p * len(ordered) + 0.5) - 1))])

    return {"count": len(ordered), "mean": round(sum(ordered) / len(ordered), 3), "p50": rank(0.5),
            "p90": rank(0.9), "max": float(ordered[-1])}


def _mean(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(sum(known) / len(known), 6) if known else None


def build_videos(records: Sequence[FrameRecord], intervals: Mapping[str, int | None], overlays: FileIndex,
                 outputs: DriveOutputs, local: Any, fps: float | None) -> tuple[dict[str, Any], list[str]]:
    from drivelogs.video import VideoSlot, write_review_video

    videos: dict[str, Any] = {}
    warnings = []
    for camera, interval in intervals.items():
        slots: list[VideoSlot] = []
        previous = None
        for record in (r for r in records if r.camera == camera):
            if previous is not None:
                for index in range(missing_before(previous, record.time_ns, interval)):
                    slots.append(VideoSlot(previous + (index + 1) * interval, None, "no frame"))
            previous = record.time_ns
            if record.status == "processed":
                path = overlays.find(record.overlay_uri, f"{INFERENCE.results}{record.identity}.overlay.jpg")
                slots.append(VideoSlot(record.time_ns, path, "" if path else "processed: overlay missing"))
            else:
                slots.append(VideoSlot(record.time_ns, None, f"{record.status}: {record.reason_code}"))
        rate = fps or (1e9 / interval if interval else DEFAULT_FPS)
        info = write_review_video(local(outputs.video(camera)), slots, rate)
        if info is None:
            warnings.append(f"camera {camera}: no overlays, no review video")
            videos[camera] = None
        else:
            videos[camera] = {"key": outputs.video(camera), "codec": info.codec, "fps": info.fps,
                              "frames": info.frames, "width": info.width, "height": info.height}
    return videos, warnings


def summarise(drive: DriveId, scheme: ClassScheme, records: Sequence[FrameRecord], scenes: Sequence[dict],
              intervals: Mapping[str, int | None], videos: Mapping[str, Any], table_keys: Sequence[str],
              manifest: Mapping[str, Any] | None, warnings: Sequence[str], top: int) -> dict[str, Any]:
    """The summary document (pure)."""
    outputs = DriveOutputs(drive)
    cameras = sorted({r.camera for r in records})
    frames, reasons, missing, vru_frames = {}, {}, {}, {}
    for camera in cameras:
        mine = [r for r in records if r.camera == camera]
        counts = {status: sum(r.status == status for r in mine) for status in FRAME_STATUSES}
        frames[camera] = {**counts, "total": len(mine)}
        codes: dict[str, int] = {}
        for r in mine:
            if r.reason_code:
                codes[r.reason_code] = codes.get(r.reason_code, 0) + 1
        reasons[camera] = codes
        missing[camera] = sum(missing_before(a.time_ns, b.time_ns, intervals[camera])
                              for a, b in zip(mine, mine[1:], strict=False))
        by_class: dict[str, int] = {}
        ahead_by_class: dict[str, int] = {}
        for r in mine:
            for name in r.vru_classes or ():
                by_class[name] = by_class.get(name, 0) + 1
            for name in r.vru_classes_ahead or ():
                ahead_by_class[name] = ahead_by_class.get(name, 0) + 1
        vru_frames[camera] = {"present": sum(bool(r.vru_classes) for r in mine),
                              "ahead": sum(bool(r.vru_classes_ahead) for r in mine),
                              "by_class": by_class, "ahead_by_class": ahead_by_class}
    processed = [r for r in records if r.status == "processed"]
    class_names = sorted({name for r in processed for name in r.class_fractions or {}})
    means = {name: round(sum((r.class_fractions or {}).get(name, 0.0) for r in processed) / len(processed), 6)
             for name in class_names}
    start, end = min(r.time_ns for r in records), max(r.time_ns for r in records)
    return {
        "schema_version": DRIVE_SUMMARY_SCHEMA_VERSION,
        "drive_id": str(drive),
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "scheme": scheme.name,
        "cameras": cameras,
        "time_range": {"start": iso_ns(start), "end": iso_ns(end), "start_ns": start, "end_ns": end,
                       "duration_s": round((end - start) / 1e9, 6)},
        "frames": frames,
        "totals": {**{s: sum(f[s] for f in frames.values()) for s in FRAME_STATUSES}, "total": len(records)},
        "reasons": reasons,
        "missing_frames": missing,
        "frame_rate_hz": {c: (round(1e9 / i, 6) if i else None) for c, i in intervals.items()},
        "latency_ms": _latency([r.latency_ms for r in processed if r.latency_ms is not None]),
        "class_fraction_means": means,
        "drivable_area_fraction_mean": _mean([r.drivable_area_fraction for r in processed]),
        "drivable_ahead_fraction_mean": _mean([r.drivable_ahead_fraction for r in processed]),
        "vru_frames": vru_frames,
        "scenes": {"counts": {kind: sum(s["kind"] == kind for s in scenes) for kind in SCENE_KINDS},
                   "top": rank_scenes(scenes, top)},
        "videos": dict(videos),
        "outputs": {"timeline": outputs.timeline, "timeline_table": list(table_keys), "scenes": outputs.scenes,
                    "summary": outputs.summary},
        "manifest": None if manifest is None else {
            "status": manifest["status"],
            "extracted": {c: v["extracted"] for c, v in manifest["cameras"].items()}},
        "warnings": list(warnings),
    }


def build_drive(drive: DriveId, *, results: Path, output: Path, failures: Path | None = None,
                quarantine: Path | None = None, masks: Path | None = None, overlays: Path | None = None,
                manifest_path: Path | None = None, scheme: ClassScheme, parameters: SceneParameters | None = None,
                fps: float | None = None, video: bool = True, top_scenes: int = 5,
                sidecar: bool = True) -> dict[str, Any]:
    """Build every output of ``drive`` under ``output`` (the local ``drive-outputs/``); the summary document."""
    parameters = parameters or SceneParameters()
    outputs = DriveOutputs(drive)

    def local(key: str) -> Path:
        return output / key[len(INFERENCE.drive_outputs):]

    # fetch
    manifest, warnings = read_manifest(manifest_path, drive)
    folders = [p for p in (results, failures, quarantine) if p is not None]
    documents = load_documents(folders)
    if not documents:
        raise BuildError(f"no result, failure or quarantine documents (*.json) under {', '.join(map(str, folders))}")
    time_range = None
    if manifest and manifest.get("time_range"):
        time_range = (manifest["time_range"]["start_ns"], manifest["time_range"]["end_ns"])
    attribution = frame_records(drive, documents, time_range)
    if not attribution.records:
        raise BuildError(f"none of the {len(documents)} documents under {', '.join(map(str, folders))} is a frame of "
                         f"drive {drive} (left out: {attribution.excluded})")
    warnings += [f"{count} documents left out: {why}" for why, count in sorted(attribution.excluded.items())]
    if attribution.superseded:
        warnings.append(f"{attribution.superseded} frames had more than one document: the processed / newest kept")
    unknown = sorted({n for r in attribution.records for n in r.class_fractions or {}} - set(scheme.names))
    if unknown:
        warnings.append(f"classes {unknown} of the results are not in scheme {scheme.name}: wrong --scheme?")

    # decide
    records, mask_warnings = measure_ahead(attribution.records, FileIndex(masks or results), class_indices(scheme),
                                           parameters.corridor)
    warnings += mask_warnings[:20] + ([f"... and {len(mask_warnings) - 20} more mask problems"]
                                      if len(mask_warnings) > 20 else [])
    if manifest:
        for camera, facts in sorted(manifest["cameras"].items()):
            seen = sum(r.camera == camera for r in records)
            if seen < facts["extracted"]:
                warnings.append(f"camera {camera}: {facts['extracted']} frames extracted, {seen} have a document")
    intervals = camera_intervals(records, fps, manifest)
    scenes = find_scenes([r.state() for r in records], parameters, intervals)
    scenes_doc = validate_drive_scenes({"schema_version": DRIVE_SCENES_SCHEMA_VERSION, "drive_id": str(drive),
                                        "parameters": parameters.to_dict(), "scenes": scenes})

    # act
    table_keys = write_timeline(records, drive, local(outputs.timeline), output)
    videos: dict[str, Any] = {}
    if video:
        videos, video_warnings = build_videos(records, intervals, FileIndex(overlays or results), outputs, local,
                                              fps)
        warnings += video_warnings
    sidecar_info = None
    if sidecar:
        from drivelogs.sidecar import sidecar_key, write_sidecar

        sidecar_info = write_sidecar(local(sidecar_key(drive)), drive, records, scenes, FileIndex(overlays or results),
                                     FileIndex(masks or results))
        warnings += sidecar_info.warnings[:20] + ([f"... and {len(sidecar_info.warnings) - 20} more sidecar problems"]
                                                  if len(sidecar_info.warnings) > 20 else [])
    summary = summarise(drive, scheme, records, scenes, intervals, videos, table_keys, manifest, warnings,
                        top_scenes)
    summary["sidecar"] = sidecar_info.to_dict() if sidecar_info else None
    summary = validate_drive_summary(summary)
    for key, doc in ((outputs.scenes, scenes_doc), (outputs.summary, summary)):
        local(key).parent.mkdir(parents=True, exist_ok=True)
        local(key).write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    return summary


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m drivelogs.build", description=__doc__.split("\n\n")[0],
                                     epilog="example: python -m drivelogs.build --drive-id car-7/2026-12-03 "
                                            "--results in/results --output out/")
    parser.add_argument("--drive-id", required=True, help="<vehicle>/<drive>")
    parser.add_argument("--results", type=Path, required=True, help="folder with the result documents (*.json)")
    parser.add_argument("--failures", type=Path, help="folder with the failure documents")
    parser.add_argument("--quarantine", type=Path, help="folder with the quarantine reason documents")
    parser.add_argument("--masks", type=Path, help="folder with the mask PNGs (default: --results)")
    parser.add_argument("--overlays", type=Path, help="folder with the overlay JPEGs (default: --results)")
    parser.add_argument("--manifest", type=Path, help="the drive manifest (optional)")
    parser.add_argument("--output", type=Path, required=True, help="local copy of the bucket's drive-outputs/")
    add_scheme_arguments(parser)
    parser.add_argument("--corridor", type=EgoCorridor.parse, default=None,
                        help="ego corridor top,bottom,top_left,top_right,bottom_left,bottom_right (fractions)")
    parser.add_argument("--touch-px", type=int, default=EgoCorridor.touch_px)
    parser.add_argument("--collapse-below", type=float, default=SceneParameters.collapse_below)
    parser.add_argument("--max-gap-frames", type=int, default=SceneParameters.max_gap_frames)
    parser.add_argument("--min-duration", type=float, default=SceneParameters.min_duration_s, help="seconds")
    parser.add_argument("--min-frames", type=int, default=SceneParameters.min_frames)
    parser.add_argument("--fps", type=float, help="frame rate of every camera (default: from the frame times)")
    parser.add_argument("--top-scenes", type=int, default=5)
    parser.add_argument("--no-video", action="store_true")
    parser.add_argument("--no-sidecar", action="store_true", help="no sidecar MCAP (drivelogs/sidecar.py)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except argparse.ArgumentTypeError as exc:  # pragma: no cover - argparse reports these itself
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        drive = DriveId.parse(args.drive_id)
        scheme = scheme_from_arguments(args)
        corridor = args.corridor or EgoCorridor()
        corridor = EgoCorridor(**{**corridor.to_dict(), "touch_px": args.touch_px})
        parameters = SceneParameters(corridor=corridor, collapse_below=args.collapse_below,
                                     max_gap_frames=args.max_gap_frames, min_duration_s=args.min_duration,
                                     min_frames=args.min_frames)
        if args.fps is not None and args.fps <= 0:
            raise ValueError(f"--fps must be positive, got {args.fps}")
        summary = build_drive(drive, results=args.results, output=args.output, failures=args.failures,
                              quarantine=args.quarantine, masks=args.masks, overlays=args.overlays,
                              manifest_path=args.manifest, scheme=scheme, parameters=parameters, fps=args.fps,
                              video=not args.no_video, top_scenes=args.top_scenes, sidecar=not args.no_sidecar)
    except (BuildError, DriveKeyError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    totals = summary["totals"]
    print(f"drive {summary['drive_id']}: {totals['total']} frames ({totals['processed']} processed, "
          f"{totals['quarantined']} quarantined, {totals['failed']} failed) on {', '.join(summary['cameras'])}; "
          f"scenes {summary['scenes']['counts']}; outputs under {args.output}")
    for warning in summary["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
