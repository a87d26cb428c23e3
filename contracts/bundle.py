"""The edge bundle: what the ExportModel step writes for every model that passes the quality gate, and what
``roadseg segment`` (or a team's own runtime) reads. One directory (a local folder or an S3 prefix):

    bundle.json          what is here: schema, head, backbone, classes, resolution, files with their SHA-256
    model.onnx           the network at the serving resolution (absent when the head does not export)
    model-symbol.json    the hybridized MXNet graph at the serving resolution ...
    model-0000.params    ... and its parameters (the input SageMaker Neo needs: framework MXNET, data [1,3,H,W])
    neo/model.tar.gz     the two files above as the archive a Neo compilation job reads
    classes.json         class names, palette, vulnerable road user classes, ignore index
    preprocessing.json   how a frame becomes the network's input (the ingest function's frame preparation, then
                         normalisation and channel order) and how its output becomes a mask
    parity.json          ONNX Runtime against MXNet on validation frames at the serving resolution
    evaluation.json      the quality gate's evaluation report of this model
    MODEL_CARD.md        a short model card for people

Standard library only: the export job (Python 3.11 with MXNet), the processing image and the operator command read it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from contracts.documents import BOOL, INT, NUMBER, STR, DocumentError, ListOf, MapOf, Nullable, _validate

BUNDLE_SCHEMA_VERSION = "1.0"
PREPROCESSING_SCHEMA_VERSION = "1.0"
PARITY_SCHEMA_VERSION = "1.0"
# preprocessing.json's frame_preparation.function: the ingest function's frame preparation, by the name bundles have
# carried since 1.0 (the function lives in segcore/imaging.py now; the value stays, so exported bundles keep loading).
PREPARE_FUNCTION = "roadseg_lambda.imaging.prepare_frame"

# The network's input and output as the export names them (Neo's DataInputConfig uses the input name).
INPUT_NAME = "data"
# ImageNet statistics on 0..1 RGB: what GluonCV's segmentation training normalises with (the built-in algorithm's
# own value is not documented; parity with the endpoint is measured by the gate's evaluation, not assumed).
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
# A prepared frame smaller than the network's fixed input (another aspect ratio) is padded at the bottom and right
# with zeros after normalisation (the mean colour) and the padding is cut from the output.
FIT = "pad-bottom-right"
# Neo's MXNet ceiling (its FrameworkVersion for MXNET) and the data shape it is given.
NEO_FRAMEWORK = "MXNET"
NEO_FRAMEWORK_VERSION = "1.8"


@dataclass(frozen=True)
class BundleLayout:
    manifest: str = "bundle.json"
    onnx: str = "model.onnx"
    symbol: str = "model-symbol.json"
    params: str = "model-0000.params"
    neo_archive: str = "neo/model.tar.gz"
    classes: str = "classes.json"
    preprocessing: str = "preprocessing.json"
    parity: str = "parity.json"
    evaluation: str = "evaluation.json"
    model_card: str = "MODEL_CARD.md"


BUNDLE = BundleLayout()


def neo_data_input_config(height: int, width: int) -> str:
    """Neo's ``InputConfig.DataInputConfig`` for the exported graph (batch of one, NCHW)."""
    return json.dumps({INPUT_NAME: [1, 3, height, width]})


def bundle_uri(artifacts_prefix: str) -> str:
    """The bundle's S3 prefix under a pipeline execution's artifacts (``.../bundle/``)."""
    return artifacts_prefix.rstrip("/") + "/bundle/"


# ------------------------------------------------------------------------------------------- documents
# The bundle's JSON documents, validated the way contracts.documents validates the others (extra keys allowed;
# removing or retyping a key is a new version).

_NETWORK_SIZE = {"width": INT, "height": INT}

BUNDLE_SCHEMAS: dict[str, dict[str, Any]] = {
    "1.0": {
        "schema_version": STR,
        "head": STR,  # fcn | psp | deeplab (the algorithm hyperparameter)
        "backbone": STR,  # resnet-50 | resnet-101
        "aux_in_checkpoint": BOOL,  # the checkpoint had GluonCV's auxiliary head (never exported)
        "scheme": STR,
        "num_classes": INT,
        "network_size": _NETWORK_SIZE,
        "input_name": STR,
        "onnx": {"status": STR, "reason": Nullable(STR), "opset": Nullable(INT)},  # status: exported | unavailable
        "parity": {"status": STR, "frames": INT, "max_abs_logit_difference": Nullable(NUMBER),
                   "argmax_agreement": Nullable(NUMBER)},
        "neo": {"framework": STR, "framework_version": STR, "data_input_config": STR, "archive": STR},
        "gate": {"mIoU": NUMBER, "pixel_accuracy": NUMBER},
        "versions": MapOf(STR),
        "files": MapOf({"sha256": STR, "bytes": INT}),  # path relative to the bundle -> digest and size
    },
}

PREPROCESSING_SCHEMAS: dict[str, dict[str, Any]] = {
    "1.0": {
        "schema_version": STR,
        # FRAME_PREPARATION_VARIABLES exactly as the serving step (and the ingest function) got them.
        "frame_preparation": {"function": STR, "environment": MapOf(STR)},
        "input": {"name": STR, "dtype": STR, "layout": STR, "shape": ListOf(INT, 4), "width": INT, "height": INT,
                  "channel_order": STR, "scale": NUMBER, "mean": ListOf(NUMBER, 3), "std": ListOf(NUMBER, 3),
                  "fit": STR},
        "output": {"dtype": STR, "layout": STR, "shape": ListOf(INT, 4), "meaning": STR, "mask": STR,
                   "ignore_index": INT},
    },
}

PARITY_SCHEMAS: dict[str, dict[str, Any]] = {
    "1.0": {
        "schema_version": STR,
        "status": STR,  # passed | failed | skipped (no model.onnx)
        "reason": Nullable(STR),
        "reference": STR,
        "runtime": Nullable({"name": STR, "version": STR, "provider": STR}),
        "network_size": _NETWORK_SIZE,
        "thresholds": {"max_logit_difference": NUMBER, "min_argmax_agreement": NUMBER},
        "frames": ListOf({"name": STR, "width": INT, "height": INT, "max_abs_logit_difference": NUMBER,
                          "argmax_agreement": NUMBER}),
        "overall": {"frames": INT, "max_abs_logit_difference": Nullable(NUMBER),
                    "min_argmax_agreement": Nullable(NUMBER), "argmax_agreement": Nullable(NUMBER)},
    },
}

ONNX_STATUSES = ("exported", "unavailable")
PARITY_STATUSES = ("passed", "failed", "skipped")


def _one_of(document: str, key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise DocumentError(document, key, f"must be one of {', '.join(allowed)}, got {value!r}")


def validate_bundle(doc: Any) -> dict[str, Any]:
    """bundle.json; also: an exported ONNX model is listed among the files, an unavailable one says why."""
    _validate("bundle", doc, BUNDLE_SCHEMAS)
    _one_of("bundle", "onnx.status", doc["onnx"]["status"], ONNX_STATUSES)
    _one_of("bundle", "parity.status", doc["parity"]["status"], PARITY_STATUSES)
    exported = doc["onnx"]["status"] == "exported"
    if exported and BUNDLE.onnx not in doc["files"]:
        raise DocumentError("bundle", "files", f"onnx.status is exported but {BUNDLE.onnx} is not listed")
    if not exported and not doc["onnx"]["reason"]:
        raise DocumentError("bundle", "onnx.reason", "must say why there is no ONNX model")
    return doc


def validate_preprocessing(doc: Any) -> dict[str, Any]:
    return _validate("preprocessing", doc, PREPROCESSING_SCHEMAS)


def validate_parity(doc: Any) -> dict[str, Any]:
    _validate("parity", doc, PARITY_SCHEMAS)
    _one_of("parity", "status", doc["status"], PARITY_STATUSES)
    return doc
