"""Dependency direction: contracts imports nothing from the project; the Lambda code and the training package
(both shipped without the rest of the repository) import only themselves and contracts, and training also the Lambda
library roadseg_lambda, which the processing package ships so the quality gate prepares frames as the functions do."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROJECT = {"contracts", "stacks", "training", "demo", "roadseg", "bench", "app", "tests", "roadseg_lambda"}


def imported_top_levels(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def python_files(folder: str) -> list[Path]:
    return [p for p in sorted((ROOT / folder).rglob("*.py")) if "__pycache__" not in p.parts]


@pytest.mark.parametrize("path", python_files("contracts"), ids=lambda p: p.name)
def test_contracts_use_the_standard_library_only(path: Path) -> None:
    outside = imported_top_levels(path) - {"contracts"} - set(sys.stdlib_module_names)
    assert not outside, f"{path.relative_to(ROOT)} imports {sorted(outside)}"


@pytest.mark.parametrize("path", python_files("lambda"), ids=lambda p: p.relative_to(ROOT / "lambda").as_posix())
def test_lambda_code_imports_only_itself_and_contracts(path: Path) -> None:
    project = (imported_top_levels(path) & PROJECT) - {"contracts", "roadseg_lambda"}
    assert not project, f"{path.relative_to(ROOT)} imports {sorted(project)}, which the Lambda bundle lacks"


@pytest.mark.parametrize("path", python_files("training"), ids=lambda p: p.name)
def test_training_imports_only_itself_and_contracts(path: Path) -> None:
    project = (imported_top_levels(path) & PROJECT) - {"contracts", "training", "roadseg_lambda"}
    assert not project, f"{path.relative_to(ROOT)} imports {sorted(project)}, which the processing package lacks"
