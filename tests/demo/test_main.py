"""``python -m demo``'s own behaviour: one line and an exit code for Ctrl-C and an unwritable --out, and the
project's pinned Node.js first on PATH (no jsii banner from the machine's Node)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import demo.__main__ as demo_cli
import demo.rehearsal
from demo.inference import s3_event_with_version_ids
from demo.report import FrameOutcome, source_version_problem

ROOT = Path(__file__).resolve().parents[2]
NODE_BIN = ROOT / "node_modules" / ".bin"
SMALL = ["--frames", "1", "--width", "128", "--height", "64", "--no-drive"]


def _server_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if "_server_entry" in t.name]


def test_ctrl_c_exits_130_with_one_line_and_stops_the_server(monkeypatch, tmp_path, capsys):
    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(demo.rehearsal, "run_pipelines", interrupted)  # the stage after the server started
    before = {name: os.environ.get(name) for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID")}
    assert demo_cli.main([*SMALL, "--out", str(tmp_path / "out")]) == 130
    err = capsys.readouterr().err
    assert err.splitlines() == [f"python -m demo: interrupted; partial outputs in {tmp_path / 'out'}/"]
    assert "Traceback" not in err
    assert _server_threads() == []
    assert {name: os.environ.get(name) for name in before} == before


def test_out_that_is_a_file_exits_2_with_one_line(tmp_path, capsys):
    in_the_way = tmp_path / "demo-out"
    in_the_way.write_text("not a folder")
    assert demo_cli.main([*SMALL, "--out", str(in_the_way)]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [f"python -m demo: error: --out {in_the_way} is a file, not a folder: name a folder "
                                "(it is created)"]
    assert in_the_way.read_text() == "not a folder"


def test_out_below_a_file_exits_2_with_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / "demo-out"
    assert demo_cli.main([*SMALL, "--out", str(out)]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"python -m demo: error: --out {out} cannot be written (") and "Traceback" not in line


def test_read_only_out_exits_2_with_one_line(tmp_path, capsys, monkeypatch):
    out = tmp_path / "read-only"
    out.mkdir()
    out.chmod(0o555)
    if os.geteuid() == 0:  # root writes anyway: make the write check meet what a read-only folder answers
        def refuse(*_args, **_kwargs):
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(demo_cli.tempfile, "TemporaryFile", refuse)
    try:
        assert demo_cli.main([*SMALL, "--out", str(out)]) == 2
    finally:
        out.chmod(0o755)
    assert capsys.readouterr().err.splitlines() == [
        f"python -m demo: error: --out {out} cannot be written (Permission denied): name a folder you can write"]


def test_pinned_node_goes_first_on_path(tmp_path):
    (tmp_path / "node").write_text("")
    environ = {"PATH": "/usr/local/bin:/usr/bin"}
    assert demo_cli.use_pinned_node(environ, tmp_path)
    assert environ["PATH"] == f"{tmp_path}{os.pathsep}/usr/local/bin:/usr/bin"
    assert demo_cli.use_pinned_node(environ, tmp_path)  # already first: unchanged
    assert environ["PATH"] == f"{tmp_path}{os.pathsep}/usr/local/bin:/usr/bin"
    assert not demo_cli.use_pinned_node(environ, tmp_path / "absent")


def test_the_documented_command_runs_on_the_pinned_node_without_a_banner():
    """`.venv/bin/python -m demo` from a shell whose PATH has only the machine's Node: importing the demo (aws_cdk,
    jsii) and any subprocess it starts get node_modules/.bin first, so jsii prints no unsupported-Node banner."""
    if not (NODE_BIN / "node").exists():
        pytest.fail("node_modules/.bin/node is missing: run `npm ci` (make demo and make test install it)")
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if Path(p) != NODE_BIN)
    probe = ("import demo.__main__, json, os, subprocess, aws_cdk; "
             "print(json.dumps([os.environ['PATH'].split(os.pathsep)[0], "
             "subprocess.run(['node', '--version'], capture_output=True, text=True).stdout.strip()]))")
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env={**os.environ, "PATH": path},
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    first, version = json.loads(result.stdout.strip().splitlines()[-1])
    pinned = subprocess.run([str(NODE_BIN / "node"), "--version"], capture_output=True, text=True).stdout.strip()
    assert (first, version) == (str(NODE_BIN), pinned)
    assert "!!" not in result.stderr and "end-of-life" not in result.stderr, result.stderr[-2000:]


def test_s3_events_get_the_version_id_s3_sends_for_a_versioned_bucket():
    body = json.dumps({"Records": [{"s3": {"bucket": {"name": "b"}, "object": {"key": "incoming/a+b%3A1.jpg"}}}]})
    asked = []

    def version_of(bucket, key):
        asked.append((bucket, key))
        return "v1"

    event = json.loads(s3_event_with_version_ids(body, version_of))
    assert event["Records"][0]["s3"]["object"]["versionId"] == "v1"
    assert asked == [("b", "incoming/a b:1.jpg")]  # the event's key is URL-encoded
    test_event = json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent"})
    assert s3_event_with_version_ids(test_event, version_of) == test_event
    given = json.dumps({"Records": [{"s3": {"bucket": {"name": "b"}, "object": {"key": "k", "versionId": "v0"}}}]})
    assert json.loads(s3_event_with_version_ids(given, version_of))["Records"][0]["s3"]["object"]["versionId"] == "v0"


def test_a_document_without_the_version_id_is_a_problem():
    quarantined = FrameOutcome(key="incoming/x.jpg", kind="broken", status="quarantined", version_id="v1",
                               reason={"source_version_id": None})
    assert "source_version_id None, upload VersionId 'v1'" in source_version_problem(quarantined)
    unversioned = FrameOutcome(key="incoming/y.jpg", kind="good", status="processed", version_id=None)
    assert "no VersionId" in source_version_problem(unversioned)
    assert source_version_problem(FrameOutcome(key="k", kind="good")) is None  # pending: nothing to check
