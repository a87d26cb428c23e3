"""Model signals of a CANDIDATE POOL (issue 22 section 1): the approved edge bundle's class probabilities, reduced per
frame to mean_entropy, mean_margin and region_score (segcore.signals.probability_signals: RIPU's class impurity x
mean entropy over k x k regions), written as one Parquet file keyed by frame_key that ``labelling.selection`` joins
(``model_scores=``). Never every frame: the pool is a first selection's picks (``selection.write_pool``), a few
times the labelling budget.

    python -m labelling.scoring --bundle BUNDLE_DIR --frames FRAMES_DIR [--pool pool.txt] [--key-prefix incoming/] \
        --output OUT_DIR [--region 32] [--device auto|cpu|cuda] [--workers N]

A frame's key is its path below ``--frames`` with ``--key-prefix`` in front (a Processing job's S3 input of
``s3://<bucket>/incoming/`` lands as ``<frames>/<vehicle>/<drive>/<camera>/<stamp>.jpg``: prefix ``incoming/``).
With ``--pool`` only the listed keys are scored; a listed frame that is not there is counted ``missing``. Each frame
goes through the service's own steps: the ingest function's ``prepare_frame`` (with the bundle's frame preparation),
``segcore.bundle_runtime.network_input``, ONNX Runtime, a softmax over the classes with the padding cut off. Out:
``model-scores.parquet`` (contracts.labelling.SCORE_COLUMNS) and ``scoring-summary.json`` whose counts reconcile:
pool = scored + refused (the ingest's BadFrame codes) + missing. Exit codes: 0 done, 1 frames missing or none
scored, 2 bad input (bundle, folders, pool file).

WHERE THE PROBABILITIES COME FROM (decided): a Processing job running the approved EDGE BUNDLE with ONNX Runtime,
not the async endpoint's ``application/x-protobuf`` probability output.

- The endpoint's probabilities are ~40 MB per 1024x512 frame (19 classes x float32; contracts reference notes):
  40 GB written to S3 and read back per 1,000 frames, each RecordIO-protobuf body decoded (segcore.recordio), and the
  pool's frames queue in front of the production backlog on the serving instances, scaling them up.
- The bundle is the same model (the ExportModel step exports every gated model; parity.json records ONNX Runtime
  against MXNet: max logit difference and argmax agreement), so entropy and margin come from the numbers the
  endpoint would produce, within that recorded parity; the probabilities never leave the instance (a few hundred
  bytes per frame leave it).
- COST per 1,000 frames (on-demand list prices, us-east-1, as config/prices/sagemaker-inference.yaml dates them: the
  inference price of the type, taken as the Processing price, which the file does not hold - an assumption to
  re-check before budgeting): on ml.g4dn.xlarge at USD 0.736/h and
  the price file's ASSUMED 6 frames/s for this network at 1024x512 on that GPU, 1,000 frames take ~2.8 min =
  USD 0.034, plus the job's start (~3-5 min of instance time, ~USD 0.05 per job whatever its size). The work besides
  the network (preparation, softmax, entropy, margin, region scores) measured 0.16-0.6 s per 1024x512 frame on one
  core of the 2-core build machine (bench/scoring.py, depending on its load): with ``--workers 4`` (the instance's 4
  vCPUs) that is 7-25 frames/s, so the GPU stays the limit; with one worker it would be (~1.3-4 frames/s, up to
  ~USD 0.16 per 1,000 frames). The async route bills the same GPU instance-hours (slower: the 40 MB body is
  serialised per frame) plus S3 for 40 GB per 1,000 frames. On CPU (ml.c5.xlarge, USD 0.204/h - an assumption from
  the public Processing price list, not in the price file) FCN-ResNet50's ~0.58 TFLOP per frame runs at roughly
  0.1-0.4 frames/s per instance: ~USD 0.15-0.6 per 1,000 frames and one to three hours; cheap for a pool but slow,
  so use the GPU instance when one is configured.
- bench/scoring.py measures scoring against the bare ONNX Runtime forward on one core (ratio ~1.05 at FCN-ResNet50's
  compute per pixel).

In AWS, ``roadseg label score`` runs this module as a Processing job (labelling/scoring_job.py builds the request:
the bundle's files and the pool's frames as manifest-file inputs, jobs/processing_entry.py ``score`` with the drive
wheels' CPU onnxruntime); it runs the same way locally and in the container. GPU instances are not wired yet (no
GPU image and onnxruntime-gpu wheel in the stack), so the per-1,000-frame GPU cost above is for when they are.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from contracts.bundle import BUNDLE
from contracts.labelling import SCORE_COLUMNS
from contracts.signals import MODEL_SIGNALS

SCORES_FILE = "model-scores.parquet"
SUMMARY_FILE = "scoring-summary.json"
FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")
DEVICES = ("auto", "cpu", "cuda")
CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"
DEFAULT_REGION = 32  # pixels per side of a region at the inference size (RIPU's FloatingRegionScore: 33x33 by default)


class ScoringError(ValueError):
    """Bad input to scoring: one line naming what, where and how to fix it (exit code 2)."""


# ------------------------------------------------------------------------------------------------ bundle


@dataclass(frozen=True)
class ScoringBundle:
    """What scoring needs of an edge bundle: the model file, its input, the frame preparation and the classes."""

    location: str
    onnx_path: Path
    input_name: str
    network_size: tuple[int, int]  # (width, height)
    prepare_options: Any  # segcore.imaging.PrepareOptions
    class_names: tuple[str, ...]
    model: str  # "<head>/<backbone> sha256:<first 12 of model.onnx>", written beside each score


def load_bundle(root: Path | str) -> ScoringBundle:
    """The bundle at a local folder, checked by the loader roadseg segment uses (segcore.bundle_runtime.EdgeBundle:
    contracts, model.onnx against its SHA-256, the input as network_input feeds it, the frame preparation and
    classes read through the functions' own settings codec)."""
    from segcore.bundle_runtime import BundleError, EdgeBundle

    root = Path(root)
    if not root.is_dir():
        raise ScoringError(f"bundle {root} is not a folder (an edge bundle is the folder holding {BUNDLE.manifest})")
    try:
        bundle = EdgeBundle.load(root, str(root))
    except BundleError as exc:
        raise ScoringError(str(exc)) from None
    return ScoringBundle(location=bundle.location, onnx_path=bundle.onnx_path, input_name=bundle.input_name,
                         network_size=bundle.network_size, prepare_options=bundle.settings.prepare_options(),
                         class_names=tuple(bundle.settings.class_names),
                         model=f"{bundle.head}/{bundle.backbone} sha256:{bundle.onnx_sha256[:12]}")


# ----------------------------------------------------------------------------------------------- scoring


def softmax(logits: np.ndarray) -> np.ndarray:
    """Class probabilities (C x H x W float32) of logits C x H x W."""
    shifted = logits - logits.max(axis=0, keepdims=True)
    np.exp(shifted, out=shifted)
    shifted /= shifted.sum(axis=0, keepdims=True)
    return shifted


class Scorer:
    """An ONNX Runtime session over the bundle's model; ``score(jpeg_or_png_bytes)`` -> the model signals."""

    def __init__(self, bundle: ScoringBundle, device: str = "auto", *, region: int = DEFAULT_REGION,
                 threads: int | None = None) -> None:
        import onnxruntime as ort

        if device not in DEVICES:
            raise ScoringError(f"--device must be one of {', '.join(DEVICES)}, got {device!r}")
        available = ort.get_available_providers()
        if device == "cuda" and CUDA not in available:
            raise ScoringError(f"--device cuda: this ONNX Runtime has no {CUDA}; install onnxruntime-gpu or use cpu")
        providers = [CUDA, CPU] if device != "cpu" and CUDA in available else [CPU]
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(bundle.onnx_path), sess_options=options, providers=providers)
        except Exception as exc:  # ONNX Runtime's own exception types (bad protobuf, unsupported operator, ...)
            raise ScoringError(f"bundle {bundle.location}: ONNX Runtime cannot load {BUNDLE.onnx}: {exc}") from None
        if region < 1:
            raise ScoringError(f"--region must be at least 1 pixel, got {region}")
        self.bundle, self.region = bundle, region
        self.provider = self.session.get_providers()[0]
        self.output_name = self.session.get_outputs()[0].name

    def logits(self, data: bytes) -> tuple[np.ndarray, tuple[int, int]]:
        """The network's logits [C, h, w] for the prepared frame (padding cut off) and its (width, height).
        Raises the ingest's BadFrame for a frame the service would refuse."""
        from segcore.bundle_runtime import network_input
        from segcore.imaging import prepare_frame

        prepared = prepare_frame(data, self.bundle.prepare_options)
        tensor, (width, height) = network_input(prepared.jpeg, self.bundle.network_size)
        logits = np.asarray(self.session.run([self.output_name], {self.bundle.input_name: tensor})[0])
        if logits.ndim != 4 or logits.shape[1] != len(self.bundle.class_names):
            raise ScoringError(f"bundle {self.bundle.location}: {BUNDLE.onnx} returned {list(logits.shape)}, "
                               f"expected [1, {len(self.bundle.class_names)}, H, W]")
        return logits[0, :, :height, :width], (width, height)

    def score(self, data: bytes) -> dict[str, float]:
        from segcore.signals import probability_signals

        logits, _ = self.logits(data)
        return probability_signals(softmax(np.array(logits, dtype=np.float32)), region=self.region)


@dataclass(frozen=True)
class PoolFrame:
    frame_key: str
    path: Path | None  # None: listed in the pool but not found under the frames folder


def pool_frames(frames_dir: Path | str, *, pool: Iterable[str] | None = None, key_prefix: str = "") -> list[PoolFrame]:
    """The frames to score: every frame file under ``frames_dir`` (sorted), or the pool's keys in its order."""
    root = Path(frames_dir)
    if not root.is_dir():
        raise ScoringError(f"frames {root} is not a folder: name the folder holding the pool's frames")
    if pool is None:
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in FRAME_SUFFIXES)
        return [PoolFrame(key_prefix + p.relative_to(root).as_posix(), p) for p in files]
    found = []
    for key in dict.fromkeys(pool):
        if key_prefix and not key.startswith(key_prefix):
            raise ScoringError(f"pool: frame key {key!r} does not start with the key prefix {key_prefix!r}")
        path = root / key[len(key_prefix):]
        found.append(PoolFrame(key, path if path.is_file() else None))
    return found


@dataclass(frozen=True)
class ScoringRun:
    rows: list[dict[str, Any]]
    summary: dict[str, Any]


def _score_one(scorer: Scorer, frame: PoolFrame) -> tuple[str, Any]:
    """("scored", signals) | ("refused", (code, reason)) | ("missing", None) for one frame."""
    from segcore.imaging import BadFrame

    if frame.path is None:
        return "missing", None
    try:
        return "scored", scorer.score(frame.path.read_bytes())
    except BadFrame as exc:
        return "refused", (exc.code, exc.reason)
    except OSError as exc:
        return "refused", ("unreadable", str(exc))


def score_frames(scorer: Scorer, frames: Sequence[PoolFrame], *, workers: int = 1) -> ScoringRun:
    """Score each frame: rows for the scored ones in the pool's order, and the counts (pool = scored + refused +
    missing). ``workers`` > 1 scores that many frames at once in threads: ONNX Runtime's run, Pillow's decoding and
    numpy's reductions release the GIL, so on a GPU instance the per-frame CPU work (preparation, softmax, signals)
    of one frame overlaps the next frame's forward; use the instance's vCPU count there."""
    from concurrent.futures import ThreadPoolExecutor

    if workers < 1:
        raise ScoringError(f"--workers must be at least 1, got {workers}")
    rows: list[dict[str, Any]] = []
    refused: Counter[str] = Counter()
    refusals: list[dict[str, str]] = []
    missing: list[str] = []
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        outcomes = pool.map(lambda f: _score_one(scorer, f), frames) if workers > 1 else \
            (_score_one(scorer, f) for f in frames)
        for frame, (outcome, value) in zip(frames, outcomes, strict=True):
            if outcome == "missing":
                missing.append(frame.frame_key)
            elif outcome == "refused":
                refused[value[0]] += 1
                refusals.append({"frame_key": frame.frame_key, "code": value[0], "reason": value[1]})
            else:
                rows.append({"frame_key": frame.frame_key, **{s: value[s] for s in MODEL_SIGNALS},
                             "model": scorer.bundle.model})
    elapsed = time.perf_counter() - started
    summary = {"pool": len(frames), "scored": len(rows), "refused": dict(sorted(refused.items())),
               "missing": len(missing), "missing_keys": missing[:100], "refusals": refusals[:100],
               "model": scorer.bundle.model, "provider": scorer.provider, "region": scorer.region,
               "workers": workers, "seconds": round(elapsed, 3),
               "frames_per_second": round(len(rows) / elapsed, 3) if elapsed else None}
    if summary["scored"] + sum(refused.values()) + len(missing) != len(frames):  # every frame has one outcome
        raise AssertionError("scoring lost frames: the counts do not add up to the pool")
    return ScoringRun(rows=rows, summary=summary)


def write_scores(run: ScoringRun, output_dir: Path | str) -> Path:
    """``model-scores.parquet`` (SCORE_COLUMNS) and ``scoring-summary.json`` under ``output_dir``; the Parquet path."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    types = {"string": pa.string(), "double": pa.float64()}
    schema = pa.schema([(name, types[kind]) for name, kind in SCORE_COLUMNS])
    table = pa.table({name: [row[name] for row in run.rows] for name in schema.names}, schema=schema)
    path = output_dir / SCORES_FILE
    pq.write_table(table, path)
    (output_dir / SUMMARY_FILE).write_text(json.dumps(run.summary, indent=1) + "\n", encoding="utf-8")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labelling.scoring", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", required=True, type=Path, help="the approved edge bundle (a local folder)")
    parser.add_argument("--frames", required=True, type=Path, help="folder holding the pool's frames")
    parser.add_argument("--pool", type=Path, help="frame keys to score, one a line (selection's pool.txt)")
    parser.add_argument("--key-prefix", default="", help="what precedes a frame's path below --frames in its key")
    parser.add_argument("--output", required=True, type=Path, help="folder for model-scores.parquet and the summary")
    parser.add_argument("--region", type=int, default=DEFAULT_REGION, help="RIPU region side in pixels")
    parser.add_argument("--device", choices=DEVICES, default="auto")
    parser.add_argument("--workers", type=int, default=1, help="frames scored at once (a GPU instance: its vCPUs)")
    args = parser.parse_args(argv)
    try:
        pool = None
        if args.pool is not None:
            try:
                pool = [line.strip() for line in args.pool.read_text(encoding="utf-8").splitlines() if line.strip()]
            except (OSError, UnicodeDecodeError) as exc:
                raise ScoringError(f"pool {args.pool}: cannot read it: {exc}") from None
        frames = pool_frames(args.frames, pool=pool, key_prefix=args.key_prefix)
        if not frames:
            raise ScoringError(f"no frames to score in {args.frames}" + (f" for {args.pool}" if pool is not None
                                                                         else ""))
        scorer = Scorer(load_bundle(args.bundle), args.device, region=args.region)
        run = score_frames(scorer, frames, workers=args.workers)
        write_scores(run, args.output)
    except ScoringError as exc:
        print(f"labelling.scoring: error: {exc}", file=sys.stderr)
        return 2
    s = run.summary
    print(f"scored {s['scored']} of {s['pool']} frames ({s['frames_per_second']} frames/s, {s['provider']}); refused "
          f"{sum(s['refused'].values())}, missing {s['missing']} -> {args.output / SCORES_FILE}")
    return 1 if s["missing"] or not s["scored"] else 0


if __name__ == "__main__":
    sys.exit(main())
