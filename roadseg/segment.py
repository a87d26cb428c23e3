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

import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from tqdm import tqdm

from contracts.bundle import BUNDLE
from contracts.documents import validate_result
from roadseg.output import Printer
from roadseg.session import JobFailed, Session, UserError
from segcore.bundle_runtime import BundleError, EdgeBundle

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")
DEVICES = ("auto", "cpu", "cuda")
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
# The bundle files segmenting needs (an S3 bundle's MXNet graph and Neo archive are not downloaded).
NEEDED_FILES = (BUNDLE.manifest, BUNDLE.classes, BUNDLE.preprocessing, BUNDLE.onnx)


def load_bundle(root: Path, location: str | None = None) -> EdgeBundle:
    """The checked bundle at a local folder (segcore.bundle_runtime.EdgeBundle); a bad one is a UserError (exit 2)."""
    try:
        return EdgeBundle.load(root, location)
    except BundleError as exc:
        raise UserError(str(exc)) from None


@contextmanager
def open_bundle(location: str, session: Session, out: Printer) -> Iterator[EdgeBundle]:
    """The bundle at a local folder or an ``s3://bucket/prefix/`` (downloaded to a temporary folder for the run)."""
    if not location.startswith("s3://"):
        yield load_bundle(Path(location).expanduser(), location)
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
        yield load_bundle(root, location)


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
