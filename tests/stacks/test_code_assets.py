"""stacks.code_assets: the staged code assets hash the same wherever they are staged, and the processing package
runs from its zip with training/, roadseg_lambda/ and contracts/ alone."""

from __future__ import annotations

import importlib.util
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
import pytest
from PIL import Image

from contracts.documents import validate_evaluation
from contracts.lambda_env import PreprocessorEnvironment
from contracts.signals import REFERENCE_PROFILE_FILE, validate_reference_profile
from segcore.scenes import generate_scene
from stacks.code_assets import (
    CONTRACTS_DIR,
    DRIVE_WHEELHOUSE,
    EXPORT_WHEELHOUSE,
    LAMBDA_LIBRARY_DIR,
    PROCESSING_ENTRY,
    TRAINING_DIR,
    lambda_files,
    processing_files,
    stage,
)


def test_staging_is_deterministic(tmp_path: Path) -> None:
    for files in (lambda_files(), processing_files()):
        first, second = stage(files, tmp_path / "a"), stage(files, tmp_path / "b")
        assert cdk.FileSystem.fingerprint(str(first)) == cdk.FileSystem.fingerprint(str(second))
        (second / "contracts" / "naming.py").write_text("# changed\n")
        assert cdk.FileSystem.fingerprint(str(first)) != cdk.FileSystem.fingerprint(str(second))
        for folder in (first, second):
            shutil.rmtree(folder)


def test_job_settings_stage_once_per_content() -> None:
    """Both stacks stage the environment's settings: one directory (so one asset hash, one S3 object) per content."""
    from contracts.job_settings import settings_files
    from stacks.code_assets import staged_job_settings

    files = settings_files([{"name": "road", "color": [1, 2, 3]}], {"/cam/front": "front"})
    first, again = staged_job_settings(files), staged_job_settings(dict(reversed(list(files.items()))))
    assert first == again and sorted(p.name for p in first.iterdir()) == sorted(files)
    assert {p.name: p.read_text() for p in first.iterdir()} == files
    other = staged_job_settings(settings_files(None, {"/cam/front": "front"}))
    assert other != first and cdk.FileSystem.fingerprint(str(other)) != cdk.FileSystem.fingerprint(str(first))


def test_asset_file_lists() -> None:
    lambda_names = {name for name, _ in lambda_files()}
    assert {"ingest.py", "segcore/settings.py", "contracts/lambda_env.py"} <= lambda_names
    processing_names = {name for name, _ in processing_files()}
    assert {"training/evaluate.py", "drivelogs/job.py", "export/model.py", "training/serving.py",
            "contracts/documents.py",
            "segcore/imaging.py", "segcore/masks.py", "segcore/settings.py"} <= processing_names
    # The gate prepares frames and restores masks with the functions' own library, not with the handlers.
    library = {f"roadseg_lambda/{p.relative_to(LAMBDA_LIBRARY_DIR).as_posix()}"
               for p in LAMBDA_LIBRARY_DIR.rglob("*.py") if "__pycache__" not in p.parts}
    assert library <= processing_names
    assert not {"ingest.py", "postprocess.py", "realtime.py", "rollout.py", "requirements.txt"} & processing_names
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
        spec = importlib.util.spec_from_file_location("processing_entry", {str(PROCESSING_ENTRY)!r})
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


def _run_entry(package_dir: Path, tmp_path: Path, argv: list[str], environment: dict[str, str]) -> dict:
    """processing_entry.main(argv) in an isolated interpreter, as the Processing container runs it; which files the
    packages were imported from."""
    script = textwrap.dedent(f"""
        import importlib.util, json, sys
        from pathlib import Path
        spec = importlib.util.spec_from_file_location("processing_entry", {str(PROCESSING_ENTRY)!r})
        entry = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(entry)
        try:
            entry.main({argv!r}, Path({str(package_dir)!r}))
        except SystemExit as exc:
            code = exc.code
        print(json.dumps({{"code": code, **{{name: sys.modules[name].__file__ for name in entry.PACKAGES}}}}))
    """)
    run = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True, cwd=tmp_path,
                         env={**os.environ, **environment, "TMPDIR": str(tmp_path)}, timeout=120)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["code"] in (0, None), run.stderr
    repository = str(TRAINING_DIR.parent)
    roots = {Path(report[name]).parent.parent for name in ("training", "roadseg_lambda", "contracts")}
    assert len(roots) == 1 and not str(roots.pop()).startswith(repository)  # one unpacked root, not the checkout
    return report


def test_processing_entry_runs_the_serving_step_and_the_evaluation_from_the_package_alone(tmp_path: Path) -> None:
    """PrepareServingValidation then EvaluateModel, as the pipeline runs them: frame preparation from the functions'
    variables, masks at the serving resolution mapped back, evaluation.json with the serving resolution, ROI, head."""
    package_dir = tmp_path / "package"
    package_dir.mkdir()
    with zipfile.ZipFile(package_dir / "0f3a9c.zip", "w") as archive:
        for name, path in processing_files():
            archive.write(path, name)
    validation, gt, serving, geometry, pred, out = (tmp_path / n for n in (
        "validation", "gt", "serving", "geometry", "pred", "out"))
    for folder in (validation, gt, pred):
        folder.mkdir()
    rgb, label = generate_scene(96, 48, seed=7)
    Image.fromarray(rgb).save(validation / "a.jpg", quality=95)
    Image.fromarray(generate_scene(96, 48, seed=8)[0]).save(validation / "b.jpg", quality=95)  # two: a process pool
    Image.fromarray(label).save(gt / "a.png")
    variables = PreprocessorEnvironment(target_width=48, target_height=24, roi=(0.0, 0.0, 1.0, 0.75),
                                        jpeg_quality=85).frame_preparation_env()
    _run_entry(package_dir, tmp_path, ["serving", "--input", str(validation), "--output", str(serving),
                                       "--geometry-dir", str(geometry), "--workers", "2"], variables)
    frame = json.loads((geometry / "geometry.json").read_text())["frames"]["a"]
    assert frame == {"original_size": {"width": 96, "height": 48}, "crop_box": [0, 0, 96, 36],
                     "inference_size": {"width": 48, "height": 18}}
    with Image.open(serving / "a.jpg") as sent, Image.open(serving / "b.jpg") as other:
        assert sent.size == other.size == (48, 18)
    Image.fromarray(label[:36:2, ::2]).save(pred / "a.jpg.out", format="PNG")  # a mask at the serving resolution
    # EvaluateModel writes the reference profile of the served frames; EvaluateVsIncumbent's "--option=value"
    # arguments, an empty package ARN among them, reach the module as the pipeline passes them.
    _run_entry(package_dir, tmp_path, ["evaluate", "--ground-truth", str(gt), "--predictions", str(pred),
                                       "--serving-geometry", str(geometry / "geometry.json"), "--head", "deeplab",
                                       "--output", str(out), "--serving-frames", str(serving),
                                       "--incumbent-predictions", str(pred),
                                       "--incumbent-model-data=s3://artifacts/pipelines/p/e/model.tar.gz",
                                       "--incumbent-model-package=", "--incumbent-tolerance", "0.01"], {})
    report = validate_evaluation(json.loads((out / "evaluation.json").read_text()))
    assert report["incumbent"]["model_data"] == "s3://artifacts/pipelines/p/e/model.tar.gz"
    assert report["incumbent"]["model_package"] is None and report["incumbent"]["beyond_tolerance"] == []
    profile = validate_reference_profile(json.loads((out / REFERENCE_PROFILE_FILE).read_text()))
    assert profile["frames"] == 1 and report["reference_profile"] == REFERENCE_PROFILE_FILE
    assert report["head"] == "deeplab"
    assert report["serving"]["target_size"] == {"width": 48, "height": 24}
    assert report["serving"]["roi"] == [0.0, 0.0, 1.0, 0.75]
    assert report["serving"]["inference_sizes"] == [{"width": 48, "height": 18, "images": 1}]
    assert report["serving"]["pixels_outside_roi"] == int(np.count_nonzero(label[36:] != 255))


def _load_entry():
    spec = importlib.util.spec_from_file_location("processing_entry_under_test", PROCESSING_ENTRY)
    entry = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(entry)
    return entry


def test_export_environment_installs_the_shipped_wheels_without_an_index(tmp_path: Path) -> None:
    """ExportModel's bootstrap: one zip of wheels -> a venv holding exactly them (pip --no-index: no network)."""
    entry = _load_entry()
    (wheel,) = EXPORT_WHEELHOUSE.glob("six-*.whl")  # a small pure wheel of the real wheelhouse
    wheels_dir = tmp_path / "wheels"
    wheels_dir.mkdir()
    with zipfile.ZipFile(wheels_dir / "9d8c7b.zip", "w") as archive:  # a CDK directory asset: a zip, any name
        archive.write(wheel, wheel.name)
    python = entry.export_environment(wheels_dir, tmp_path / "env")
    run = subprocess.run([str(python), "-c", "import six, sys; print(six.__version__, sys.prefix)"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    version, prefix = run.stdout.split()
    assert wheel.name.startswith(f"six-{version}-") and prefix == str(tmp_path / "env" / "venv")


def test_export_environment_refuses_what_it_cannot_install(tmp_path: Path) -> None:
    entry = _load_entry()
    with pytest.raises(SystemExit, match="expected one wheels zip"):
        entry.export_environment(tmp_path, tmp_path / "env")
    with zipfile.ZipFile(tmp_path / "a.zip", "w") as archive:
        archive.writestr("README", "no wheels here")
    with pytest.raises(SystemExit, match="holds no wheels"):
        entry.export_environment(tmp_path, tmp_path / "env")
    entry.EXPORT_PYTHON = (3, 99)
    with pytest.raises(SystemExit, match=r"export needs Python 3\.99 \(MXNet 1\.9\.1\), this image has 3\.11"):
        entry.export_environment(tmp_path, tmp_path / "env")


def test_drive_environment_installs_the_shipped_wheels_with_target_and_no_index(tmp_path: Path) -> None:
    """The drive-job module's bootstrap: one zip of wheels -> ``pip install --no-index --no-deps --target``, and the
    package imports from that directory alone (-S: no site-packages, where the test venv has its own copy)."""
    entry = _load_entry()
    (wheel,) = DRIVE_WHEELHOUSE.glob("mcap-*-py3-none-any.whl")  # a small pure wheel of the real wheelhouse
    wheels_dir = tmp_path / "wheels"
    wheels_dir.mkdir()
    with zipfile.ZipFile(wheels_dir / "5e4d3c.zip", "w") as archive:  # a CDK directory asset: a zip, any name
        archive.write(wheel, wheel.name)
    site = entry.drive_environment(wheels_dir, tmp_path / "drive")
    assert site == tmp_path / "drive" / "site"
    run = subprocess.run([sys.executable, "-S", "-c", "import mcap; print(mcap.__file__)"], capture_output=True,
                         text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(site)})
    assert run.returncode == 0, run.stderr
    assert Path(run.stdout.strip()).is_relative_to(site)


def test_drive_environment_refuses_what_it_cannot_install(tmp_path: Path) -> None:
    entry = _load_entry()
    with pytest.raises(SystemExit, match="expected one wheels zip"):
        entry.drive_environment(tmp_path, tmp_path / "drive")
    with zipfile.ZipFile(tmp_path / "a.zip", "w") as archive:
        archive.writestr("README", "no wheels here")
    with pytest.raises(SystemExit, match="holds no wheels"):
        entry.drive_environment(tmp_path, tmp_path / "drive")


def test_missing_drive_wheelhouse_says_how_to_get_it(monkeypatch, tmp_path: Path) -> None:
    import stacks.code_assets as code_assets

    monkeypatch.setattr(code_assets, "DRIVE_WHEELHOUSE", tmp_path)
    with pytest.raises(code_assets.MissingWheelhouse, match="run `make synth`"):
        code_assets.drive_wheelhouse()


def test_export_runs_from_the_unpacked_package_in_the_export_environment(tmp_path: Path) -> None:
    """The second half of ExportModel's bootstrap: inside the export venv (Python 3.11, MXNet, numpy 1.23.5) the entry
    script unpacks the package zip and runs export.model from it; ``--help`` proves the whole import chain."""
    python = TRAINING_DIR.parent / ".venv-export" / "bin" / "python"
    assert python.exists(), "run `make .venv-export/.installed` (make test does): the export environment is missing"
    package_dir = tmp_path / "package"
    package_dir.mkdir()
    with zipfile.ZipFile(package_dir / "7e6f5d.zip", "w") as archive:
        for name, path in processing_files():
            archive.write(path, name)
    script = textwrap.dedent(f"""
        import importlib.util, sys
        from pathlib import Path
        spec = importlib.util.spec_from_file_location("processing_entry", {str(PROCESSING_ENTRY)!r})
        entry = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(entry)
        entry.main(["export", "--help"], Path({str(package_dir)!r}))
    """)
    run = subprocess.run([str(python), "-I", "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=120,
                         env={**os.environ, "TMPDIR": str(tmp_path), "ROADSEG_IN_EXPORT_ENV": "1"})
    assert run.returncode == 0, run.stderr
    assert "--max-logit-difference" in run.stdout and "--min-argmax-agreement" in run.stdout
