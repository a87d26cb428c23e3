"""poll_until_terminal: what `roadseg label score --wait` and `roadseg pipeline run --wait` follow a job with."""

from __future__ import annotations

from roadseg.commands import polling
from roadseg.commands.polling import poll_until_terminal
from roadseg.output import Printer


def test_polls_until_a_terminal_status_and_prints_each_new_status_once(monkeypatch, capsys):
    states = iter(["InProgress", "InProgress", "Stopping", "Stopped"])
    sleeps: list[float] = []
    monkeypatch.setattr(polling.time, "sleep", sleeps.append)
    described, state, ended = poll_until_terminal(lambda: {"Status": next(states), "Why": "x"}, "Status",
                                                  ("Completed", "Stopped"), Printer(), timeout=0, poll_interval=7)
    assert (state, ended, described["Why"]) == ("Stopped", True, "x")
    assert sleeps == [7, 7, 7]
    printed = [line.split(" ", 1)[1] for line in capsys.readouterr().err.splitlines()]
    assert printed == ["InProgress", "Stopping", "Stopped"]


def test_gives_up_after_the_timeout_with_the_last_status(monkeypatch):
    clock = iter([0.0, 5.0, 11.0])
    monkeypatch.setattr(polling.time, "monotonic", lambda: next(clock))
    monkeypatch.setattr(polling.time, "sleep", lambda seconds: None)
    described, state, ended = poll_until_terminal(lambda: {"Status": "Executing"}, "Status", ("Succeeded",),
                                                  Printer(quiet=True), timeout=10, poll_interval=1)
    assert (state, ended) == ("Executing", False)
