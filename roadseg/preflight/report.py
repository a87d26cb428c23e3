"""The preflight's output: the table ``check | needed | have | result`` followed by one line with the fix of each
failed check, or (``--json``) a list of ``{check, needed, have, passed, fix}``."""

from __future__ import annotations

import json
from collections.abc import Sequence

from roadseg.preflight.checks import CheckResult


def render_table(results: Sequence[CheckResult]) -> str:
    headers = ("check", "needed", "have", "result")
    rows = [(r.check, r.needed, r.have, "PASS" if r.passed else "FAIL") for r in results]
    widths = [max(len(cell) for cell in column) for column in zip(headers, *rows)]

    def line(cells: Sequence[str]) -> str:
        return " | ".join(cell.ljust(width) for cell, width in zip(cells, widths)).rstrip()

    lines = [line(headers), "-+-".join("-" * width for width in widths), *map(line, rows)]
    fixes = [f"FAIL {r.check}: {r.fix}" for r in results if not r.passed]
    return "\n".join(lines + ([""] + fixes if fixes else []))


def render_json(results: Sequence[CheckResult]) -> str:
    return json.dumps([r.as_dict() for r in results], indent=2)
