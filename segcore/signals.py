"""Per-frame signals (contracts.signals): computed from a frame, a mask, two consecutive masks or class probabilities,
and compared as fixed-bin histograms. Pure numpy, no AWS, no OpenCV: it runs in the ingest and postprocess functions,
the drive builder, the scoring job and the drift monitor, which must all compute the same numbers.

- ``input_signals``: brightness, contrast, sharpness, saturation and a difference hash of an RGB frame, on a box
  downsample by an integer factor to at most ``WORKING_LONG_SIDE`` pixels on the long side (a 1920x1080 frame: factor
  8, 240x135), so they cost a few milliseconds at any frame size; ``encode_input_signals`` /
  ``decode_input_signals`` carry them in the async input object's user metadata.
- ``output_signals``: class-group shares of the mask's labelled pixels, the drivable share and VRU presence;
  ``output_signals_from_fractions`` gives the same from a result document's class fractions (no mask needed).
- ``label_flicker``: share of labelled pixels whose class changed between two masks of one camera, on masks
  downscaled (nearest) to ``FLICKER_SIZE`` so that the inference size and a pixel of jitter barely matter.
- ``probability_signals``: normalised mean entropy, mean margin and the RIPU region score from C x H x W
  probabilities (candidate-pool scoring only).
- ``rarity`` / ``distribution_distance``: a frame's class mix against the training set's.
- ``histogram``, ``population_stability_index``, ``jensen_shannon_distance``, ``reference_profile``: drift.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from contracts.signals import (
    ALL_CAMERAS,
    CLASS_GROUPS,
    DEFAULT_VRU_CLASSES,
    FRAME_SIGNALS,
    GROUP_SIGNALS,
    INPUT_SIGNALS_METADATA_MAX_CHARS,
    MONITORED_SIGNALS,
    REFERENCE_PROFILE_SCHEMA_VERSION,
    SIGNAL_BIN_EDGES,
    SIGNALS,
    SIGNALS_VERSION,
    normalise_class_name,
)

WORKING_LONG_SIDE = 256
FLICKER_SIZE = (96, 48)  # (width, height) of the downscaled masks label flicker compares
DEFAULT_DRIVABLE_CLASSES = ("road",)  # segcore.classes.DRIVABLE_CLASSES
MIN_FREQUENCY = 1e-4  # rarity: a class the training set never saw counts as this rare

# ------------------------------------------------------------------------------------------------- input


def _working_image(rgb: np.ndarray) -> np.ndarray:
    """float32 (h, w, 3) box average of ``rgb`` by the smallest integer factor that brings the long side to at most
    WORKING_LONG_SIDE (the edge rows and columns the factor does not divide are left out)."""
    if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] not in (3, 4) or rgb.dtype != np.uint8:
        shape = getattr(rgb, "shape", None)
        raise ValueError(f"input signals need an H x W x 3 uint8 RGB frame, got {type(rgb).__name__} {shape} "
                         f"{getattr(rgb, 'dtype', '')}".rstrip())
    height, width = rgb.shape[:2]
    if height < 2 or width < 2:
        raise ValueError(f"input signals need a frame of at least 2 x 2 pixels, got {width} x {height}")
    factor = max(1, math.ceil(max(height, width) / WORKING_LONG_SIDE))
    h, w = height // factor, width // factor
    if factor == 1:
        return rgb[:, :, :3].astype(np.float32)
    # Two passes of adds over contiguous slices: the factor rows of each output row (a reshape, no copy), then the
    # factor columns of each output pixel; a reduction over a (h, f, w, f, 3) reshape is several times slower.
    dtype = np.uint16 if factor <= 16 else np.uint32  # factor^2 x 255 must fit
    rows = rgb[: h * factor, : w * factor, :3].reshape(h, factor, w * factor * 3)
    summed = rows[:, 0].astype(dtype)
    for dy in range(1, factor):
        summed += rows[:, dy]
    pixels = summed.reshape(h, w, factor, 3)
    acc = pixels[:, :, 0].copy()
    for dx in range(1, factor):
        acc += pixels[:, :, dx]
    return acc.astype(np.float32) * (1.0 / (factor * factor))


def _dhash(luma: np.ndarray) -> str:
    """64-bit difference hash: the luma box-averaged to 8 rows x 9 columns, bit = left < right, row-major."""
    row_edges = np.linspace(0, luma.shape[0], 9, dtype=int)
    col_edges = np.linspace(0, luma.shape[1], 10, dtype=int)
    rows = np.add.reduceat(luma, row_edges[:-1], axis=0) / np.diff(row_edges)[:, None]
    grid = np.add.reduceat(rows, col_edges[:-1], axis=1) / np.diff(col_edges)[None, :]
    bits = (grid[:, 1:] > grid[:, :-1]).ravel()
    return f"{int(''.join('1' if b else '0' for b in bits), 2):016x}"


def input_signals(rgb: np.ndarray) -> dict[str, float | str]:
    """brightness, contrast, sharpness, saturation (floats) and dhash (16 hex digits) of an H x W x 3 uint8 frame."""
    image = _working_image(rgb)
    luma = image[:, :, 0] * 0.299 + image[:, :, 1] * 0.587 + image[:, :, 2] * 0.114  # BT.601, 0..255
    if min(luma.shape) < 9:
        raise ValueError(f"input signals need a frame whose working image is at least 9 x 9, got {luma.shape[::-1]}")
    laplacian = (luma[1:-1, :-2] + luma[1:-1, 2:] + luma[:-2, 1:-1] + luma[2:, 1:-1]) - 4.0 * luma[1:-1, 1:-1]
    red, green, blue = image[:, :, 0], image[:, :, 1], image[:, :, 2]
    high = np.maximum(np.maximum(red, green), blue)  # ufuncs: a reduction over the 3-long channel axis is ~20x slower
    low = np.minimum(np.minimum(red, green), blue)
    saturation = np.divide(high - low, high, out=np.zeros_like(high), where=high > 0)
    return {
        "brightness": round(float(luma.mean()) / 255.0, 6),
        "contrast": round(float(luma.std()) / 255.0, 6),
        "sharpness": round(float(laplacian.var()), 4),
        "saturation": round(float(saturation.mean()), 6),
        "dhash": _dhash(luma),
    }


_CODES = {"brightness": "b", "contrast": "c", "sharpness": "s", "saturation": "sat", "dhash": "h"}
_NAMES = {code: name for name, code in _CODES.items()}
_HEX16 = re.compile(r"^[0-9a-f]{16}$")


def encode_input_signals(signals: Mapping[str, Any]) -> str:
    """``b=0.4123;c=0.2011;s=123.4;sat=0.3012;h=0123456789abcdef`` (the input signals present, in this order)."""
    parts = []
    for name, code in _CODES.items():
        value = signals.get(name)
        if value is None:
            continue
        if name == "dhash":
            if not isinstance(value, str) or not _HEX16.match(value):
                raise ValueError(f"dhash must be 16 lower-case hex digits, got {value!r}")
            parts.append(f"{code}={value}")
        elif name == "sharpness":
            parts.append(f"{code}={float(value):.1f}")
        else:
            parts.append(f"{code}={float(value):.4f}")
    text = ";".join(parts)
    if len(text) > INPUT_SIGNALS_METADATA_MAX_CHARS:
        raise ValueError(f"encoded input signals are {len(text)} characters, at most "
                         f"{INPUT_SIGNALS_METADATA_MAX_CHARS} fit the metadata value")
    return text


def decode_input_signals(text: str) -> dict[str, float | str]:
    """The input signals of an ``encode_input_signals`` string; ValueError naming the bad part."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("input signals metadata is empty: expected 'b=..;c=..;s=..;sat=..;h=..'")
    if len(text) > INPUT_SIGNALS_METADATA_MAX_CHARS:
        raise ValueError(f"input signals metadata is {len(text)} characters (at most "
                         f"{INPUT_SIGNALS_METADATA_MAX_CHARS}): not written by encode_input_signals")
    out: dict[str, float | str] = {}
    for part in text.strip().split(";"):
        code, sep, raw = part.partition("=")
        name = _NAMES.get(code.strip())
        if not sep or name is None:
            raise ValueError(f"input signals metadata part {part!r} is not <code>=<value> with a code of "
                             f"{', '.join(_NAMES)}")
        if name in out:
            raise ValueError(f"input signals metadata names {code!r} twice")
        raw = raw.strip()
        if name == "dhash":
            if not _HEX16.match(raw):
                raise ValueError(f"input signals metadata: h={raw!r} is not 16 lower-case hex digits")
            out[name] = raw
            continue
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"input signals metadata: {code}={raw!r} is not a number") from None
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"input signals metadata: {code}={raw!r} must be a finite number >= 0")
        out[name] = value
    return out


def dhash_distance(a: str, b: str) -> int:
    """Hamming distance (0..64) of two difference hashes; near-duplicates are a few bits apart."""
    return (int(a, 16) ^ int(b, 16)).bit_count()


# ------------------------------------------------------------------------------------------------ output


@lru_cache(maxsize=64)
def _group_members(class_names: tuple[str, ...], vru: frozenset[str], drivable: frozenset[str]
                   ) -> tuple[dict[str, tuple[int, ...]], tuple[int, ...], tuple[int, ...]]:
    """Group -> class indices (disjoint: VRU first), the VRU indices and the drivable indices."""
    normalised = [normalise_class_name(n) for n in class_names]
    vru_indices = tuple(i for i, n in enumerate(normalised) if n in vru)
    groups = {"vru": vru_indices}
    for group, members in CLASS_GROUPS.items():
        if group == "vru":
            continue
        wanted = set(members) - vru
        groups[group] = tuple(i for i, n in enumerate(normalised) if n in wanted)
    drivable_indices = tuple(i for i, n in enumerate(normalised) if n in drivable)
    return groups, vru_indices, drivable_indices


def _class_sets(vru_classes: Iterable[str] | None, drivable_classes: Iterable[str] | None
                ) -> tuple[frozenset[str], frozenset[str]]:
    vru = frozenset(normalise_class_name(n) for n in (DEFAULT_VRU_CLASSES if vru_classes is None else vru_classes))
    drivable = frozenset(normalise_class_name(n) for n in
                         (DEFAULT_DRIVABLE_CLASSES if drivable_classes is None else drivable_classes))
    return vru, drivable


def _shares(counts: np.ndarray, class_names: tuple[str, ...], vru: frozenset[str], drivable: frozenset[str],
            vru_present: int | None) -> dict[str, float | int | None]:
    groups, _, drivable_indices = _group_members(class_names, vru, drivable)
    labelled = float(counts.sum())
    out: dict[str, float | int | None] = {}
    for group, signal in GROUP_SIGNALS.items():
        out[signal] = round(float(counts[list(groups[group])].sum()) / labelled, 6) if labelled else None
    if not drivable_indices:
        out["drivable_fraction"] = None
    else:
        out["drivable_fraction"] = round(float(counts[list(drivable_indices)].sum()) / labelled, 6) if labelled \
            else None
    out["vru_present"] = vru_present
    return out


def output_signals(mask: np.ndarray, class_names: Sequence[str], *, vru_classes: Iterable[str] | None = None,
                   drivable_classes: Iterable[str] | None = None, ignore_index: int = 255,
                   vru_min_pixels: int = 50) -> dict[str, float | int | None]:
    """Class-group shares (``frac_*``), ``drivable_fraction`` and ``vru_present`` of a class-index mask.

    Shares are of the LABELLED pixels (values 0..len(class_names)-1; the ignore value and unknown values left out),
    None when no pixel is labelled; ``drivable_fraction`` is None when no class is drivable. ``vru_present`` is 1
    when one VRU class has at least ``vru_min_pixels`` pixels (the postprocess function's VRU rule)."""
    if not isinstance(mask, np.ndarray) or mask.ndim != 2 or mask.dtype != np.uint8:
        raise ValueError(f"output signals need an H x W uint8 class-index mask, got {getattr(mask, 'shape', None)} "
                         f"{getattr(mask, 'dtype', type(mask).__name__)}")
    names = tuple(class_names)
    vru, drivable = _class_sets(vru_classes, drivable_classes)
    counts = np.bincount(mask.ravel(), minlength=256)[: len(names)]
    if 0 <= ignore_index < len(names):
        counts = counts.copy()
        counts[ignore_index] = 0
    _, vru_indices, _ = _group_members(names, vru, drivable)
    present = int(any(counts[i] >= max(1, vru_min_pixels) for i in vru_indices))
    return _shares(counts, names, vru, drivable, present)


def output_signals_from_fractions(class_fractions: Mapping[str, float], *, vru_classes: Iterable[str] | None = None,
                                  drivable_classes: Iterable[str] | None = None,
                                  vru_present: bool | None = None) -> dict[str, float | int | None]:
    """The output signals from a result document's class fractions (shares of ALL pixels, present classes only):
    renormalised over the classes listed, so they equal ``output_signals`` of the mask. ``vru_present`` is the
    document's own flag (None: unknown)."""
    names = tuple(sorted(class_fractions))
    vru, drivable = _class_sets(vru_classes, drivable_classes)
    counts = np.array([max(0.0, float(class_fractions[n])) for n in names], dtype=np.float64)
    return _shares(counts, names, vru, drivable, None if vru_present is None else int(bool(vru_present)))


def downscale_mask(mask: np.ndarray, size: tuple[int, int] = FLICKER_SIZE) -> np.ndarray:
    """Nearest-neighbour downscale (pixel centres) of a class-index mask to ``size`` = (width, height)."""
    if not isinstance(mask, np.ndarray) or mask.ndim != 2:
        raise ValueError(f"expected an H x W class-index mask, got {getattr(mask, 'shape', None)}")
    width, height = size
    if mask.shape == (height, width):
        return mask
    rows = ((np.arange(height) + 0.5) * mask.shape[0] / height).astype(np.intp)
    cols = ((np.arange(width) + 0.5) * mask.shape[1] / width).astype(np.intp)
    return mask[rows[:, None], cols[None, :]]


def label_flicker(previous_mask: np.ndarray | None, current_mask: np.ndarray, *,
                  ignore_index: int = 255, size: tuple[int, int] = FLICKER_SIZE) -> float | None:
    """Share of the pixels labelled in both masks whose class differs, on masks downscaled to ``size``; None for a
    camera's first frame (no previous mask) or when no pixel is labelled in both."""
    if previous_mask is None:
        return None
    previous, current = downscale_mask(previous_mask, size), downscale_mask(current_mask, size)
    labelled = (previous != ignore_index) & (current != ignore_index)
    total = int(labelled.sum())
    if not total:
        return None
    return round(int((labelled & (previous != current)).sum()) / total, 6)


# ------------------------------------------------------------------------------------------------- model


def _normalised_probabilities(probabilities: np.ndarray) -> np.ndarray:
    if not isinstance(probabilities, np.ndarray) or probabilities.ndim != 3 or probabilities.shape[0] < 2:
        raise ValueError(f"probability signals need C x H x W class probabilities with C >= 2, got "
                         f"{getattr(probabilities, 'shape', None)}")
    p = np.clip(probabilities.astype(np.float32, copy=False), 0.0, None)
    total = p.sum(axis=0, keepdims=True)
    return np.divide(p, total, out=np.full_like(p, 1.0 / p.shape[0]), where=total > 0)


def _entropy(p: np.ndarray) -> np.ndarray:
    """Per-pixel entropy / log(C), 0..1."""
    logs = np.log(np.maximum(p, 1e-12))
    return np.clip(-(p * logs).sum(axis=0) / math.log(p.shape[0]), 0.0, 1.0)


def region_scores(probabilities: np.ndarray, region: int = 32) -> np.ndarray:
    """(rows, cols) grid of RIPU region scores: per region of ``region`` x ``region`` pixels, the impurity of its
    predicted classes (entropy of their histogram / log C) times its mean normalised pixel entropy. The frame's
    right and bottom remainders are left out; a frame smaller than one region is one region."""
    p = _normalised_probabilities(probabilities)
    return _region_scores(p, _entropy(p), region)


def _region_scores(p: np.ndarray, entropy: np.ndarray, region: int) -> np.ndarray:
    if region < 1:
        raise ValueError(f"region must be at least 1 pixel, got {region}")
    classes, height, width = p.shape
    rows, cols = max(1, height // region), max(1, width // region)
    rh, rw = min(region, height), min(region, width)
    predicted = p[:, : rows * rh, : cols * rw].argmax(axis=0)
    cell = (np.arange(rows * rh) // rh)[:, None] * cols + (np.arange(cols * rw) // rw)[None, :]
    hist = np.bincount((cell * classes + predicted).ravel(), minlength=rows * cols * classes)
    hist = hist.reshape(rows * cols, classes).astype(np.float64)
    share = hist / hist.sum(axis=1, keepdims=True)
    impurity = -(share * np.log(np.maximum(share, 1e-12))).sum(axis=1) / math.log(classes)
    mean_entropy = entropy[: rows * rh, : cols * rw].reshape(rows, rh, cols, rw).mean(axis=(1, 3)).ravel()
    return np.clip(impurity * mean_entropy, 0.0, 1.0).reshape(rows, cols)


def probability_signals(probabilities: np.ndarray, *, region: int = 32) -> dict[str, float]:
    """mean_entropy (normalised 0..1), mean_margin (top-1 minus top-2) and region_score (the highest RIPU region
    score) of C x H x W class probabilities (renormalised per pixel when they do not sum to 1)."""
    p = _normalised_probabilities(probabilities)
    entropy = _entropy(p)
    top2 = np.partition(p, p.shape[0] - 2, axis=0)[-2:]
    margin = top2[1] - top2[0]
    return {"mean_entropy": round(float(entropy.mean()), 6), "mean_margin": round(float(margin.mean()), 6),
            "region_score": round(float(_region_scores(p, entropy, region).max()), 6)}


# ------------------------------------------------------------------------------------- class-mix distances


def rarity(class_fractions: Mapping[str, float], training_frequency: Mapping[str, float]) -> float:
    """How rare the frame's classes are for the training set, 0..1: the cross-entropy of the frame's class mix
    under the training frequencies, sum of fraction x -log(max(frequency, 1e-4)) over the frame's classes (fractions
    renormalised to sum to 1), divided by -log(1e-4). A class the training set lacks counts as frequency 1e-4."""
    total = sum(max(0.0, float(f)) for f in class_fractions.values())
    if total <= 0:
        return 0.0
    surprise = sum(max(0.0, float(f)) / total * -math.log(max(float(training_frequency.get(name, 0.0)),
                                                               MIN_FREQUENCY))
                   for name, f in class_fractions.items())
    return round(min(1.0, surprise / -math.log(MIN_FREQUENCY)), 6)


def jensen_shannon_distance(p_counts: Sequence[float], q_counts: Sequence[float]) -> float:
    """Jensen-Shannon distance (square root of the divergence, base 2: 0 identical .. 1 disjoint) of two
    histograms or distributions over the same bins."""
    p = np.asarray(p_counts, dtype=np.float64)
    q = np.asarray(q_counts, dtype=np.float64)
    if p.shape != q.shape or p.ndim != 1:
        raise ValueError(f"Jensen-Shannon distance needs two histograms over the same bins, got {p.shape} and "
                         f"{q.shape}")
    if (p < 0).any() or (q < 0).any():
        raise ValueError("Jensen-Shannon distance: counts must not be negative")
    if p.sum() <= 0 or q.sum() <= 0:
        raise ValueError("Jensen-Shannon distance: a histogram is empty (no values to compare)")
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float((a[nz] * np.log2(a[nz] / m[nz])).sum())

    return round(math.sqrt(max(0.0, min(1.0, (kl(p) + kl(q)) / 2))), 6)


def distribution_distance(class_fractions: Mapping[str, float], reference_fractions: Mapping[str, float]) -> float:
    """Jensen-Shannon distance (base 2, 0..1) between a frame's class mix and a reference mix (each renormalised);
    1 when exactly one of them is empty."""
    names = sorted(set(class_fractions) | set(reference_fractions))
    p = [max(0.0, float(class_fractions.get(n, 0.0))) for n in names]
    q = [max(0.0, float(reference_fractions.get(n, 0.0))) for n in names]
    if sum(p) <= 0 or sum(q) <= 0:
        return 0.0 if sum(p) <= 0 and sum(q) <= 0 else 1.0
    return jensen_shannon_distance(p, q)


# ----------------------------------------------------------------------------------------------- drift


def _numeric_signal(signal: str) -> tuple[float, ...]:
    if signal not in SIGNAL_BIN_EDGES:
        raise ValueError(f"{signal!r} is not a numeric frame signal (known: {', '.join(SIGNAL_BIN_EDGES)})")
    return SIGNAL_BIN_EDGES[signal]


def finite_values(values: Iterable[Any]) -> np.ndarray:
    """The finite values as a float64 array (None, strings, NaN and infinities left out). A numeric numpy array takes
    the fast path (no Python loop per value: a week of 10 cameras at 2 Hz is 12 million values per signal)."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiub":
        array = values.astype(np.float64, copy=False).ravel()
    else:
        array = np.asarray([float(v) for v in values if v is not None and not isinstance(v, str)], dtype=np.float64)
    return array[np.isfinite(array)]


def histogram(values: Iterable[float | None], signal: str) -> list[int]:
    """Counts of the values in the signal's fixed bins (contracts.signals.SIGNAL_BIN_EDGES): None and NaN left out.
    Bins are CloudWatch PR(n:m)'s (contracts.signals ``BIN_EDGE_CONVENTION``): bin i holds (edges[i], edges[i+1]],
    exclusive below and inclusive above, so a value exactly on an inner edge is in the lower bin; the first bin also
    holds everything at or below its lower edge, the last everything above its upper edge (PR(:m), PR(n:))."""
    edges = np.asarray(_numeric_signal(signal))
    data = finite_values(values)
    index = np.clip(np.searchsorted(edges, data, side="left") - 1, 0, len(edges) - 2)
    return np.bincount(index, minlength=len(edges) - 1).astype(int).tolist()


def population_stability_index(ref_counts: Sequence[float], cur_counts: Sequence[float],
                               epsilon: float = 1e-4) -> float:
    """PSI = sum over bins of (cur% - ref%) x ln(cur% / ref%), shares floored at ``epsilon`` (empty bins)."""
    ref = np.asarray(ref_counts, dtype=np.float64)
    cur = np.asarray(cur_counts, dtype=np.float64)
    if ref.shape != cur.shape or ref.ndim != 1:
        raise ValueError(f"PSI needs two histograms over the same bins, got {ref.shape} and {cur.shape}")
    if ref.sum() <= 0 or cur.sum() <= 0:
        raise ValueError("PSI: a histogram is empty (no values to compare)")
    p = np.maximum(ref / ref.sum(), epsilon)
    q = np.maximum(cur / cur.sum(), epsilon)
    return round(float(((q - p) * np.log(q / p)).sum()), 6)


def _signal_profile(values: np.ndarray, signal: str, chunk_size: int) -> dict[str, Any]:
    chunks = [values[i : i + chunk_size] for i in range(0, len(values), chunk_size)]
    return {
        "edges": list(SIGNAL_BIN_EDGES[signal]),
        "counts": histogram(values, signal),
        "mean": round(float(values.mean()), 6) if len(values) else None,
        "std": round(float(values.std()), 6) if len(values) else None,
        "chunk_means": [round(float(c.mean()), 6) for c in chunks if len(c)],
    }


def reference_profile(records: Iterable[Mapping[str, Any]], *, camera_of: Callable[[Mapping[str, Any]], str] =
                      lambda record: ALL_CAMERAS, chunk_size: int = 500,
                      model_package_version: str | None = None) -> dict[str, Any]:
    """The reference profile document (contracts.signals) of per-frame signal records: per camera and over all
    cameras (``"*"``), per monitored signal its histogram, mean, standard deviation and the means of consecutive
    chunks of ``chunk_size`` frames (in record order) with a value (the band of NannyML-style mean +/- 3 sigma)."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    values: dict[str, dict[str, list[Any]]] = {ALL_CAMERAS: {s: [] for s in MONITORED_SIGNALS}}
    frames = 0
    for record in records:
        frames += 1
        camera = camera_of(record)
        targets = [values[ALL_CAMERAS]]
        if camera != ALL_CAMERAS:
            targets.append(values.setdefault(camera, {s: [] for s in MONITORED_SIGNALS}))
        for signal in MONITORED_SIGNALS:
            value = record.get(signal)
            for target in targets:
                target[signal].append(value)
    cameras = {camera: {signal: _signal_profile(finite_values(raw), signal, chunk_size) for signal, raw in by.items()}
               for camera, by in sorted(values.items())}
    return {"schema_version": REFERENCE_PROFILE_SCHEMA_VERSION, "signals_version": SIGNALS_VERSION,
            "model_package_version": model_package_version, "frames": frames, "cameras": cameras}


def frame_signals(input: Mapping[str, Any] | None = None, output: Mapping[str, Any] | None = None,  # noqa: A002
                  flicker: float | None = None, model: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The flat per-frame record: every FRAME_SIGNALS name, None where not computed. A name that is not a signal of
    its part (input, output, model) is a ValueError."""
    record: dict[str, Any] = {s.name: None for s in FRAME_SIGNALS}
    for kind, part in (("input", input), ("output", output), ("model", model)):
        for name, value in (part or {}).items():
            if name not in SIGNALS or SIGNALS[name].kind != kind:
                raise ValueError(f"{name!r} is not an {kind} signal (known: "
                                 f"{', '.join(s.name for s in FRAME_SIGNALS if s.kind == kind)})")
            record[name] = value
    record["flicker"] = flicker
    return record
