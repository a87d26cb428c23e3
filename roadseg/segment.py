"""``roadseg segment``: segment image files with an edge bundle (local folder or S3 prefix) and ONNX Runtime.

Every step is the service's own code, so a frame segmented here gives the document the pipeline would write:

- frame preparation: the ingest function's ``prepare_frame`` with the options of the bundle's ``frame_preparation``
  variables, read through the functions' settings class (``Settings.from_env``, the ``contracts.lambda_env`` codec);
  refused frames carry the ingest function's ``BadFrame`` codes;
- network input and output: ``segcore.bundle_runtime`` (what the export measured parity with);
- restoring the mask to the original frame, statistics, overlay and result document: what the postprocess function
  calls (``segcore.masks``, ``segcore.results``), with the bundle's classes as its class settings.

Per frame ``<name>.json`` (a result document, mode "edge"), ``<name>.mask.png`` (class indices at the original size)
and ``<name>.overlay.jpg`` (at the inference size, as the service draws it). Output paths mirror the inputs' paths
below their common folder, so equal file names from two folders do not overwrite each other.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from tqdm import tqdm

from contracts.bundle import BUNDLE, FIT, MEAN, PREPARE_FUNCTION, STD, validate_bundle, validate_preprocessing
from contracts.documents import DocumentError, validate_result
from roadseg.output import Printer
from roadseg.session import JobFailed, Session, UserError

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")
DEVICES = ("auto", "cpu", "cuda")
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
# The bundle files segmenting needs (an S3 bundle's MXNet graph and Neo archive are not downloaded).
NEEDED_FILES = (BUNDLE.manifest, BUNDLE.classes, BUNDLE.preprocessing, BUNDLE.onnx)
# Where each settings variable comes from in the bundle, to name the file and key in an error.
VARIABLE_SOURCES = {
    "CLASS_NAMES": f"{BUNDLE.classes} classes[].name", "CLASS_COLORS": f"{BUNDLE.classes} classes[].color",
    "IGNORE_INDEX": f"{BUNDLE.classes} ignore_index", "VRU_CLASSES": f"{BUNDLE.classes} vulnerable_road_users"}


# -- the bundle --------------------------------------------------------------------------------------------------

class BundleFile:
    """One JSON file of a bundle, checked with its contract validator when ``contracts.bundle`` has one (extra keys
    allowed); errors name the bundle, the file and the key."""

    def __init__(self, root: Path, name: str, location: str, validate: Callable[[Any], Any] | None = None) -> None:
        self.name, self.location = name, location
        path = root / name
        if not path.is_file():
            raise UserError(f"bundle {location}: {name} is missing: is this an edge bundle (the ExportModel step's "
                            "bundle/ folder)?")
        try:
            self.document = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UserError(f"bundle {location}: {name} is not valid JSON: {exc}") from None
        if not isinstance(self.document, dict):
            raise UserError(f"bundle {location}: {name} must hold a JSON object, not {type(self.document).__name__}")
        if validate is not None:
            try:
                validate(self.document)
            except DocumentError as exc:
                raise self.error(exc.key or "(top level)", exc.problem) from None

    def error(self, key: str, problem: str) -> UserError:
        return UserError(f"bundle {self.location}: {self.name} {key}: {problem}")

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

    @property
    def num_classes(self) -> int:
        return len(self.settings.class_names)

    @classmethod
    def load(cls, root: Path, location: str | None = None) -> EdgeBundle:
        location = location or str(root)
        if not root.exists():
            raise UserError(f"bundle {location} does not exist")
        if not root.is_dir():
            raise UserError(f"bundle {location} is not a folder (an edge bundle is the folder holding bundle.json)")
        manifest = BundleFile(root, BUNDLE.manifest, location, validate_bundle)
        onnx_path = root / BUNDLE.onnx
        if manifest.document["onnx"]["status"] != "exported" or not onnx_path.is_file():
            raise _no_onnx(manifest, root)
        _check_digest(manifest, onnx_path)
        preprocessing = BundleFile(root, BUNDLE.preprocessing, location, validate_preprocessing)
        classes = BundleFile(root, BUNDLE.classes, location)
        settings = _settings(preprocessing, classes)
        input_name, network_size = _network_input(preprocessing, settings)
        _check_output(preprocessing, manifest, settings)
        return cls(location=location, onnx_path=onnx_path, settings=settings, input_name=input_name,
                   network_size=network_size, head=manifest.document["head"], backbone=manifest.document["backbone"])

    def describe(self) -> str:
        w, h = self.network_size
        s = self.settings
        roi = f", ROI {list(s.roi)}" if s.roi else ""
        return (f"bundle {self.location}: {self.head}/{self.backbone} {w}x{h}, {self.num_classes} classes; frames "
                f"fitted into {s.target_width}x{s.target_height}{roi}, JPEG quality {s.jpeg_quality}")


def _no_onnx(manifest: BundleFile, root: Path) -> UserError:
    onnx = manifest.document["onnx"]
    if onnx["status"] == "exported":
        why = "bundle.json lists it (onnx.status exported): an incomplete copy? copy the bundle again"
    else:
        why = f"the export could not produce ONNX for this model ({onnx['reason']})"
    return UserError(f"bundle {manifest.location} has no {BUNDLE.onnx}: {why}; its MXNet graph ({BUNDLE.symbol}, "
                     f"{BUNDLE.params}, {BUNDLE.neo_archive}) is for SageMaker Neo compilation, which roadseg segment "
                     "does not run")


def _check_digest(manifest: BundleFile, path: Path) -> None:
    """The file against bundle.json's SHA-256 and size (a truncated or altered copy fails here)."""
    entry = manifest.document["files"].get(path.name)
    if entry is None:
        raise manifest.error("files", f"does not list {path.name}")
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != entry["sha256"].lower() or path.stat().st_size != entry["bytes"]:
        raise UserError(f"bundle {manifest.location}: {path.name} does not match its SHA-256 in bundle.json "
                        "(a partial or altered copy): copy the bundle again")


def _settings(preprocessing: BundleFile, classes: BundleFile) -> Any:
    """The ingest and postprocess functions' settings from the bundle, read through their own codec: the same
    validation (target size, ROI, limits, class names and colours, ignore index, VRU classes) and defaults."""
    from contracts.lambda_env import FRAME_PREPARATION_VARIABLES
    from segcore.settings import Settings, SettingsError

    function = preprocessing.get("frame_preparation.function", str)
    if function != PREPARE_FUNCTION:
        raise preprocessing.error("frame_preparation.function", f"is {function!r}; roadseg segment prepares frames "
                                                                f"with {PREPARE_FUNCTION} only")
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
        raise UserError(f"bundle {preprocessing.location}: " + "; ".join(problems)) from None


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


def _unlike_runtime(preprocessing: BundleFile, key: str, value: Any, expected: Any) -> UserError:
    return preprocessing.error(key, f"is {json.dumps(value)}, but roadseg segment (segcore.bundle_runtime) works "
                                    f"with {json.dumps(expected)}; use the roadseg version of the exporter")


@contextmanager
def open_bundle(location: str, session: Session, out: Printer) -> Iterator[EdgeBundle]:
    """The bundle at a local folder or an ``s3://bucket/prefix/`` (downloaded to a temporary folder for the run)."""
    if not location.startswith("s3://"):
        yield EdgeBundle.load(Path(location).expanduser(), location)
        return
    bucket, _, prefix = location[5:].partition("/")
    if not bucket:
        raise UserError(f"'{location}' is not an s3://bucket/prefix/ URI")
    prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
    s3 = _s3_client(session)
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix, Delimiter="/").get("Contents", [])
    sizes = {item["Key"][len(prefix):]: item["Size"] for item in listed}
    if BUNDLE.manifest not in sizes:
        raise UserError(f"bundle {location} does not exist: no {BUNDLE.manifest} under s3://{bucket}/{prefix}")
    needed = [name for name in NEEDED_FILES if name in sizes]
    with tempfile.TemporaryDirectory(prefix="roadseg-bundle-") as scratch:
        root = Path(scratch)
        with tqdm(total=sum(sizes[n] for n in needed), unit="B", unit_scale=True, unit_divisor=1024,
                  desc="bundle", disable=True if out.quiet else None) as bar:
            for name in needed:
                s3.download_file(bucket, prefix + name, str(root / name), Callback=bar.update)
        yield EdgeBundle.load(root, location)


def _s3_client(session: Session) -> Any:
    from roadseg import session as sessions

    try:
        return session.client("s3")
    except UserError:  # no config/<env>.yaml on this machine: segmenting needs nothing of it but a region
        return sessions.make_client("s3", sessions.resolve_region(session.region_override, None))


# -- the model ---------------------------------------------------------------------------------------------------

def execution_providers(device: str, available: Sequence[str]) -> list[str]:
    """ONNX Runtime providers for ``--device``: cuda needs the CUDA provider, auto takes it when present."""
    if device not in DEVICES:
        raise UserError(f"--device must be one of {', '.join(DEVICES)}, got {device!r}")
    if device == "cuda" and CUDA not in available:
        raise UserError(f"--device cuda: this ONNX Runtime has no {CUDA} (it has {', '.join(available) or 'none'}); "
                        "install onnxruntime-gpu (in place of onnxruntime) with CUDA and cuDNN, or use --device cpu")
    if device == "cpu" or CUDA not in available:
        return [CPU]
    return [CUDA, CPU]


@dataclass(frozen=True)
class Segmentation:
    """One frame through the model: as prepared by the ingest code, its mask at the inference size."""

    prepared: Any  # segcore.imaging.PreparedFrame
    mask: np.ndarray
    model_ms: float


class Segmenter:
    """An ONNX Runtime session over a bundle's model.onnx, fed and read with ``segcore.bundle_runtime``."""

    def __init__(self, bundle: EdgeBundle, device: str = "auto") -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise UserError("roadseg segment needs ONNX Runtime: pip install onnxruntime "
                            "(or onnxruntime-gpu)") from None

        self.bundle = bundle
        self.options = bundle.settings.prepare_options()
        providers = execution_providers(device, ort.get_available_providers())
        session_options = ort.SessionOptions()
        session_options.log_severity_level = 3  # errors only: provider fallbacks are reported below
        try:
            self.session = ort.InferenceSession(str(bundle.onnx_path), sess_options=session_options,
                                                providers=providers)
        except Exception as exc:  # ONNX Runtime's own exception types (bad protobuf, unsupported operator, ...)
            raise UserError(f"bundle {bundle.location}: ONNX Runtime {ort.__version__} cannot load "
                            f"{BUNDLE.onnx}: {exc}") from None
        self.provider = self.session.get_providers()[0]
        if device == "cuda" and self.provider != CUDA:
            raise UserError(f"--device cuda: {CUDA} is installed but did not start (CUDA or cuDNN libraries "
                            "missing?); use --device cpu")
        self._check_model()

    def _check_model(self) -> None:
        bundle = self.bundle
        inputs = {i.name: i for i in self.session.get_inputs()}
        if bundle.input_name not in inputs:
            raise UserError(f"bundle {bundle.location}: {BUNDLE.onnx} has no input {bundle.input_name!r} "
                            f"({BUNDLE.preprocessing} input.name); its inputs: {', '.join(inputs)}")
        width, height = bundle.network_size
        shape = inputs[bundle.input_name].shape
        if len(shape) != 4 or any(isinstance(d, int) and d != want for d, want in zip(shape, (1, 3, height, width))):
            raise UserError(f"bundle {bundle.location}: {BUNDLE.onnx} takes {shape}, but {BUNDLE.preprocessing} "
                            f"describes [1, 3, {height}, {width}]")
        output = self.session.get_outputs()[0]
        self.output_name = output.name
        if len(output.shape) == 4 and isinstance(output.shape[1], int):
            self._check_classes(output.shape[1])

    def _check_classes(self, model_classes: int) -> None:
        if model_classes != self.bundle.num_classes:
            raise UserError(f"bundle {self.bundle.location}: {BUNDLE.onnx} outputs {model_classes} classes but "
                            f"{BUNDLE.classes} lists {self.bundle.num_classes}: the files are from different models")

    def segment(self, data: bytes) -> Segmentation:
        """Raises the ingest code's ``BadFrame`` for a frame the service would refuse."""
        from segcore.bundle_runtime import logits_to_mask, network_input
        from segcore.imaging import prepare_frame

        prepared = prepare_frame(data, self.options)
        tensor, frame_size = network_input(prepared.jpeg, self.bundle.network_size)
        started = time.perf_counter()
        try:
            logits = self.session.run([self.output_name], {self.bundle.input_name: tensor})[0]
        except Exception as exc:  # ONNX Runtime's own exception types
            raise UserError(f"bundle {self.bundle.location}: {BUNDLE.onnx} failed on a {tensor.shape} input: "
                            f"{exc}") from None
        model_ms = (time.perf_counter() - started) * 1000
        logits = np.asarray(logits)
        if logits.ndim == 4:
            self._check_classes(logits.shape[1])
        return Segmentation(prepared=prepared, mask=logits_to_mask(logits, frame_size), model_ms=model_ms)


# -- frames in, documents out ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Frame:
    path: Path
    relative: PurePosixPath  # below the inputs' common folder: the frame key and the output name
    output_base: PurePosixPath  # outputs are <output_base>.json, .mask.png, .overlay.jpg


def collect_frames(paths: Sequence[Path], output_dir: Path) -> list[Frame]:
    """Files named, and .jpg/.jpeg/.png files under folders named (recursively, hidden files and the output folder
    skipped), each once, in order."""
    output_root = os.path.abspath(output_dir)
    found: list[tuple[str, str]] = []  # (absolute file, absolute folder its name is relative to)
    for path in paths:
        absolute = os.path.abspath(path)
        if os.path.isdir(absolute):
            for folder, dirs, files in os.walk(absolute):
                if folder == output_root:
                    dirs[:] = []
                    continue
                dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                                 and os.path.join(folder, d) != output_root)
                found += [(os.path.join(folder, f), absolute) for f in sorted(files)
                          if not f.startswith(".") and f.lower().endswith(FRAME_SUFFIXES)]
        elif os.path.isfile(absolute):
            found.append((absolute, os.path.dirname(absolute)))
        else:
            raise UserError(f"{path} does not exist")
    if not found:
        raise UserError(f"no {'/'.join(FRAME_SUFFIXES)} files in {', '.join(map(str, paths))}")
    unique = list(dict.fromkeys(f for f, _ in found))
    try:
        common = os.path.commonpath([folder for _, folder in found])
    except ValueError:  # folders on two Windows drives: mirror the whole paths
        common = None
    relatives = [PurePosixPath((Path(os.path.relpath(f, common)) if common else
                                Path(f).relative_to(Path(f).anchor)).as_posix()) for f in unique]
    # frame.jpg beside frame.png: both keep their suffix in the output names (case-insensitive file systems too)
    stems = Counter(str(r.with_suffix("")).lower() for r in relatives)
    return [Frame(path=Path(f), relative=r,
                  output_base=r.with_suffix("") if stems[str(r.with_suffix("")).lower()] == 1 else r)
            for f, r in zip(unique, relatives)]


def write_frame(bundle: EdgeBundle, frame: Frame, data: bytes, result: Segmentation, output_dir: Path,
                overlay: bool) -> dict[str, Any]:
    """Mask, overlay and result document as the postprocess function writes them (process_notification)."""
    from segcore.keys import content_inference_id, parse_frame_key
    from segcore.masks import Geometry, encode_mask_png, mask_statistics, overlay_jpeg, restore_to_original
    from segcore.results import build_result_document, to_json_bytes, utc_now


    settings, prepared = bundle.settings, result.prepared
    geometry = Geometry(original_size=prepared.original_size, crop_box=prepared.crop_box)
    stats = mask_statistics(result.mask, settings.class_names, ignore_index=settings.ignore_index,
                            vru_min_pixels=settings.vru_min_pixels, geometry=geometry,
                            vru_classes=settings.vru_classes)
    base = output_dir / frame.output_base
    base.parent.mkdir(parents=True, exist_ok=True)
    mask_path = base.with_name(base.name + ".mask.png")
    mask_path.write_bytes(encode_mask_png(restore_to_original(result.mask, geometry, settings.ignore_index)))
    overlay_path = base.with_name(base.name + ".overlay.jpg") if overlay else None
    if overlay_path is not None:
        overlay_path.write_bytes(overlay_jpeg(prepared.jpeg, result.mask, settings.class_colors,
                                              ignore_index=settings.ignore_index))
    document = build_result_document(
        inference_id=content_inference_id(data),
        mode="edge",
        source_bucket=None,
        frame=parse_frame_key(str(frame.relative), settings.key_pattern),
        original_size=prepared.original_size,
        inference_size=prepared.output_size,
        crop_box=prepared.crop_box,
        stats=stats,
        model_package_version=None,  # the bundle is exported before the package is registered
        endpoint_name=None,
        uploaded_at=None,
        completed_at=utc_now(),
        mask_uri=mask_path.name,  # beside the document: the folder can move
        overlay_uri=overlay_path.name if overlay_path else None,
        endpoint_latency_ms=round(result.model_ms),
    )
    validate_result(document)
    base.with_name(base.name + ".json").write_bytes(to_json_bytes(document))
    return document


@dataclass(frozen=True)
class Refusal:
    frame: Frame
    code: str
    reason: str


def segment_paths(session: Session, out: Printer, *, paths: Sequence[Path], bundle: str, output_dir: Path,
                  device: str, overlay: bool) -> None:
    """Segment every frame; a refused frame is reported and skipped, and the run fails (exit 1) at the end."""
    from segcore.imaging import BadFrame

    frames = collect_frames(paths, output_dir)
    with open_bundle(bundle, session, out) as edge:
        segmenter = Segmenter(edge, device)
        out.info(f"{edge.describe()}; {segmenter.provider}")
        refused: list[Refusal] = []
        started = time.perf_counter()
        with tqdm(total=len(frames), unit="frame", desc="segment", disable=True if out.quiet else None) as bar:
            for frame in frames:
                refusal = None
                try:
                    data = frame.path.read_bytes()
                    result = segmenter.segment(data)
                except BadFrame as exc:
                    refusal = Refusal(frame, exc.code, exc.reason)
                except OSError as exc:  # a file that vanished or may not be read: ingest's code for unreadable data
                    refusal = Refusal(frame, "unreadable", f"cannot read the file: {exc.strerror or exc}")
                if refusal is None:
                    try:
                        write_frame(edge, frame, data, result, output_dir, overlay)
                    except OSError as exc:
                        raise UserError(f"cannot write the results of {frame.relative} to {output_dir}: "
                                        f"{exc}") from None
                else:
                    refused.append(refusal)
                    bar.write(f"roadseg: warning: {frame.relative}: refused ({refusal.code}): {refusal.reason}",
                              file=sys.stderr)
                bar.update(1)
        elapsed = time.perf_counter() - started
    done = len(frames) - len(refused)
    out.line(f"summary: {done} of {len(frames)} frames segmented in {elapsed:.1f} s "
             f"({done / elapsed if elapsed > 0 else 0:.1f} frames/s, {segmenter.provider}) into {output_dir}")
    if refused:
        codes = Counter(r.code for r in refused)
        out.line(f"refused {len(refused)}: " + ", ".join(f"{code} {n}" for code, n in sorted(codes.items())))
        out.line(*(f"  {r.frame.relative}  {r.code}  {r.reason}" for r in refused))
        raise JobFailed(f"{len(refused)} of {len(frames)} frames refused by the ingest preprocessing (codes above)")
