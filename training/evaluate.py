"""Score batch-transform predictions against the validation annotations; the model gate reads the result.

One confusion matrix is accumulated over the whole split (not a mean of per-image scores, which would
let small images count as much as large ones), and every metric is derived from it. Classes that occur
neither in the ground truth nor in the predictions are reported as "absent": they are left out of mIoU,
and their gate value is -1.0 so that a floor on them fails instead of passing vacuously.

The pipelines score the serving path (``--serving-geometry``): the predictions are the masks of the validation frames
as the ingest function prepares them (training/serving.py: target size, ROI, JPEG quality), and each is mapped back
to its annotation the way the postprocess and real-time functions restore masks
(``segcore.masks.restore_to_original``: nearest neighbour, the scale and the crop undone). Pixels outside the
ROI are not scored: the service never sees them, so no prediction of them exists to be right or wrong; how many
labelled pixels that leaves out is reported (``serving.pixels_outside_roi``). Without a geometry file the predictions
must already have the annotations' size and the report's ``serving`` is null.
Runs in a SageMaker Processing container: standard library, numpy and Pillow only (plus roadseg_lambda, shipped in
the same package). The report's shape is ``contracts.documents.EVALUATION_SCHEMAS`` (shipped with this package).

    python -m training.evaluate --ground-truth DIR --predictions DIR --output DIR [--scheme cityscapes]
        [--serving-geometry geometry.json] [--head deeplab]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from contracts.documents import EVALUATION_SCHEMA_VERSION
from segcore.classes import CITYSCAPES, ClassScheme, add_scheme_arguments, scheme_from_arguments
from segcore.masks import restore_to_original
from training.serving import FrameGeometry, ServingError, ServingGeometry, read_geometry

PREDICTION_EXTENSIONS = (".jpg", ".jpeg", ".png")
ABSENT_GATE_VALUE = -1.0


class EvaluationError(ValueError):
    """Predictions cannot be scored (missing, wrong size, values outside the scheme); says which file."""


def confusion_matrix(gt: np.ndarray, pred: np.ndarray, num_classes: int, ignore_index: int = 255) -> np.ndarray:
    """int64 (C, C) matrix; rows are ground-truth classes, columns predicted classes.

    Pixels whose ground truth is ``ignore_index`` are skipped. A predicted value outside 0..C-1 raises
    EvaluationError rather than being counted: the model was trained for another number of classes, and
    no metric computed under this scheme would mean anything.
    """
    gt, pred = np.asarray(gt), np.asarray(pred)
    if gt.shape != pred.shape:
        raise EvaluationError(f"ground truth has shape {gt.shape} but prediction has shape {pred.shape}")
    bad_pred = np.unique(pred[(pred < 0) | (pred >= num_classes)])
    if bad_pred.size:
        raise EvaluationError(
            f"prediction holds values {_list(bad_pred)} outside 0..{num_classes - 1}: the model predicts "
            f"another class scheme than the {num_classes} classes being evaluated"
        )
    valid = gt != ignore_index
    g, p = gt[valid].astype(np.int64), pred[valid].astype(np.int64)
    bad_gt = np.unique(g[(g < 0) | (g >= num_classes)])
    if bad_gt.size:
        raise EvaluationError(
            f"ground truth holds values {_list(bad_gt)} that are neither classes 0..{num_classes - 1} nor the "
            f"ignore value {ignore_index}"
        )
    return np.bincount(g * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _list(values: np.ndarray) -> str:
    shown = ", ".join(str(v) for v in values[:20].tolist())
    return shown + (f" ... ({values.size} values)" if values.size > 20 else "")


def metrics_from_confusion(cm: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """mIoU, pixel accuracy, frequency-weighted IoU, mean accuracy, per-class scores and gate values."""
    cm = np.asarray(cm, dtype=np.int64)
    if cm.shape != (len(class_names), len(class_names)):
        raise EvaluationError(f"confusion matrix shape {cm.shape} does not match {len(class_names)} class names")
    total = int(cm.sum())
    if total == 0:
        raise EvaluationError("no labelled pixels: every ground-truth pixel is the ignore value")
    tp = np.diag(cm)
    support = cm.sum(axis=1)  # ground-truth pixels per class
    predicted = cm.sum(axis=0)
    union = support + predicted - tp
    per_class: dict[str, Any] = {}
    ious, accuracies, fw_iou = [], [], 0.0
    for i, name in enumerate(class_names):
        present = bool(union[i] > 0)
        iou = float(tp[i] / union[i]) if present else None
        accuracy = float(tp[i] / support[i]) if support[i] > 0 else None
        if iou is not None:
            ious.append(iou)
            fw_iou += float(support[i]) / total * iou
        if accuracy is not None:
            accuracies.append(accuracy)
        per_class[name] = {
            "iou": iou,
            "accuracy": accuracy,
            "support": int(support[i]),
            "predicted": int(predicted[i]),
            "status": "present" if present else "absent",
        }
    miou = float(np.mean(ious))
    pixel_accuracy = float(tp.sum()) / total
    gate = {"mIoU": miou}
    gate.update({name: ABSENT_GATE_VALUE if s["iou"] is None else s["iou"] for name, s in per_class.items()})
    return {
        "num_classes": len(class_names),
        "classes": list(class_names),
        "metrics": {
            "mIoU": miou,
            "pixel_accuracy": pixel_accuracy,
            "frequency_weighted_iou": fw_iou,
            "mean_accuracy": float(np.mean(accuracies)),
        },
        "per_class": per_class,
        "gate": gate,
        "confusion_matrix": cm.tolist(),
        # Model-quality shape, so the file can be attached to the model package as metrics.
        "multiclass_classification_metrics": {"accuracy": {"value": pixel_accuracy, "standard_deviation": "NaN"}},
    }


def prediction_base(filename: str) -> str | None:
    """Ground-truth base name of a prediction file: ``a.jpg.out`` (batch transform), ``a.png`` -> ``a``."""
    name = filename.removesuffix(".out")
    stem, ext = os.path.splitext(name)
    return stem if ext.lower() in PREDICTION_EXTENSIONS and stem else None


def _index_predictions(predictions_dir: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(predictions_dir.iterdir()):
        base = prediction_base(path.name) if path.is_file() else None
        if base is None:
            continue  # _SUCCESS markers, manifests
        if base in found:
            raise EvaluationError(
                f"two predictions for '{base}' in {predictions_dir}: {found[base].name} and {path.name}; keep one"
            )
        found[base] = path
    return found


def _read_class_png(path: Path, what: str) -> np.ndarray:
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode not in ("L", "P"):
                raise EvaluationError(
                    f"{what} {path} is mode {img.mode}: expected a single-channel 8-bit class-index PNG "
                    "(request Accept: image/png from the model)"
                )
            return np.asarray(img)
    except EvaluationError:
        raise
    except Exception as exc:  # noqa: BLE001 - report any decoder failure as a file problem
        raise EvaluationError(f"{what} {path} cannot be read: {type(exc).__name__}: {exc}") from None


def to_label_resolution(pred: np.ndarray, frame: FrameGeometry, ignore_index: int = 255) -> np.ndarray:
    """A mask predicted on an inference JPEG, at its frame's (the annotation's) resolution: exactly what the
    postprocess and real-time functions restore (the crop region resized back, nearest; ``ignore_index`` outside)."""
    if (pred.shape[1], pred.shape[0]) != frame.inference_size:
        raise EvaluationError(
            f"the prediction is {pred.shape[1]}x{pred.shape[0]} but its inference image was "
            f"{frame.inference_size[0]}x{frame.inference_size[1]}: the model must answer at the size it was sent"
        )
    return restore_to_original(pred, frame.geometry, ignore_index)


def _serving_block(serving: ServingGeometry, frames: list[FrameGeometry], pixels_outside_roi: int) -> dict[str, Any]:
    options = serving.options
    scored = ServingGeometry(options=options, frames=dict(enumerate(frames)))
    return {
        "target_size": {"width": options.target_size[0], "height": options.target_size[1]},
        "roi": list(options.roi) if options.roi else None,
        "jpeg_quality": options.jpeg_quality,
        "inference_sizes": scored.inference_sizes(),
        "restored_with": "nearest",
        "outside_roi": "not_scored",
        "pixels_outside_roi": pixels_outside_roi,
        "pillow": serving.pillow,
    }


def evaluate_dirs(
    ground_truth_dir: str | Path,
    predictions_dir: str | Path,
    scheme: ClassScheme = CITYSCAPES,
    output_dir: str | Path | None = None,
    *,
    serving: ServingGeometry | None = None,
    head: str | None = None,
) -> dict[str, Any]:
    """Score every ground-truth PNG against its prediction; writes ``evaluation.json`` when output_dir is set.

    With ``serving`` (PrepareServingValidation's geometry) each prediction is a mask of the frame's inference JPEG:
    it is restored to the annotation's resolution first, and only the pixels inside the ROI are scored. ``head`` (the
    algorithm hyperparameter of the model) is recorded as it is.
    """
    gt_dir, pred_dir = Path(ground_truth_dir), Path(predictions_dir)
    for folder, what in ((gt_dir, "ground-truth"), (pred_dir, "predictions")):
        if not folder.is_dir():
            raise EvaluationError(f"{what} directory {folder} does not exist")
    gt_files = sorted(p for p in gt_dir.iterdir() if p.is_file() and p.suffix.lower() == ".png")
    if not gt_files:
        raise EvaluationError(f"no ground-truth .png files in {gt_dir}")
    predictions = _index_predictions(pred_dir)
    missing = [p.stem for p in gt_files if p.stem not in predictions]
    if missing:
        shown = ", ".join(missing[:20]) + (f" and {len(missing) - 20} more" if len(missing) > 20 else "")
        raise EvaluationError(
            f"{len(missing)} of {len(gt_files)} ground-truth images have no prediction in {pred_dir} "
            f"(expected <base>.jpg.out or <base>.png): {shown}"
        )
    if serving is not None:
        unprepared = [p.stem for p in gt_files if p.stem not in serving.frames]
        if unprepared:
            raise EvaluationError(
                f"{len(unprepared)} ground-truth images have no serving geometry (PrepareServingValidation did not "
                f"prepare them): {', '.join(unprepared[:20])}"
            )
    cm = np.zeros((scheme.num_classes, scheme.num_classes), dtype=np.int64)
    scored_frames: list[FrameGeometry] = []
    pixels_outside_roi = 0
    for gt_path in gt_files:
        pred_path = predictions[gt_path.stem]
        gt = _read_class_png(gt_path, "ground truth")
        pred = _read_class_png(pred_path, "prediction")
        if serving is not None:
            frame = serving.frames[gt_path.stem]
            if (gt.shape[1], gt.shape[0]) != frame.original_size:
                raise EvaluationError(
                    f"ground truth {gt_path.name} is {gt.shape[1]}x{gt.shape[0]} but its frame was "
                    f"{frame.original_size[0]}x{frame.original_size[1]} when it was prepared for serving"
                )
            try:
                pred = to_label_resolution(pred, frame, scheme.ignore_index)
            except EvaluationError as exc:
                raise EvaluationError(f"{pred_path.name}: {exc}") from None
            # Only the ROI is scored: the service never sees the rest of the frame.
            left, top, right, bottom = frame.crop_box
            labelled = int(np.count_nonzero(gt != scheme.ignore_index))
            gt, pred = gt[top:bottom, left:right], pred[top:bottom, left:right]
            pixels_outside_roi += labelled - int(np.count_nonzero(gt != scheme.ignore_index))
            scored_frames.append(frame)
        elif gt.shape != pred.shape:
            raise EvaluationError(
                f"prediction {pred_path.name} is {pred.shape[1]}x{pred.shape[0]} but ground truth {gt_path.name} "
                f"is {gt.shape[1]}x{gt.shape[0]}: predictions must have the ground truth's size (no resizing; "
                "pass --serving-geometry for masks of the serving-resolution frames)"
            )
        try:
            cm += confusion_matrix(gt, pred, scheme.num_classes, scheme.ignore_index)
        except EvaluationError as exc:
            raise EvaluationError(f"{gt_path.name} / {pred_path.name}: {exc}") from None
    result = {"schema_version": EVALUATION_SCHEMA_VERSION, "scheme": scheme.name, "num_images": len(gt_files),
              **metrics_from_confusion(cm, scheme.names), "head": head,
              "serving": None if serving is None else _serving_block(serving, scored_frames, pixels_outside_roi)}
    if output_dir is not None:
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "evaluation.json").write_text(json.dumps(result, indent=1))
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: exit 0 with a one-line summary, or 2 with the reason (never a traceback)."""
    parser = argparse.ArgumentParser(
        prog="python -m training.evaluate", description="Score segmentation predictions; writes evaluation.json."
    )
    parser.add_argument("--ground-truth", required=True, type=Path, help="validation_annotation PNGs")
    parser.add_argument("--predictions", required=True, type=Path, help="batch transform output (<base>.jpg.out)")
    parser.add_argument("--output", required=True, type=Path)
    parser.add_argument("--serving-geometry", type=Path,
                        help="geometry.json of PrepareServingValidation: predictions are masks of the "
                        "serving-resolution frames, mapped back to the ground truth; only the ROI is scored")
    parser.add_argument("--head", help="segmentation head of the model (algorithm hyperparameter), recorded")
    add_scheme_arguments(parser)
    args = parser.parse_args(argv)
    try:
        scheme = scheme_from_arguments(args)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        serving = read_geometry(args.serving_geometry) if args.serving_geometry else None
        result = evaluate_dirs(args.ground_truth, args.predictions, scheme, args.output, serving=serving,
                               head=args.head or None)
    except (EvaluationError, ServingError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    m, measured = result["metrics"], result["serving"]
    where = ""
    if measured is not None:
        size, roi = measured["target_size"], measured["roi"]
        where = (f" through the serving preprocessing (fitted into {size['width']}x{size['height']}, "
                 f"ROI {roi if roi else 'whole frame'}, {measured['pixels_outside_roi']} labelled pixels outside it "
                 "not scored)")
    print(
        f"evaluated {result['num_images']} images{where}: mIoU {m['mIoU']:.4f}, pixel accuracy "
        f"{m['pixel_accuracy']:.4f} -> {args.output / 'evaluation.json'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
