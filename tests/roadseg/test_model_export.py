"""``roadseg model export``: the wiring in roadseg's own environment (no MXNet). A fake export python on a tmp path
records what it was given (arguments, working folder, PYTHONPATH, frame preparation, the parity frames) and plays
the export's outcomes; roadseg turns them into its exit codes. The real export: tests/training/
test_model_export_local.py (in .venv-export)."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from envconfig.config import load_config
from roadseg import cli, model_export

PROJECT = Path(__file__).resolve().parents[2]
DEV = load_config("dev")
METRICS = ["--validation-miou", "0.71", "--validation-pixel-accuracy", "0.93"]
# The fake reads what to do from FAKE_EXPORT (JSON: exit, stdout, stderr lines, parity status) and appends what it
# got to FAKE_EXPORT_RECORD.
FAKE = f"""#!{sys.executable}
import json, os, sys
from pathlib import Path
from PIL import Image
plan = json.loads(os.environ.get("FAKE_EXPORT", "{{}}"))
args = sys.argv[1:]
def value(option):
    return args[args.index(option) + 1] if option in args else None
frames = Path(value("--validation"))
record = {{"argv": args, "cwd": os.getcwd(), "pythonpath": os.environ.get("PYTHONPATH", ""),
          "env": {{k: os.environ.get(k) for k in ("TARGET_WIDTH", "TARGET_HEIGHT", "ROI", "MAX_INPUT_BYTES",
                                                "MAX_INPUT_PIXELS", "JPEG_QUALITY")}},
          "frames": {{p.name: list(Image.open(p).size) for p in sorted(frames.iterdir())}},
          "classes": json.loads(Path(value("--classes-file")).read_text()) if value("--classes-file") else None}}
with open(os.environ["FAKE_EXPORT_RECORD"], "a") as handle:
    handle.write(json.dumps(record) + "\\n")
for line in plan.get("stderr", ["2026-01-01 INFO model: head fcn", "2026-01-01 INFO parity scene00.jpg"]):
    print(line, file=sys.stderr, flush=True)
out = Path(value("--output"))
if plan.get("parity"):
    out.mkdir(parents=True, exist_ok=True)
    (out / "parity.json").write_text(json.dumps({{"status": plan["parity"]}}))
if plan.get("exit", 0) == 0:
    out.mkdir(parents=True, exist_ok=True)
    (out / "bundle.json").write_text(json.dumps({{"head": "fcn", "network_size": {{"width": 1}}}}))
    print(plan.get("stdout", "exported fcn/resnet-50 at WxH (ONNX parity ...) -> " + str(out)))
sys.exit(plan.get("exit", 0))
"""


@pytest.fixture
def fake_export(tmp_path, monkeypatch):
    python = tmp_path / "export-env" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(FAKE)
    python.chmod(python.stat().st_mode | stat.S_IXUSR)
    record = tmp_path / "calls.jsonl"
    monkeypatch.setenv("FAKE_EXPORT_RECORD", str(record))
    monkeypatch.setenv(model_export.EXPORT_PYTHON_VARIABLE, str(python))
    monkeypatch.delenv("PYTHONPATH", raising=False)

    def calls() -> list[dict]:
        return [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []

    return python, calls


@pytest.fixture
def archive(tmp_path) -> Path:
    path = tmp_path / "model.tar.gz"
    path.write_bytes(b"not read here: the export environment reads it")
    return path


def _run(*args: str) -> int:
    return cli.main(["model", "export", *args])


def _option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_export_runs_training_export_in_the_export_environment(fake_export, archive, tmp_path, capsys):
    _, calls = fake_export
    assert _run(str(archive), "--out", str(tmp_path / "bundle"), *METRICS) == 0
    (call,) = calls()
    argv = call["argv"]
    assert argv[:2] == ["-m", "export.model"]
    assert _option(argv, "--model") == str(archive.resolve())
    assert _option(argv, "--output") == str((tmp_path / "bundle").resolve())
    assert _option(argv, "--scheme") == "cityscapes" and "--classes-file" not in argv  # config/dev.yaml's classes
    assert (_option(argv, "--validation-miou"), _option(argv, "--validation-pixel-accuracy")) == ("0.71", "0.93")
    assert "--evaluation" not in argv
    export = DEV.training.export  # the ExportModel step's thresholds and frame count
    assert float(_option(argv, "--max-logit-difference")) == export.max_logit_difference
    assert float(_option(argv, "--min-argmax-agreement")) == export.min_argmax_agreement
    assert int(_option(argv, "--max-parity-frames")) == export.parity_frames
    # The project on PYTHONPATH (training, contracts; lambda for roadseg_lambda), run from the project.
    assert call["pythonpath"].split(os.pathsep)[:2] == [str(PROJECT), str(PROJECT / "lambda")]
    assert call["cwd"] == str(PROJECT)
    size = [DEV.preprocessing.target_width, DEV.preprocessing.target_height]
    assert call["env"] == {"TARGET_WIDTH": str(size[0]), "TARGET_HEIGHT": str(size[1]), "ROI": "",
                           "MAX_INPUT_BYTES": str(DEV.preprocessing.max_input_bytes),
                           "MAX_INPUT_PIXELS": str(DEV.preprocessing.max_input_pixels),
                           "JPEG_QUALITY": str(DEV.preprocessing.jpeg_quality)}
    # No frames given: generated scenes at the serving size, one per parity frame.
    assert list(call["frames"].values()) == [size] * export.parity_frames
    captured = capsys.readouterr()
    assert captured.out.strip().splitlines()[-1].startswith("exported fcn/resnet-50")
    err = captured.err.splitlines()
    assert err[-2:] == ["  2026-01-01 INFO model: head fcn", "  2026-01-01 INFO parity scene00.jpg"]  # streamed
    assert "generated scenes" in err[0]


def test_size_frames_classes_and_evaluation_are_passed_on(fake_export, archive, tmp_path):
    from PIL import Image

    _, calls = fake_export
    frames = tmp_path / "frames"
    frames.mkdir()
    Image.new("RGB", (320, 160)).save(frames / "a.jpg")
    classes = tmp_path / "classes.json"
    classes.write_text(json.dumps([{"name": "road", "color": [128, 64, 128]}, {"name": "person", "color": [1, 2, 3]}]))
    evaluation = tmp_path / "evaluation.json"
    evaluation.write_text("{}")
    assert _run(str(archive), "--out", str(tmp_path / "bundle"), "--width", "320", "--height", "160",
                "--validation-frames", str(frames), "--classes-file", str(classes),
                "--evaluation", str(evaluation)) == 0
    (call,) = calls()
    argv = call["argv"]
    assert _option(argv, "--validation") == str(frames.resolve()) and call["frames"] == {"a.jpg": [320, 160]}
    assert (call["env"]["TARGET_WIDTH"], call["env"]["TARGET_HEIGHT"]) == ("320", "160")
    assert _option(argv, "--scheme") == "custom"
    assert [c["name"] for c in call["classes"]] == ["road", "person"]
    assert _option(argv, "--evaluation") == str(evaluation.resolve()) and "--validation-miou" not in argv


def test_a_missing_export_environment_says_how_to_create_it(monkeypatch, archive, tmp_path, capsys):
    monkeypatch.delenv(model_export.EXPORT_PYTHON_VARIABLE, raising=False)
    monkeypatch.setattr(model_export, "DEFAULT_EXPORT_PYTHON", tmp_path / ".venv-export" / "bin" / "python")
    assert _run(str(archive), "--out", str(tmp_path / "bundle"), *METRICS) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("roadseg model export: error: the export environment (Python 3.11 with MXNet 1.9.1) is "
                           "missing")
    assert "`make test` creates it" in line and "--export-python" in line


def test_export_python_option_wins_and_must_exist(fake_export, archive, tmp_path, capsys):
    python, calls = fake_export
    missing = tmp_path / "nowhere" / "python"
    assert _run(str(archive), "--out", str(tmp_path / "bundle"), *METRICS, "--export-python", str(missing)) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert f"--export-python {missing} is not an executable Python" in line
    assert calls() == []
    assert _run(str(archive), "--out", str(tmp_path / "bundle"), *METRICS, "--export-python", str(python)) == 0
    assert len(calls()) == 1


@pytest.mark.parametrize("arguments, message", [
    (["--out", "{tmp}/bundle"], "bundle.json records the model's quality: pass the training job's final metrics"),
    (["--out", "{tmp}/bundle", "--validation-miou", "71", "--validation-pixel-accuracy", "0.9"],
     "--validation-miou must be a fraction within 0..1"),
    (["--out", "{tmp}/bundle", *METRICS, "--evaluation", "{tmp}/evaluation.json"], "not both"),
    (["--out", "{tmp}/full", *METRICS], "is not empty: name a new or empty folder"),
    (["--out", "{tmp}/bundle", *METRICS, "--width", "8"], "serving size: --width"),
    (["--out", "{tmp}/bundle", *METRICS, "--validation-frames", "{tmp}/full"], "holds no .jpg/.jpeg frames"),
    (["--out", "{tmp}/bundle", *METRICS, "--classes-file", "{tmp}/absent.json"], "cannot read the class list"),
])
def test_bad_input_is_one_line_and_exit_2_before_the_export_runs(fake_export, archive, tmp_path, capsys, arguments,
                                                                  message):
    _, calls = fake_export
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("x")
    (tmp_path / "evaluation.json").write_text("{}")
    assert _run(str(archive), *(a.format(tmp=tmp_path) for a in arguments)) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("roadseg model export: error: ") and message in line, line
    assert calls() == []


def test_a_missing_archive_is_bad_input(fake_export, tmp_path, capsys):
    assert _run(str(tmp_path / "model.tar.gz"), "--out", str(tmp_path / "bundle"), *METRICS) == 2
    assert capsys.readouterr().err.strip().endswith("does not exist: pass the training job's model.tar.gz "
                                                    "(hyperparams.json and model_algo-1)")


def test_the_exports_own_error_is_roadsegs_one_line_exit_2(fake_export, archive, tmp_path, monkeypatch, capsys):
    reason = "model_algo-1 does not match a GluonCV FCN with backbone resnet-50, 19 classes, aux=True: ..."
    monkeypatch.setenv("FAKE_EXPORT", json.dumps({"exit": 2, "stderr": ["2026 INFO model: head fcn",
                                                                        f"export: error: {reason}"]}))
    assert _run(str(archive), "--out", str(tmp_path / "bundle"), *METRICS) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[-2:] == ["  2026 INFO model: head fcn", f"roadseg model export: error: {reason}"]


def test_failed_parity_is_a_failed_check_exit_1(fake_export, archive, tmp_path, monkeypatch, capsys):
    reason = "ONNX Runtime disagrees with MXNet on the serving validation frames: max |logit difference| 0.5 > 0.01"
    monkeypatch.setenv("FAKE_EXPORT", json.dumps({"exit": 2, "parity": "failed",
                                                  "stderr": [f"export: error: {reason}"]}))
    assert _run(str(archive), "--out", str(tmp_path / "bundle"), *METRICS) == 1
    assert capsys.readouterr().err.splitlines()[-1] == f"roadseg model export: export failed: {reason}"


def test_a_crash_in_the_export_is_exit_1(fake_export, archive, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FAKE_EXPORT", json.dumps({"exit": 1, "stderr": [
        "Traceback (most recent call last):", "contracts.documents.DocumentError: bundle document: gate: ..."]}))
    assert _run(str(archive), "--out", str(tmp_path / "bundle"), *METRICS) == 1
    assert capsys.readouterr().err.splitlines()[-1] == ("roadseg model export: export failed: the export exited "
                                                        "with 1 (its log is above)")


def test_json_prints_bundle_json(fake_export, archive, tmp_path, capsys):
    assert _run(str(archive), "--out", str(tmp_path / "bundle"), *METRICS, "--json") == 0
    assert json.loads(capsys.readouterr().out) == {"head": "fcn", "network_size": {"width": 1}}
