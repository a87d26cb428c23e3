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
The incumbent (issue 22 s.5): with ``--incumbent-predictions`` (the currently approved model's masks of the SAME
serving frames, from its own transform) both models are scored on the same pixels, and the report's ``incumbent``
holds the incumbent's metrics, the per-class ``delta`` (candidate minus incumbent IoU) and the per-class
``regression`` (incumbent minus candidate IoU; 0 where the class has no ground-truth pixels, so nothing can be
measured) that the gate compares with its tolerance (``MaxIoURegression``). Without it ``incumbent`` is null: a first
model is judged by the floors alone.

The reference profile (issue 23 s.2): with ``--serving-frames`` (the serving JPEGs the transform read) the step also
writes ``contracts.signals.REFERENCE_PROFILE_FILE`` next to ``evaluation.json``: the per-frame signals of the frames
the model was gated on (input signals of each prepared frame, output signals of the candidate's mask at the
inference resolution, as the postprocess function computes them), per camera where the frame names carry one
(``camera_of_frame_name``) and over all frames. The registered model package points at it (DriftCheckBaselines).

Runs in a SageMaker Processing container: standard library, numpy and Pillow only (plus roadseg_lambda, shipped in
the same package). The report's shape is ``contracts.documents.EVALUATION_SCHEMAS`` (shipped with this package).

    python -m training.evaluate --ground-truth DIR --predictions DIR --output DIR [--scheme cityscapes]
        [--serving-geometry geometry.json] [--head deeplab] [--serving-frames DIR]
        [--incumbent-predictions DIR --incumbent-model-data URI --incumbent-model-package ARN
         --incumbent-tolerance 0.01]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from contracts.documents import EVALUATION_SCHEMA_VERSION
from contracts.layout import DATASETS
from contracts.signals import ALL_CAMERAS, REFERENCE_PROFILE_FILE
from segcore.classes import CITYSCAPES, DRIVABLE_CLASSES, ClassScheme, add_scheme_arguments, scheme_from_arguments
from segcore.masks import restore_to_original
from segcore.signals import frame_signals, input_signals, output_signals, reference_profile
from training.serving import FrameGeometry, ServingError, ServingGeometry, read_geometry

PREDICTION_EXTENSIONS = (".jpg", ".jpeg", ".png")
ABSENT_GATE_VALUE = -1.0
# The postprocess function's default VRU_MIN_PIXELS (contracts.lambda_env); the pipeline passes the environment's
# preprocessing.vru_min_pixels, so the reference profile's vru_present is measured as production measures it.
DEFAULT_VRU_MIN_PIXELS = 50


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


@dataclass(frozen=True)
class Incumbent:
    """The currently approved model: where its masks of the serving frames are and what it is (recorded)."""

    predictions_dir: Path
    model_data: str | None = None
    model_package: str | None = None
    tolerance: float | None = None  # the gate's MaxIoURegression, recorded with the regressions beyond it


def _ground_truth_files(gt_dir: Path) -> list[Path]:
    gt_files = sorted(p for p in gt_dir.iterdir() if p.is_file() and p.suffix.lower() == ".png")
    if not gt_files:
        raise EvaluationError(f"no ground-truth .png files in {gt_dir}")
    return gt_files


def _check_predictions(gt_files: list[Path], predictions: dict[str, Path], pred_dir: Path, what: str) -> None:
    missing = [p.stem for p in gt_files if p.stem not in predictions]
    if missing:
        shown = ", ".join(missing[:20]) + (f" and {len(missing) - 20} more" if len(missing) > 20 else "")
        raise EvaluationError(
            f"{len(missing)} of {len(gt_files)} ground-truth images have no {what} in {pred_dir} "
            f"(expected <base>.jpg.out or <base>.png): {shown}"
        )


def _score(
    gt_files: list[Path], predictions: dict[str, Path], scheme: ClassScheme, serving: ServingGeometry | None
) -> tuple[np.ndarray, list[FrameGeometry], int]:
    """The confusion matrix of one model's predictions over every ground-truth file, the frames scored and the
    labelled pixels left out because they lie outside the ROI."""
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
    return cm, scored_frames, pixels_outside_roi


def compare_with_incumbent(
    candidate: dict[str, Any], incumbent: dict[str, Any], *, tolerance: float | None = None
) -> dict[str, Any]:
    """The report's ``incumbent`` block from both models' ``metrics_from_confusion`` results on the same pixels.

    ``delta``: candidate minus incumbent IoU per class (null where either model has no IoU: the class is absent from
    its predictions and the ground truth). ``regression``: incumbent minus candidate ("mIoU" and per class), what the
    gate compares with ``MaxIoURegression``; a class without ground-truth pixels has no measurable regression (0.0):
    the floors already fail a safety class that validation lacks (gate value -1). ``beyond_tolerance``: the classes
    (and "mIoU") whose regression exceeds ``tolerance``, worst first, when one is given.
    """
    if candidate["classes"] != incumbent["classes"]:
        raise EvaluationError("the incumbent was scored with other classes than the candidate")
    delta: dict[str, float | None] = {}
    regression: dict[str, float] = {"mIoU": round(incumbent["metrics"]["mIoU"] - candidate["metrics"]["mIoU"], 9)}
    for name in candidate["classes"]:
        mine, theirs = candidate["per_class"][name], incumbent["per_class"][name]
        both = mine["iou"] is not None and theirs["iou"] is not None
        delta[name] = round(mine["iou"] - theirs["iou"], 9) if both else None
        # Same ground truth, so the same support: with support > 0 both unions are > 0 and both IoUs exist.
        regression[name] = round(theirs["iou"] - mine["iou"], 9) if both and mine["support"] > 0 else 0.0
    beyond = None
    if tolerance is not None:
        beyond = sorted((k for k, v in regression.items() if v > tolerance), key=lambda k: (-regression[k], k))
    return {
        "metrics": incumbent["metrics"],
        "per_class": incumbent["per_class"],
        "delta": delta,
        "regression": regression,
        "tolerance": tolerance,
        "beyond_tolerance": beyond,
    }


def camera_of_frame_name(name: str) -> str:
    """The camera of a frame named after its S3 key (labelling.archive.frame_name_for_key joins the key's segments
    with ``__``: ``incoming__<vehicle>__[<drive>__]<camera>__<stamp>``, the segments of
    contracts.lambda_env.DEFAULT_KEY_PATTERN under the incoming prefix), else ``"*"`` (all cameras)."""
    parts = name.split("__")
    if parts and parts[0] == DATASETS.incoming.strip("/"):
        parts = parts[1:]
    # vehicle, [drive,] camera, stamp: the camera is the segment before the stamp.
    return parts[-2] if len(parts) in (3, 4) and parts[-2] else ALL_CAMERAS


def frame_signal_records(
    gt_files: list[Path], predictions: dict[str, Path], serving_frames_dir: Path, scheme: ClassScheme,
    *, vru_min_pixels: int = DEFAULT_VRU_MIN_PIXELS,
) -> list[dict[str, Any]]:
    """Per validation frame (in name order): ``name``, ``camera`` and every frame signal: input signals of the
    prepared frame (``<name>.jpg``), output signals of the candidate's mask as the model returned it (the inference
    resolution: what the postprocess function sees)."""
    records = []
    for gt_path in gt_files:
        frame_path = serving_frames_dir / f"{gt_path.stem}.jpg"
        if not frame_path.is_file():
            raise EvaluationError(f"serving frame {frame_path} is missing: the transform read a frame that is gone")
        try:
            with Image.open(frame_path) as img:
                rgb = np.asarray(img.convert("RGB"))
            inputs = input_signals(rgb)
        except (OSError, ValueError) as exc:
            raise EvaluationError(f"serving frame {frame_path} gives no input signals: {exc}") from None
        mask = _read_class_png(predictions[gt_path.stem], "prediction")
        outputs = output_signals(mask, scheme.names, vru_classes=scheme.vulnerable_road_users or None,
                                 drivable_classes=DRIVABLE_CLASSES, ignore_index=scheme.ignore_index,
                                 vru_min_pixels=vru_min_pixels)
        record = frame_signals(input=inputs, output=outputs)
        records.append({"name": gt_path.stem, "camera": camera_of_frame_name(gt_path.stem), **record})
    return records


def evaluate_dirs(
    ground_truth_dir: str | Path,
    predictions_dir: str | Path,
    scheme: ClassScheme = CITYSCAPES,
    output_dir: str | Path | None = None,
    *,
    serving: ServingGeometry | None = None,
    head: str | None = None,
    incumbent: Incumbent | None = None,
    serving_frames_dir: str | Path | None = None,
    vru_min_pixels: int = DEFAULT_VRU_MIN_PIXELS,
) -> dict[str, Any]:
    """Score every ground-truth PNG against its prediction; writes ``evaluation.json`` when output_dir is set.

    With ``serving`` (PrepareServingValidation's geometry) each prediction is a mask of the frame's inference JPEG:
    it is restored to the annotation's resolution first, and only the pixels inside the ROI are scored. ``head`` (the
    algorithm hyperparameter of the model) is recorded as it is. With ``incumbent`` its predictions are scored the
    same way and compared (``compare_with_incumbent``). With ``serving_frames_dir`` (and output_dir) the reference
    profile of the frames is written next to ``evaluation.json`` (``reference_profile`` names it).
    """
    gt_dir, pred_dir = Path(ground_truth_dir), Path(predictions_dir)
    folders = [(gt_dir, "ground-truth"), (pred_dir, "predictions")]
    if incumbent is not None:
        folders.append((Path(incumbent.predictions_dir), "incumbent predictions"))
    if serving_frames_dir is not None:
        folders.append((Path(serving_frames_dir), "serving frames"))
    for folder, what in folders:
        if not folder.is_dir():
            raise EvaluationError(f"{what} directory {folder} does not exist")
    gt_files = _ground_truth_files(gt_dir)
    predictions = _index_predictions(pred_dir)
    _check_predictions(gt_files, predictions, pred_dir, "prediction")
    incumbent_predictions = None
    if incumbent is not None:
        incumbent_predictions = _index_predictions(Path(incumbent.predictions_dir))
        _check_predictions(gt_files, incumbent_predictions, Path(incumbent.predictions_dir), "incumbent prediction")
    if serving is not None:
        unprepared = [p.stem for p in gt_files if p.stem not in serving.frames]
        if unprepared:
            raise EvaluationError(
                f"{len(unprepared)} ground-truth images have no serving geometry (PrepareServingValidation did not "
                f"prepare them): {', '.join(unprepared[:20])}"
            )
    cm, scored_frames, pixels_outside_roi = _score(gt_files, predictions, scheme, serving)
    candidate = metrics_from_confusion(cm, scheme.names)
    comparison = None
    if incumbent is not None and incumbent_predictions is not None:
        try:
            incumbent_cm, _, _ = _score(gt_files, incumbent_predictions, scheme, serving)
        except EvaluationError as exc:
            raise EvaluationError(f"incumbent: {exc}") from None
        comparison = {"model_data": incumbent.model_data, "model_package": incumbent.model_package,
                      **compare_with_incumbent(candidate, metrics_from_confusion(incumbent_cm, scheme.names),
                                               tolerance=incumbent.tolerance)}
    profile = None
    if serving_frames_dir is not None:
        records = frame_signal_records(gt_files, predictions, Path(serving_frames_dir), scheme,
                                       vru_min_pixels=vru_min_pixels)
        profile = reference_profile(records, camera_of=lambda record: record["camera"])
    result = {"schema_version": EVALUATION_SCHEMA_VERSION, "scheme": scheme.name, "num_images": len(gt_files),
              **candidate, "head": head,
              "serving": None if serving is None else _serving_block(serving, scored_frames, pixels_outside_roi),
              "incumbent": comparison,
              "reference_profile": None if profile is None or output_dir is None else REFERENCE_PROFILE_FILE}
    if output_dir is not None:
        out = Path(output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "evaluation.json").write_text(json.dumps(result, indent=1))
        if profile is not None:
            (out / REFERENCE_PROFILE_FILE).write_text(json.dumps(profile, indent=1))
    return result


def _optional(value: str | None) -> str | None:
    """A pipeline parameter's empty default means "none"."""
    return value.strip() or None if value is not None else None


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
    parser.add_argument("--serving-frames", type=Path,
                        help=f"the serving JPEGs (<base>.jpg) the predictions were made from: writes "
                        f"{REFERENCE_PROFILE_FILE} (their per-frame signals) next to evaluation.json")
    parser.add_argument("--incumbent-predictions", type=Path,
                        help="the approved model's masks of the same frames: scored too and compared per class")
    parser.add_argument("--incumbent-model-data", help="the incumbent's model.tar.gz URI, recorded")
    parser.add_argument("--incumbent-model-package", help="the incumbent's model package ARN, recorded")
    parser.add_argument("--incumbent-tolerance", type=float,
                        help="the gate's largest allowed IoU regression, recorded with the classes beyond it")
    parser.add_argument("--vru-min-pixels", type=int, default=DEFAULT_VRU_MIN_PIXELS,
                        help="mask pixels of a vulnerable road user class that make a frame's vru_present 1 in the "
                             "reference profile: the postprocess function's VRU_MIN_PIXELS (preprocessing."
                             f"vru_min_pixels; default {DEFAULT_VRU_MIN_PIXELS})")
    add_scheme_arguments(parser)
    args = parser.parse_args(argv)
    if args.vru_min_pixels < 1:
        parser.error(f"--vru-min-pixels {args.vru_min_pixels} must be at least 1 (mask pixels)")
    try:
        scheme = scheme_from_arguments(args)
    except ValueError as exc:
        parser.error(str(exc))
    tolerance = args.incumbent_tolerance
    if tolerance is not None and not (0.0 <= tolerance <= 1.0):
        parser.error(f"--incumbent-tolerance {tolerance} must be within 0..1 (an IoU difference)")
    incumbent = None
    if args.incumbent_predictions is not None:
        incumbent = Incumbent(args.incumbent_predictions, _optional(args.incumbent_model_data),
                              _optional(args.incumbent_model_package), tolerance)
    try:
        serving = read_geometry(args.serving_geometry) if args.serving_geometry else None
        result = evaluate_dirs(args.ground_truth, args.predictions, scheme, args.output, serving=serving,
                               head=args.head or None, incumbent=incumbent, serving_frames_dir=args.serving_frames,
                               vru_min_pixels=args.vru_min_pixels)
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
    if result["incumbent"] is not None:
        compared = result["incumbent"]
        worst = max((k for k in compared["regression"]), key=lambda k: compared["regression"][k])
        beyond = compared["beyond_tolerance"]
        print(f"incumbent mIoU {compared['metrics']['mIoU']:.4f}; largest regression {worst} "
              f"{compared['regression'][worst]:+.4f} IoU"
              + ("" if beyond is None else f"; beyond the tolerance {tolerance:g}: {', '.join(beyond) or 'none'}"))
    if result["reference_profile"] is not None:
        print(f"reference profile of {result['num_images']} frames -> {args.output / REFERENCE_PROFILE_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
