"""The rehearsal's log (logs/rehearsal.log, echoed to the console) and the ``roadseg`` commands it runs, logged."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from demo.options import RehearsalError
from roadseg import cli


class RehearsalLog:
    """``log(message)``: a timestamped line in the log file, echoed to the console unless ``console=False``."""

    def __init__(self, path: Path, echo: Callable[[str], None]) -> None:
        self.path, self.echo = path, echo

    def __call__(self, message: str, *, console: bool = True) -> None:
        with self.path.open("a", encoding="utf-8") as log:
            log.write(f"{datetime.now(UTC).isoformat(timespec='milliseconds')} {message}\n")
        if console:
            self.echo(message)


def run_roadseg(argv: list[str], log: RehearsalLog) -> str:
    """Run the ``roadseg`` command in-process (its AWS clients reach the local server through AWS_ENDPOINT_URL)."""
    log(f"$ roadseg {' '.join(argv)}", console=False)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(argv)
    for line in (out.getvalue() + err.getvalue()).splitlines():
        log(f"  {line}", console=False)
    if code != 0:
        raise RehearsalError(f"roadseg {' '.join(argv[2:4])} failed ({code}): {err.getvalue().strip()}")
    return out.getvalue()
