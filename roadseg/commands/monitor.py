"""``roadseg monitor status``: drift per camera against the serving model's reference profile (docs/drift.md).

It runs the scheduled drift function's own fetch and decision (``monitoring.job.run_drift``) over the window asked
for, so what it prints is what the function would publish for that window, with every signal's PSI,
Jensen-Shannon distance and mean against the reference band; it publishes nothing. ``--plot`` draws the hourly
means of a few signals per camera over the window against the reference band (Pillow: matplotlib is no
dependency of the command). Exit codes: 0 no camera drifted (or no model is serving), 1 a camera drifted or the
serving model has no usable reference profile, 2 bad input, 3 AWS access.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from contracts.naming import serving_package_parameter
from monitoring.drift import DRIFT, DriftThresholds, reference_band, reference_for
from monitoring.job import DriftSettings, judged_signals, run_drift, signal_series
from roadseg.output import Printer
from roadseg.session import JobFailed, Session, UserError

WINDOW = re.compile(r"^([1-9][0-9]*)([hd])$")
PLOT_SIGNALS = ("brightness", "sharpness", "frac_road", "frac_sky", "drivable_fraction")
PLOT_SIZE = (1200, 220)  # per signal panel
COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


def parse_window(text: str | None, default_hours: int) -> int:
    """``24h`` / ``7d`` -> hours (at most 455 days: CloudWatch keeps 1-hour data that long)."""
    if text is None:
        return default_hours
    match = WINDOW.match(text.strip())
    if not match:
        raise UserError(f"--window {text!r}: use whole hours or days, e.g. 1h, 24h, 7d")
    hours = int(match.group(1)) * (24 if match.group(2) == "d" else 1)
    if hours > 455 * 24:
        raise UserError(f"--window {text}: CloudWatch keeps hourly data 455 days; use at most 455d")
    return hours


def settings_for(session: Session, hours: int, cameras: Sequence[str]) -> DriftSettings:
    config = session.config
    cfg = config.monitoring
    return DriftSettings(
        environment=config.prefix, serving_parameter=serving_package_parameter(config.prefix),
        window_seconds=hours * 3600,
        thresholds=DriftThresholds(cfg.psi_threshold, cfg.js_threshold, cfg.band_sigmas, cfg.min_frames),
        cameras=tuple(cameras) or tuple(config.signal_cameras), per_signal=cfg.per_signal_metrics)


def monitor_status(session: Session, out: Printer, *, window: str | None, cameras: Sequence[str],
                   plot: Path | None, now: datetime | None = None) -> int:
    hours = parse_window(window, session.config.monitoring.window)
    settings = settings_for(session, hours, cameras)
    now = now or datetime.now(UTC)
    clients = {name: session.client(name) for name in ("ssm", "sagemaker", "s3", "cloudwatch")}
    run = run_drift(clients, settings, now)
    if run.reference_missing:
        raise JobFailed(run.reference_missing)
    if cameras:
        run.verdicts = [v for v in run.verdicts if v.camera in set(cameras)]
    document = run.to_dict()
    if run.reference is None:
        out.document(document) if out.as_json else out.line(
            f"No model package is serving in {settings.environment}: nothing to compare with "
            "(roadseg model approve).")
        return 0
    if plot is not None:
        document["plot"] = str(draw(clients["cloudwatch"], settings, run, plot))
    if out.as_json:
        out.document(document)
    else:
        _print(out, run)
    return 1 if any(v.status == DRIFT for v in run.verdicts) else 0


def _print(out: Printer, run: Any) -> None:
    reference = run.reference
    out.line(f"window {run.start:%Y-%m-%d %H:%M} .. {run.end:%Y-%m-%d %H:%M} UTC; reference: model package version "
             f"{reference.package_version or '?'} ({reference.profile_uri})")
    rows = []
    for verdict in run.verdicts:
        frames = max((f.frames for f in verdict.findings), default=0)
        worst = max((f for f in verdict.findings if f.psi is not None), key=lambda f: f.psi, default=None)
        rows.append([verdict.camera, verdict.status, f"{frames:,.0f}", ", ".join(verdict.drifted_signals) or "-",
                     f"{worst.signal} {worst.psi:.3f}" if worst else "-"])
    if not rows:
        out.line("No camera published signals in the window.")
        return
    out.table(["camera", "status", "frames", "drifted signals", "largest PSI"], rows)


def _bands(profile_cameras: Mapping[str, Any], camera: str, signal: str, sigmas: float):
    _, signals = reference_for({"cameras": profile_cameras}, camera)
    entry = signals.get(signal) or {}
    return reference_band(entry.get("chunk_means") or (), sigmas), entry.get("mean")


def draw(cloudwatch: Any, settings: DriftSettings, run: Any, path: Path) -> Path:
    """One panel per signal of PLOT_SIGNALS: each camera's hourly mean over the window (a line per camera) and the
    reference band of the first camera's reference (shaded), its mean dashed."""
    from PIL import Image, ImageDraw, ImageFont

    cameras = [v.camera for v in run.verdicts]
    profile = run.profile or {}
    signals = [s for s in PLOT_SIGNALS if s in judged_signals(profile)]
    series = signal_series(cloudwatch, settings.environment, cameras, signals, run.start, run.end, 3600)
    width, panel = PLOT_SIZE
    image = Image.new("RGB", (width, panel * max(len(signals), 1) + 40), "white")
    canvas = ImageDraw.Draw(image)
    try:
        font = ImageFont.load_default(size=13)
    except TypeError:  # Pillow without FreeType
        font = ImageFont.load_default()
    left, right = 80, width - 200
    span = (run.end - run.start).total_seconds() or 1.0
    for row, signal in enumerate(signals):
        top, bottom = 30 + row * panel, 30 + row * panel + panel - 40
        values = [m for camera in cameras for _, m, _ in series.get(camera, {}).get(signal, [])]
        band, ref_mean = _bands(profile.get("cameras") or {}, cameras[0] if cameras else "*", signal,
                                settings.thresholds.band_sigmas)
        bounds = values + ([band[0], band[1]] if band else []) + ([ref_mean] if ref_mean is not None else [])
        low, high = (min(bounds), max(bounds)) if bounds else (0.0, 1.0)
        if high <= low:
            low, high = low - 0.5, high + 0.5

        def y(value: float, top: int = top, bottom: int = bottom, low: float = low, high: float = high) -> float:
            return bottom - (value - low) / (high - low) * (bottom - top)

        if band:
            canvas.rectangle((left, y(min(band[1], high)), right, y(max(band[0], low))), fill=(225, 235, 250))
        if ref_mean is not None:
            for x in range(left, right, 12):
                canvas.line((x, y(ref_mean), min(x + 6, right), y(ref_mean)), fill=(90, 90, 90))
        canvas.rectangle((left, top, right, bottom), outline="black")
        canvas.text((left, top - 4), signal, fill="black", font=font, anchor="ld")
        canvas.text((left - 6, top), f"{high:.3g}", fill="black", font=font, anchor="rt")
        canvas.text((left - 6, bottom), f"{low:.3g}", fill="black", font=font, anchor="rb")
        for index, camera in enumerate(cameras):
            points = series.get(camera, {}).get(signal, [])
            colour = COLOURS[index % len(COLOURS)]
            xy = [(left + ((stamp - run.start).total_seconds() + 1800) / span * (right - left), y(mean))
                  for stamp, mean, _ in points]  # each hour's mean at the middle of its hour
            if len(xy) > 1:
                canvas.line(xy, fill=colour, width=2)
            for x, y_ in xy:
                canvas.ellipse((x - 2, y_ - 2, x + 2, y_ + 2), fill=colour)
            if row == 0:
                canvas.text((right + 15, top + 16 * index), camera, fill=colour, font=font)
    if signals:  # time axis under the last panel: the window's start, middle and end
        axis = 30 + (len(signals) - 1) * panel + panel - 40
        for fraction in (0.0, 0.5, 1.0):
            stamp = run.start + (run.end - run.start) * fraction
            x = left + fraction * (right - left)
            canvas.line((x, axis, x, axis + 5), fill="black")
            canvas.text((x, axis + 8), f"{stamp:%m-%d %H:%M}", fill="black", font=font, anchor="mt")
    canvas.text((width // 2, 12), f"{settings.environment}: hourly signal means, {run.start:%Y-%m-%d %H:%M} .. "
                f"{run.end:%Y-%m-%d %H:%M} UTC; shaded: reference band", fill="black", font=font, anchor="mm")
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, format="PNG")
    except OSError as exc:
        raise UserError(f"--plot: cannot write {path}: {exc}") from None
    return path
