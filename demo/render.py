"""The rehearsal's printed summary, its JSON twin, and the frame | overlay pictures (labelled stand-in output)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont
from PIL.PngImagePlugin import PngInfo

from demo.standin import LABEL, NOTE, TILE
from roadseg.output import format_table

# The rehearsal hands its Report (demo/report.py) to these functions; rendering stays below it and does
# not import it, so the two modules do not depend on each other.
Report = Any

PANEL_WIDTH = 640
README_PICTURE_LIMIT = 300 * 1024
BAR = (24, 26, 30)
TEXT = (235, 235, 235)
WARN = (255, 196, 0)


def _font(size: int) -> Any:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def side_by_side(frame: Image.Image, overlay: Image.Image, target: Path, *, noise: float, title: str) -> Path:
    """``frame | overlay`` with a title bar and a caption that says the overlay is stand-in output."""
    width = min(PANEL_WIDTH, frame.width)
    height = round(frame.height * width / frame.width)
    left = frame.convert("RGB").resize((width, height), Image.Resampling.BILINEAR)
    right = overlay.convert("RGB").resize((width, height), Image.Resampling.BILINEAR)
    gap, bar = 4, 22
    canvas = Image.new("RGB", (2 * width + gap, height + 2 * bar), BAR)
    canvas.paste(left, (0, bar))
    canvas.paste(right, (width + gap, bar))
    draw = ImageDraw.Draw(canvas)
    font = _font(13)
    draw.text((6, 4), f"frame as the endpoint receives it: {title}", fill=TEXT, font=font)
    draw.text((width + gap + 6, 4), "overlay written by postprocess.handler", fill=TEXT, font=font)
    draw.text((6, height + bar + 4),
              f"{LABEL} output: scene ground truth with {noise:.0%} of {TILE}x{TILE} tiles perturbed - "
              "not a model prediction (roadseg local rehearsal)", fill=WARN, font=font)
    info = PngInfo()
    info.add_text("Description", f"roadseg local rehearsal: {NOTE}")
    target.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(target, format="PNG", pnginfo=info)
    return target


def video_frame(picture: Image.Image, target: Path, *, title: str, noise: float) -> Path:
    """One decoded review-video frame with a title bar and a caption that says the overlay is stand-in output."""
    width = max(PANEL_WIDTH, min(PANEL_WIDTH * 2, picture.width))  # room for the caption on small frames
    height = round(picture.height * width / picture.width)
    bar = 22
    canvas = Image.new("RGB", (width, height + 2 * bar), BAR)
    canvas.paste(picture.convert("RGB").resize((width, height), Image.Resampling.BILINEAR), (0, bar))
    draw = ImageDraw.Draw(canvas)
    font = _font(13)
    draw.text((6, 4), f"drive review video (drive builder): {title}", fill=TEXT, font=font)
    draw.text((6, height + bar + 4), f"{LABEL} output: scene ground truth with {noise:.0%} of {TILE}x{TILE} tiles "
              "perturbed - not a model prediction (roadseg local rehearsal)", fill=WARN, font=font)
    info = PngInfo()
    info.add_text("Description", f"roadseg local rehearsal, drive review video frame: {NOTE}")
    target.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(target, format="PNG", pnginfo=info)
    return target


def readme_picture(source: Path, target: Path) -> Path:
    """A commit-sized copy (palette PNG under 300 KB) of one side-by-side picture for the README."""
    image = Image.open(source).convert("RGB")
    info = PngInfo()
    info.add_text("Description", f"roadseg local rehearsal (make demo): {NOTE}")
    target.parent.mkdir(parents=True, exist_ok=True)
    for colors, scale in ((256, 1.0), (128, 1.0), (128, 0.75), (64, 0.5)):
        sized = image if scale == 1.0 else image.resize((round(image.width * scale), round(image.height * scale)),
                                                        Image.Resampling.BILINEAR)
        palette = sized.quantize(colors=colors, method=Image.Quantize.FASTOCTREE)  # median cut speckles flat areas
        palette.save(target, format="PNG", optimize=True, pnginfo=info)
        if target.stat().st_size <= README_PICTURE_LIMIT:
            break
    return target


# ----------------------------------------------------------------------------------------- summary


def _pct(value: Any) -> str:
    return f"{100 * value:.1f}%" if isinstance(value, (int, float)) else "-"


def _indent(lines: Sequence[str], by: str = "  ") -> list[str]:
    return [by + line for line in lines]


def class_table(report: Report) -> list[tuple[str, int, float]]:
    """(class, frames where it was found, mean pixel fraction over processed frames), most frequent first."""
    processed = [f.result for f in report.frames if f.result]
    totals: dict[str, tuple[int, float]] = {}
    for result in processed:
        for name, fraction in (result.get("class_fractions") or {}).items():
            count, total = totals.get(name, (0, 0.0))
            totals[name] = (count + 1, total + fraction)
    rows = [(name, count, total / max(1, len(processed))) for name, (count, total) in totals.items()]
    return sorted(rows, key=lambda r: (-r[2], r[0]))


def format_summary(report: Report) -> str:
    o = report.options
    good, broken = report.count("good"), report.count("broken")
    lines = [
        f"roadseg local rehearsal: env {report.env} (prefix {report.prefix}, region {report.region}), "
        f"moto server {report.endpoint_url or '-'} "
        f"({'STILL RUNNING' if report.server_running_after else 'stopped'})",
        f"{LABEL}: every mask is scene ground truth with {o.noise:.0%} of {TILE}x{TILE} tiles perturbed - "
        "stand-in output, not a model",
        "",
        "Frames",
        f"  in           {good + broken:3d}  ({good} camera frames {o.width}x{o.height}, JPEG and PNG, + {broken} "
        "broken files)",
        f"  submitted    {report.async_invocations:3d}  async invocations by ingest.handler "
        f"({report.ingest_batches} SQS batch(es), {report.ingest_item_failures} item failures, "
        f"{report.test_events} s3:TestEvent ignored)",
        f"  processed    {report.count(status='processed'):3d}  result JSON + overlay by postprocess.handler "
        f"({', '.join(f'{k} {v}' for k, v in sorted(report.postprocess_outcomes.items())) or 'none'})",
        f"  quarantined  {report.count(status='quarantined'):3d}  copy + .reason.json under quarantine/",
    ]
    quarantined = [f for f in report.frames if f.status == "quarantined"]
    if quarantined:
        rows = [[f.key, (f.reason or {}).get("code", "?"), (f.reason or {}).get("reason", "")] for f in quarantined]
        lines += _indent(format_table(["KEY", "CODE", "REASON"], rows), "    ")
    lines.append(f"  failed       {report.count(status='failed'):3d}")
    carried, finished = report.version_ids_carried
    lines.append(f"  versioned    {carried:3d}  of {finished} documents carry the upload's "
                 "VersionId (versioned bucket): quarantine source_version_id, result inference_id derived from it")
    pending = [f.key for f in report.frames if f.status == "pending"]
    if pending:
        lines.append(f"  NOT FINISHED {len(pending):3d}  {', '.join(pending)}")

    classes = class_table(report)
    if classes:
        lines += ["", f"Classes found in {report.count(status='processed')} processed frames (stand-in masks)"]
        rows = [[name, f"{count}/{report.count(status='processed')}", _pct(mean)] for name, count, mean in classes]
        lines += _indent(format_table(["CLASS", "FRAMES", "MEAN AREA"], rows))
        rows = []
        for f in report.frames:
            if not f.result:
                continue
            vru = f.result["vulnerable_road_users"]
            size = f.result["inference_size"]
            rows.append([f.key, f"{size['width']}x{size['height']}", _pct(f.result.get("drivable_area_fraction")),
                         ", ".join(sorted({o["class"] for o in vru["objects"]})) or "-",
                         str(len(f.result["class_fractions"]))])
        lines += ["", "Per frame"]
        lines += _indent(format_table(["FRAME KEY", "INFERENCE", "ROAD", "VULNERABLE ROAD USERS", "CLASSES"], rows))
    rt = report.realtime
    if rt:
        summary = rt.get("summary") or {}
        lines += ["", f"Real-time front: HTTP {rt.get('status_code')} for {rt.get('key')} (drivable "
                      f"{_pct(summary.get('drivable_area_fraction'))}, "
                      f"{len(summary.get('class_fractions') or {})} classes, vulnerable road users "
                      f"{'present' if (summary.get('vulnerable_road_users') or {}).get('present') else 'none'})"]

    lines += drive_lines(getattr(report, "drive", None), o.out)

    lines += ["", "Pipelines (moto records executions as Succeeded at once; no step runs)"]
    rows = [[run.name, run.status, run.execution_arn.rsplit("/", 1)[-1],
             ", ".join(f"{k}={v}" for k, v in run.parameters.items()), str(len(run.declared_parameters))]
            for run in report.pipelines]
    lines += _indent(format_table(["PIPELINE", "STATUS", "EXECUTION", "PARAMETERS GIVEN", "DECLARED"], rows))

    lines += ["", "Registry and rollout"]
    ev = report.evaluation
    if ev:
        floors = ", ".join(f"{name} {value:.2f} (>= {floor:.2f})" if value is not None and value >= 0
                           else f"{name} absent (>= {floor:.2f})" for name, (value, floor) in ev["safety"].items())
        lines.append(f"  model package {report.model_package_arn.split('/', 1)[-1]}: stand-in mIoU {ev['mIoU']:.3f} "
                     f"(gate >= {ev['min_miou']:.2f}); {floors}")
    for result in report.rollout:
        if result["action"] == "updated":
            detail = (f"UpdateStack {result['stack_name']} {result.get('previous_model_package_arn')!r} -> "
                      f"{result['model_package_arn']} (previous template, token {result.get('client_request_token')})")
        else:
            detail = result.get("reason", "")
        lines.append(f"  approval event, delivery {result['delivery']}: {result['action']:8s} {detail}")
    lines.append(f"  UpdateStack calls: {len(report.update_stack_calls)}; stack parameter now "
                 f"{report.stack_parameter_after!r}")

    lines += ["", "Time per stage (seconds)"]
    rows = [[title, f"{seconds:6.2f}"] for title, seconds in report.stages]
    rows.append(["total (wall)", f"{report.wall_seconds:6.2f}"])
    lines += _indent(format_table(["STAGE", "SECONDS"], rows))
    problems = report.problems
    lines += ["", f"Outputs in {o.out}/ (results/, quarantine/, side-by-side/, realtime/, pipelines/, registry/, "
                  f"rollout/, {'drive/, ' if getattr(report, 'drive', None) else ''}logs/, summary.json)"]
    lines.append("Rehearsal " + ("PASSED" if not problems else "FAILED:\n  " + "\n  ".join(problems)))
    return "\n".join(lines)


def drive_lines(drive: Any, out: Path) -> list[str]:
    """The drive stage's section (demo/drive.py's DriveReport); nothing when the stage did not run."""
    if drive is None:
        return []
    o = drive.options

    def rel(path: Path | None) -> str:
        return str(path.relative_to(out)) if path else "-"

    cameras = ", ".join(sorted({p.camera for p in drive.planned}))
    lines = ["", f"Drive {drive.drive_id}: generated MCAP, {len(drive.planned)} frames ({cameras} x "
                 f"{o.frames_per_camera} at {o.hz:g} Hz, {o.width}x{o.height}); masks from the {LABEL}"]
    totals = drive.manifest.get("totals") or {}
    lines.append(f"  log          {drive.mcap_key} ({drive.mcap_bytes // 1024} KiB): {totals.get('messages', 0)} "
                 f"messages -> {totals.get('extracted', 0)} frames under incoming/ with drive-id metadata "
                 f"(extraction {drive.manifest.get('status', '-')})")
    c = drive.counters
    if c:
        completion = drive.completion
        lines.append(f"  counts       extracted {c.get('extracted')} = processed {c.get('processed')} + quarantined "
                     f"{c.get('quarantined')} + failed {c.get('failed')}: "
                     f"{'reconciled' if drive.reconciled else 'NOT RECONCILED'} ({drive.frame_items} FRAME items)"
                     + (f"; completion function: {completion['action']}" if completion else ""))
    summary = drive.summary
    if summary:
        t, tr = summary["totals"], summary["time_range"]
        counts = ", ".join(f"{kind} {n}" for kind, n in summary["scenes"]["counts"].items())
        lines.append(f"  summary      {t['total']} frames ({t['processed']} processed, {t['quarantined']} quarantined, "
                     f"{t['failed']} failed) over {tr['duration_s']:.1f} s; drivable ahead "
                     f"{_pct(summary.get('drivable_ahead_fraction_mean'))} (mean); scenes: {counts}")
    for scene in drive.vru_scenes[:1]:
        lines.append(f"  scene        {scene['camera']} {scene['start'][11:23]}-{scene['end'][11:23]} "
                     f"({scene['duration_s']:.1f} s, {scene['frames']} frames): {', '.join(scene['classes'])} in the "
                     f"drivable area ahead (peak {scene['peak_vru_ahead_pixels']} px, {scene['peak_frame_key']})")
    videos = [f"{rel(path)}" for name, path in sorted(drive.files.items()) if name.startswith("video:")]
    if videos or "frame" in drive.files:
        lines.append(f"  video        {', '.join(videos) or '-'}; frame {drive.frame_picture.get('index', '-')} "
                     f"({drive.frame_picture.get('time', '-')}): {rel(drive.files.get('frame'))}")
    if drive.uploaded:
        lines.append(f"  outputs      {len(drive.uploaded)} objects under drive-outputs/ (summary.json, scenes.json, "
                     "timeline.parquet, videos/, timeline table); copies in drive/")
    return lines


def summary_document(report: Report) -> dict[str, Any]:
    def rel(path: Path | None) -> str | None:
        return str(path.relative_to(report.options.out)) if path else None

    return {
        "stand_in": True,
        "note": f"{LABEL}: {NOTE}; AWS emulated by moto on 127.0.0.1",
        "env": report.env, "prefix": report.prefix, "region": report.region,
        "frames": [{"key": f.key, "kind": f.kind, "status": f.status, "identity": f.identity,
                    "result": rel(f.result_path), "overlay": rel(f.overlay_path),
                    "side_by_side": rel(f.side_by_side_path), "quarantine_reason": f.reason}
                   for f in report.frames],
        "counts": {"in": len(report.frames), "processed": report.count(status="processed"),
                   "quarantined": report.count(status="quarantined"), "failed": report.count(status="failed")},
        "classes": [{"class": n, "frames": c, "mean_fraction": round(m, 6)} for n, c, m in class_table(report)],
        "pipelines": [{"name": r.name, "execution_arn": r.execution_arn, "status": r.status,
                       "parameters": r.parameters, "declared_parameters": r.declared_parameters}
                      for r in report.pipelines],
        "model_package_arn": report.model_package_arn,
        "evaluation": report.evaluation,
        "rollout": report.rollout,
        "update_stack_calls": report.update_stack_calls,
        "realtime": {k: v for k, v in report.realtime.items() if k != "mask_path"},
        "drive": report.drive.document(report.options.out) if getattr(report, "drive", None) else None,
        "stages_seconds": {title: round(seconds, 3) for title, seconds in report.stages},
        "wall_seconds": round(report.wall_seconds, 3),
        "problems": report.problems,
    }


def write_summary(report: Report, out: Path) -> str:
    text = format_summary(report)
    (out / "summary.txt").write_text(text + "\n")
    (out / "summary.json").write_text(json.dumps(summary_document(report), indent=1, default=str))
    return text
