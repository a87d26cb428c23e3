"""Entry point of roadseg's SageMaker Processing steps (PrepareDataset, PrepareServingValidation, EvaluateModel,
ExportModel).

Shipped alone as the step's `code`; the `training`, `drivelogs`, `export`, `roadseg_lambda`, `segcore` and
`contracts` packages arrive as one zip input (all at its root, see stacks/code_assets.py) under
/opt/ml/processing/input/package/.
roadseg_lambda is the Lambda functions' own library: the serving step prepares frames and the evaluation restores
masks with their code.
Usage: ``python3 processing_entry.py <prepare|serving|evaluate|export|drive-job|score> [args...]``.

``drive-job`` (drivelogs.job: the whole-drive extraction and builder jobs) runs in the image's own Python 3.12
with the drive wheels (one zip under /opt/ml/processing/input/wheels/, drivelogs/requirements.txt) installed
with ``pip install --no-index --no-deps --target <dir>`` and that directory on PYTHONPATH.
``score`` (labelling.scoring: a candidate pool's model scores, labelling/scoring_job.py) runs the same way, with
the same wheels (onnxruntime, numpy, pillow and pyarrow are in drivelogs/requirements.txt).
Self-contained on purpose (stdlib only): it runs before the package is importable.

Job settings (contracts.job_settings: the custom class list, the camera map, which no argument may carry inline)
arrive as one zip (a CDK directory asset) under /opt/ml/processing/input/settings/; it is unpacked there first, so
``--classes-file`` and ``--cameras-json @file`` name its files.

``export`` runs where MXNet runs: the image's Python 3.11 creates a virtual environment, installs the export wheels
(one zip under /opt/ml/processing/input/wheels/, export/requirements.txt) with ``--no-index --no-deps`` (the
job has no network access) and runs this script again inside it.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import runpy
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGE_DIR = Path("/opt/ml/processing/input/package")
SETTINGS_DIR = Path("/opt/ml/processing/input/settings")  # contracts.job_settings.SETTINGS_DIR (stdlib-only copy)
MODULES = ("prepare", "serving", "evaluate", "export", "drive-job", "score")
# The module each argument runs (the job arguments name steps, not modules, so a module can move freely).
MODULE_PATHS = {"prepare": "training.prepare", "serving": "training.serving", "evaluate": "training.evaluate",
                "export": "export.model", "drive-job": "drivelogs.job", "score": "labelling.scoring"}
# The modules that run in the image's own Python with the drive wheels on PYTHONPATH.
DRIVE_WHEEL_MODULES = ("drive-job", "score")
IN_DRIVE_ENV = "ROADSEG_IN_DRIVE_ENV"
WHEELS_DIR = Path("/opt/ml/processing/input/wheels")
EXPORT_PYTHON = (3, 11)
IN_EXPORT_ENV = "ROADSEG_IN_EXPORT_ENV"
# Loaded in reverse order: contracts first (every other imports it), then segcore and roadseg_lambda.
PACKAGES = ("training", "drivelogs", "export", "labelling", "roadseg_lambda", "segcore", "contracts")


def unpack(package_dir: Path, into: Path) -> Path:
    archives = sorted(package_dir.glob("*.zip"))
    if len(archives) != 1:
        raise SystemExit(f"expected one package zip in {package_dir}, found {[a.name for a in archives]}")
    with zipfile.ZipFile(archives[0]) as archive:
        archive.extractall(into)
    missing = [name for name in PACKAGES if not (into / name / "__init__.py").is_file()]
    if missing:
        raise SystemExit(f"{archives[0].name} lacks the package(s) {', '.join(missing)} at its root")
    return into


def unpack_settings(settings_dir: Path) -> list[str]:
    """Unpack the job settings zip where it arrived (nothing when the step has no settings input): the files the
    arguments name. SystemExit with the reason on anything but one zip."""
    if not settings_dir.is_dir():
        return []
    archives = sorted(settings_dir.glob("*.zip"))
    if len(archives) != 1:
        raise SystemExit(f"expected one job settings zip in {settings_dir}, found {[a.name for a in archives]}")
    with zipfile.ZipFile(archives[0]) as archive:
        archive.extractall(settings_dir)
        return sorted(archive.namelist())


def load_packages(root: Path) -> None:
    """Import the packages from the unpacked root (their submodules then resolve through the packages'
    __path__), without putting the root on sys.path."""
    for name in PACKAGES[::-1]:  # contracts first: the others import it
        spec = importlib.machinery.PathFinder.find_spec(name, [str(root)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)


def _shipped_wheels(wheels_dir: Path, into: Path) -> list[str]:
    """The wheel files of the one zip (a CDK directory asset) under ``wheels_dir``, unpacked into ``into``."""
    archives = sorted(wheels_dir.glob("*.zip"))
    if len(archives) != 1:
        raise SystemExit(f"expected one wheels zip in {wheels_dir}, found {[a.name for a in archives]}")
    with zipfile.ZipFile(archives[0]) as archive:
        archive.extractall(into)
    found = sorted(str(w) for w in into.glob("*.whl"))
    if not found:
        raise SystemExit(f"{archives[0].name} holds no wheels")
    return found


def export_environment(wheels_dir: Path, into: Path) -> Path:
    """A venv at ``into`` with exactly the shipped wheels; its python. SystemExit with the reason on any failure."""
    if sys.version_info[:2] != EXPORT_PYTHON:
        raise SystemExit(f"export needs Python {'.'.join(map(str, EXPORT_PYTHON))} (MXNet 1.9.1), this image has "
                         f"{sys.version.split()[0]}: use the export image (training/pipelines/ ExportImage)")
    found = _shipped_wheels(wheels_dir, into / "wheels")
    venv = into / "venv"
    for command in ([sys.executable, "-m", "venv", str(venv)],
                    [str(venv / "bin" / "python"), "-m", "pip", "install", "--no-index", "--no-deps",
                     "--disable-pip-version-check", "--quiet", *found]):
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command[:4])} ...: failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return venv / "bin" / "python"


def drive_environment(wheels_dir: Path, into: Path) -> Path:
    """The drive wheels (drivelogs/requirements.txt, one zip under ``wheels_dir``) installed with
    ``pip install --no-index --no-deps --target``: the directory to put on PYTHONPATH. SystemExit on any failure."""
    found = _shipped_wheels(wheels_dir, into / "wheels")
    target = into / "site"
    command = [sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--disable-pip-version-check",
               "--quiet", "--target", str(target), *found]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"pip install --target {target} ...: failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return target


def main(argv: list[str], package_dir: Path = PACKAGE_DIR, settings_dir: Path = SETTINGS_DIR) -> None:
    if not argv or argv[0] not in MODULES:
        raise SystemExit(f"usage: processing_entry.py <{'|'.join(MODULES)}> [args...]")
    if not os.environ.get(IN_EXPORT_ENV) and not os.environ.get(IN_DRIVE_ENV):  # once, before any re-exec
        unpack_settings(settings_dir)
    if argv[0] == "export" and not os.environ.get(IN_EXPORT_ENV):
        python = export_environment(WHEELS_DIR, Path(tempfile.mkdtemp(prefix="roadseg-export-")))
        os.execve(python, [str(python), __file__, *argv], {**os.environ, IN_EXPORT_ENV: "1"})
    if argv[0] in DRIVE_WHEEL_MODULES and not os.environ.get(IN_DRIVE_ENV):
        site = drive_environment(WHEELS_DIR, Path(tempfile.mkdtemp(prefix="roadseg-drive-")))
        path = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH", "")) if p)
        os.execve(sys.executable, [sys.executable, __file__, *argv],
                  {**os.environ, "PYTHONPATH": path, IN_DRIVE_ENV: "1"})
    root = unpack(package_dir, Path(tempfile.mkdtemp(prefix="roadseg-")))
    load_packages(root)
    module = MODULE_PATHS[argv[0]]
    sys.argv = [module, *argv[1:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
