"""The commands written in config/examples/*.yaml comments set only variables something reads: the Makefile's own
(ENV, SCALING, ...) or ROADSEG_CONFIG_DIR (envconfig.config). `CONFIG_DIR=` was documented once and read by nothing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from envconfig.config import CONFIG_DIR_VARIABLE

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "config" / "examples").glob("*.yaml"))
# NAME=value inside a `command` of a comment.
ASSIGNMENT = re.compile(r"(?<![\w-])([A-Z][A-Z0-9_]*)=")


def _makefile_variables() -> set[str]:
    return set(re.findall(r"^([A-Z][A-Z0-9_]*)\s*[:?+]?=", (ROOT / "Makefile").read_text(), re.MULTILINE))


def _documented_variables(path: Path) -> set[str]:
    comments = " ".join(line.split("#", 1)[1] for line in path.read_text().splitlines() if "#" in line)
    return {name for command in re.findall(r"`([^`]*)`", comments) for name in ASSIGNMENT.findall(command)}


def test_the_makefile_variables_are_found():
    assert {"ENV", "SCALING", "EXPORT_PYTHON"} <= _makefile_variables()


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_variable_a_comment_sets_is_read(path):
    known = _makefile_variables() | {CONFIG_DIR_VARIABLE}
    unknown = _documented_variables(path) - known
    assert not unknown, f"{path.name} documents {sorted(unknown)}, which neither the Makefile nor envconfig reads"


def test_the_delivery_example_names_the_variable_stacks_config_reads():
    assert _documented_variables(ROOT / "config" / "examples" / "delivery.yaml") == {CONFIG_DIR_VARIABLE, "ENV"}
