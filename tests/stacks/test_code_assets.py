"""stacks.code_assets: the staged code assets hash the same wherever they are staged, and the processing package
runs from its zip with training/ and contracts/ alone."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import aws_cdk as cdk
import numpy as np
from PIL import Image

from contracts.documents import validate_evaluation
from stacks.code_assets import CONTRACTS_DIR, TRAINING_DIR, lambda_files, processing_files, stage


def test_staging_is_deterministic(tmp_path: Path) -> None:
    for files in (lambda_files(), processing_files()):
        first, second = stage(files, tmp_path / "a"), stage(files, tmp_path / "b")
        assert cdk.FileSystem.fingerprint(str(first)) == cdk.FileSystem.fingerprint(str(second))
        (second / "contracts" / "naming.py").write_text("# changed\n")
        assert cdk.FileSystem.fingerprint(str(first)) != cdk.FileSystem.fingerprint(str(second))
        for folder in (first, second):
            shutil.rmtree(folder)


def test_asset_file_lists() -> None:
    lambda_names = {name for name, _ in lambda_files()}
    assert {"ingest.py", "roadseg_lambda/settings.py", "contracts/lambda_env.py"} <= lambda_names
    processing_names = {name for name, _ in processing_files()}
    assert {"training/evaluate.py", "training/processing_entry.py", "contracts/documents.py"} <= processing_names
    assert not any("__pycache__" in name or name.endswith(".pyc") for name in lambda_names | processing_names)
    assert {f"contracts/{p.name}" for p in CONTRACTS_DIR.glob("*.py")} <= lambda_names & processing_names


def test_processing_entry_runs_evaluate_from_the_package_alone(tmp_path: Path) -> None:
    """As in the Processing container: the entry script unpacks the zip and imports training and contracts from
    it (isolated interpreter: neither the repository nor PYTHONPATH is on sys.path)."""
    package_dir = tmp_path / "package"
    package_dir.mkdir()
    with zipfile.ZipFile(package_dir / "0f3a9c.zip", "w") as archive:
        for name, path in processing_files():
            archive.write(path, name)
    gt, pred, out = tmp_path / "gt", tmp_path / "pred", tmp_path / "out"
    gt.mkdir()
    pred.mkdir()
    mask = np.array([[0, 1], [1, 2]], dtype=np.uint8)
    Image.fromarray(mask).save(gt / "a.png")
    Image.fromarray(mask).save(pred / "a.png")
    script = textwrap.dedent(f"""
        import importlib.util, json, sys
        from pathlib import Path
        spec = importlib.util.spec_from_file_location("processing_entry", {str(TRAINING_DIR / "processing_entry.py")!r})
        entry = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(entry)
        try:
            entry.main(["evaluate", "--ground-truth", {str(gt)!r}, "--predictions", {str(pred)!r},
                        "--output", {str(out)!r}], Path({str(package_dir)!r}))
        except SystemExit as exc:
            code = exc.code
        print(json.dumps({{"code": code, "training": sys.modules["training"].__file__,
                           "contracts": sys.modules["contracts"].__file__}}))
    """)
    run = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, "TMPDIR": str(tmp_path)}, timeout=120)  # the entry unpacks into TMPDIR
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["code"] in (0, None), run.stderr
    repository = str(TRAINING_DIR.parent)
    assert not report["training"].startswith(repository) and not report["contracts"].startswith(repository)
    assert Path(report["training"]).parent.parent == Path(report["contracts"]).parent.parent  # one unpacked root
    validate_evaluation(json.loads((out / "evaluation.json").read_text()))
