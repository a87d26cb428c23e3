"""Per-frame signals: their names, types, units, fixed histogram bins and the reference profile document.

Standard library only. One list (``FRAME_SIGNALS``) is shared by everything that computes, stores or compares a
frame's signals, so the data engine (issue 22: selection) and label-free monitoring (issue 23: drift per camera)
cannot drift apart:

- INPUT signals, computed by the ingest function from the prepared frame (segcore.signals.input_signals) and carried
  to the postprocess function in the async input object's user metadata (``INPUT_SIGNALS_METADATA_KEY``);
- OUTPUT signals, computed by the postprocess function from the mask (segcore.signals.output_signals);
- SEQUENCE signals, computed by the drive builder from consecutive masks of one camera (label flicker);
- MODEL signals, computed only where probabilities are computed (candidate-pool scoring), never for every frame.

The result document carries them in its optional object ``RESULT_SIGNALS_KEY`` (signal name -> number, string or
null); the drive timeline has one column per signal (contracts.drive_timeline.TIMELINE_COLUMNS); the reference
profile (``REFERENCE_PROFILE_FILE``, next to the model package) holds their distributions on the frames the model was
gated on, as histograms over ``SIGNAL_BIN_EDGES``. The bins are fixed (never fitted to data) so histograms of
different runs, cameras and windows add up and compare bin by bin.

Class groups: a frame's output fractions are shares of the mask's LABELLED pixels (the ignore value excluded) in
each group of ``CLASS_GROUPS``. Class names are matched after ``normalise_class_name`` (lower case, every run of other
characters an underscore: "traffic light" -> "traffic_light"). The groups are disjoint: vulnerable road users (the
scheme's own ``vulnerable_road_users``, else ``DEFAULT_VRU_CLASSES``) are never also vehicles, so a bicycle or a
motorcycle counts as VRU (like segcore.masks.VRU_CLASS_NAMES), and "vehicles" are the motor vehicles and trains.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from contracts.documents import INT, NUMBER, STR, DocumentError, ListOf, MapOf, Nullable, _validate

SIGNALS_VERSION = "1"

SIGNAL_KINDS = ("input", "output", "sequence", "model")


@dataclass(frozen=True)
class FrameSignal:
    """One per-frame signal: its column name, Glue/Hive type, unit and meaning; ``kind`` says who computes it."""

    name: str
    glue_type: str  # "double" | "int" | "string", as a Glue table column takes it
    unit: str
    comment: str
    kind: str = "input"  # SIGNAL_KINDS


FRAME_SIGNALS: tuple[FrameSignal, ...] = (
    # input: the prepared frame (what the model sees), downsampled to <= 256 px on its long side first
    FrameSignal("brightness", "double", "0..1", "mean luma (BT.601) of the prepared frame", "input"),
    FrameSignal("contrast", "double", "0..1", "standard deviation of the luma of the prepared frame", "input"),
    FrameSignal("sharpness", "double", ">=0",
                "variance of the 4-neighbour Laplacian of the luma (0..255) at <= 256 px long side; low = blurred",
                "input"),
    FrameSignal("saturation", "double", "0..1", "mean HSV saturation of the prepared frame", "input"),
    FrameSignal("dhash", "string", "16 hex digits",
                "64-bit difference hash (9x8 grey thumbnail) for near-duplicate search (Hamming distance)", "input"),
    # output: the mask, shares of its labelled pixels
    FrameSignal("frac_road", "double", "0..1", "share of the mask's labelled pixels in the road group", "output"),
    FrameSignal("frac_sidewalk", "double", "0..1", "share of the mask's labelled pixels in the sidewalk group",
                "output"),
    FrameSignal("frac_vegetation", "double", "0..1", "share of the mask's labelled pixels in the vegetation group",
                "output"),
    FrameSignal("frac_sky", "double", "0..1", "share of the mask's labelled pixels in the sky group", "output"),
    FrameSignal("frac_vehicles", "double", "0..1", "share of the mask's labelled pixels in the vehicles group",
                "output"),
    FrameSignal("frac_vru", "double", "0..1",
                "share of the mask's labelled pixels in the scheme's vulnerable road user classes", "output"),
    FrameSignal("drivable_fraction", "double", "0..1", "share of the mask's labelled pixels that are drivable",
                "output"),
    FrameSignal("vru_present", "int", "0/1", "1 when a vulnerable road user class covers at least the minimum pixels",
                "output"),
    # sequence: the drive builder, consecutive masks of one camera
    FrameSignal("flicker", "double", "0..1",
                "share of labelled pixels whose class changed since the camera's previous frame (downscaled masks); "
                "null for a camera's first frame", "sequence"),
    # model: only where probabilities are computed (candidate-pool scoring)
    FrameSignal("mean_entropy", "double", "0..1", "mean pixel entropy of the class probabilities / log(classes)",
                "model"),
    FrameSignal("mean_margin", "double", "0..1", "mean top-1 minus top-2 class probability", "model"),
    FrameSignal("region_score", "double", "0..1",
                "max over k x k regions of class impurity x mean entropy (RIPU, CVPR 2022)", "model"),
)

SIGNALS: Mapping[str, FrameSignal] = MappingProxyType({s.name: s for s in FRAME_SIGNALS})
INPUT_SIGNALS = tuple(s.name for s in FRAME_SIGNALS if s.kind == "input")
OUTPUT_SIGNALS = tuple(s.name for s in FRAME_SIGNALS if s.kind == "output")
SEQUENCE_SIGNALS = tuple(s.name for s in FRAME_SIGNALS if s.kind == "sequence")
MODEL_SIGNALS = tuple(s.name for s in FRAME_SIGNALS if s.kind == "model")
NUMERIC_SIGNALS = tuple(s.name for s in FRAME_SIGNALS if s.glue_type != "string")
MONITORED_SIGNALS = NUMERIC_SIGNALS  # what the drift monitor compares: every numeric signal (all but dhash)

CLASS_GROUP_NAMES = ("road", "sidewalk", "vegetation", "sky", "vehicles", "vru")
# Group -> normalised class names. Cityscapes and CamVid names are covered; a custom scheme's classes join a group
# by name. "vru" lists the default vulnerable road users; a scheme's own list replaces it (segcore.signals).
DEFAULT_VRU_CLASSES = ("person", "pedestrian", "rider", "bicycle", "bicyclist", "cyclist", "motorcycle",
                       "motorcyclist", "motorcycle_scooter")
CLASS_GROUPS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "road": ("road", "lane_marking", "road_marking"),
    "sidewalk": ("sidewalk", "pavement", "footpath"),
    "vegetation": ("vegetation", "tree"),
    "sky": ("sky",),
    "vehicles": ("car", "truck", "bus", "train", "caravan", "trailer", "van", "suv_pickup_truck", "truck_bus",
                 "on_rails"),
    "vru": DEFAULT_VRU_CLASSES,
})
GROUP_SIGNALS: Mapping[str, str] = MappingProxyType({group: f"frac_{group}" for group in CLASS_GROUP_NAMES})


def normalise_class_name(name: str) -> str:
    """Lower case, every run of characters other than letters and digits one underscore, none at the ends."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


# --------------------------------------------------------------------------------------------------- bins

def _equal_edges(low: float, high: float, bins: int) -> tuple[float, ...]:
    return tuple(round(low + (high - low) * i / bins, 10) for i in range(bins + 1))


# Sharpness (Laplacian variance of 0..255 luma) spans decades: 0, then 10^(k/4) for k = -4..20 (0.1 .. 100000).
# A blurred frame is below ~50, a sharp street scene a few hundred to a few thousand.
SHARPNESS_EDGES = (0.0, *(round(10 ** (k / 4), 6) for k in range(-4, 21)))
UNIT_EDGES = _equal_edges(0.0, 1.0, 20)
# How a value is binned (segcore.signals.histogram, and the drift job's PR(n:m) queries, monitoring.queries): bin i is
# (edges[i], edges[i+1]], exclusive below and inclusive above, as CloudWatch's percentile-rank statistic PR(n:m)
# counts ("Statistics definitions": https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/
# Statistics-definitions.html); the first bin also holds values at or below edges[0] (PR(:m)), the last values above
# edges[-1] (PR(n:)). One convention, so a reference histogram and a CloudWatch window agree bin for bin.
BIN_EDGE_CONVENTION = "(low, high]"
SIGNAL_BIN_EDGES: Mapping[str, tuple[float, ...]] = MappingProxyType({
    **{name: UNIT_EDGES for name in NUMERIC_SIGNALS},
    "sharpness": SHARPNESS_EDGES,
    "vru_present": (0.0, 0.5, 1.0),
})

# -------------------------------------------------------------------------------------------- documents

RESULT_SIGNALS_KEY = "signals"  # the result document's optional object: signal name -> number | string | null
INPUT_SIGNALS_METADATA_KEY = "signals"  # S3 user metadata (x-amz-meta-signals) of the async input object
INPUT_SIGNALS_METADATA_MAX_CHARS = 160  # S3 user metadata is at most 2 KB in all; keep ours small

REFERENCE_PROFILE_FILE = "reference-profile.json"
REFERENCE_PROFILE_SCHEMA_VERSION = "1.0"
ALL_CAMERAS = "*"

_SIGNAL_PROFILE = {"edges": ListOf(NUMBER), "counts": ListOf(INT), "mean": Nullable(NUMBER), "std": Nullable(NUMBER),
                   "chunk_means": ListOf(NUMBER)}
REFERENCE_PROFILE_SCHEMAS: dict[str, dict[str, Any]] = {
    "1.0": {
        "schema_version": STR,
        "signals_version": STR,
        "model_package_version": Nullable(STR),
        "frames": INT,
        "cameras": MapOf(MapOf(_SIGNAL_PROFILE)),  # camera | "*" -> signal -> its distribution
    },
}


# Where a model package's reference profile is: the gate's RegisterModel step records it as the statistics of the
# package's drift check baselines, DriftCheckBaselines.ModelDataQuality.Statistics (a MetricsSource: ContentType
# application/json, S3Uri), which DescribeModelPackage returns as it was given
# (https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_DriftCheckBaselines.html). SageMaker stores the URI
# and never reads the file (Model Monitor, which would, is not used).
REFERENCE_PROFILE_LOCATION = ("DriftCheckBaselines", "ModelDataQuality", "Statistics", "S3Uri")


def reference_profile_uri(model_package: Mapping[str, Any]) -> str | None:
    """The S3 URI of a model package's reference profile from its DescribeModelPackage response (or the
    CreateModelPackage request), None for a package registered without one (before the gate wrote profiles)."""
    node: Any = model_package
    for key in REFERENCE_PROFILE_LOCATION:
        node = node.get(key) if isinstance(node, Mapping) else None
    return node if isinstance(node, str) and node else None


def validate_reference_profile(doc: Any) -> dict[str, Any]:
    """The document itself if it is a valid reference profile, else DocumentError naming the key: beyond the types,
    every signal is a monitored signal, its edges are ``SIGNAL_BIN_EDGES``' (histograms only compare bin by bin) and
    it has one count per bin."""
    _validate("reference profile", doc, REFERENCE_PROFILE_SCHEMAS)
    if doc["signals_version"] != SIGNALS_VERSION:
        raise DocumentError("reference profile", "signals_version",
                            f"is {doc['signals_version']!r}, this code computes version {SIGNALS_VERSION!r}: "
                            "write the profile again with this version")
    for camera, signals in doc["cameras"].items():
        for name, profile in signals.items():
            path = f"cameras.{camera}.{name}"
            if name not in MONITORED_SIGNALS:
                raise DocumentError("reference profile", path,
                                    f"is not a monitored signal (known: {', '.join(MONITORED_SIGNALS)})")
            edges = tuple(float(e) for e in profile["edges"])
            if not all(math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
                       for a, b in zip(edges, SIGNAL_BIN_EDGES[name], strict=False)) \
                    or len(edges) != len(SIGNAL_BIN_EDGES[name]):
                raise DocumentError("reference profile", f"{path}.edges",
                                    f"are not the fixed bin edges of {name} (contracts.signals.SIGNAL_BIN_EDGES)")
            if len(profile["counts"]) != len(edges) - 1:
                raise DocumentError("reference profile", f"{path}.counts",
                                    f"has {len(profile['counts'])} counts for {len(edges) - 1} bins")
            if any(c < 0 for c in profile["counts"]):
                raise DocumentError("reference profile", f"{path}.counts", "must not be negative")
    return doc


def validate_result_signals(value: Any) -> dict[str, Any]:
    """The result document's ``signals`` object if valid, else DocumentError: known names, numbers (strings for
    dhash) or null."""
    if not isinstance(value, dict):
        raise DocumentError("result", RESULT_SIGNALS_KEY, f"must be an object, got {type(value).__name__}")
    for name, item in value.items():
        path = f"{RESULT_SIGNALS_KEY}.{name}"
        if name not in SIGNALS:
            raise DocumentError("result", path, f"is not a frame signal (known: {', '.join(SIGNALS)})")
        if item is None:
            continue
        if SIGNALS[name].glue_type == "string":
            if not isinstance(item, str):
                raise DocumentError("result", path, f"must be a string or null, got {type(item).__name__}")
        elif isinstance(item, bool) or not isinstance(item, (int, float)) or not math.isfinite(item):
            raise DocumentError("result", path, f"must be a finite number or null, got {item!r}")
    return value
