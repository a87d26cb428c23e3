"""Drift of one camera's recent window against the reference profile of the model now serving (pure: no AWS).

Input: per camera and monitored signal, the window's distribution over the signal's fixed bins
(``contracts.signals.SIGNAL_BIN_EDGES``; the scheduled job reads it from CloudWatch with percentile-rank
statistics, ``monitoring.queries``; tests and benchmarks histogram raw values, :func:`window_from_values`), the
number of frames and the mean. Output: one :class:`DriftFinding` per (camera, signal) and one
:class:`CameraVerdict` per camera.

A signal drifts when both distances of the window's histogram to the reference histogram reach their thresholds,
whose defaults are the anchors' this project documents against (docs/drift.md):

- population stability index >= 0.1 (Evidently's ``psi`` stattest threshold; PSI 0.1-0.25 is the classic
  "moderate shift" band),
- Jensen-Shannon distance >= 0.1 (Evidently's ``jensenshannon`` stattest threshold; base 2, so 0..1),

or when the window's mean leaves the reference band, mean +/- 3 sigma of the means of consecutive reference chunks
(NannyML's default alert thresholds for univariate drift on summary statistics). Both distances, not either: on
hourly windows whose scene mix varies (monitoring.simulate), either one alone flags far more undrifted windows
(docs/drift.md has the measured rates), while every injected drift moves both far past 0.1. A window with fewer than
``min_frames`` frames of a signal gives no verdict on it (PSI of a few dozen frames is noise); a camera with no
judged signal is ``insufficient-data``, never "ok".
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from contracts.signals import ALL_CAMERAS, MONITORED_SIGNALS, SIGNAL_BIN_EDGES
from segcore.signals import finite_values, histogram, jensen_shannon_distance, population_stability_index

# Evidently (evidently.ai, data drift presets): stattest_threshold defaults, PSI 0.1 and Jensen-Shannon 0.1.
EVIDENTLY_PSI_THRESHOLD = 0.1
EVIDENTLY_JS_THRESHOLD = 0.1
# NannyML: alert when a chunk's statistic leaves the reference chunks' mean +/- 3 standard deviations.
NANNYML_BAND_SIGMAS = 3.0

OK, DRIFT, INSUFFICIENT, NO_REFERENCE = "ok", "drift", "insufficient-data", "no-reference"


@dataclass(frozen=True)
class DriftThresholds:
    psi: float = EVIDENTLY_PSI_THRESHOLD
    js: float = EVIDENTLY_JS_THRESHOLD
    band_sigmas: float = NANNYML_BAND_SIGMAS
    min_frames: int = 200  # frames of a signal in the window below which it is not judged

    def __post_init__(self) -> None:
        if not (self.psi > 0 and self.js > 0 and self.band_sigmas > 0 and self.min_frames >= 1):
            raise ValueError(f"drift thresholds must be positive (min_frames >= 1), got {self}")


@dataclass(frozen=True)
class WindowDistribution:
    """One signal of one camera over one window: counts (or shares, any scale) per bin of the signal's fixed
    edges, how many frames carried the signal, and their mean (None when unknown)."""

    signal: str
    counts: tuple[float, ...]
    frames: float
    mean: float | None = None

    def __post_init__(self) -> None:
        bins = len(SIGNAL_BIN_EDGES[self.signal]) - 1
        if len(self.counts) != bins:
            raise ValueError(f"{self.signal}: {len(self.counts)} counts for {bins} bins (contracts.signals edges)")


@dataclass(frozen=True)
class DriftFinding:
    camera: str
    signal: str
    status: str  # OK | DRIFT | INSUFFICIENT | NO_REFERENCE
    frames: float
    psi: float | None = None
    js: float | None = None
    mean: float | None = None
    reference_mean: float | None = None
    band: tuple[float, float] | None = None  # reference chunk means +/- band_sigmas sigma
    reasons: tuple[str, ...] = ()  # "distance" (PSI and JS both at their thresholds), "band": why it drifts

    @property
    def drifted(self) -> bool:
        return self.status == DRIFT


@dataclass(frozen=True)
class CameraVerdict:
    camera: str
    status: str  # OK | DRIFT | INSUFFICIENT
    findings: tuple[DriftFinding, ...]
    reference_camera: str | None = None  # the profile's camera the window was compared with ("*": all cameras)
    window: Mapping[str, Any] = field(default_factory=dict)  # start/end (ISO 8601) where known

    @property
    def drifted(self) -> bool:
        return self.status == DRIFT

    @property
    def drifted_signals(self) -> tuple[str, ...]:
        return tuple(f.signal for f in self.findings if f.drifted)

    def to_dict(self) -> dict[str, Any]:
        return {"camera": self.camera, "status": self.status, "reference_camera": self.reference_camera,
                "window": dict(self.window), "drifted_signals": list(self.drifted_signals),
                "findings": [_finding_dict(f) for f in self.findings]}


def _finding_dict(finding: DriftFinding) -> dict[str, Any]:
    out = asdict(finding)
    out["band"] = list(finding.band) if finding.band else None
    out["reasons"] = list(finding.reasons)
    return out


def reference_band(chunk_means: Sequence[float], sigmas: float) -> tuple[float, float] | None:
    """Mean +/- ``sigmas`` sample standard deviations of the reference chunk means; None with fewer than 2 chunks
    (no spread to judge by)."""
    values = [float(v) for v in chunk_means if v is not None and math.isfinite(v)]
    if len(values) < 2:
        return None
    centre = sum(values) / len(values)
    spread = math.sqrt(sum((v - centre) ** 2 for v in values) / (len(values) - 1))
    return centre - sigmas * spread, centre + sigmas * spread


def compare_signal(camera: str, signal: str, reference: Mapping[str, Any] | None,
                   window: WindowDistribution | None, thresholds: DriftThresholds) -> DriftFinding:
    """One (camera, signal): the window against the reference profile's entry for that signal."""
    frames = window.frames if window else 0
    if window is None or frames < thresholds.min_frames or sum(window.counts) <= 0:
        return DriftFinding(camera, signal, INSUFFICIENT, frames, mean=window.mean if window else None)
    if reference is None or sum(reference["counts"]) <= 0:
        return DriftFinding(camera, signal, NO_REFERENCE, frames, mean=window.mean)
    psi = population_stability_index(reference["counts"], window.counts)
    js = jensen_shannon_distance(reference["counts"], window.counts)
    band = reference_band(reference.get("chunk_means") or (), thresholds.band_sigmas)
    reasons = []
    if psi >= thresholds.psi and js >= thresholds.js:
        reasons.append("distance")
    if band is not None and window.mean is not None and not band[0] <= window.mean <= band[1]:
        reasons.append("band")
    return DriftFinding(camera, signal, DRIFT if reasons else OK, frames, psi=psi, js=js, mean=window.mean,
                        reference_mean=reference.get("mean"), band=band, reasons=tuple(reasons))


def reference_for(profile: Mapping[str, Any], camera: str) -> tuple[str | None, Mapping[str, Any]]:
    """The profile's signals for ``camera``: its own entry when the gate's frames carried that camera, else the
    all-cameras entry ``"*"``; (None, {}) when the profile has neither."""
    cameras = profile.get("cameras") or {}
    if camera in cameras:
        return camera, cameras[camera]
    if ALL_CAMERAS in cameras:
        return ALL_CAMERAS, cameras[ALL_CAMERAS]
    return None, {}


def camera_verdict(camera: str, profile: Mapping[str, Any], windows: Mapping[str, WindowDistribution],
                   thresholds: DriftThresholds, *, signals: Iterable[str] | None = None,
                   window: Mapping[str, Any] | None = None) -> CameraVerdict:
    """Every monitored signal of ``signals`` (default: those with a window) judged; the camera drifts when any
    judged signal drifts, and has insufficient data when none could be judged."""
    reference_camera, reference = reference_for(profile, camera)
    names = [s for s in (signals if signals is not None else windows) if s in MONITORED_SIGNALS]
    findings = []
    for name in names:
        findings.append(compare_signal(camera, name, reference.get(name), windows.get(name), thresholds))
    judged = [f for f in findings if f.status in (OK, DRIFT)]
    status = DRIFT if any(f.drifted for f in judged) else (OK if judged else INSUFFICIENT)
    return CameraVerdict(camera, status, tuple(findings), reference_camera, dict(window or {}))


def judge(profile: Mapping[str, Any], windows_by_camera: Mapping[str, Mapping[str, WindowDistribution]],
          thresholds: DriftThresholds, *, signals: Iterable[str] | None = None,
          window: Mapping[str, Any] | None = None) -> list[CameraVerdict]:
    """A verdict per camera, sorted by camera."""
    names = list(signals) if signals is not None else None
    return [camera_verdict(camera, profile, windows_by_camera[camera], thresholds, signals=names, window=window)
            for camera in sorted(windows_by_camera)]


def window_from_values(signal: str, values: Iterable[float | None]) -> WindowDistribution:
    """A window from raw per-frame values (None and non-finite values skipped): what the job reads from
    CloudWatch, computed locally (tests, benchmark, a drive timeline). The counts are ``segcore.signals.histogram``'s,
    whose bins are PR(n:m)'s, so the local window and CloudWatch's agree bin for bin (tests/monitoring)."""
    array = finite_values(values)
    counts = histogram(array, signal)
    mean = float(array.mean()) if array.size else None
    return WindowDistribution(signal, tuple(float(c) for c in counts), float(array.size), mean)
