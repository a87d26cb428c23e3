"""``roadseg data prepare``: the bad-pair limit is the environment's (what the pipeline's PrepareDataset step
applies), bad output paths and an existing dataset are one line with exit 2, and negative counts or timeouts are
refused before anything runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from envconfig.config import CONFIG_DIR
from training.prepare import INCOMPLETE_MARKER


def _environment(tmp_path: Path, monkeypatch, fraction: float) -> Path:
    """A config folder whose dev environment allows ``fraction`` bad pairs (ROADSEG_CONFIG_DIR)."""
    folder = tmp_path / "config"
    folder.mkdir()
    raw = yaml.safe_load((CONFIG_DIR / "dev.yaml").read_text())
    raw["training"]["max_bad_pair_fraction"] = fraction
    (folder / "dev.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("ROADSEG_CONFIG_DIR", str(folder))
    return folder / "dev.yaml"


def _one_bad_pair(root: Path) -> None:
    (root / "images" / "frame_00000.jpg").write_bytes(b"")  # 1 of 6 pairs: 16.7 %


def _prepare(run, root: Path, output: Path, *extra):
    return run("data", "prepare", "--layout", "generic", "--input", root, "--output", output, "--workers", "1",
               *extra)


def test_the_environments_limit_applies_and_is_named(run, generic_tree, tmp_path, monkeypatch):
    root, _ = generic_tree
    _one_bad_pair(root)
    config_file = _environment(tmp_path, monkeypatch, 0.2)
    rc, out, err = _prepare(run, root, tmp_path / "out")
    assert rc == 0, err
    assert f"1 dropped, 16.7%; limit 20.0% from training.max_bad_pair_fraction of {config_file})" in out
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["max_bad_fraction"] == 0.2
    assert report["max_bad_fraction_source"] == f"training.max_bad_pair_fraction of {config_file}"


def test_a_dataset_the_pipeline_would_reject_fails_locally(run, generic_tree, tmp_path, monkeypatch):
    root, _ = generic_tree
    _one_bad_pair(root)
    config_file = _environment(tmp_path, monkeypatch, 0.1)
    rc, _, err = _prepare(run, root, tmp_path / "out")
    assert rc == 2
    assert (f"more than the allowed 10.0% (max_bad_fraction 0.1 from training.max_bad_pair_fraction of "
            f"{config_file})") in err


def test_an_explicit_option_overrides_the_environment(run, generic_tree, tmp_path, monkeypatch):
    root, _ = generic_tree
    _one_bad_pair(root)
    _environment(tmp_path, monkeypatch, 0.0)
    rc, out, err = _prepare(run, root, tmp_path / "out", "--max-bad-fraction", "0.5")
    assert rc == 0, err
    assert "limit 50.0% from --max-bad-fraction" in out


def test_output_is_a_file_one_line_exit_2(run, generic_tree, tmp_path):
    root, _ = generic_tree
    target = tmp_path / "out.tar"
    target.write_bytes(b"x")
    rc, _, err = _prepare(run, root, target)
    assert rc == 2 and err.count("\n") == 1
    assert err == (f"roadseg data prepare: error: --output {target} is a file, not a directory: pass the path of a "
                   "directory (it is created when missing)\n")


def test_output_that_cannot_be_written_one_line_exit_2(run, generic_tree, tmp_path):
    root, _ = generic_tree
    (tmp_path / "file").write_text("x")
    rc, _, err = _prepare(run, root, tmp_path / "file" / "out")
    assert rc == 2 and err.count("\n") == 1
    assert "cannot write the output directory" in err and "choose a directory you can write to" in err


def test_an_existing_dataset_says_overwrite_and_a_failed_run_does_not_block(run, generic_tree, tmp_path):
    root, _ = generic_tree
    out = tmp_path / "out"
    assert _prepare(run, root, out)[0] == 0
    rc, _, err = _prepare(run, root, out)
    assert rc == 2 and err.count("\n") == 1 and "already holds a prepared dataset (train): pass --overwrite" in err
    rc, out_text, _ = _prepare(run, root, out, "--overwrite")
    assert rc == 0 and "replaced the earlier dataset (--overwrite)" in out_text
    # a rejected run leaves an incomplete output; fixing the data and running again needs no --overwrite
    good = (root / "images" / "frame_00000.jpg").read_bytes()
    _one_bad_pair(root)
    assert _prepare(run, root, out, "--overwrite", "--max-bad-fraction", "0")[0] == 2
    assert (out / INCOMPLETE_MARKER).exists()
    (root / "images" / "frame_00000.jpg").write_bytes(good)
    rc, out_text, err = _prepare(run, root, out)
    assert rc == 0, err
    assert "replaced the incomplete output of an earlier run" in out_text


@pytest.mark.parametrize("argv", [
    ["data", "prepare", "--layout", "generic", "--input", "x", "--output", "y", "--workers", "-1"],
    ["data", "prepare", "--layout", "generic", "--input", "x", "--output", "y", "--workers", "0"],
    ["data", "prepare", "--layout", "generic", "--input", "x", "--output", "y", "--max-bad-fraction", "-0.5"],
    ["pipeline", "start", "--wait", "--timeout", "-5"],
    ["endpoint", "submit", "x.jpg", "--timeout", "-1"],
    ["endpoint", "bench", "--kind", "async", "--timeout", "-1"],
])
def test_negative_counts_and_timeouts_are_refused(run, argv, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, _, err = run(*argv)
    option = next(a for a in argv if a in ("--workers", "--timeout", "--max-bad-fraction"))
    assert rc == 2 and f"Invalid value for '{option}'" in err
    assert not (tmp_path / "y").exists()
