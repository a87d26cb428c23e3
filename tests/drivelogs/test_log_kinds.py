"""Every kind of drive log the suite builds (tests/drivelogs/log_kinds.py), extracted: the manifest's counts reconcile
with what was written (every image message extracted, skipped with a reason or counted lost), the status is
``complete`` exactly when nothing is unaccounted for, and docs/drives.md's table "What each log kind gives" is the
table of these outcomes (regenerate it with bench/log_kinds_table.py when a kind or an outcome changes)."""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts.drives import PARTIAL_PROBLEMS, validate_drive_manifest
from tests.drivelogs.log_kinds import KINDS, docs_table, extract, markdown, outcome

DOCS = Path(__file__).resolve().parents[2] / "docs" / "drives.md"


@pytest.fixture(scope="module")
def extracted(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("kinds")
    return {kind: extract(kind, tmp) for kind in KINDS}


def unaccounted(manifest: dict) -> bool:
    """Messages lost, or a loss of unknown size, or a count the log and the reading disagree on."""
    return (any(c["messages_lost"] for c in manifest["cameras"].values())
            or any(p["messages_lost"] is None or p["messages_lost"] > 0 or p["kind"] in PARTIAL_PROBLEMS
                   for p in manifest["problems"]))


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_log_kind_reconciles(extracted, kind):
    built, manifest = extracted[kind]
    validate_drive_manifest(manifest)
    cameras = {c["topic"]: c for c in manifest["cameras"].values()}
    for camera in cameras.values():
        assert camera["messages"] == (camera["extracted"] + sum(camera["skipped"].values())
                                      + camera["messages_lost"]), camera
    # complete exactly when nothing is unaccounted for; no camera and nothing unaccounted: no_image_topics
    if unaccounted(manifest):
        assert manifest["status"] == "partial", manifest["problems"]
    else:
        assert manifest["status"] == ("complete" if cameras else "no_image_topics"), manifest["problems"]
    known_loss = not any(p["messages_lost"] is None for p in manifest["problems"])
    for topic, written in built.written.items():
        if topic in cameras:  # nothing read that was not written
            assert cameras[topic]["messages_read"] <= written, (topic, cameras[topic])
        if not built.damaged:  # every message written is counted, read or lost, and nothing more
            assert cameras[topic]["messages"] == written, (topic, cameras[topic])
        elif known_loss:  # every message written is counted (a log that over-counts may count more as lost)
            assert cameras[topic]["messages"] >= written, (topic, cameras[topic])
    if manifest["status"] == "complete":
        assert manifest["totals"]["messages"] == sum(built.written.values())
        assert manifest["totals"]["extracted"] + sum(manifest["totals"]["skipped"].values()) == sum(
            built.written.values())
    if not built.damaged:  # an undamaged log loses nothing it can be asked to read
        assert known_loss


def test_the_docs_table_is_the_outcome_of_every_log_kind(extracted):
    rows = [outcome(kind, *extracted[kind]) for kind in KINDS]
    table = markdown(rows)
    print("\n" + table)  # the log kind x outcome table (pytest -s shows it)
    assert {row["status"] for row in rows} == {"complete", "partial", "no_image_topics"}
    assert docs_table(DOCS.read_text()) == table, (
        "docs/drives.md's table 'What each log kind gives' is stale: run "
        ".venv/bin/python bench/log_kinds_table.py --write-docs docs/drives.md")
