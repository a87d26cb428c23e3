"""How commands print: plain lines, Rich tables on a terminal (plain columns otherwise), or one JSON document."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """Left-aligned columns, two spaces apart (stable output for logs, pipes and tests)."""
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*headers).rstrip(), *(fmt.format(*map(str, r)).rstrip() for r in rows)]


def when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if hasattr(value, "strftime") else str(value or "-")


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return str(value)


class Printer:
    """``--json`` makes a command print exactly one JSON document on stdout and nothing else there."""

    def __init__(self, as_json: bool = False, quiet: bool = False) -> None:
        self.as_json = as_json
        self.quiet = quiet

    def line(self, *lines: str) -> None:
        if not self.as_json:
            for text in lines:
                print(text, flush=True)

    def info(self, message: str) -> None:
        """Progress and notes: stderr, silenced by -q."""
        if not self.quiet:
            print(message, file=sys.stderr, flush=True)

    def warn(self, message: str) -> None:
        print(f"roadseg: warning: {message}", file=sys.stderr, flush=True)

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None) -> None:
        if self.as_json:
            return
        if sys.stdout.isatty():
            from rich.console import Console
            from rich.table import Table

            table = Table(*headers, title=title, show_lines=False)
            for row in rows:
                table.add_row(*(str(cell) for cell in row))
            Console().print(table)
        else:
            self.line(*format_table(headers, rows))

    def document(self, value: Any) -> None:
        if self.as_json:
            print(json.dumps(value, indent=2, sort_keys=True, default=_json_default), flush=True)
