"""Scenes of a drive: what lies ahead of the vehicle in each frame, and the time windows worth a look.

Two parts, both pure (arrays and records in, values out; no files, no AWS):

- ``ahead_of_vehicle``: from one class-index mask, the drivable area ahead fraction and the vulnerable road user
  (VRU) classes in the drivable area ahead, inside the ego corridor (``EgoCorridor``; the definitions are in
  contracts/drive_timeline.py's docstring).
- ``find_scenes``: from a camera's per-frame records in time order, the windows where a frame is ACTIVE: a VRU in
  the drivable area ahead (``vru_in_drivable_ahead``), or the drivable area ahead below ``collapse_below``
  (``drivable_ahead_collapse``). Every frame slot is active, inactive or UNKNOWN (quarantined, failed, processed
  without a mask, or missing: a gap in the frame times of more than 1.5 frame intervals counts
  ``round(gap / interval) - 1`` missing slots). A window starts at an active frame and continues across at most
  ``max_gap_frames`` unknown slots in a row; an inactive frame ends it. start / end are the first / last active
  frame's time, duration = end - start; windows shorter than ``min_duration_s`` or with fewer than ``min_frames``
  active frames are dropped.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import numpy as np

VRU_AHEAD = "vru_in_drivable_ahead"
COLLAPSE = "drivable_ahead_collapse"


@dataclass(frozen=True)
class EgoCorridor:
    """A trapezoid ahead of the vehicle, in fractions of the frame (x right, y down): the lower-middle by default."""

    top: float = 0.55
    bottom: float = 1.0
    top_left: float = 0.40
    top_right: float = 0.60
    bottom_left: float = 0.15
    bottom_right: float = 0.85
    touch_px: int = 1  # a VRU pixel within this many pixels (8-neighbourhood) of a drivable corridor pixel is "in"

    def __post_init__(self) -> None:
        values = (self.top, self.bottom, self.top_left, self.top_right, self.bottom_left, self.bottom_right)
        if not all(0.0 <= v <= 1.0 for v in values):
            raise ValueError(f"ego corridor fractions must lie within 0..1, got {self}")
        if self.top >= self.bottom or self.top_left > self.top_right or self.bottom_left > self.bottom_right:
            raise ValueError(f"ego corridor: need top < bottom and left <= right on both edges, got {self}")
        if self.touch_px < 0:
            raise ValueError(f"ego corridor: touch_px must be >= 0, got {self.touch_px}")

    @classmethod
    def parse(cls, text: str) -> EgoCorridor:
        """``top,bottom,top_left,top_right,bottom_left,bottom_right`` fractions (the command line's form)."""
        try:
            values = [float(v) for v in text.split(",")]
        except ValueError:
            values = []
        if len(values) != 6:
            raise ValueError(f"--corridor {text!r}: expected six fractions top,bottom,top_left,top_right,"
                             "bottom_left,bottom_right (e.g. 0.55,1,0.4,0.6,0.15,0.85)")
        return cls(*values)

    def pixels(self, height: int, width: int) -> np.ndarray:
        """bool (height, width): pixels whose centre lies inside the trapezoid (edges included)."""
        v = (np.arange(height) + 0.5) / height
        u = (np.arange(width) + 0.5) / width
        t = np.clip((v - self.top) / (self.bottom - self.top), 0.0, 1.0)
        left = self.top_left + (self.bottom_left - self.top_left) * t
        right = self.top_right + (self.bottom_right - self.top_right) * t
        rows = (v >= self.top) & (v <= self.bottom)
        return rows[:, None] & (u[None, :] >= left[:, None]) & (u[None, :] <= right[:, None])

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Ahead:
    drivable_fraction: float | None  # None: the corridor holds no labelled pixel
    vru_classes: tuple[str, ...]  # sorted
    vru_pixels: int  # pixels of the VRU classes ahead that lie inside the corridor


def _dilate(area: np.ndarray, steps: int) -> np.ndarray:
    for _ in range(steps):
        p = np.pad(area, 1)
        area = (p[1:-1, 1:-1] | p[:-2, 1:-1] | p[2:, 1:-1] | p[1:-1, :-2] | p[1:-1, 2:]
                | p[:-2, :-2] | p[:-2, 2:] | p[2:, :-2] | p[2:, 2:])
    return area


def ahead_of_vehicle(
    mask: np.ndarray,
    *,
    drivable: Iterable[int],
    vru: Mapping[int, str],
    corridor: EgoCorridor,
    ignore_index: int = 255,
    allowed_vru: Iterable[str] | None = None,
) -> Ahead:
    """What lies ahead in one mask: drivable fraction of the corridor's labelled pixels, VRU classes touching it.

    ``allowed_vru`` restricts the classes to those the result document lists (at least vru_min_pixels pixels).
    """
    inside = corridor.pixels(*mask.shape)
    labelled = inside & (mask != ignore_index)
    drivable_ahead = inside & np.isin(mask, list(drivable))
    total = int(labelled.sum())
    fraction = round(int(drivable_ahead.sum()) / total, 6) if total else None
    near = _dilate(drivable_ahead, corridor.touch_px)
    allowed = None if allowed_vru is None else set(allowed_vru)
    classes, pixels = [], 0
    for index, name in vru.items():
        if allowed is not None and name not in allowed:
            continue
        of_class = mask == index
        if (of_class & near).any():
            classes.append(name)
            pixels += int((of_class & inside).sum())
    return Ahead(drivable_fraction=fraction, vru_classes=tuple(sorted(classes)), vru_pixels=pixels)


# ------------------------------------------------------------------------------------------ scene windows


@dataclass(frozen=True)
class FrameState:
    """What the scene finder needs of one frame (the timeline row's fields)."""

    camera: str
    time_ns: int
    frame_key: str
    status: str
    vru_classes_ahead: tuple[str, ...] | None  # None: unknown (no mask, not processed)
    vru_ahead_pixels: int | None
    drivable_ahead_fraction: float | None


@dataclass(frozen=True)
class SceneParameters:
    corridor: EgoCorridor = EgoCorridor()
    collapse_below: float = 0.2
    max_gap_frames: int = 2
    min_duration_s: float = 0.0
    min_frames: int = 1

    def __post_init__(self) -> None:
        if not 0.0 <= self.collapse_below <= 1.0:
            raise ValueError(f"collapse threshold must lie within 0..1, got {self.collapse_below}")
        if self.max_gap_frames < 0 or self.min_frames < 1 or self.min_duration_s < 0:
            raise ValueError("max_gap_frames and min_duration_s must be >= 0 and min_frames >= 1")

    def to_dict(self) -> dict:
        return {"corridor": self.corridor.to_dict(), "collapse_below": self.collapse_below,
                "max_gap_frames": self.max_gap_frames, "min_duration_s": self.min_duration_s,
                "min_frames": self.min_frames}


def iso_ns(time_ns: int) -> str:
    """ISO 8601 UTC with nanoseconds: 2026-12-03T10:15:00.123456789Z."""
    seconds, nanos = divmod(time_ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos:09d}Z"


def frame_interval_ns(times_ns: Sequence[int]) -> int | None:
    """The median interval between consecutive distinct frame times; None with fewer than two."""
    ordered = sorted(set(times_ns))
    gaps = [b - a for a, b in zip(ordered, ordered[1:], strict=False)]
    return int(statistics.median(gaps)) if gaps else None


def missing_before(previous_ns: int, time_ns: int, interval_ns: int | None) -> int:
    """Frames inferred missing between two consecutive frames: a gap above 1.5 intervals."""
    if not interval_ns or time_ns - previous_ns <= 1.5 * interval_ns:
        return 0
    return max(0, round((time_ns - previous_ns) / interval_ns) - 1)


def _state(frame: FrameState, kind: str, collapse_below: float) -> bool | None:
    """True active, False inactive, None unknown."""
    if kind == VRU_AHEAD:
        return None if frame.vru_classes_ahead is None else bool(frame.vru_classes_ahead)
    if frame.drivable_ahead_fraction is None:
        return None
    return frame.drivable_ahead_fraction < collapse_below


def _scene(kind: str, active: list[FrameState], gap_frames: int) -> dict:
    first, last = active[0], active[-1]
    if kind == VRU_AHEAD:
        peak = max(active, key=lambda f: f.vru_ahead_pixels or 0)
        classes = sorted({c for f in active for c in f.vru_classes_ahead or ()})
        peak_pixels = peak.vru_ahead_pixels
    else:
        peak = min(active, key=lambda f: f.drivable_ahead_fraction if f.drivable_ahead_fraction is not None else 1)
        classes, peak_pixels = [], None
    fractions = [f.drivable_ahead_fraction for f in active if f.drivable_ahead_fraction is not None]
    return {
        "kind": kind,
        "camera": first.camera,
        "start": iso_ns(first.time_ns),
        "end": iso_ns(last.time_ns),
        "start_ns": first.time_ns,
        "end_ns": last.time_ns,
        "duration_s": round((last.time_ns - first.time_ns) / 1e9, 6),
        "frames": len(active),
        "gap_frames": gap_frames,
        "first_frame_key": first.frame_key,
        "last_frame_key": last.frame_key,
        "peak_frame_key": peak.frame_key,
        "classes": classes,
        "peak_vru_ahead_pixels": peak_pixels,
        "min_drivable_ahead_fraction": min(fractions) if fractions else None,
    }


def find_scenes(frames: Sequence[FrameState], parameters: SceneParameters,
                interval_ns: Mapping[str, int | None] | None = None) -> list[dict]:
    """Scene windows of every camera, ordered by camera, kind and start. ``interval_ns``: camera -> the frame
    interval (default: the median interval of that camera's frames)."""
    by_camera: dict[str, list[FrameState]] = {}
    for frame in frames:
        by_camera.setdefault(frame.camera, []).append(frame)
    scenes = []
    for camera in sorted(by_camera):
        ordered = sorted(by_camera[camera], key=lambda f: f.time_ns)
        interval = (interval_ns or {}).get(camera) or frame_interval_ns([f.time_ns for f in ordered])
        for kind in (VRU_AHEAD, COLLAPSE):
            scenes.extend(_windows(ordered, kind, parameters, interval))
    return scenes


def _windows(ordered: Sequence[FrameState], kind: str, parameters: SceneParameters,
             interval: int | None) -> list[dict]:
    found: list[dict] = []
    active: list[FrameState] = []
    gap_frames = 0  # unknown slots bridged inside the current window
    pending = 0  # unknown slots since the window's last active frame

    def close() -> None:
        nonlocal active, gap_frames, pending
        if active:
            scene = _scene(kind, active, gap_frames)
            if scene["frames"] >= parameters.min_frames and scene["duration_s"] >= parameters.min_duration_s:
                found.append(scene)
        active, gap_frames, pending = [], 0, 0

    previous: FrameState | None = None
    for frame in ordered:
        if previous is not None and active:
            pending += missing_before(previous.time_ns, frame.time_ns, interval)
            if pending > parameters.max_gap_frames:
                close()
        previous = frame
        state = _state(frame, kind, parameters.collapse_below)
        if state is None:
            if active:
                pending += 1
                if pending > parameters.max_gap_frames:
                    close()
        elif state:
            gap_frames += pending if active else 0
            pending = 0
            active.append(frame)
        else:
            close()
    close()
    return found


def rank_scenes(scenes: Iterable[dict], top: int = 5) -> list[dict]:
    """The scenes most worth a look: longest first, then most frames, then earliest."""
    return sorted(scenes, key=lambda s: (-s["duration_s"], -s["frames"], s["start_ns"], s["camera"]))[:top]
