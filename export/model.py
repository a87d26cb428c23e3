"""Export a gated model so it runs outside the algorithm's container: the edge bundle (``contracts.bundle``).

The algorithm's ``model.tar.gz`` holds ``hyperparams.json``, ``model_algo-1`` (the GluonCV network's parameters, a
Gluon ``save_parameters`` file) and ``model_best.params``. It is not a hybridized graph, so neither SageMaker Neo nor
ONNX Runtime can read it as is. The export:

1. rebuilds the network from ``hyperparams.json`` (``algorithm``: fcn, psp or deeplab; ``backbone``: resnet-50 or
   resnet-101; ``num_classes``; values may be strings) at the serving resolution (``TARGET_WIDTH`` x
   ``TARGET_HEIGHT`` of the frame-preparation environment: GluonCV heads fix their output size at construction) and
   loads ``model_algo-1`` strictly. Whether the network was saved with its auxiliary head is read from the parameter
   names (``auxlayer.*``); any other difference in names or shapes fails the export with the list of differences;
   a network with wrong or missing weights is never exported;
2. writes the hybridized MXNet graph of the main output (``model-symbol.json``, ``model-0000.params``, and the two as
   ``neo/model.tar.gz``, the input of a Neo compilation job), ``model.onnx`` (``mx.onnx.export_model``; PSP's
   adaptive average pooling is converted here as two MatMuls with constant pooling matrices, since MXNet's own
   converter only handles a 1x1 output), ``classes.json``, ``preprocessing.json``, a copy of the evaluation report,
   ``MODEL_CARD.md`` and ``bundle.json`` (files with their SHA-256);
3. measures parity: ONNX Runtime (CPU) against MXNet on the serving validation frames (the inference JPEGs of
   PrepareServingValidation), both fed by ``segcore.bundle_runtime.network_input``; ``parity.json`` records the
   largest absolute logit difference and the argmax agreement per frame and overall, and the step fails when either
   misses its threshold.

Runs in the export environment (Python 3.11, MXNet 1.9.1, export/requirements.txt). MXNet, GluonCV, ONNX and
ONNX Runtime are imported inside the functions that need them, so the pure helpers import anywhere.

    python -m export.model --model DIR|model.tar.gz --validation DIR --evaluation evaluation.json --output DIR
        [--scheme cityscapes] --max-logit-difference F --min-argmax-agreement F [--max-parity-frames N]
    (serving resolution from TARGET_WIDTH, TARGET_HEIGHT; all of contracts.lambda_env.FRAME_PREPARATION_VARIABLES)

A model trained outside roadseg has no evaluation report: ``--validation-miou F --validation-pixel-accuracy F`` (the
training job's own final ``validation:mIOU`` and ``validation:pixel_accuracy``) take the place of ``--evaluation``;
the bundle then has no evaluation.json and its model card says the model was not gated (``roadseg model export``).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import logging
import math
import os
import platform
import shutil
import sys
import tarfile
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from contracts.bundle import (
    BUNDLE,
    BUNDLE_SCHEMA_VERSION,
    FIT,
    INPUT_NAME,
    MEAN,
    NEO_FRAMEWORK,
    NEO_FRAMEWORK_VERSION,
    PARITY_SCHEMA_VERSION,
    PREPARE_FUNCTION,
    PREPROCESSING_SCHEMA_VERSION,
    STD,
    neo_data_input_config,
    validate_bundle,
    validate_parity,
    validate_preprocessing,
)
from contracts.documents import DocumentError, validate_evaluation
from contracts.lambda_env import FRAME_PREPARATION_VARIABLES, EnvironmentContractError, PreprocessorEnvironment
from segcore.classes import ClassScheme, add_scheme_arguments, scheme_from_arguments

log = logging.getLogger("roadseg.export")

MODEL_ARCHIVE = "model.tar.gz"
HYPERPARAMETERS_FILE = "hyperparams.json"
PARAMETERS_FILE = "model_algo-1"
# hyperparameter ``algorithm`` -> GluonCV class in gluoncv.model_zoo; ``backbone`` -> GluonCV backbone name.
HEAD_CLASSES = {"fcn": "FCN", "psp": "PSPNet", "deeplab": "DeepLabV3"}
BACKBONES = {"resnet-50": "resnet50", "resnet-101": "resnet101"}
# The algorithm's defaults for hyperparameters a job did not set (the same as training/hyperparameters.py).
DEFAULT_HEAD, DEFAULT_BACKBONE = "fcn", "resnet-50"
# Parameter-name prefix of GluonCV's auxiliary FCN head (aux=True), and the final 1x1 convolution of every head: its
# output channels are the number of classes the network was trained for.
AUX_PREFIX = "auxlayer."
CLASSIFIER_WEIGHT = "head.block.4.weight"
# Dilated ResNet: the heads see the input at 1/8; the pyramid (PSP) and image pooling (DeepLab) branches are resized
# to height//8 x width//8 at construction and must meet the backbone's feature map.
OUTPUT_STRIDE = 8
DEFAULT_MAX_PARITY_FRAMES = 8
FRAME_EXTENSIONS = (".jpg", ".jpeg")
SHOWN_DIFFERENCES = 10


class ExportError(ValueError):
    """The model cannot be exported as asked (bad archive, parameters that do not match, parity missed); the
    message says what, where and how to fix it."""


# ------------------------------------------------------------------------------------------- pure helpers


@dataclass(frozen=True)
class NetworkSpec:
    """What ``hyperparams.json`` says about the network: head, backbone and classes."""

    head: str  # fcn | psp | deeplab
    backbone: str  # resnet-50 | resnet-101
    num_classes: int

    @property
    def gluoncv_class(self) -> str:
        return HEAD_CLASSES[self.head]

    @property
    def gluoncv_backbone(self) -> str:
        return BACKBONES[self.backbone]


def _plain(value: Any) -> str:
    # SageMaker passes every hyperparameter as a string; tolerate JSON numbers and stray quotes as well.
    return str(value).strip().strip('"').strip("'").strip()


def parse_hyperparameters(raw: Any, source: str = HYPERPARAMETERS_FILE) -> NetworkSpec:
    """The network of a ``hyperparams.json`` document; ExportError naming the key and the allowed values."""
    if not isinstance(raw, Mapping):
        raise ExportError(f"{source}: expected a JSON object of hyperparameters, got {type(raw).__name__}")
    head = _plain(raw.get("algorithm", DEFAULT_HEAD)).lower()
    if head not in HEAD_CLASSES:
        raise ExportError(f"{source}: unknown head algorithm={head!r}; the algorithm's heads are "
                          f"{', '.join(HEAD_CLASSES)}")
    backbone = _plain(raw.get("backbone", DEFAULT_BACKBONE)).lower().replace("_", "-")
    backbone = {"resnet50": "resnet-50", "resnet101": "resnet-101"}.get(backbone, backbone)
    if backbone not in BACKBONES:
        raise ExportError(f"{source}: unknown backbone={backbone!r}; the algorithm's backbones are "
                          f"{', '.join(BACKBONES)}")
    if "num_classes" not in raw:
        raise ExportError(f"{source}: num_classes is missing; the algorithm always records it (is this the "
                          "Semantic Segmentation algorithm's model.tar.gz?)")
    text = _plain(raw["num_classes"])
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if not number.is_integer() or not 2 <= number <= 254:
        raise ExportError(f"{source}: num_classes={text!r} is not an integer within 2..254")
    return NetworkSpec(head=head, backbone=backbone, num_classes=int(number))


def serving_size(environ: Mapping[str, str]) -> tuple[PreprocessorEnvironment, dict[str, str]]:
    """The frame-preparation settings the serving step got (all of ``FRAME_PREPARATION_VARIABLES``, read through
    the functions' own codec) and the variables exactly as given."""
    missing = [name for name in FRAME_PREPARATION_VARIABLES if name not in environ]
    if missing:
        raise ExportError(
            f"the environment lacks {', '.join(missing)}: the export builds the network at the serving resolution "
            f"and records the frame preparation, so it needs the serving step's environment "
            f"({', '.join(FRAME_PREPARATION_VARIABLES)}), which the pipeline sets"
        )
    given = {name: environ[name] for name in FRAME_PREPARATION_VARIABLES}
    try:
        settings = PreprocessorEnvironment.from_env(given)
    except EnvironmentContractError as exc:
        raise ExportError(str(exc).replace("\n", " ")) from None
    return settings, given


def check_network_size(head: str, width: int, height: int) -> None:
    """PSP and DeepLabV3 resize their pooling branches to height//8 x width//8 at construction; the backbone's
    feature map is ceil(size/8), so both sizes must be multiples of 8 for those heads."""
    if head != "fcn" and (width % OUTPUT_STRIDE or height % OUTPUT_STRIDE):
        raise ExportError(
            f"the {head} head needs a serving size that is a multiple of {OUTPUT_STRIDE} in both directions, got "
            f"{width}x{height}: set TARGET_WIDTH/TARGET_HEIGHT (preprocessing.target_width/height) accordingly"
        )


def adaptive_pool_matrix(in_size: int, out_size: int) -> np.ndarray:
    """The (out_size, in_size) float32 matrix of MXNet's adaptive average pooling along one axis: row i averages
    input positions floor(i*in/out) .. ceil((i+1)*in/out)-1. Pooling a H x W map to (oh, ow) is then
    ``P_h @ X @ P_w.T``, which ONNX expresses with MatMul for a fixed input size."""
    if in_size < 1 or out_size < 1:
        raise ValueError(f"pooling sizes must be positive, got {in_size} -> {out_size}")
    matrix = np.zeros((out_size, in_size), dtype=np.float32)
    for i in range(out_size):
        start = (i * in_size) // out_size
        end = -((-(i + 1) * in_size) // out_size)  # ceil without floats
        matrix[i, start:end] = 1.0 / (end - start)
    return matrix


def parameter_differences(expected: Mapping[str, tuple[int, ...]], saved: Mapping[str, tuple[int, ...]]) -> str | None:
    """None when the saved parameters are exactly the network's (names and shapes), else what differs: the first
    ``SHOWN_DIFFERENCES`` names of each kind with the counts."""
    missing = sorted(set(expected) - set(saved))
    unexpected = sorted(set(saved) - set(expected))
    wrong_shape = sorted(name for name in set(expected) & set(saved) if tuple(expected[name]) != tuple(saved[name]))
    if not (missing or unexpected or wrong_shape):
        return None

    def shown(names: list[str], describe: Callable[[str], str] = str) -> str:
        more = f", ... ({len(names) - SHOWN_DIFFERENCES} more)" if len(names) > SHOWN_DIFFERENCES else ""
        return ", ".join(describe(name) for name in names[:SHOWN_DIFFERENCES]) + more

    parts = []
    if missing:
        parts.append(f"{len(missing)} missing from the file: {shown(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected in the file: {shown(unexpected)}")
    if wrong_shape:
        parts.append(f"{len(wrong_shape)} of the wrong shape: " + shown(
            wrong_shape, lambda n: f"{n} (file {list(saved[n])}, network {list(expected[n])})"))
    return "; ".join(parts)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def validation_frames(folder: Path, limit: int) -> list[Path]:
    """The first ``limit`` inference JPEGs of the serving validation set, by name."""
    if not folder.is_dir():
        raise ExportError(f"validation frame directory {folder} does not exist (PrepareServingValidation's output)")
    frames = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in FRAME_EXTENSIONS)
    if not frames:
        raise ExportError(f"no .jpg frames in {folder}: parity is measured on the serving validation frames")
    return frames[:limit]


# --------------------------------------------------------------------------------------------- the archive


@contextlib.contextmanager
def unpacked_model(model: Path) -> Iterator[Path]:
    """A directory holding ``hyperparams.json`` and ``model_algo-1``: ``model`` itself when it already holds them,
    else the members of ``model.tar.gz`` (``model`` or ``model/model.tar.gz``) extracted into a temporary folder."""
    if model.is_dir() and (model / HYPERPARAMETERS_FILE).is_file() and (model / PARAMETERS_FILE).is_file():
        yield model
        return
    archive = model / MODEL_ARCHIVE if model.is_dir() else model
    if not archive.is_file():
        raise ExportError(f"no model archive at {archive}: pass the training job's model.tar.gz or the folder "
                          "holding it (--model)")
    with tempfile.TemporaryDirectory(prefix="roadseg-export-") as scratch:
        try:
            with tarfile.open(archive, "r:*") as tar:
                members = {Path(m.name).as_posix().removeprefix("./"): m for m in tar.getmembers() if m.isfile()}
                absent = [name for name in (HYPERPARAMETERS_FILE, PARAMETERS_FILE) if name not in members]
                if absent:
                    raise ExportError(
                        f"{archive} lacks {' and '.join(absent)} (it holds {', '.join(sorted(members)) or 'no files'})"
                        ": pass the Semantic Segmentation algorithm's model.tar.gz"
                    )
                for name in (HYPERPARAMETERS_FILE, PARAMETERS_FILE):
                    source = tar.extractfile(members[name])
                    assert source is not None  # a regular file member
                    with source, (Path(scratch) / name).open("wb") as target:
                        shutil.copyfileobj(source, target, 1 << 20)
        except (tarfile.TarError, EOFError, OSError, ValueError) as exc:
            if isinstance(exc, ExportError):
                raise
            raise ExportError(f"{archive} is not a readable tar archive ({type(exc).__name__}: {exc}): pass the "
                              "training job's model.tar.gz as SageMaker wrote it") from None
        yield Path(scratch)


def read_hyperparameters(folder: Path) -> NetworkSpec:
    path = folder / HYPERPARAMETERS_FILE
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ExportError(f"{HYPERPARAMETERS_FILE} in the model archive cannot be read: {exc}") from None
    return parse_hyperparameters(raw)


# ----------------------------------------------------------------------------------------- MXNet network


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    # GluonCV's PSPNet prints its crop size, Gluon warns about already-initialised heads and parameters left out of
    # the exported graph (the auxiliary head, on purpose): noise in the job log.
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def build_network(spec: NetworkSpec, aux: bool, width: int, height: int):
    """The GluonCV network of ``spec`` at width x height (randomly initialised heads, backbone uninitialised)."""
    from gluoncv import model_zoo

    network_class = getattr(model_zoo, spec.gluoncv_class)
    with _quiet():
        return network_class(spec.num_classes, backbone=spec.gluoncv_backbone, aux=aux, height=height, width=width,
                             pretrained_base=False)


def network_parameter_shapes(net, width: int, height: int) -> dict[str, tuple[int, ...]]:
    """Structural parameter name (what ``save_parameters`` writes) -> shape, by symbolic shape inference at the
    network's input size (cheap: nothing is computed)."""
    import mxnet as mx

    outputs = net(mx.sym.var(INPUT_NAME))
    graph = mx.sym.Group(list(outputs)) if isinstance(outputs, (list, tuple)) else outputs
    arg_shapes, _, aux_shapes = graph.infer_shape(**{INPUT_NAME: (1, 3, height, width)})
    by_full_name = dict(zip(graph.list_arguments(), arg_shapes, strict=True))
    by_full_name.update(zip(graph.list_auxiliary_states(), aux_shapes, strict=True))
    return {name: tuple(by_full_name[param.name]) for name, param in net._collect_params_with_prefix().items()}


def load_network(parameters_file: Path, spec: NetworkSpec, width: int, height: int):
    """The network with the saved parameters loaded strictly, and whether it has the auxiliary head."""
    import mxnet as mx

    try:
        saved_arrays = mx.nd.load(str(parameters_file))
    except mx.base.MXNetError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"{PARAMETERS_FILE} is not an MXNet parameter file ({first})") from None
    if not isinstance(saved_arrays, dict) or not saved_arrays:
        raise ExportError(f"{PARAMETERS_FILE} holds no named parameters: expected a Gluon save_parameters file")
    saved = {name: tuple(array.shape) for name, array in saved_arrays.items()}
    del saved_arrays
    classifier = saved.get(CLASSIFIER_WEIGHT)
    if classifier is not None and classifier[0] != spec.num_classes:
        raise ExportError(
            f"{PARAMETERS_FILE} predicts {classifier[0]} classes ({CLASSIFIER_WEIGHT} {list(classifier)}) but "
            f"{HYPERPARAMETERS_FILE} says num_classes={spec.num_classes}: the archive mixes two models"
        )
    # Not documented for the algorithm: whether the saved network kept GluonCV's default auxiliary head.
    aux = any(name.startswith(AUX_PREFIX) for name in saved)
    net = build_network(spec, aux, width, height)
    differences = parameter_differences(network_parameter_shapes(net, width, height), saved)
    if differences:
        raise ExportError(
            f"{PARAMETERS_FILE} does not match a GluonCV {spec.gluoncv_class} with backbone {spec.backbone}, "
            f"{spec.num_classes} classes, aux={aux} ({HYPERPARAMETERS_FILE}): {differences}. Check algorithm, "
            "backbone and num_classes in hyperparams.json against the training job"
        )
    try:
        net.load_parameters(str(parameters_file), ctx=mx.cpu(), allow_missing=False, ignore_extra=False)
    except (mx.base.MXNetError, AssertionError, ValueError) as exc:  # names and shapes matched: dtype, storage
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ExportError(f"{PARAMETERS_FILE} cannot be loaded into the rebuilt {spec.gluoncv_class}: {first}") \
            from None
    return net, aux


def main_output_block(net):
    """A HybridBlock returning only the network's first output (the segmentation logits): the auxiliary head
    helps training only, and the exported graph then leaves it out (with its parameters)."""
    from mxnet.gluon import HybridBlock

    class MainOutput(HybridBlock):
        def __init__(self, network) -> None:
            super().__init__(prefix="")
            self.network = network

        def hybrid_forward(self, F, x):  # noqa: N803 - Gluon's signature
            outputs = self.network(x)
            return outputs[0] if isinstance(outputs, (list, tuple)) else outputs

    return MainOutput(net)


def export_mxnet(net, output: Path, width: int, height: int) -> None:
    """``model-symbol.json`` + ``model-0000.params`` (hybridized at width x height) and ``neo/model.tar.gz``."""
    import mxnet as mx

    block = main_output_block(net)
    block.hybridize(static_alloc=True, static_shape=True)
    prefix = output / BUNDLE.symbol.removesuffix("-symbol.json")
    with _quiet():
        block(mx.nd.zeros((1, 3, height, width)))
        block.export(str(prefix), epoch=0)
    for name in (BUNDLE.symbol, BUNDLE.params):
        if not (output / name).is_file():
            raise ExportError(f"MXNet's export did not write {name} (prefix {prefix})")
    neo = output / BUNDLE.neo_archive
    neo.parent.mkdir(parents=True, exist_ok=True)
    # Weights hardly compress: the fastest gzip level keeps the archive a .tar.gz (what Neo reads) at little cost.
    with tarfile.open(neo, "w:gz", compresslevel=1) as tar:
        for name in (BUNDLE.symbol, BUNDLE.params):
            tar.add(output / name, arcname=name)


def load_exported(output: Path):
    """The exported graph as MXNet serves it (what Neo compiles): a SymbolBlock of the two files."""
    import mxnet as mx

    with _quiet():
        return mx.gluon.SymbolBlock.imports(str(output / BUNDLE.symbol), [INPUT_NAME], str(output / BUNDLE.params),
                                            ctx=mx.cpu())


# ------------------------------------------------------------------------------------------------- ONNX


@contextlib.contextmanager
def adaptive_pooling_as_matmul(symbol_file: Path, width: int, height: int) -> Iterator[None]:
    """While active, mx2onnx converts ``_contrib_AdaptiveAvgPooling2D`` (PSP's pyramid pooling, any output size) to
    ``MatMul(P_h, MatMul(X, P_w^T))`` with constant pooling matrices, for the input sizes this graph has at
    width x height. MXNet's own converter stops at output size 1."""
    import mxnet as mx
    import onnx
    from mxnet.onnx.mx2onnx._export_onnx import MXNetGraph

    symbol = mx.sym.load(str(symbol_file))
    nodes = json.loads(symbol.tojson())["nodes"]
    internals = symbol.get_internals()
    _, shapes, _ = internals.infer_shape(**{INPUT_NAME: (1, 3, height, width)})
    shape_of = dict(zip(internals.list_outputs(), shapes, strict=True))

    def input_shape(node_index: int, output_index: int) -> tuple[int, ...]:
        source = nodes[node_index]
        name = source["name"]
        for candidate in (f"{name}_output", f"{name}_output{output_index}", name):
            if candidate in shape_of:
                return tuple(shape_of[candidate])
        raise ExportError(f"cannot infer the input shape of the pooling that follows {name}")

    def convert(node, **kwargs):
        outputs_lookup, initializer = kwargs["outputs_lookup"], kwargs["initializer"]
        name = node["name"]
        source_index, source_output = node["inputs"][0][0], node["inputs"][0][1]
        source = outputs_lookup[source_index][source_output].name
        sizes = [int(s) for s in str(node.get("attrs", {}).get("output_size", "1")).strip("()[] ").split(",") if s]
        out_h, out_w = (sizes[0], sizes[0]) if len(sizes) == 1 else (sizes[0], sizes[1])
        in_h, in_w = input_shape(source_index, source_output)[2:]
        rows, columns = adaptive_pool_matrix(in_h, out_h), adaptive_pool_matrix(in_w, out_w).T.copy()
        for suffix, matrix in (("_rows", rows), ("_columns", columns)):
            initializer.append(onnx.numpy_helper.from_array(matrix, name + suffix))
        return [
            onnx.helper.make_node("MatMul", [source, name + "_columns"], [name + "_pooled_w"], name=name + "_w"),
            onnx.helper.make_node("MatMul", [name + "_rows", name + "_pooled_w"], [name], name=name),
        ]

    op, table = "_contrib_AdaptiveAvgPooling2D", MXNetGraph.registry_.setdefault(12, {})
    original = table.get(op)
    table[op] = convert
    try:
        yield
    finally:
        if original is None:
            table.pop(op, None)
        else:
            table[op] = original


def export_onnx(output: Path, width: int, height: int) -> int:
    """``model.onnx`` from the exported MXNet graph (input ``data`` [1, 3, H, W] float32); returns its opset (the
    installed onnx's newest: mx2onnx falls back to older converters per operator)."""
    import mxnet as mx
    import onnx

    symbol_file, params_file, onnx_file = output / BUNDLE.symbol, output / BUNDLE.params, output / BUNDLE.onnx
    with adaptive_pooling_as_matmul(symbol_file, width, height), _quiet():
        mx.onnx.export_model(str(symbol_file), str(params_file), in_shapes=[(1, 3, height, width)],
                             in_types=[np.float32], onnx_file_path=str(onnx_file))
    model = onnx.load(str(onnx_file))
    # mx2onnx also lists every weight as a graph input, which keeps ONNX Runtime from folding constants (BatchNorm
    # into the convolutions): the bundle's model takes the frame only.
    weights = {tensor.name for tensor in model.graph.initializer}
    kept = [value for value in model.graph.input if value.name not in weights]
    del model.graph.input[:]
    model.graph.input.extend(kept)
    if [value.name for value in model.graph.input] != [INPUT_NAME]:
        names = [value.name for value in model.graph.input]
        raise ExportError(f"the ONNX model's inputs are {names}, expected [{INPUT_NAME!r}]")
    onnx.checker.check_model(model)
    onnx.save(model, str(onnx_file))
    return max(entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx"))


# ----------------------------------------------------------------------------------------------- parity


def measure_parity(output: Path, frames: Sequence[Path], width: int, height: int, max_logit_difference: float,
                   min_argmax_agreement: float) -> dict[str, Any]:
    """ONNX Runtime (CPU) against the exported MXNet graph on ``frames``; the parity document (status passed or
    failed). Both compare over the frame's own pixels (the padding of a smaller frame is cut, as in the mask)."""
    import mxnet as mx
    import onnxruntime as ort

    from segcore.bundle_runtime import network_input

    reference = load_exported(output)
    session = ort.InferenceSession(str(output / BUNDLE.onnx), providers=["CPUExecutionProvider"])
    onnx_input = session.get_inputs()[0].name
    results = []
    for path in frames:
        try:
            tensor, (frame_w, frame_h) = network_input(path.read_bytes(), (width, height))
        except Exception as exc:  # noqa: BLE001 - a broken validation frame is reported by name
            raise ExportError(f"validation frame {path.name} cannot be fed to the network: {exc}") from None
        expected = reference(mx.nd.array(tensor)).asnumpy()[0, :, :frame_h, :frame_w]
        actual = session.run(None, {onnx_input: tensor})[0][0, :, :frame_h, :frame_w]
        if actual.shape != expected.shape:
            raise ExportError(f"ONNX Runtime answers {list(actual.shape)} but MXNet {list(expected.shape)} for "
                              f"{path.name}")
        difference = float(np.max(np.abs(actual.astype(np.float64) - expected)))
        agreement = float(np.mean(np.argmax(actual, axis=0) == np.argmax(expected, axis=0)))
        results.append({"name": path.name, "width": frame_w, "height": frame_h,
                        "max_abs_logit_difference": difference, "argmax_agreement": agreement})
        log.info("parity %s (%dx%d): max |logit difference| %.3g, argmax agreement %.6f", path.name, frame_w,
                 frame_h, difference, agreement)
    pixels = np.array([r["width"] * r["height"] for r in results], dtype=np.float64)
    agreements = np.array([r["argmax_agreement"] for r in results])
    worst_difference = max(r["max_abs_logit_difference"] for r in results)
    overall_agreement = float(np.sum(agreements * pixels) / np.sum(pixels))
    failures = []
    if worst_difference > max_logit_difference:
        worst = max(results, key=lambda r: r["max_abs_logit_difference"])
        failures.append(f"max |logit difference| {worst_difference:.3g} > {max_logit_difference} ({worst['name']})")
    if float(agreements.min()) < min_argmax_agreement:
        worst = min(results, key=lambda r: r["argmax_agreement"])
        failures.append(f"argmax agreement {worst['argmax_agreement']:.6f} < {min_argmax_agreement} "
                        f"({worst['name']})")
    return {
        "schema_version": PARITY_SCHEMA_VERSION,
        "status": "failed" if failures else "passed",
        "reason": "; ".join(failures) or None,
        "reference": "mxnet (exported graph, CPU)",
        "runtime": {"name": "onnxruntime", "version": ort.__version__, "provider": "CPUExecutionProvider"},
        "network_size": {"width": width, "height": height},
        "thresholds": {"max_logit_difference": max_logit_difference, "min_argmax_agreement": min_argmax_agreement},
        "frames": results,
        "overall": {"frames": len(results), "max_abs_logit_difference": worst_difference,
                    "min_argmax_agreement": float(agreements.min()), "argmax_agreement": overall_agreement},
    }


def skipped_parity(reason: str, width: int, height: int, max_logit_difference: float,
                   min_argmax_agreement: float) -> dict[str, Any]:
    return {
        "schema_version": PARITY_SCHEMA_VERSION, "status": "skipped", "reason": reason,
        "reference": "mxnet (exported graph, CPU)", "runtime": None,
        "network_size": {"width": width, "height": height},
        "thresholds": {"max_logit_difference": max_logit_difference, "min_argmax_agreement": min_argmax_agreement},
        "frames": [],
        "overall": {"frames": 0, "max_abs_logit_difference": None, "min_argmax_agreement": None,
                    "argmax_agreement": None},
    }


# ---------------------------------------------------------------------------------------- bundle files


def classes_document(scheme: ClassScheme) -> dict[str, Any]:
    return {
        "scheme": scheme.name,
        "num_classes": scheme.num_classes,
        "classes": [{"index": c.train_id, "name": c.name, "color": list(c.color)} for c in scheme.classes],
        "vulnerable_road_users": list(scheme.vulnerable_road_users),
        "ignore_index": scheme.ignore_index,
    }


def preprocessing_document(given: Mapping[str, str], width: int, height: int, num_classes: int,
                           ignore_index: int) -> dict[str, Any]:
    return {
        "schema_version": PREPROCESSING_SCHEMA_VERSION,
        # Exactly what the ingest function's prepare_frame is configured with (contracts.lambda_env).
        "frame_preparation": {
            "function": PREPARE_FUNCTION,
            "environment": dict(given),
        },
        "input": {"name": INPUT_NAME, "dtype": "float32", "layout": "NCHW", "shape": [1, 3, height, width],
                  "width": width, "height": height, "channel_order": "RGB", "scale": 1 / 255, "mean": list(MEAN),
                  "std": list(STD), "fit": FIT},
        "output": {"dtype": "float32", "layout": "NCHW", "shape": [1, num_classes, height, width],
                   "meaning": "logits", "mask": "argmax over the class axis -> class index (uint8), padding cut",
                   "ignore_index": ignore_index},
    }


def _versions() -> dict[str, str]:
    # The installed distributions (gluoncv 0.10.5.post0 reports itself as 0.11.0 in __version__).
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": platform.python_version()}
    for name in ("numpy", "mxnet", "gluoncv", "onnx", "onnxruntime"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def model_card(spec: NetworkSpec, aux: bool, scheme: ClassScheme, width: int, height: int,
               evaluation: Mapping[str, Any], parity: Mapping[str, Any], onnx_reason: str | None) -> str:
    metrics = evaluation["metrics"]
    gated = evaluation.get("source") != "training job"  # training_job_metrics: exported locally, never gated
    vru = [name for name in scheme.vulnerable_road_users if name in evaluation.get("gate", {})]
    lines = [
        f"# roadseg model: {spec.head} / {spec.backbone}, {scheme.num_classes} classes ({scheme.name})",
        "",
        "SageMaker built-in Semantic Segmentation algorithm (MXNet / GluonCV), " + (
            "exported by roadseg's ExportModel step after it passed the quality gate." if gated else
            "exported locally (`roadseg model export`) from a model.tar.gz that roadseg's quality gate never saw."),
        "",
        "## Network",
        f"- head {spec.head} ({spec.gluoncv_class}), backbone {spec.backbone} (dilated, output stride 8); the "
        f"auxiliary training head was {'present in the checkpoint and left out of the export' if aux else 'absent'}",
        f"- input `{INPUT_NAME}` float32 [1, 3, {height}, {width}] (NCHW, RGB / 255, ImageNet mean/std, frames "
        f"smaller than the input padded bottom-right); output logits [1, {scheme.num_classes}, {height}, {width}], "
        "argmax -> class index (preprocessing.json)",
        f"- classes: {', '.join(scheme.names)} (ignore index {scheme.ignore_index}); vulnerable road users: "
        f"{', '.join(scheme.vulnerable_road_users) or 'none'}",
        "",
    ]
    if gated:
        lines += [
            "## Quality gate (evaluation.json)",
            f"- {evaluation['num_images']} validation images: mIoU {metrics['mIoU']:.4f}, pixel accuracy "
            f"{metrics['pixel_accuracy']:.4f}, mean accuracy {metrics['mean_accuracy']:.4f}",
        ]
    else:
        lines += [
            "## Quality (not gated by roadseg, no evaluation.json)",
            f"- the training job's own final metrics, as given: validation:mIOU {metrics['mIoU']:.4f}, "
            f"validation:pixel_accuracy {metrics['pixel_accuracy']:.4f} (the algorithm's validation channel, "
            "not roadseg's evaluation)",
        ]
    if vru:
        lines.append("- IoU of vulnerable road users: " + ", ".join(
            f"{name} {evaluation['gate'][name]:.4f}" for name in vru) + " (-1: absent from the validation set)")
    lines += ["", "## Portability"]
    if parity["status"] == "skipped":
        lines.append(f"- no model.onnx: {onnx_reason}")
    else:
        overall = parity["overall"]
        lines.append(f"- model.onnx against MXNet on {overall['frames']} serving validation frames: max |logit "
                     f"difference| {overall['max_abs_logit_difference']:.3g}, argmax agreement "
                     f"{overall['argmax_agreement']:.6f} ({parity['status']})")
    lines += [
        f"- model-symbol.json / model-0000.params and neo/model.tar.gz: the MXNet graph for SageMaker Neo "
        f"(framework {NEO_FRAMEWORK}, data {neo_data_input_config(height, width)})",
        "",
        "## Limits",
        f"- fixed input size {width}x{height}: GluonCV heads fix their output size when built; another serving "
        "resolution needs another export",
        "- verified on GluonCV networks saved the way the algorithm saves them (save_parameters), not on a real "
        "training job's model_algo-1",
        "- the normalisation (ImageNet mean/std on 0..1 RGB) is GluonCV's; the algorithm's own is not documented, "
        "so outputs are comparable with the endpoint's through the gate's evaluation only",
        "",
    ]
    return "\n".join(lines)


def file_entries(output: Path) -> dict[str, dict[str, Any]]:
    """Every file of the bundle except bundle.json, by its path relative to the bundle."""
    entries = {}
    for path in sorted(p for p in output.rglob("*") if p.is_file()):
        relative = path.relative_to(output).as_posix()
        if relative != BUNDLE.manifest:
            entries[relative] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    return entries


def _write_json(path: Path, document: Mapping[str, Any]) -> None:
    path.write_text(json.dumps(document, indent=1) + "\n")


# ------------------------------------------------------------------------------------------------ export


def training_job_metrics(miou: float, pixel_accuracy: float) -> dict[str, Any]:
    """The stand-in for an evaluation report when a model was trained outside roadseg: the training job's final
    validation metrics as the operator gives them (the algorithm's objective metrics validation:mIOU and
    validation:pixel_accuracy). Read by bundle.json's gate and the model card only."""
    for name, value in (("validation:mIOU", miou), ("validation:pixel_accuracy", pixel_accuracy)):
        if not 0 <= value <= 1:
            raise ExportError(f"{name} must be within 0..1, got {value}")
    return {"source": "training job", "metrics": {"mIoU": miou, "pixel_accuracy": pixel_accuracy}}


def read_evaluation(path: Path) -> dict[str, Any]:
    try:
        return validate_evaluation(json.loads(path.read_text()))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ExportError(f"evaluation report {path} cannot be read: {exc}") from None
    except DocumentError as exc:
        raise ExportError(f"evaluation report {path} is not valid: {exc}") from None


def export_bundle(model: Path, validation: Path, evaluation_path: Path | None, output: Path, scheme: ClassScheme,
                  environ: Mapping[str, str], max_logit_difference: float, min_argmax_agreement: float,
                  max_parity_frames: int = DEFAULT_MAX_PARITY_FRAMES,
                  training_metrics: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write the edge bundle into ``output``; returns bundle.json. ExportError when the model cannot be exported
    or parity misses its thresholds (parity.json is written first, so the report says by how much).
    ``evaluation_path`` None: a model that roadseg did not gate, with ``training_metrics`` (training_job_metrics)."""
    settings, given = serving_size(environ)
    width, height = settings.target_size
    if evaluation_path is None:
        if training_metrics is None:
            raise ExportError("no evaluation report and no training job metrics: bundle.json records the quality")
        evaluation = dict(training_metrics)
    else:
        evaluation = read_evaluation(evaluation_path)
    if evaluation_path is not None and evaluation["classes"] != list(scheme.names):
        raise ExportError(f"evaluation report {evaluation_path} scores scheme {evaluation['scheme']!r} "
                          f"({evaluation['num_classes']} classes), not {scheme.name!r} ({scheme.num_classes}): pass "
                          "the scheme the model was trained with")
    frames = validation_frames(validation, max_parity_frames)
    output.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with unpacked_model(model) as folder:
        spec = read_hyperparameters(folder)
        log.info("model: head %s, backbone %s, %d classes; serving size %dx%d", spec.head, spec.backbone,
                 spec.num_classes, width, height)
        if spec.num_classes != scheme.num_classes:
            raise ExportError(
                f"{HYPERPARAMETERS_FILE} says num_classes={spec.num_classes} but scheme {scheme.name!r} has "
                f"{scheme.num_classes} classes: pass the scheme the model was trained with (--scheme/--classes-json)"
            )
        if evaluation.get("head") not in (None, spec.head):
            raise ExportError(f"the evaluation report is of a {evaluation['head']} model but {HYPERPARAMETERS_FILE} "
                              f"says algorithm={spec.head}: the pipeline passed two different models")
        check_network_size(spec.head, width, height)
        net, aux = load_network(folder / PARAMETERS_FILE, spec, width, height)
    log.info("loaded %s strictly (auxiliary head %s) in %.1f s", PARAMETERS_FILE,
             "present, left out of the export" if aux else "absent", time.monotonic() - started)
    export_mxnet(net, output, width, height)
    log.info("wrote %s, %s and %s", BUNDLE.symbol, BUNDLE.params, BUNDLE.neo_archive)

    onnx_file, onnx_reason, opset = output / BUNDLE.onnx, None, None
    onnx_file.unlink(missing_ok=True)
    try:
        opset = export_onnx(output, width, height)
        log.info("wrote %s (%.1f MB)", BUNDLE.onnx, onnx_file.stat().st_size / 1e6)
    except Exception as exc:  # noqa: BLE001 - the MXNet graph still serves Neo; the reason is recorded
        onnx_file.unlink(missing_ok=True)
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        onnx_reason = f"mx.onnx.export_model failed for the {spec.head} head: {type(exc).__name__}: {first}"
        log.warning("no %s: %s", BUNDLE.onnx, onnx_reason)

    if onnx_reason is None:
        parity = measure_parity(output, frames, width, height, max_logit_difference, min_argmax_agreement)
    else:
        parity = skipped_parity(f"no model.onnx: {onnx_reason}", width, height, max_logit_difference,
                                min_argmax_agreement)
    _write_json(output / BUNDLE.parity, validate_parity(parity))
    if parity["status"] == "failed":
        raise ExportError(f"ONNX Runtime disagrees with MXNet on the serving validation frames: {parity['reason']} "
                          f"(thresholds: --max-logit-difference, --min-argmax-agreement; {output / BUNDLE.parity})")

    _write_json(output / BUNDLE.classes, classes_document(scheme))
    _write_json(output / BUNDLE.preprocessing, validate_preprocessing(
        preprocessing_document(given, width, height, spec.num_classes, scheme.ignore_index)))
    if evaluation_path is not None:
        shutil.copyfile(evaluation_path, output / BUNDLE.evaluation)
    (output / BUNDLE.model_card).write_text(
        model_card(spec, aux, scheme, width, height, evaluation, parity, onnx_reason))
    bundle = {
        "schema_version": BUNDLE_SCHEMA_VERSION,
        "head": spec.head,
        "backbone": spec.backbone,
        "aux_in_checkpoint": aux,
        "scheme": scheme.name,
        "num_classes": spec.num_classes,
        "network_size": {"width": width, "height": height},
        "input_name": INPUT_NAME,
        "onnx": {"status": "exported" if onnx_reason is None else "unavailable", "reason": onnx_reason,
                 "opset": opset},
        "parity": {"status": parity["status"], **{k: parity["overall"][k] for k in (
            "frames", "max_abs_logit_difference", "argmax_agreement")}},
        "neo": {"framework": NEO_FRAMEWORK, "framework_version": NEO_FRAMEWORK_VERSION,
                "data_input_config": neo_data_input_config(height, width), "archive": BUNDLE.neo_archive},
        "gate": {"mIoU": evaluation["metrics"]["mIoU"], "pixel_accuracy": evaluation["metrics"]["pixel_accuracy"]},
        "versions": _versions(),
        "files": file_entries(output),
    }
    _write_json(output / BUNDLE.manifest, validate_bundle(bundle))
    log.info("bundle written to %s in %.1f s: %s", output, time.monotonic() - started, ", ".join(bundle["files"]))
    return bundle


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: exit 0 with a one-line summary, or 2 with the reason (never a traceback)."""
    parser = argparse.ArgumentParser(
        prog="python -m export.model",
        description="Export a Semantic Segmentation model.tar.gz to the edge bundle (MXNet graph for Neo, ONNX, "
        "parity report). The serving resolution comes from TARGET_WIDTH/TARGET_HEIGHT.",
    )
    parser.add_argument("--model", required=True, type=Path, help="model.tar.gz or the folder holding it")
    parser.add_argument("--validation", required=True, type=Path, help="serving validation frames (<name>.jpg)")
    parser.add_argument("--evaluation", type=Path, help="the gate's evaluation.json of this model")
    parser.add_argument("--validation-miou", type=float,
                        help="no evaluation report (a model trained outside roadseg): the training job's final "
                        "validation:mIOU, with --validation-pixel-accuracy")
    parser.add_argument("--validation-pixel-accuracy", type=float,
                        help="the training job's final validation:pixel_accuracy (with --validation-miou)")
    parser.add_argument("--output", required=True, type=Path, help="bundle directory")
    parser.add_argument("--max-logit-difference", required=True, type=float,
                        help="largest allowed |ONNX Runtime - MXNet| logit difference on any pixel")
    parser.add_argument("--min-argmax-agreement", required=True, type=float,
                        help="smallest allowed fraction of pixels whose class agrees, per frame")
    parser.add_argument("--max-parity-frames", type=int, default=DEFAULT_MAX_PARITY_FRAMES)
    add_scheme_arguments(parser)
    args = parser.parse_args(argv)
    if args.max_parity_frames < 1:
        parser.error("--max-parity-frames must be at least 1")
    given_metrics = (args.validation_miou, args.validation_pixel_accuracy)
    metrics_given = [value is not None for value in given_metrics]
    if any(metrics_given) if args.evaluation is not None else not all(metrics_given):
        parser.error("give --evaluation, or --validation-miou and --validation-pixel-accuracy (a model trained "
                     "outside roadseg)")
    try:
        scheme = scheme_from_arguments(args)
    except ValueError as exc:
        parser.error(str(exc))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    try:
        metrics = None if args.evaluation else training_job_metrics(*given_metrics)
        bundle = export_bundle(args.model, args.validation, args.evaluation, args.output, scheme, os.environ,
                               args.max_logit_difference, args.min_argmax_agreement, args.max_parity_frames,
                               training_metrics=metrics)
    except ExportError as exc:
        print(f"export: error: {exc}", file=sys.stderr)
        return 2
    parity = bundle["parity"]
    measured = ("no model.onnx: " + bundle["onnx"]["reason"] if parity["status"] == "skipped" else
                f"ONNX parity on {parity['frames']} frames: max |logit difference| "
                f"{parity['max_abs_logit_difference']:.3g}, argmax agreement {parity['argmax_agreement']:.6f}")
    print(f"exported {bundle['head']}/{bundle['backbone']} at {bundle['network_size']['width']}x"
          f"{bundle['network_size']['height']} ({measured}) -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
