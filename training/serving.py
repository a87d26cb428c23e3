"""The validation frames as the service receives them: the input of the quality gate's batch transform.

The ingest function turns every camera frame into the inference JPEG with ``segcore.imaging.prepare_frame``
and the options of its environment (``Settings.prepare_options``: target size, ROI, JPEG quality, input limits).
PrepareServingValidation runs the same function with the same options, read from the same environment variables
(``contracts.lambda_env.FRAME_PREPARATION_VARIABLES``, which the pipeline sets on the Processing job from the
environment's ``preprocessing``) through the same codec, on every validation image PrepareDataset wrote. The transform
therefore sees, byte for byte, what the endpoints see for that frame (given the same Pillow build: its version is
recorded), and EvaluateModel scores the masks the way the service produces them.

Per frame, ``geometry.json`` records where the inference image sits in the original (the frame's size, the crop box
and the inference size), so EvaluateModel maps each predicted mask back to the annotation exactly as the postprocess
and real-time functions map theirs (``segcore.masks.restore_to_original``: the crop region resized back with
nearest neighbour, the ignore value outside the ROI)::

    {"schema_version": "1.0", "pillow": "13.0.0",
     "options": {"target_size": {"width": 1024, "height": 512}, "roi": [0.0, 0.0, 1.0, 0.88], "jpeg_quality": 90,
                 "max_input_bytes": 20971520, "max_input_pixels": 40000000},
     "frames": {"<name>": {"original_size": {"width": 2048, "height": 1024}, "crop_box": [0, 0, 2048, 902],
                           "inference_size": {"width": 1024, "height": 451}}}}

``<name>`` is the validation image's base name: the inference JPEG is ``<name>.jpg``, its prediction
``<name>.jpg.out``, its annotation ``<name>.png``. A validation frame the ingest function would refuse (and
quarantine) fails the step: the gate cannot measure it through the serving path.
Runs in a SageMaker Processing container: standard library, numpy and Pillow (through roadseg_lambda) only.

    python -m training.serving --input DIR --output DIR --geometry-dir DIR
    (options from TARGET_WIDTH, TARGET_HEIGHT, ROI, MAX_INPUT_BYTES, MAX_INPUT_PIXELS, JPEG_QUALITY)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import PIL

from contracts.lambda_env import FRAME_PREPARATION_VARIABLES, EnvironmentContractError
from segcore.imaging import BadFrame, PreparedFrame, PrepareOptions, prepare_frame
from segcore.masks import Geometry
from segcore.settings import Settings

GEOMETRY_FILE = "geometry.json"
GEOMETRY_SCHEMA_VERSION = "1.0"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


class ServingError(ValueError):
    """The serving set cannot be prepared or read (refused frames, missing settings, a bad geometry file)."""


@dataclass(frozen=True)
class FrameGeometry:
    """Where one inference image sits in its frame (the fields of ``PreparedFrame`` a mask needs to go back)."""

    original_size: tuple[int, int]  # (width, height) of the frame, EXIF orientation applied
    crop_box: tuple[int, int, int, int]  # (left, top, right, bottom) in frame pixels: the ROI
    inference_size: tuple[int, int]  # (width, height) of the inference JPEG, hence of the predicted mask

    @classmethod
    def of(cls, prepared: PreparedFrame) -> FrameGeometry:
        return cls(tuple(prepared.original_size), tuple(prepared.crop_box), tuple(prepared.output_size))

    @property
    def geometry(self) -> Geometry:
        """What ``segcore.masks.restore_to_original`` takes, as postprocess and realtime build it."""
        return Geometry(original_size=self.original_size, crop_box=self.crop_box)

    def to_dict(self) -> dict[str, Any]:
        return {"original_size": _size(self.original_size), "crop_box": list(self.crop_box),
                "inference_size": _size(self.inference_size)}


@dataclass(frozen=True)
class ServingGeometry:
    """The content of ``geometry.json``: the options every frame was prepared with, and each frame's geometry."""

    options: PrepareOptions
    frames: Mapping[str, FrameGeometry]
    pillow: str | None = None

    def to_dict(self) -> dict[str, Any]:
        o = self.options
        return {
            "schema_version": GEOMETRY_SCHEMA_VERSION,
            "pillow": self.pillow,
            "options": {"target_size": _size(o.target_size), "roi": list(o.roi) if o.roi else None,
                        "jpeg_quality": o.jpeg_quality, "max_input_bytes": o.max_bytes,
                        "max_input_pixels": o.max_pixels},
            "frames": {name: frame.to_dict() for name, frame in sorted(self.frames.items())},
        }

    def inference_sizes(self) -> list[dict[str, int]]:
        """How many frames the model saw at each size, largest count first."""
        counts = Counter(frame.inference_size for frame in self.frames.values())
        return [{"width": w, "height": h, "images": n}
                for (w, h), n in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]


def options_from_environment(environ: Mapping[str, str]) -> PrepareOptions:
    """``prepare_frame``'s options exactly as the ingest function builds them: the frame-preparation variables read
    through the functions' own settings class (``Settings.from_env``, then ``Settings.prepare_options``).

    All six variables must be present (ROI may be empty: the whole frame): a job without them would silently
    measure the functions' defaults instead of this environment's preprocessing.
    """
    missing = [name for name in FRAME_PREPARATION_VARIABLES if name not in environ]
    if missing:
        raise ServingError(
            f"the environment lacks {', '.join(missing)}: PrepareServingValidation prepares frames with the "
            f"environment's preprocessing ({', '.join(FRAME_PREPARATION_VARIABLES)}), which the pipeline sets"
        )
    try:
        settings = Settings.from_env({name: environ[name] for name in FRAME_PREPARATION_VARIABLES})
    except EnvironmentContractError as exc:
        raise ServingError(str(exc)) from None
    return settings.prepare_options()


def _frame_names(input_dir: Path) -> dict[str, Path]:
    if not input_dir.is_dir():
        raise ServingError(f"validation image directory {input_dir} does not exist")
    found: dict[str, Path] = {}
    for path in sorted(p for p in input_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS):
        if path.stem in found:
            raise ServingError(f"two validation images named '{path.stem}': {found[path.stem].name} and {path.name}")
        found[path.stem] = path
    if not found:
        raise ServingError(f"no validation images (.jpg, .jpeg, .png) in {input_dir}")
    return found


def _prepare_one(job: tuple[str, Path, Path, PrepareOptions]) -> tuple[str, FrameGeometry | str]:
    name, source, output_dir, options = job
    try:
        prepared = prepare_frame(source.read_bytes(), options)
    except BadFrame as bad:
        return name, f"{bad.code}: {bad.reason}"
    (output_dir / f"{name}.jpg").write_bytes(prepared.jpeg)
    return name, FrameGeometry.of(prepared)


def prepare_serving_set(
    input_dir: str | Path,
    output_dir: str | Path,
    geometry_dir: str | Path,
    options: PrepareOptions,
    *,
    workers: int = 1,
) -> ServingGeometry:
    """Every validation image as the ingest function sends it (``<output_dir>/<name>.jpg``) and
    ``<geometry_dir>/geometry.json``; ServingError if the function would refuse any of them."""
    names = _frame_names(Path(input_dir))
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(name, path, out, options) for name, path in names.items()]
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(_prepare_one, jobs, chunksize=max(1, len(jobs) // (4 * workers))))
    else:
        results = [_prepare_one(job) for job in jobs]
    refused = {name: result for name, result in results if isinstance(result, str)}
    if refused:
        shown = "; ".join(f"{name}: {reason}" for name, reason in sorted(refused.items())[:20])
        raise ServingError(
            f"the ingest preprocessing refuses {len(refused)} of {len(jobs)} validation frames (the service would "
            f"quarantine them, so the gate cannot measure them): {shown}"
        )
    serving = ServingGeometry(options=options, frames=dict(results), pillow=PIL.__version__)
    geometry_path = Path(geometry_dir) / GEOMETRY_FILE
    geometry_path.parent.mkdir(parents=True, exist_ok=True)
    geometry_path.write_text(json.dumps(serving.to_dict(), indent=1))
    return serving


# ------------------------------------------------------------------------------------------ reading


def read_geometry(path: str | Path) -> ServingGeometry:
    """``geometry.json`` as PrepareServingValidation wrote it; ServingError names what is wrong."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ServingError(f"cannot read the serving geometry {path}: {exc}") from None
    try:
        if doc.get("schema_version") != GEOMETRY_SCHEMA_VERSION:
            raise ServingError(f"schema_version {doc.get('schema_version')!r} is not {GEOMETRY_SCHEMA_VERSION!r}")
        o = doc["options"]
        roi = o["roi"]
        options = PrepareOptions(
            target_size=_pair(o["target_size"]), roi=tuple(float(v) for v in roi) if roi is not None else None,
            max_bytes=int(o["max_input_bytes"]), max_pixels=int(o["max_input_pixels"]),
            jpeg_quality=int(o["jpeg_quality"]),
        )
        frames = {}
        for name, frame in doc["frames"].items():
            box = tuple(int(v) for v in frame["crop_box"])
            if len(box) != 4:
                raise ServingError(f"frames.{name}.crop_box must have 4 values")
            frames[name] = FrameGeometry(_pair(frame["original_size"]), box, _pair(frame["inference_size"]))
    except ServingError as exc:
        raise ServingError(f"{path}: {exc}") from None
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise ServingError(f"{path} is not a serving geometry file: {type(exc).__name__}: {exc}") from None
    return ServingGeometry(options=options, frames=frames, pillow=doc.get("pillow"))


def _size(size: Sequence[int]) -> dict[str, int]:
    return {"width": int(size[0]), "height": int(size[1])}


def _pair(size: Mapping[str, Any]) -> tuple[int, int]:
    return (int(size["width"]), int(size["height"]))


# ---------------------------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """CLI entry point: exit 0 with a one-line summary, or 2 with the reason (never a traceback)."""
    parser = argparse.ArgumentParser(
        prog="python -m training.serving",
        description="Prepare the validation images exactly as the ingest function prepares frames (options from the "
        "environment: " + ", ".join(FRAME_PREPARATION_VARIABLES) + "); writes <name>.jpg and geometry.json.",
    )
    parser.add_argument("--input", required=True, type=Path, help="the validation channel (PrepareDataset)")
    parser.add_argument("--output", required=True, type=Path, help="where the inference JPEGs go")
    parser.add_argument("--geometry-dir", required=True, type=Path, help="where geometry.json goes")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="parallel processes")
    args = parser.parse_args(argv)
    try:
        options = options_from_environment(os.environ if environ is None else environ)
        serving = prepare_serving_set(args.input, args.output, args.geometry_dir, options,
                                      workers=max(1, args.workers))
    except ServingError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    sizes = ", ".join(f"{s['width']}x{s['height']} ({s['images']})" for s in serving.inference_sizes())
    print(
        f"prepared {len(serving.frames)} validation frames as the service receives them: {sizes}; "
        f"ROI {list(options.roi) if options.roi else 'whole frame'}, JPEG quality {options.jpeg_quality} "
        f"-> {args.output}, {args.geometry_dir / GEOMETRY_FILE}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
