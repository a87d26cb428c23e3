"""Following a SageMaker job or pipeline execution until it ends, for the commands that ``--wait``."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from typing import Any

from roadseg.output import Printer


def poll_until_terminal(describe: Callable[[], dict[str, Any]], status_field: str, terminal_states: Collection[str],
                        out: Printer, *, timeout: float, poll_interval: float) -> tuple[dict[str, Any], str, bool]:
    """Call ``describe`` every ``poll_interval`` seconds, printing each new status, until ``status_field`` is in
    ``terminal_states`` or ``timeout`` seconds have passed (0: no limit). Returns the last description, its status
    and whether that status is terminal (False: timed out; the caller says what to do next)."""
    deadline = time.monotonic() + timeout if timeout else None
    last = None
    while True:
        described = describe()
        state = described[status_field]
        if state != last:
            out.info(f"{time.strftime('%H:%M:%S')} {state}")
            last = state
        if state in terminal_states:
            return described, state, True
        if deadline is not None and time.monotonic() >= deadline:
            return described, state, False
        time.sleep(poll_interval)
