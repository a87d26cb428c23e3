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

BUNDLE_SCHEMA_VERSION = "1.0"
PREPROCESSING_SCHEMA_VERSION = "1.0"
PARITY_SCHEMA_VERSION = "1.0"

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
