"""A frame in, a mask out, the way an edge bundle says: the one definition of the network's input and output.

The export step (export/model.py, Python 3.11 with MXNet) measures parity with these functions, and
``roadseg segment`` (any Python with ONNX Runtime) segments with them, so both feed the network the same tensor.
The frame itself is prepared first by the ingest function's own ``prepare_frame`` (validation, EXIF orientation,
ROI, fit into the serving size, JPEG); this module starts from that inference JPEG. numpy and Pillow only.

Loading a bundle (``EdgeBundle.load(root, location)``) is here too, the one reading of a bundle folder that
``roadseg segment`` and ``labelling.scoring`` share: bundle.json, model.onnx against its SHA-256, the frame
preparation and classes read through the functions' own settings codec (segcore.settings), and the input and output
checked against what ``network_input`` and ``logits_to_mask`` do. A bad bundle raises ``BundleError`` (a ValueError)
with one line naming the bundle, the file and the key; each caller turns it into its own error (exit code 2).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from contracts.bundle import BUNDLE, FIT, MEAN, PREPARE_FUNCTION, STD, validate_bundle, validate_preprocessing
from contracts.documents import DocumentError


def network_input(jpeg: bytes | Image.Image, network_size: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
    """The float32 NCHW tensor [1, 3, H, W] for ``network_size`` = (width, height), and the frame's own (width,
    height) inside it. RGB scaled to 0..1, normalised with ``MEAN``/``STD``; a frame smaller than the network
    (another aspect ratio) is padded bottom-right with zeros (``FIT``), i.e. with the mean colour."""
    im = jpeg if isinstance(jpeg, Image.Image) else Image.open(io.BytesIO(jpeg))
    im = im.convert("RGB")
    width, height = network_size
    if im.width > width or im.height > height:
        raise ValueError(
            f"a {im.width}x{im.height} frame does not fit the network's {width}x{height} input ({FIT}): prepare it"
            " with the bundle's preprocessing first"
        )
    rgb = np.asarray(im, dtype=np.float32) / 255.0
    normalised = (rgb - np.asarray(MEAN, dtype=np.float32)) / np.asarray(STD, dtype=np.float32)
    tensor = np.zeros((1, 3, height, width), dtype=np.float32)
    tensor[0, :, : im.height, : im.width] = normalised.transpose(2, 0, 1)
    return tensor, (im.width, im.height)


def logits_to_mask(logits: np.ndarray, frame_size: tuple[int, int]) -> np.ndarray:
    """Class indices (uint8, height x width of the frame) from logits [1, C, H, W]: argmax over classes, the
    padding cut off."""
    if logits.ndim != 4 or logits.shape[0] != 1:
        raise ValueError(f"expected logits of shape [1, C, H, W], got {list(logits.shape)}")
    if logits.shape[1] > 255:
        raise ValueError(f"{logits.shape[1]} classes do not fit a uint8 mask (255 is the ignore value)")
    width, height = frame_size
    return np.argmax(logits[0, :, :height, :width], axis=0).astype(np.uint8)


class BundleError(ValueError):
    """A bundle that cannot be run: one line naming the bundle, the file and the key, and how to fix it."""


# Where each settings variable comes from in the bundle, to name the file and key in an error.
VARIABLE_SOURCES = {
    "CLASS_NAMES": f"{BUNDLE.classes} classes[].name", "CLASS_COLORS": f"{BUNDLE.classes} classes[].color",
    "IGNORE_INDEX": f"{BUNDLE.classes} ignore_index", "VRU_CLASSES": f"{BUNDLE.classes} vulnerable_road_users"}


# -- loading a bundle --------------------------------------------------------------------------------------------------

class BundleFile:
    """One JSON file of a bundle, checked with its contract validator when ``contracts.bundle`` has one (extra keys
    allowed); errors name the bundle, the file and the key."""

    def __init__(self, root: Path, name: str, location: str, validate: Callable[[Any], Any] | None = None) -> None:
        self.name, self.location = name, location
        path = root / name
        if not path.is_file():
            raise BundleError(f"bundle {location}: {name} is missing: is this an edge bundle (the ExportModel step's "
                            "bundle/ folder)?")
        try:
            self.document = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BundleError(f"bundle {location}: {name} is not valid JSON: {exc}") from None
        if not isinstance(self.document, dict):
            raise BundleError(f"bundle {location}: {name} must hold a JSON object, not {type(self.document).__name__}")
        if validate is not None:
            try:
                validate(self.document)
            except DocumentError as exc:
                raise self.error(exc.key or "(top level)", exc.problem) from None

    def error(self, key: str, problem: str) -> BundleError:
        return BundleError(f"bundle {self.location}: {self.name} {key}: {problem}")

    def get(self, key: str, kind: type | tuple[type, ...], *, within: Any = None, prefix: str = "") -> Any:
        """The value at a dotted ``key`` (of ``within``, named ``prefix``, else of the document); ``kind`` as for
        isinstance, except that a bool is no int."""
        value: Any = self.document if within is None else within
        for part in key.split("."):
            if not isinstance(value, dict) or part not in value:
                raise self.error(prefix + key, "required key is missing")
            value = value[part]
        if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _kinds(kind)):
            names = " or ".join(k.__name__ for k in _kinds(kind))
            raise self.error(prefix + key, f"must be {names}, got {json.dumps(value)[:80]}")
        return value


def _kinds(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


@dataclass(frozen=True)
class EdgeBundle:
    """A checked edge bundle on disk: the settings of the service's functions, the network's input and the model."""

    location: str  # as the user named it (a folder or an s3:// prefix)
    onnx_path: Path
    settings: Any  # segcore.settings.Settings: frame preparation from preprocessing.json, classes.json
    input_name: str
    network_size: tuple[int, int]  # (width, height) of the network's input
    head: str
    backbone: str
    onnx_sha256: str = ""  # of model.onnx, checked against bundle.json

    @property
    def num_classes(self) -> int:
        return len(self.settings.class_names)

    @classmethod
    def load(cls, root: Path, location: str | None = None) -> EdgeBundle:
        location = location or str(root)
        if not root.exists():
            raise BundleError(f"bundle {location} does not exist")
        if not root.is_dir():
            raise BundleError(f"bundle {location} is not a folder (an edge bundle is the folder holding bundle.json)")
        manifest = BundleFile(root, BUNDLE.manifest, location, validate_bundle)
        onnx_path = root / BUNDLE.onnx
        if manifest.document["onnx"]["status"] != "exported" or not onnx_path.is_file():
            raise _no_onnx(manifest, root)
        digest = _check_digest(manifest, onnx_path)
        preprocessing = BundleFile(root, BUNDLE.preprocessing, location, validate_preprocessing)
        classes = BundleFile(root, BUNDLE.classes, location)
        settings = _settings(preprocessing, classes)
        input_name, network_size = _network_input(preprocessing, settings)
        _check_output(preprocessing, manifest, settings)
        return cls(location=location, onnx_path=onnx_path, settings=settings, input_name=input_name,
                   network_size=network_size, head=manifest.document["head"], backbone=manifest.document["backbone"],
                   onnx_sha256=digest)

    def describe(self) -> str:
        w, h = self.network_size
        s = self.settings
        roi = f", ROI {list(s.roi)}" if s.roi else ""
        return (f"bundle {self.location}: {self.head}/{self.backbone} {w}x{h}, {self.num_classes} classes; frames "
                f"fitted into {s.target_width}x{s.target_height}{roi}, JPEG quality {s.jpeg_quality}")


def _no_onnx(manifest: BundleFile, root: Path) -> BundleError:
    onnx = manifest.document["onnx"]
    if onnx["status"] == "exported":
        why = "bundle.json lists it (onnx.status exported): an incomplete copy? copy the bundle again"
    else:
        why = f"the export could not produce ONNX for this model ({onnx['reason']})"
    return BundleError(f"bundle {manifest.location} has no {BUNDLE.onnx}: {why}; its MXNet graph ({BUNDLE.symbol}, "
                     f"{BUNDLE.params}, {BUNDLE.neo_archive}) is for SageMaker Neo compilation, which ONNX "
                       "Runtime (roadseg segment, labelling.scoring) does not run")


def _check_digest(manifest: BundleFile, path: Path) -> str:
    """The file against bundle.json's SHA-256 and size (a truncated or altered copy fails here)."""
    entry = manifest.document["files"].get(path.name)
    if entry is None:
        raise manifest.error("files", f"does not list {path.name}")
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != entry["sha256"].lower() or path.stat().st_size != entry["bytes"]:
        raise BundleError(f"bundle {manifest.location}: {path.name} does not match its SHA-256 in bundle.json "
                        "(a partial or altered copy): copy the bundle again")
    return digest.hexdigest()


def _settings(preprocessing: BundleFile, classes: BundleFile) -> Any:
    """The ingest and postprocess functions' settings from the bundle, read through their own codec: the same
    validation (target size, ROI, limits, class names and colours, ignore index, VRU classes) and defaults."""
    from contracts.lambda_env import FRAME_PREPARATION_VARIABLES
    from segcore.settings import Settings, SettingsError

    function = preprocessing.get("frame_preparation.function", str)
    if function != PREPARE_FUNCTION:
        raise preprocessing.error("frame_preparation.function", f"is {function!r}; bundles are run with frames "
                                                                f"prepared by {PREPARE_FUNCTION} only")
    given = preprocessing.get("frame_preparation.environment", dict)
    missing = [name for name in FRAME_PREPARATION_VARIABLES if name not in given]
    if missing:
        raise preprocessing.error(f"frame_preparation.environment.{missing[0]}", "required key is missing (the "
                                  f"frame preparation is all of {', '.join(FRAME_PREPARATION_VARIABLES)})")
    environment = {name: given[name] for name in FRAME_PREPARATION_VARIABLES}
    names, colors = _classes(classes)
    environment["CLASS_NAMES"], environment["CLASS_COLORS"] = json.dumps(names), json.dumps(colors)
    environment["IGNORE_INDEX"] = str(classes.get("ignore_index", int))
    environment["VRU_CLASSES"] = json.dumps(classes.get("vulnerable_road_users", list))
    try:
        return Settings.from_env(environment)
    except SettingsError as exc:
        problems = []
        for problem in exc.problems:
            variable = problem.split(":", 1)[0]
            source = VARIABLE_SOURCES.get(variable, f"{BUNDLE.preprocessing} frame_preparation.environment.{variable}")
            problems.append(f"{source} ({problem})")
        raise BundleError(f"bundle {preprocessing.location}: " + "; ".join(problems)) from None


def _classes(classes: BundleFile) -> tuple[list[Any], list[Any]]:
    """Names and colours in class-index order from ``classes``: [{"index", "name", "color"}, ...]."""
    entries = classes.get("classes", list)
    names, colors = [], []
    for position, entry in enumerate(entries):
        where = f"classes[{position}]."
        index = classes.get("index", int, within=entry, prefix=where)
        if index != position:
            raise classes.error(where + "index", f"is {index}; classes must be listed by index from 0")
        names.append(classes.get("name", str, within=entry, prefix=where))
        colors.append(classes.get("color", list, within=entry, prefix=where))
    declared = classes.document.get("num_classes")
    if declared is not None and declared != len(entries):
        raise classes.error("num_classes", f"is {declared} but classes lists {len(entries)}")
    return names, colors


def _network_input(preprocessing: BundleFile, settings: Any) -> tuple[str, tuple[int, int]]:
    """The input name and size; the rest must be what ``segcore.bundle_runtime.network_input`` does."""
    spec = preprocessing.document["input"]  # validated: every key present and typed
    width, height = spec["width"], spec["height"]
    expected = {"dtype": "float32", "layout": "NCHW", "channel_order": "RGB", "fit": FIT,
                "shape": [1, 3, height, width]}
    for key, value in expected.items():
        if spec[key] != value:
            raise _unlike_runtime(preprocessing, f"input.{key}", spec[key], value)
    for key, reference in (("scale", (1 / 255,)), ("mean", MEAN), ("std", STD)):
        value = spec[key] if isinstance(spec[key], list) else [spec[key]]
        if len(value) != len(reference) or not np.allclose(value, reference, rtol=0, atol=1e-6):
            raise _unlike_runtime(preprocessing, f"input.{key}", spec[key], list(reference))
    if width < settings.target_width or height < settings.target_height:
        raise preprocessing.error("input", f"the network takes {width}x{height} but the frame preparation fits frames "
                                           f"into {settings.target_width}x{settings.target_height}")
    return spec["name"], (width, height)


def _check_output(preprocessing: BundleFile, manifest: BundleFile, settings: Any) -> None:
    output = preprocessing.document["output"]
    width, height = preprocessing.document["input"]["width"], preprocessing.document["input"]["height"]
    for key, value in {"layout": "NCHW", "meaning": "logits"}.items():
        if output[key] != value:
            raise _unlike_runtime(preprocessing, f"output.{key}", output[key], value)
    count = len(settings.class_names)
    if output["shape"] != [1, count, height, width]:
        raise preprocessing.error("output.shape", f"is {output['shape']}; with the {count} classes of "
                                                  f"{BUNDLE.classes} it must be {[1, count, height, width]}")
    if output["ignore_index"] != settings.ignore_index:
        raise preprocessing.error("output.ignore_index", f"is {output['ignore_index']} but {BUNDLE.classes} says "
                                                         f"{settings.ignore_index}")
    if manifest.document["num_classes"] != count:
        raise manifest.error("num_classes", f"is {manifest.document['num_classes']} but {BUNDLE.classes} lists {count}")


def _unlike_runtime(preprocessing: BundleFile, key: str, value: Any, expected: Any) -> BundleError:
    return preprocessing.error(key, f"is {json.dumps(value)}, but roadseg segment (segcore.bundle_runtime) works "
                                    f"with {json.dumps(expected)}; use the roadseg version of the exporter")
