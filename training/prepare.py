"""Turn a labelled dataset into the four channels the Semantic Segmentation algorithm reads.

The algorithm fails late and vaguely on bad data (a grayscale PNG crashes DeepLab/PSP, an RGB mask
trains garbage), so every image/mask pair is checked here first. Pairs that cannot be used are dropped
and listed with the reason in ``report.json``; too many of them stop the pipeline instead of training on
what is left. Runs in a SageMaker Processing container: standard library, numpy and Pillow only.

The output is written in place (the Processing job uploads its channel folders by path), so a run marks it
incomplete (``.prepare-incomplete``) until it succeeds: a failed, rejected or interrupted run's output is replaced
by the next run, while a complete dataset is only replaced with ``--overwrite``.

    python -m training.prepare --layout cityscapes --input DIR --output DIR
    python -m training.prepare --layout generic --input DIR --output DIR [--split-file FILE]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import sys
import warnings
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from segcore.classes import CITYSCAPES, ClassScheme, add_scheme_arguments, scheme_from_arguments

SPLITS = ("train", "validation")
OUTPUT_DIRS = ("train", "validation", "train_annotation", "validation_annotation", "label_map")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
IMAGE_FORMATS = ("JPEG", "MPO", "PNG")  # MPO: what Pillow calls many phone/camera JPEGs
# Far above any camera frame (8K is 33 Mpx), far below what would exhaust a Processing instance.
MAX_PIXELS = 50_000_000
# Present in the output directory from the start of a run until it succeeded (not in any uploaded channel).
INCOMPLETE_MARKER = ".prepare-incomplete"
DEFAULT_MAX_BAD_FRACTION = 0.05
_SPLIT_ALIASES = {"train": "train", "training": "train", "validation": "validation", "val": "validation"}
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")


class PreparationError(Exception):
    """The dataset cannot be prepared (nothing usable, too many bad pairs, wrong layout)."""


@dataclass(frozen=True)
class Candidate:
    """One expected image/mask pair; ``problem`` is set when discovery already knows it is unusable."""

    split: str
    base: str
    image: Path | None
    mask: Path | None
    problem: str | None = None


@dataclass(frozen=True)
class _Job:
    candidate: Candidate
    output_dir: Path
    lut: np.ndarray  # raw mask value -> train id
    valid_raw: frozenset[int]
    palette: tuple[int, ...]
    jpeg_quality: int
    scheme_name: str


class _Dropped(Exception):
    """Internal: the pair is unusable for the reason in the message."""


# ----------------------------------------------------------------------------------------- discovery


def _group(pattern_hits: list[tuple[str, Path]], split: str, kind: str) -> tuple[dict[str, Path], dict[str, str]]:
    """Base name -> file, plus base names that occur more than once (which output would overwrite)."""
    found: dict[str, Path] = {}
    clashes: dict[str, str] = {}
    for base, path in sorted(pattern_hits):
        if base in found:
            clashes[base] = f"{kind} base name '{base}' occurs more than once in {split} ({found[base]}, {path})"
        else:
            found[base] = path
    return found, clashes


def _pair_up(split: str, images: dict[str, Path], masks: dict[str, Path], problems: dict[str, str]) -> list[Candidate]:
    candidates = []
    for base in sorted(images.keys() | masks.keys() | problems.keys()):
        image, mask = images.get(base), masks.get(base)
        problem = problems.get(base)
        if problem is None and image is None:
            problem = "mask without image (no image with the same base name)"
        elif problem is None and mask is None:
            problem = "image without mask (no mask with the same base name)"
        candidates.append(Candidate(split, base, image, mask, problem))
    return candidates


def find_cityscapes(input_dir: Path) -> list[Candidate]:
    """Pairs of ``leftImg8bit/<split>/<city>/<base>_leftImg8bit.png`` and ``gtFine/.../<base>_gtFine_labelIds.png``."""
    expected = input_dir / "leftImg8bit" / "train"
    if not expected.is_dir():
        raise PreparationError(
            f"{input_dir} is not a Cityscapes layout: {expected} does not exist (expected "
            "leftImg8bit/{train,val}/<city>/<base>_leftImg8bit.png and gtFine/{train,val}/<city>/"
            "<base>_gtFine_labelIds.png); use --layout generic for images/ + masks/"
        )
    candidates = []
    for folder, split in (("train", "train"), ("val", "validation")):
        image_hits = [
            (p.name.removesuffix("_leftImg8bit.png"), p)
            for p in (input_dir / "leftImg8bit" / folder).glob("*/*_leftImg8bit.png")
        ]
        mask_hits = [
            (p.name.removesuffix("_gtFine_labelIds.png"), p)
            for p in (input_dir / "gtFine" / folder).glob("*/*_gtFine_labelIds.png")
        ]
        images, image_clash = _group(image_hits, split, "image")
        masks, mask_clash = _group(mask_hits, split, "mask")
        candidates += _pair_up(split, images, masks, {**mask_clash, **image_clash})
    return candidates


def _normalise_name(name: str) -> str:
    name = Path(name.strip()).name
    stem, ext = os.path.splitext(name)
    return stem if ext.lower() in IMAGE_EXTENSIONS else name


def read_split_file(path: Path) -> dict[str, str]:
    """Name -> split from JSON ``{"train": [...], "validation": [...]}`` or CSV lines ``name,split``."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise PreparationError(f"cannot read the split file {path}: {exc}") from None
    assignments: dict[str, str] = {}

    def assign(name: str, split_value: str, where: str) -> None:
        split = _SPLIT_ALIASES.get(split_value.strip().lower())
        if split is None:
            raise PreparationError(f"{where}: split '{split_value}' is not one of train, validation (or val)")
        key = _normalise_name(name)
        if not key:
            raise PreparationError(f"{where}: empty name")
        if assignments.get(key, split) != split:
            raise PreparationError(f"{where}: '{key}' is listed in both train and validation; keep it in one split")
        assignments[key] = split

    if path.suffix.lower() == ".json" or text.lstrip().startswith("{"):
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PreparationError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(raw, dict):
            raise PreparationError(f'{path}: expected {{"train": [names], "validation": [names]}}')
        for split_value, names in raw.items():
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise PreparationError(f"{path}: '{split_value}' must be a list of file names")
            for name in names:
                assign(name, split_value, f"{path} ({split_value})")
        return assignments
    for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        if number == 1 and [c.strip().lower() for c in row] == ["name", "split"]:
            continue
        if len(row) != 2:
            raise PreparationError(f"{path} line {number}: expected 'name,split', got {','.join(row)!r}")
        assign(row[0], row[1], f"{path} line {number}")
    return assignments


def find_generic(input_dir: Path, split_file: Path | None) -> tuple[list[Candidate], list[str]]:
    """Pairs of ``images/<name>.{jpg,jpeg,png}`` and ``masks/<name>.png``; also the unassigned names."""
    image_dir, mask_dir = input_dir / "images", input_dir / "masks"
    for folder in (image_dir, mask_dir):
        if not folder.is_dir():
            raise PreparationError(
                f"{input_dir} is not a generic layout: {folder} does not exist (expected images/<name>.jpg "
                "and masks/<name>.png); use --layout cityscapes for a Cityscapes tree"
            )
    if split_file is None:
        defaults = [input_dir / "split.json", input_dir / "split.csv"]
        split_file = next((p for p in defaults if p.is_file()), None)
        if split_file is None:
            raise PreparationError(
                f"the generic layout needs a split file: pass --split-file, or put split.json "
                f'({{"train": [names], "validation": [names]}}) or split.csv (name,split) in {input_dir}'
            )
    assignments = read_split_file(split_file)

    def visible(folder: Path) -> list[Path]:
        return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))

    image_files: dict[str, list[Path]] = {}
    for p in visible(image_dir):
        image_files.setdefault(p.stem, []).append(p)
    mask_files: dict[str, list[Path]] = {}
    for p in visible(mask_dir):
        mask_files.setdefault(p.stem, []).append(p)

    candidates = []
    for name, split in sorted(assignments.items()):
        images, masks = image_files.get(name, []), mask_files.get(name, [])
        supported = [p for p in images if p.suffix.lower() in IMAGE_EXTENSIONS]
        png_masks = [p for p in masks if p.suffix.lower() == ".png"]
        image = supported[0] if len(supported) == 1 else (images[0] if images else None)
        mask = png_masks[0] if png_masks else (masks[0] if masks else None)
        problem = None
        if not images and not masks:
            problem = f"listed in the split file but neither images/{name}.* nor masks/{name}.png exists"
        elif not masks:
            problem = f"image without mask (no masks/{name}.png)"
        elif not images:
            problem = f"mask without image (no images/{name}.jpg, .jpeg or .png)"
        elif len(supported) > 1:
            problem = f"several images named '{name}' ({', '.join(p.name for p in supported)}): keep one"
        elif not supported:
            problem = f"unsupported image file type '{images[0].suffix}' for '{name}': use .jpg, .jpeg or .png"
        elif not png_masks:
            problem = f"mask {masks[0].name} is not a .png: masks must be lossless PNG (JPEG changes class values)"
        candidates.append(Candidate(split, name, image, mask, problem))
    unassigned = sorted((image_files.keys() | mask_files.keys()) - assignments.keys())
    return candidates, unassigned


# ------------------------------------------------------------------------------------------ checking


def _open(path: Path, what: str) -> Image.Image:
    """Open and fully decode, turning every way a file can be broken into one short reason."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
            if img.width * img.height > MAX_PIXELS:
                img.close()
                raise _Dropped(f"{what} is {img.width}x{img.height}, more than the {MAX_PIXELS} pixel limit")
            img.load()
            return img
    except _Dropped:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _Dropped(f"{what} is too large to decode safely ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - a corrupt file may raise anything; it must drop, not abort the run
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if path.stat().st_size == 0:
            detail = "the file is empty (0 bytes)"
        raise _Dropped(f"unreadable {what}: {detail}") from None


def to_rgb(img: Image.Image) -> Image.Image:
    """8-bit RGB from any mode Pillow decodes camera frames into; DeepLab/PSP crash on anything else."""
    if img.mode == "RGB":
        return img
    if img.mode in _SIXTEEN_BIT:
        # 16-bit grayscale: scale 0..65535 to 0..255 (a plain convert would clip, not scale).
        wide = np.clip(np.asarray(img, dtype=np.int64), 0, 65535)
        return Image.fromarray((wide // 257).astype(np.uint8)).convert("RGB")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    try:
        return img.convert("RGB")
    except ValueError:
        raise _Dropped(f"image mode {img.mode} cannot be converted to RGB; save the frame as RGB JPEG or PNG") from None


def _read_mask(path: Path) -> np.ndarray:
    mask = _open(path, "mask")
    if mask.format != "PNG":
        raise _Dropped(f"mask is {mask.format}, not PNG: masks must be lossless PNG class indices")
    if mask.mode not in ("L", "P"):
        kind = {
            "RGB": "an RGB colour image",
            "RGBA": "an RGBA colour image",
            "LA": "grayscale with alpha",
            "PA": "palette with alpha",
            "1": "1-bit",
        }.get(mask.mode, "16-bit" if mask.mode in _SIXTEEN_BIT else f"mode {mask.mode}")
        raise _Dropped(
            f"mask is {kind}, not single-channel 8-bit (mode L or P): save class indices 0..N-1 "
            "(255 = ignore) as an 8-bit grayscale or palette PNG"
        )
    return np.asarray(mask)


def _process(job: _Job) -> dict[str, Any]:
    """Check one pair and write its JPEG and P-mode PNG; returns counts or the reason it was dropped."""
    c = job.candidate
    try:
        if c.problem:
            raise _Dropped(c.problem)
        assert c.image is not None and c.mask is not None
        image = _open(c.image, "image")
        if image.format not in IMAGE_FORMATS:
            raise _Dropped(f"image content is {image.format}, not JPEG or PNG")
        mask = _read_mask(c.mask)
        if image.size != (mask.shape[1], mask.shape[0]):
            raise _Dropped(
                f"size mismatch: image is {image.width}x{image.height}, mask is {mask.shape[1]}x{mask.shape[0]}"
            )
        raw_counts = np.bincount(mask.ravel(), minlength=256)
        bad = [v for v in np.flatnonzero(raw_counts).tolist() if v not in job.valid_raw]
        if bad:
            shown = ", ".join(str(v) for v in bad[:20]) + (" ..." if len(bad) > 20 else "")
            raise _Dropped(
                f"mask values {shown} are not classes of scheme '{job.scheme_name}' "
                f"(allowed: {_ranges(sorted(job.valid_raw))})"
            )
        source_mode = image.mode
        rgb = to_rgb(image)
    except _Dropped as exc:
        return {"split": c.split, "base": c.base, "reason": str(exc)}
    train_ids = job.lut[mask]
    counts = np.zeros(256, dtype=np.int64)
    np.add.at(counts, job.lut, raw_counts)
    out = job.output_dir
    rgb.save(out / c.split / f"{c.base}.jpg", "JPEG", quality=job.jpeg_quality)
    annotation = Image.fromarray(train_ids)
    annotation.putpalette(list(job.palette))  # L -> P: viewers show class colours, values stay class ids
    annotation.save(out / f"{c.split}_annotation" / f"{c.base}.png", optimize=True)
    return {"split": c.split, "base": c.base, "counts": counts.tolist(), "mode": source_mode}


def _ranges(values: Sequence[int]) -> str:
    """'0..18, 255' rather than twenty numbers."""
    parts, start = [], None
    for i, v in enumerate(values):
        if start is None:
            start = v
        if i + 1 == len(values) or values[i + 1] != v + 1:
            parts.append(str(v) if start == v else f"{start}..{v}")
            start = None
    return ", ".join(parts)


# --------------------------------------------------------------------------------------------- main


def _unwritable(output_dir: Path, exc: OSError) -> str:
    where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(output_dir) else ""
    return (f"cannot write the output directory {output_dir}{where}: {exc.strerror or exc}: choose a directory you "
            "can write to (and with free space) with --output")


def _claim_output(output_dir: Path, overwrite: bool) -> str | None:
    """Make ``output_dir`` an empty set of channel folders marked incomplete; what was replaced, if anything.

    Only this module's own names are removed (the channel folders' contents and ``report.json``), never other
    files a user keeps there. A complete earlier dataset is replaced only with ``overwrite``."""
    if output_dir.exists() and not output_dir.is_dir():
        raise PreparationError(f"--output {output_dir} is a file, not a directory: pass the path of a directory "
                               "(it is created when missing)")
    ours = [output_dir / name for name in OUTPUT_DIRS] + [output_dir / "report.json"]
    try:
        held = [p for p in ours if p.is_file() or (p.is_dir() and any(p.iterdir()))]
        incomplete = (output_dir / INCOMPLETE_MARKER).exists()
    except OSError as exc:
        raise PreparationError(_unwritable(output_dir, exc)) from None
    if held and not incomplete and not overwrite:
        raise PreparationError(f"{output_dir} already holds a prepared dataset ({held[0].name}): pass --overwrite to "
                               "replace it, or choose another --output")
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / INCOMPLETE_MARKER).write_text("training.prepare has not finished writing this directory\n")
        for path in held:
            if path.is_dir():
                for child in path.iterdir():
                    if child.is_dir() and not child.is_symlink():
                        shutil.rmtree(child)
                    else:
                        child.unlink()
            else:
                path.unlink()
        for name in OUTPUT_DIRS:
            (output_dir / name).mkdir(exist_ok=True)
    except OSError as exc:
        raise PreparationError(_unwritable(output_dir, exc)) from None
    if incomplete:
        return "the incomplete output of an earlier run"
    return "the earlier dataset (--overwrite)" if held else None


def _relative(path: Path | None, root: Path) -> str | None:
    if path is None:
        return None
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def prepare_dataset(
    input_dir: str | Path,
    output_dir: str | Path,
    layout: str,
    scheme: ClassScheme = CITYSCAPES,
    split_file: str | Path | None = None,
    max_bad_fraction: float = DEFAULT_MAX_BAD_FRACTION,
    jpeg_quality: int = 95,
    workers: int = 1,
    report_dir: str | Path | None = None,
    *,
    max_bad_fraction_source: str = "the default",
    overwrite: bool = False,
) -> dict[str, Any]:
    """Prepare the four channels plus label maps; returns (and writes) the report.

    ``report.json`` goes to ``report_dir`` (default: the output directory), so a Processing job can
    upload it as its own output. ``max_bad_fraction_source`` says where the limit came from (the report
    records it). ``overwrite`` replaces a complete earlier dataset in ``output_dir``; an incomplete one (a
    failed or interrupted run) is always replaced.

    Raises PreparationError, after writing report.json, when a split ends up empty or more than
    ``max_bad_fraction`` of the pairs had to be dropped; the output then stays marked incomplete.
    """
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    if not 0 <= max_bad_fraction <= 1:
        raise PreparationError(f"max_bad_fraction {max_bad_fraction} must be within 0..1")
    if workers < 1:
        raise PreparationError(f"workers {workers} must be at least 1")
    if not 1 <= jpeg_quality <= 100:
        raise PreparationError(f"jpeg_quality {jpeg_quality} must be within 1..100 (95 keeps detail)")
    if not input_dir.is_dir():
        raise PreparationError(f"input directory {input_dir} does not exist")
    try:
        candidates, unassigned, lut, valid_raw = _discover(input_dir, layout, scheme, split_file)
    except OSError as exc:
        raise PreparationError(f"cannot read the input directory {input_dir}: {exc}") from None
    replaced = _claim_output(output_dir, overwrite)
    try:
        return _prepare(input_dir, output_dir, layout, scheme, candidates, unassigned, lut, valid_raw,
                        max_bad_fraction, max_bad_fraction_source, jpeg_quality, workers, report_dir, replaced)
    except OSError as exc:
        detail = _unwritable(output_dir, exc)
        raise PreparationError(f"{detail}; the next run replaces this incomplete output") from None


def _discover(
    input_dir: Path, layout: str, scheme: ClassScheme, split_file: str | Path | None
) -> tuple[list[Candidate], list[str], np.ndarray, frozenset[int]]:
    """The candidate pairs, unassigned names, raw mask value -> train id table and valid raw values of a layout."""
    unassigned: list[str] = []
    if layout == "cityscapes":
        if split_file is not None:
            raise PreparationError("--split-file is only used with --layout generic; Cityscapes has train/val folders")
        if scheme.label_id_to_train_id is None:
            raise PreparationError(
                f"layout cityscapes holds labelIds, but scheme '{scheme.name}' has no labelId mapping: "
                "use --scheme cityscapes"
            )
        candidates = find_cityscapes(input_dir)
        lut = scheme.label_lut()
        valid_raw = frozenset([*scheme.label_id_to_train_id, scheme.ignore_index])
    elif layout == "generic":
        candidates, unassigned = find_generic(input_dir, Path(split_file) if split_file else None)
        lut = np.arange(256, dtype=np.uint8)  # masks already hold train ids
        valid_raw = scheme.valid_values()
    else:
        raise PreparationError(f"unknown layout '{layout}': use cityscapes or generic")
    return candidates, unassigned, lut, valid_raw


def _prepare(
    input_dir: Path,
    output_dir: Path,
    layout: str,
    scheme: ClassScheme,
    candidates: list[Candidate],
    unassigned: list[str],
    lut: np.ndarray,
    valid_raw: frozenset[int],
    max_bad_fraction: float,
    max_bad_fraction_source: str,
    jpeg_quality: int,
    workers: int,
    report_dir: str | Path | None,
    replaced: str | None,
) -> dict[str, Any]:
    jobs = [
        _Job(c, output_dir, lut, valid_raw, tuple(scheme.palette()), jpeg_quality, scheme.name) for c in candidates
    ]
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(_process, jobs, chunksize=max(1, len(jobs) // (4 * workers))))
    else:
        results = [_process(job) for job in jobs]

    report = _report(input_dir, layout, scheme, candidates, results, unassigned, max_bad_fraction)
    report["max_bad_fraction_source"] = max_bad_fraction_source
    report["replaced"] = replaced
    for split in SPLITS:
        (output_dir / "label_map" / f"{split}_label_map.json").write_text(json.dumps({"scale": "1"}))
    report_path = Path(report_dir or output_dir) / "report.json"
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(json.dumps(report, indent=1))

    problems = [
        f"no usable {split} pairs remain" for split in SPLITS if report["splits"][split]["images"] == 0
    ]
    if report["dropped_fraction"] > max_bad_fraction:
        problems.append(
            f"{len(report['dropped'])} of {report['candidates']} pairs ({report['dropped_fraction']:.1%}) were "
            f"dropped, more than the allowed {max_bad_fraction:.1%} (max_bad_fraction {max_bad_fraction} from "
            f"{max_bad_fraction_source})"
        )
    if problems:
        raise PreparationError(f"{'; '.join(problems)}: see {report_path} for each dropped pair and why")
    (output_dir / INCOMPLETE_MARKER).unlink()
    return report


def _report(
    input_dir: Path,
    layout: str,
    scheme: ClassScheme,
    candidates: list[Candidate],
    results: list[dict[str, Any]],
    unassigned: list[str],
    max_bad_fraction: float,
) -> dict[str, Any]:
    by_key = {(c.split, c.base): c for c in candidates}
    splits: dict[str, Any] = {}
    modes: Counter[str] = Counter()
    for split in SPLITS:
        kept = [r for r in results if r["split"] == split and "counts" in r]
        total = np.zeros(256, dtype=np.int64)
        for r in kept:
            total += np.asarray(r["counts"], dtype=np.int64)
            modes[r["mode"]] += 1
        pixels = {c.name: int(total[c.train_id]) for c in scheme.classes}
        pixels["ignore"] = int(total[scheme.ignore_index])
        splits[split] = {"images": len(kept), "pixels": pixels}
    dropped = []
    for r in results:
        if "reason" in r:
            c = by_key[(r["split"], r["base"])]
            dropped.append(
                {
                    "name": c.base,
                    "image": _relative(c.image, input_dir),
                    "mask": _relative(c.mask, input_dir),
                    "split": c.split,
                    "reason": r["reason"],
                }
            )
    return {
        "layout": layout,
        "scheme": scheme.name,
        "classes": list(scheme.names),
        "num_training_samples": splits["train"]["images"],
        "candidates": len(candidates),
        "splits": splits,
        "source_image_modes": dict(sorted(modes.items())),
        "dropped": dropped,
        "dropped_fraction": len(dropped) / len(candidates) if candidates else 0.0,
        "max_bad_fraction": max_bad_fraction,
        "unassigned": unassigned,
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.prepare",
        description="Check image/mask pairs and write the train, validation and annotation channels.",
    )
    parser.add_argument("--layout", required=True, choices=["cityscapes", "generic"])
    parser.add_argument("--input", required=True, type=Path, help="dataset root")
    parser.add_argument("--output", required=True, type=Path, help="output directory (created when missing)")
    parser.add_argument("--overwrite", action="store_true", help="replace a dataset prepared earlier in --output")
    parser.add_argument("--split-file", type=Path, help="generic layout: JSON or CSV split (default input/split.json)")
    add_scheme_arguments(parser)
    parser.add_argument("--max-bad-fraction", type=_fraction, default=None,
                        help=f"fail above this dropped fraction (default {DEFAULT_MAX_BAD_FRACTION}; the pipeline "
                             "passes the environment's training.max_bad_pair_fraction)")
    parser.add_argument("--jpeg-quality", type=int, default=95)
    parser.add_argument("--workers", type=_positive_int, default=os.cpu_count() or 1, help="parallel processes")
    parser.add_argument("--report-dir", type=Path, help="where report.json goes (default: --output)")
    return parser


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid float value: {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not within 0..1")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not at least 1")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: exit 0 with a one-line summary, or 2 with the reason (never a traceback)."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        scheme = scheme_from_arguments(args)
    except ValueError as exc:
        parser.error(str(exc))
    explicit = args.max_bad_fraction is not None
    try:
        report = prepare_dataset(
            args.input,
            args.output,
            args.layout,
            scheme,
            split_file=args.split_file,
            max_bad_fraction=args.max_bad_fraction if explicit else DEFAULT_MAX_BAD_FRACTION,
            max_bad_fraction_source="--max-bad-fraction" if explicit else "the default",
            jpeg_quality=args.jpeg_quality,
            workers=args.workers,
            report_dir=args.report_dir,
            overwrite=args.overwrite,
        )
    except PreparationError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    print(
        f"prepared {report['splits']['train']['images']} train and {report['splits']['validation']['images']} "
        f"validation pairs into {args.output} ({len(report['dropped'])} of {report['candidates']} dropped, "
        f"{report['dropped_fraction']:.1%}, limit {report['max_bad_fraction']:.1%} from "
        f"{report['max_bad_fraction_source']}); num_training_samples={report['num_training_samples']}"
        + (f"; replaced {report['replaced']}" if report["replaced"] else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
