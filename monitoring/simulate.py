"""Generated per-frame signal streams with injected drift: the tests' and the benchmark's input (numpy only).

Not a model of any real camera: a stand-in whose windows vary the way a fleet's hours do (each hourly window draws
its own mix of urban, highway and suburban scenes around the reference mix), so the false-alarm rate measured on
an undrifted stream includes that natural variation, not only sampling noise. The drifts are those of issue 23:

- ``night``: brightness x 0.3 (from the onset window on);
- ``remount``: the sky fraction +0.20 (taken from the other classes in proportion), a camera tilted upwards;
- ``obstruction``: a constant dark region grows over the lens (its area ramps from 0 to ``OBSTRUCTION_AREA`` over
  ``OBSTRUCTION_RAMP_WINDOWS`` windows): sharpness x (1 - area) (the Laplacian is 0 on a constant region), contrast
  and brightness as the mixture of the scene and the region, the masked area labelled as none of the groups;
- ``class_mix``: a rural scene the reference never saw (vegetation-dominated, no sidewalk, few vehicles) makes up
  60 % of each window.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from contracts.signal_metrics import PUBLISHED_SIGNALS

GROUPS = ("road", "sidewalk", "vegetation", "sky", "vehicles", "vru", "other")
# scene -> (brightness, contrast, saturation, log sharpness, Dirichlet alphas over GROUPS)
SCENES: dict[str, tuple[float, float, float, float, tuple[float, ...]]] = {
    "urban": (0.42, 0.22, 0.28, 6.3, (30, 10, 8, 10, 12, 2, 28)),
    "highway": (0.50, 0.18, 0.25, 5.9, (40, 2, 12, 25, 10, 0.3, 11)),
    "suburban": (0.47, 0.20, 0.33, 6.1, (30, 8, 25, 15, 6, 1, 15)),
    "rural": (0.52, 0.17, 0.40, 6.0, (20, 0.5, 50, 20, 2, 0.3, 7)),
}
REFERENCE_MIX = {"urban": 0.5, "highway": 0.25, "suburban": 0.25}
MIX_CONCENTRATION = 40.0  # Dirichlet concentration of a window's scene mix around REFERENCE_MIX
BETA_CONCENTRATION = 60.0  # per-frame spread of brightness, contrast and saturation around the scene's mean
DIRICHLET_SCALE = 4.0  # per-frame spread of the class fractions (alphas x this)
VRU_PRESENT_FRACTION = 0.002
DRIFTS = ("night", "remount", "obstruction", "class_mix")
OBSTRUCTION_AREA = 0.4
OBSTRUCTION_RAMP_WINDOWS = 8
OBSTRUCTION_LUMA = 0.08


@dataclass(frozen=True)
class Window:
    index: int
    signals: dict[str, np.ndarray]  # signal -> per-frame values (PUBLISHED_SIGNALS)


def _beta(rng: np.random.Generator, mean: np.ndarray, concentration: float) -> np.ndarray:
    return rng.beta(mean * concentration, (1 - mean) * concentration)


def frames(rng: np.random.Generator, count: int, mix: dict[str, float]) -> dict[str, np.ndarray]:
    """``count`` frames drawn from the scene ``mix``: every published signal."""
    names = list(mix)
    scene = rng.choice(len(names), size=count, p=np.asarray([mix[n] for n in names]) / sum(mix.values()))
    params = np.asarray([SCENES[n][:4] for n in names])[scene]
    alphas = np.asarray([SCENES[n][4] for n in names], dtype=np.float64)[scene] * DIRICHLET_SCALE
    fractions = rng.gamma(alphas)
    fractions /= fractions.sum(axis=1, keepdims=True)
    out = {
        "brightness": _beta(rng, params[:, 0], BETA_CONCENTRATION),
        "contrast": _beta(rng, params[:, 1], BETA_CONCENTRATION),
        "saturation": _beta(rng, params[:, 2], BETA_CONCENTRATION),
        "sharpness": np.exp(rng.normal(params[:, 3], 0.45)),
    }
    for i, group in enumerate(GROUPS[:-1]):
        out[f"frac_{group}"] = fractions[:, i]
    _derived(out, rng)
    return out


def _derived(out: dict[str, np.ndarray], rng: np.random.Generator) -> None:
    """drivable_fraction and vru_present from the fractions (the road plus a little of the rest)."""
    out["drivable_fraction"] = np.clip(out["frac_road"] + rng.normal(0.02, 0.01, out["frac_road"].shape), 0, 1)
    out["vru_present"] = (out["frac_vru"] >= VRU_PRESENT_FRACTION).astype(np.float64)


def _shift_sky(out: dict[str, np.ndarray], points: float, rng: np.random.Generator) -> None:
    sky = out["frac_sky"]
    new_sky = np.clip(sky + points, 0, 1)
    others = [f"frac_{g}" for g in GROUPS[:-1] if g != "sky"]
    rest_before = 1 - sky
    scale = np.where(rest_before > 0, (1 - new_sky) / np.maximum(rest_before, 1e-9), 0)
    for name in others:
        out[name] = out[name] * scale
    out["frac_sky"] = new_sky
    _derived(out, rng)


def _obstruct(out: dict[str, np.ndarray], area: float, rng: np.random.Generator) -> None:
    if area <= 0:
        return
    mu, sigma = out["brightness"], out["contrast"]
    out["brightness"] = (1 - area) * mu + area * OBSTRUCTION_LUMA
    out["contrast"] = np.sqrt((1 - area) * sigma ** 2 + area * (1 - area) * (mu - OBSTRUCTION_LUMA) ** 2)
    out["sharpness"] = out["sharpness"] * (1 - area)
    for group in GROUPS[:-1]:
        out[f"frac_{group}"] = out[f"frac_{group}"] * (1 - area)
    _derived(out, rng)


def window_mix(rng: np.random.Generator, drift: str | None, severity: float = 1.0) -> dict[str, float]:
    names = list(REFERENCE_MIX)
    weights = rng.dirichlet(np.asarray([REFERENCE_MIX[n] for n in names]) * MIX_CONCENTRATION)
    mix = dict(zip(names, weights.tolist(), strict=True))
    if drift == "class_mix":
        rural = 0.6 * severity
        mix = {name: share * (1 - rural) for name, share in mix.items()} | {"rural": rural}
    return mix


def window(rng: np.random.Generator, index: int, count: int, drift: str | None = None, onset: int = 0,
           severity: float = 1.0) -> Window:
    """Window ``index`` of a stream whose ``drift`` (one of DRIFTS, or None) starts at window ``onset``.
    ``severity`` scales the drift (1: the issue's; 0.25: brightness x 0.825, sky +5 points, a 10 % obstruction,
    15 % rural scenes)."""
    active = drift if drift is not None and index >= onset else None
    out = frames(rng, count, window_mix(rng, active, severity))
    if active == "night":
        out["brightness"] = out["brightness"] * (1 - 0.7 * severity)
    elif active == "remount":
        _shift_sky(out, 0.20 * severity, rng)
    elif active == "obstruction":
        ramp = min(1.0, (index - onset + 1) / OBSTRUCTION_RAMP_WINDOWS)
        _obstruct(out, OBSTRUCTION_AREA * severity * ramp, rng)
    return Window(index, {name: out[name] for name in PUBLISHED_SIGNALS})


def stream(seed: int, windows: int, frames_per_window: int, drift: str | None = None, onset: int = 0,
           severity: float = 1.0) -> Iterator[Window]:
    rng = np.random.default_rng(seed)
    for index in range(windows):
        yield window(rng, index, frames_per_window, drift, onset, severity)


def reference_records(seed: int, count: int, block: int = 100) -> list[dict[str, float]]:
    """The gate's frames: ``count`` frames in drive order, blocks of ``block`` consecutive frames each with its own
    scene mix around the reference mix (as validation frames taken from drives are), as per-frame signal records."""
    rng = np.random.default_rng(seed)
    records: list[dict[str, float]] = []
    while len(records) < count:
        size = min(block, count - len(records))
        out = frames(rng, size, window_mix(rng, None))
        records.extend({name: float(out[name][i]) for name in PUBLISHED_SIGNALS} for i in range(size))
    return records
