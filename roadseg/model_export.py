"""``roadseg model export``: a local edge bundle from a Semantic Segmentation ``model.tar.gz`` (one trained before
roadseg, or any the algorithm wrote), with the checks of the pipeline's ExportModel step.

The export needs MXNet 1.9.1 on Python 3.11 (``export/model.py``), which roadseg's own environment does not have.
This command checks its inputs here, then runs ``python -m export.model`` in the export environment
(``.venv-export``, which ``make test`` builds from the same wheels as the ExportModel job) as a subprocess with the
project on PYTHONPATH, as ``make bench`` does. It streams the export's log lines and turns its outcome into
roadseg's exit codes: 0 a bundle, 2 bad input (the archive, its parameters, the classes, the options), 1 a failed
check (ONNX parity beyond the thresholds, a bundle document its validator refuses, a crash).

The same settings as the ExportModel step, from the environment's config: the frame preparation
(``preprocessing``: serving size, ROI, limits; ``--width/--height`` override the size), the classes
(``classes``; ``--scheme``/``--classes-file`` override them) and the parity thresholds and frame count
(``export.model``). Parity frames: ``--validation-frames`` (JPEGs), else scenes from ``segcore.scenes`` at the
serving size. No AWS call.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from roadseg.output import Printer
from roadseg.session import JobFailed, Session, UserError

PROJECT = Path(__file__).resolve().parent.parent
EXPORT_PYTHON_VARIABLE = "ROADSEG_EXPORT_PYTHON"
DEFAULT_EXPORT_PYTHON = PROJECT / ".venv-export" / "bin" / "python"
# The Makefile target that builds the export environment alone (make test builds it too).
EXPORT_VENV_TARGET = ".venv-export/.installed"
# export.model.main's one-line errors (exit 2): its own, and its argument parser's.
ERROR_PREFIXES = ("export: error: ", "python -m export.model: error: ")
FRAME_SUFFIXES = (".jpg", ".jpeg")  # export.model.FRAME_EXTENSIONS: what the export reads as frames
GENERATED_FRAME_SEED = 7100


@dataclass(frozen=True)
class ExportRequest:
    """What the export subprocess is given, checked here first."""

    model: Path
    out: Path
    scheme_arguments: tuple[str, ...]
    frame_preparation: dict[str, str]  # contracts.lambda_env.FRAME_PREPARATION_VARIABLES
    quality_arguments: tuple[str, ...]  # --evaluation F, or the training job's two metrics
    max_logit_difference: float
    min_argmax_agreement: float
    parity_frames: int

    @property
    def size(self) -> tuple[int, int]:
        return int(self.frame_preparation["TARGET_WIDTH"]), int(self.frame_preparation["TARGET_HEIGHT"])


# -- finding the export environment -------------------------------------------------------------------------------

def export_python(explicit: Path | None, environ: Mapping[str, str]) -> Path:
    """The export environment's interpreter: ``--export-python``, else ``$ROADSEG_EXPORT_PYTHON``, else
    ``.venv-export/bin/python`` of this project. UserError (one line, how to get it) when it is not there."""
    if explicit is not None:
        where, path = "--export-python", explicit
    elif environ.get(EXPORT_PYTHON_VARIABLE):
        where, path = f"${EXPORT_PYTHON_VARIABLE}", Path(environ[EXPORT_PYTHON_VARIABLE])
    else:
        where, path = None, DEFAULT_EXPORT_PYTHON
    if path.is_file() and os.access(path, os.X_OK):
        return path
    if where is None:
        raise UserError(f"the export environment (Python 3.11 with MXNet 1.9.1) is missing: {path} does not exist; "
                        f"`make test` creates it (or `make {EXPORT_VENV_TARGET}` alone), or pass --export-python "
                        f"PATH / set {EXPORT_PYTHON_VARIABLE}")
    raise UserError(f"{where} {path} is not an executable Python: name the export environment's interpreter "
                    f"(`make {EXPORT_VENV_TARGET}` builds .venv-export/bin/python)")


# -- checking the inputs ------------------------------------------------------------------------------------------

def frame_preparation(preprocessing: Any, width: int | None, height: int | None) -> dict[str, str]:
    """The frame-preparation variables of the environment's ``preprocessing`` section with the serving size
    overridden, checked by the functions' own codec (UserError naming the variable)."""
    from contracts.lambda_env import EnvironmentContractError, PreprocessorEnvironment, frame_preparation_environment

    settings = frame_preparation_environment(preprocessing)
    env = settings.frame_preparation_env()
    if width is not None:
        env["TARGET_WIDTH"] = str(width)
    if height is not None:
        env["TARGET_HEIGHT"] = str(height)
    try:
        PreprocessorEnvironment.from_env(env)
    except EnvironmentContractError as exc:
        problems = "; ".join(p.replace("TARGET_WIDTH", "--width").replace("TARGET_HEIGHT", "--height")
                             for p in exc.problems)
        raise UserError(f"serving size: {problems}") from None
    return env


def scheme_arguments(scheme: Any, scratch: Path) -> tuple[str, ...]:
    """``--scheme`` (and for a custom list, ``--classes-file`` of a copy in ``scratch``) for export.model."""
    if scheme.name != "custom":
        return ("--scheme", scheme.name)
    classes = scratch / "classes.json"
    classes.write_text(json.dumps([{"name": c.name, "color": list(c.color)} for c in scheme.classes]))
    return ("--scheme", "custom", "--classes-file", str(classes))


def quality_arguments(evaluation: Path | None, miou: float | None, pixel_accuracy: float | None) -> tuple[str, ...]:
    """What bundle.json's gate is made of: roadseg's evaluation report, or the training job's two final metrics."""
    if evaluation is not None:
        if miou is not None or pixel_accuracy is not None:
            raise UserError("give --evaluation or the training job's metrics (--validation-miou, "
                            "--validation-pixel-accuracy), not both")
        if not evaluation.is_file():
            raise UserError(f"--evaluation {evaluation} does not exist")
        return ("--evaluation", str(evaluation.resolve()))
    if miou is None or pixel_accuracy is None:
        raise UserError("bundle.json records the model's quality: pass the training job's final metrics "
                        "--validation-miou F --validation-pixel-accuracy F (its validation:mIOU and "
                        "validation:pixel_accuracy: `aws sagemaker describe-training-job --training-job-name NAME "
                        "--query FinalMetricDataList`), or --evaluation evaluation.json (roadseg's evaluate step)")
    for option, value in (("--validation-miou", miou), ("--validation-pixel-accuracy", pixel_accuracy)):
        if not 0 <= value <= 1:
            raise UserError(f"{option} must be a fraction within 0..1 (93 % is 0.93), got {value}")
    return ("--validation-miou", repr(miou), "--validation-pixel-accuracy", repr(pixel_accuracy))


def check_paths(model: Path, out: Path, frames: Path | None) -> None:
    if not model.is_file():
        what = "is a folder" if model.is_dir() else "does not exist"
        raise UserError(f"{model} {what}: pass the training job's model.tar.gz (hyperparams.json and model_algo-1)")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file: name a new folder for the bundle")
    if out.is_dir() and any(out.iterdir()):
        raise UserError(f"--out {out} is not empty: name a new or empty folder (a bundle is exactly the files "
                        "bundle.json lists)")
    if frames is not None:
        if not frames.is_dir():
            raise UserError(f"--validation-frames {frames} is not a folder of .jpg frames")
        if not any(p.suffix.lower() in FRAME_SUFFIXES for p in frames.iterdir() if p.is_file()):
            raise UserError(f"--validation-frames {frames} holds no .jpg/.jpeg frames (parity is measured on JPEGs, "
                            "as the serving step prepares them)")


def generate_frames(folder: Path, size: tuple[int, int], count: int) -> list[Path]:
    """``count`` generated road scenes at the serving size, saved as the serving step saves frames (JPEG)."""
    from PIL import Image

    from segcore.scenes import generate_scene

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        rgb, _ = generate_scene(*size, seed=GENERATED_FRAME_SEED + index)
        path = folder / f"scene{index:02d}.jpg"
        Image.fromarray(rgb).save(path, quality=90)
        paths.append(path)
    return paths


# -- running it ---------------------------------------------------------------------------------------------------

def export_command(python: Path, request: ExportRequest, frames: Path) -> list[str]:
    return [str(python), "-m", "export.model", "--model", str(request.model), "--validation", str(frames),
            *request.quality_arguments, "--output", str(request.out), *request.scheme_arguments,
            "--max-logit-difference", repr(request.max_logit_difference),
            "--min-argmax-agreement", repr(request.min_argmax_agreement),
            "--max-parity-frames", str(request.parity_frames)]


def export_environment(environ: Mapping[str, str], request: ExportRequest) -> dict[str, str]:
    """This process's environment with the project first on PYTHONPATH (``training``, ``contracts`` and the
    functions' ``roadseg_lambda``, as ``make bench`` runs the export) and the frame preparation to export for."""
    path = os.pathsep.join(p for p in (str(PROJECT), str(PROJECT / "lambda"), environ.get("PYTHONPATH")) if p)
    return {**environ, "PYTHONPATH": path, **request.frame_preparation}


def run_export(command: Sequence[str], env: Mapping[str, str], echo: Callable[[str], None]) -> tuple[int, str, str]:
    """Run the export; each of its log lines (stderr) goes to ``echo`` as it comes, except its own one-line error.
    Returns the exit code, its stdout and that error (empty when none)."""
    error = ""
    with tempfile.TemporaryFile("w+") as stdout:
        process = subprocess.Popen(list(command), cwd=PROJECT, env=dict(env), stdout=stdout, stderr=subprocess.PIPE,
                                   text=True, bufsize=1)
        try:
            assert process.stderr is not None
            for line in process.stderr:
                line = line.rstrip("\n")
                prefix = next((p for p in ERROR_PREFIXES if line.startswith(p)), None)
                if prefix is not None:
                    error = line.removeprefix(prefix)
                elif not line.startswith("usage: "):
                    echo(line)
            code = process.wait()
        except BaseException:  # Ctrl-C: the export stops with this command
            process.kill()
            process.wait()
            raise
        stdout.seek(0)
        return code, stdout.read(), error


def parity_failed(out: Path) -> bool:
    """The export wrote parity.json with status failed (it writes it before failing, to say by how much)."""
    try:
        return json.loads((out / "parity.json").read_text()).get("status") == "failed"
    except (OSError, ValueError, AttributeError):
        return False


def model_export(session: Session, out: Printer, *, model: Path, bundle_dir: Path, scheme: Any,
                 width: int | None, height: int | None, validation_frames: Path | None, evaluation: Path | None,
                 validation_miou: float | None, validation_pixel_accuracy: float | None,
                 python: Path | None) -> None:
    config = session.config
    interpreter = export_python(python, os.environ)
    check_paths(model, bundle_dir, validation_frames)
    settings = config.training.export
    with tempfile.TemporaryDirectory(prefix="roadseg-model-export-") as scratch:
        request = ExportRequest(
            model=model.resolve(), out=bundle_dir.resolve(), scheme_arguments=scheme_arguments(scheme, Path(scratch)),
            frame_preparation=frame_preparation(config.preprocessing, width, height),
            quality_arguments=quality_arguments(evaluation, validation_miou, validation_pixel_accuracy),
            max_logit_difference=settings.max_logit_difference, min_argmax_agreement=settings.min_argmax_agreement,
            parity_frames=settings.parity_frames)
        width_, height_ = request.size
        if validation_frames is not None:
            frames = validation_frames.resolve()
            source = f"the frames in {validation_frames}"
        else:
            frames = Path(scratch) / "frames"
            generate_frames(frames, request.size, request.parity_frames)
            source = f"{request.parity_frames} generated scenes (segcore/scenes.py)"
        out.info(f"exporting {model} at {width_}x{height_} ({scheme.name} classes) in {interpreter}; parity on "
                 f"{source}")
        command = export_command(interpreter, request, frames)
        code, stdout, error = run_export(command, export_environment(os.environ, request),
                                         echo=lambda line: out.info(f"  {line}"))
    if code == 0:
        summary = [line for line in stdout.splitlines() if line.strip()]
        out.line(*(summary[-1:] or [f"exported -> {bundle_dir}"]))
        out.document(json.loads((bundle_dir / "bundle.json").read_text()))
        return
    if code == 2 and error and not parity_failed(bundle_dir):
        raise UserError(error)
    reason = error or f"the export exited with {code} (its log is above)"
    raise JobFailed(f"export failed: {reason}")
