"""Entry point of roadseg's SageMaker Processing steps (PrepareDataset, PrepareServingValidation, EvaluateModel).

Shipped alone as the step's `code`; the `training`, `roadseg_lambda` and `contracts` packages arrive as one zip input
(all at its root, see stacks/code_assets.py) under /opt/ml/processing/input/package/. roadseg_lambda is the Lambda
functions' own library: the serving step prepares frames and the evaluation restores masks with their code.
Usage: ``python3 processing_entry.py <prepare|serving|evaluate> [args...]``.
Self-contained on purpose (stdlib only): it runs before the package is importable.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import runpy
import sys
import tempfile
import zipfile
from pathlib import Path

PACKAGE_DIR = Path("/opt/ml/processing/input/package")
MODULES = ("prepare", "serving", "evaluate")
# Loaded in reverse order: contracts first (both others import it), then roadseg_lambda (training imports it).
PACKAGES = ("training", "roadseg_lambda", "contracts")


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


def load_packages(root: Path) -> None:
    """Import the packages from the unpacked root (their submodules then resolve through the packages'
    __path__), without putting the root on sys.path."""
    for name in PACKAGES[::-1]:  # contracts first: the others import it
        spec = importlib.machinery.PathFinder.find_spec(name, [str(root)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)


def main(argv: list[str], package_dir: Path = PACKAGE_DIR) -> None:
    if not argv or argv[0] not in MODULES:
        raise SystemExit(f"usage: processing_entry.py <{'|'.join(MODULES)}> [args...]")
    root = unpack(package_dir, Path(tempfile.mkdtemp(prefix="roadseg-")))
    load_packages(root)
    sys.argv = [f"training.{argv[0]}", *argv[1:]]
    runpy.run_module(f"training.{argv[0]}", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
