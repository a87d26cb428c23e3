"""contracts/layout.py is the one place the buckets' prefixes are spelled: no code outside it writes one as a literal.

A literal here is a string constant (or a constant piece of an f-string) without whitespace that starts with a
layout prefix or holds one after a "/": a key, a key prefix, an S3 URI or an IAM resource pattern. Prose (docstrings,
help texts, messages, nag reasons: anything with a space) may name a prefix in words.
"""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path

from contracts.layout import ARTIFACTS, DATASETS, INFERENCE

ROOT = Path(__file__).resolve().parents[2]
LAYOUT = ROOT / "contracts" / "layout.py"
# Not code of the project: the tests, what tools install or write, and the folders the rehearsal and benches fill.
NOT_CODE = {"tests", "node_modules", "cdk.out", "demo-out", "bench-out", "__pycache__"}
PREFIXES = sorted({getattr(layout, f.name) for layout in (DATASETS, ARTIFACTS, INFERENCE) for f in fields(layout)})
PREFIX_LITERAL = re.compile(r"(?:^|/)(?:" + "|".join(map(re.escape, PREFIXES)) + ")")

# (file, literal) -> why it may stay.
ALLOWED: dict[tuple[str, str], str] = {}


def code_files() -> Iterator[Path]:
    for folder, dirs, names in os.walk(ROOT):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in NOT_CODE)
        yield from (Path(folder) / name for name in sorted(names) if name.endswith(".py"))


def prefix_literals(path: Path) -> Iterator[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    # A string expression statement is a docstring (of a module, class, function or attribute): prose.
    prose = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in prose
                and not re.search(r"\s", node.value) and PREFIX_LITERAL.search(node.value)):
            yield node.lineno, node.value


def test_prefixes_are_spelled_only_in_contracts_layout() -> None:
    found = []
    for path in code_files():
        if path == LAYOUT:
            continue
        relative = path.relative_to(ROOT).as_posix()
        found += [f"{relative}:{line}: {value!r}" for line, value in prefix_literals(path)
                  if (relative, value) not in ALLOWED]
    assert not found, "use contracts.layout (DATASETS, ARTIFACTS, INFERENCE) instead of:\n" + "\n".join(found)


def test_the_check_sees_a_literal(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text('"""Frames arrive under incoming/."""\nKEY = f"s3://{bucket}/async-input/x.jpg"\n'
                      'PATTERN = "arn:aws:s3:::b/checkpoints/*"\nHELP = "inputs go to results/ of the bucket"\n')
    assert sorted(value for _, value in prefix_literals(sample)) == ["/async-input/x.jpg",
                                                                  "arn:aws:s3:::b/checkpoints/*"]
