"""What the code assets contain: one file list for the stacks, the Lambda bundler and the local rehearsal.

The Lambda code and the processing package each ship a project directory together with ``contracts/``, whose
facts their code reads; the processing package holds the job packages (``training/``, ``drivelogs/``, ``export/``)
and also ships ``roadseg_lambda/``, so that the quality gate prepares frames and restores masks with the functions'
own code (training/serving.py, training/evaluate.py). The one entry script (``jobs/processing_entry.py``) is an
asset of its own. An asset is a
single directory, so each points at a staging directory holding exactly these files, built once per process. CDK's
fingerprint covers only relative paths and contents, so the asset hash does not depend on where the staging directory
is, and it changes whenever ``contracts/`` does.

The job settings (contracts.job_settings: the lists no request may carry inline) are staged the same way, one
directory per content (``staged_job_settings``), so both stacks' settings assets share one hash.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAMBDA_DIR = ROOT / "lambda"
LAMBDA_LIBRARY_DIR = LAMBDA_DIR / "roadseg_lambda"
TRAINING_DIR = ROOT / "training"
DRIVELOGS_DIR = ROOT / "drivelogs"
EXPORT_DIR = ROOT / "export"
LABELLING_DIR = ROOT / "labelling"
# The Processing steps' one entry script, shipped alone as each step's code (it unpacks the processing package).
PROCESSING_ENTRY = ROOT / "jobs" / "processing_entry.py"
CONTRACTS_DIR = ROOT / "contracts"
SEGCORE_DIR = ROOT / "segcore"
MONITORING_DIR = ROOT / "monitoring"

# The export environment's wheels (export/requirements.txt), downloaded by `make synth` / `make test`.
EXPORT_WHEELHOUSE = ROOT / ".wheelhouse" / "export"
# The drive jobs' wheels (drivelogs/requirements.txt, cp312 manylinux), downloaded by `make synth` / `make test`.
DRIVE_WHEELHOUSE = ROOT / ".wheelhouse" / "drives"

Files = list[tuple[str, Path]]  # (path inside the asset, source file)


def _tree(directory: Path, under: str = "") -> Files:
    files = []
    for path in sorted(directory.rglob("*")):
        relative = path.relative_to(directory).as_posix()
        if not path.is_file() or "__pycache__" in path.parts or path.suffix == ".pyc":
            continue
        files.append((f"{under}/{relative}" if under else relative, path))
    return files


def lambda_files() -> Files:
    """lambda/ at the root (handler modules, roadseg_lambda/, the bundler's requirements.txt), segcore/, contracts/
    and monitoring/ (the drift monitor's handler runs monitoring.job; the package imports only segcore and contracts
    besides numpy)."""
    return (_tree(LAMBDA_DIR) + _tree(SEGCORE_DIR, "segcore") + _tree(CONTRACTS_DIR, "contracts")
            + _tree(MONITORING_DIR, "monitoring"))


def processing_files() -> Files:
    """training/, drivelogs/, export/, labelling/ (the candidate-pool scoring job), roadseg_lambda/ (without the
    handler modules), segcore/ and contracts/ as packages at the root of the zip (jobs/processing_entry.py's
    PACKAGES)."""
    return (_tree(TRAINING_DIR, "training") + _tree(DRIVELOGS_DIR, "drivelogs") + _tree(EXPORT_DIR, "export")
            + _tree(LABELLING_DIR, "labelling")
            + _tree(LAMBDA_LIBRARY_DIR, "roadseg_lambda") + _tree(SEGCORE_DIR, "segcore")
            + _tree(CONTRACTS_DIR, "contracts"))


def stage(files: Files, into: Path) -> Path:
    for name, source in files:
        target = into / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    return into


ASSETS: dict[str, Callable[[], Files]] = {"lambda": lambda_files, "processing": processing_files}


@functools.cache
def staged(asset: str) -> Path:
    """The staging directory of ``asset`` ("lambda" or "processing"), one per process: the same path for every
    function, so CDK bundles the Lambda code once. Removed when the process (the synth) ends."""
    directory = Path(tempfile.mkdtemp(prefix=f"roadseg-{asset}-asset-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return stage(ASSETS[asset](), directory)


def staged_job_settings(files: Mapping[str, str]) -> Path:
    """A staging directory holding exactly ``files`` (name -> text; contracts.job_settings.settings_files), one per
    content and process: the training and inference stacks stage the same settings once, and their assets share one
    hash (one S3 object). Removed when the process ends."""
    return _staged_settings(tuple(sorted(files.items())))


@functools.cache
def _staged_settings(files: tuple[tuple[str, str], ...]) -> Path:
    directory = Path(tempfile.mkdtemp(prefix="roadseg-job-settings-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    for name, text in files:
        (directory / name).write_text(text)
    return directory


class MissingWheelhouse(RuntimeError):
    """A wheelhouse (export, drives) has not been downloaded (a synth outside the Makefile)."""


def _wheelhouse(directory: Path, marker: str, what: str, requirements: str) -> Path:
    """``directory`` when the set-up has downloaded its wheels (``marker`` is one of them); else a clear error."""
    if not any(directory.glob(f"{marker}-*.whl")):
        raise MissingWheelhouse(
            f"{directory} holds no {marker} wheel: run `make synth` (it downloads {what} wheels listed in "
            f"{requirements}), then synthesize again"
        )
    return directory


def export_wheelhouse() -> Path:
    """The directory of the export environment's wheels."""
    return _wheelhouse(EXPORT_WHEELHOUSE, "mxnet", "the export environment's", "export/requirements.txt")


def drive_wheelhouse() -> Path:
    """The directory of the drive jobs' wheels."""
    return _wheelhouse(DRIVE_WHEELHOUSE, "rosbags", "the drive jobs'", "drivelogs/requirements.txt")
