"""stacks/delivery/large_assets.py, the Synth step's last command: on a fake cloud assembly shaped like the delivery
app's (a pipeline stack, two stage assemblies whose assets.json files name ``../asset.<hash>`` sources in the top
directory), with cdk-assets replaced by an executable on PATH that records its arguments and leaves a cache zip where
the real one does (``<manifest directory>/.cache``). Large files are sparse: their size counts, no disk is used."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from stacks.delivery import large_assets
from stacks.service_contracts.delivery import (
    CLOUDFORMATION_INPUT_ARTIFACT_LIMIT,
    STRIP_THRESHOLD_BYTES,
    directory_bytes,
    large_file_assets,
)

BIG = "b" * 64  # asset ids are hashes
SMALL = "5" * 64
OUTSIDE = "0" * 64
MIB = 2**20
STAGES = {"Staging": "222222222222", "Prod": "333333333333"}


def _sparse(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.truncate(size)


def _destination(account: str, suffix: str) -> dict:
    return {f"{account}-eu-west-1-{suffix}": {
        "bucketName": f"cdk-hnb659fds-assets-{account}-eu-west-1", "objectKey": "x.zip", "region": "eu-west-1",
        "assumeRoleArn": f"arn:${{AWS::Partition}}:iam::{account}:role/cdk-hnb659fds-file-publishing-role-"
                         f"{account}-eu-west-1"}}


def _stage(outdir: Path, stage: str, account: str, outside: Path, extra: dict | None = None) -> None:
    directory = outdir / f"assembly-P-{stage}"
    directory.mkdir()
    (directory / f"P{stage}Training.template.json").write_text("{}")
    training = {"version": "55.0.0", "dockerImages": {}, "files": {
        BIG: {"displayName": "Pipelines/ExportWheels", "source": {"path": f"../asset.{BIG}", "packaging": "zip"},
              "destinations": _destination(account, "aa")},
        SMALL: {"displayName": "Pipelines/JobSettings", "source": {"path": f"../asset.{SMALL}", "packaging": "zip"},
                "destinations": _destination(account, "bb")},
        OUTSIDE: {"displayName": "Unstaged", "source": {"path": str(outside), "packaging": "zip"},
                  "destinations": _destination(account, "cc")},
        "t" * 64: {"displayName": "Template", "source": {"path": f"P{stage}Training.template.json",
                                                          "packaging": "file"},
                   "destinations": _destination(account, "dd")},
        **(extra or {})}}
    inference = {"version": "55.0.0", "files": {  # the same large asset in another stack of the stage
        BIG: {"source": {"path": f"../asset.{BIG}", "packaging": "zip"}, "destinations": _destination(account, "aa")}}}
    (directory / f"P{stage}Training.assets.json").write_text(json.dumps(training))
    (directory / f"P{stage}Inference.assets.json").write_text(json.dumps(inference))
    (directory / "manifest.json").write_text(json.dumps({"version": "55.0.0", "artifacts": {
        f"P{stage}{stack}.assets": {"type": "cdk:asset-manifest",
                                    "properties": {"file": f"P{stage}{stack}.assets.json"}}
        for stack in ("Training", "Inference")}}))


@pytest.fixture
def outdir(tmp_path) -> Path:
    """cdk.out with a 300 MiB wheelhouse-like asset shared by both stages, a small one, and a large source outside
    (as with asset staging disabled), which the directory does not hold and nothing may delete."""
    out = tmp_path / "cdk.out"
    out.mkdir()
    _sparse(out / f"asset.{BIG}" / "mxnet-1.9.1-py3-none-manylinux2014_x86_64.whl", 300 * MIB)
    (out / f"asset.{SMALL}").mkdir()
    (out / f"asset.{SMALL}" / "settings.json").write_text("{}")
    outside = tmp_path / "wheelhouse"
    _sparse(outside / "big.whl", 300 * MIB)
    (out / "P.template.json").write_text("{}")
    (out / "P.assets.json").write_text(json.dumps({"version": "55.0.0", "files": {}}))
    artifacts = {"P.assets": {"type": "cdk:asset-manifest", "properties": {"file": "P.assets.json"}}}
    for stage, account in STAGES.items():
        _stage(out, stage, account, outside)
        artifacts[f"assembly-P-{stage}"] = {"type": "cdk:cloud-assembly",
                                            "properties": {"directoryName": f"assembly-P-{stage}"}}
    (out / "manifest.json").write_text(json.dumps({"version": "55.0.0", "artifacts": artifacts}))
    return out


@pytest.fixture
def cdk_assets(tmp_path, monkeypatch):
    """A fake cdk-assets first on PATH: records each call's arguments (one JSON list a line), writes the cache zip
    the real one leaves, and exits with $FAKE_CDK_ASSETS_EXIT."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls.jsonl"
    script = bin_dir / "cdk-assets"
    script.write_text(f"""#!/usr/bin/env python3
import json, os, pathlib, sys
with open({str(calls)!r}, "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
cache = pathlib.Path(sys.argv[2]).parent / ".cache"
cache.mkdir(exist_ok=True)
(cache / "asset.zip").write_bytes(b"PK")
sys.exit(int(os.environ.get("FAKE_CDK_ASSETS_EXIT", "0")))
""")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return lambda: [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []


def test_only_staged_assets_over_the_threshold_are_selected(outdir):
    found = large_file_assets(outdir)
    assert {a.source.name for a in found} == {f"asset.{BIG}"}
    assert {a.manifest.name for a in found} == {f"P{s}{k}.assets.json" for s in STAGES for k in ("Training",
                                                                                                  "Inference")}
    assert all(a.size == 300 * MIB for a in found)
    assert STRIP_THRESHOLD_BYTES > directory_bytes(outdir / f"asset.{SMALL}")


def test_publishes_every_destination_once_then_strips_the_sources_and_caches(outdir, cdk_assets, capsys):
    assert large_assets.main([str(outdir)]) == 0
    calls = cdk_assets()
    # one call per stage: the Inference manifests name the same asset and destination as Training
    assert calls == [
        ["--path", str(outdir / f"assembly-P-{stage}" / f"P{stage}Training.assets.json"), "--verbose", "publish",
         f"{BIG}:{account}-eu-west-1-aa"] for stage, account in STAGES.items()]
    assert not (outdir / f"asset.{BIG}").exists()
    assert not list(outdir.rglob(".cache"))
    assert (outdir / f"asset.{SMALL}" / "settings.json").is_file()  # small assets stay for the Assets wave
    assert all((outdir / f"assembly-P-{s}" / f"P{s}Training.template.json").is_file() for s in STAGES)
    assert (outdir.parent / "wheelhouse" / "big.whl").is_file()  # never outside the assembly
    assert directory_bytes(outdir) < MIB
    assert "published and stripped 1 file assets of at least 32 MiB (300 MiB)" in capsys.readouterr().out


def test_a_failed_publish_strips_nothing(outdir, cdk_assets, monkeypatch, capsys):
    monkeypatch.setenv("FAKE_CDK_ASSETS_EXIT", "1")
    assert large_assets.main([str(outdir)]) == 1
    assert len(cdk_assets()) == 1  # stops at the first failure
    assert (outdir / f"asset.{BIG}").is_dir()
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("cdk-assets failed (exit 1) publishing ") and err.endswith("nothing was stripped")


def test_without_cdk_assets_on_path_it_says_so_in_one_line(outdir, monkeypatch, capsys, tmp_path):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert large_assets.main([str(outdir)]) == 2
    assert (outdir / f"asset.{BIG}").is_dir()
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cdk-assets is not on PATH" in err


def test_no_assembly_is_one_line(tmp_path, capsys):
    assert large_assets.main([str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.strip() == f"no cloud assembly in {tmp_path / 'missing'}: run `make synth` first"


def test_still_over_the_limit_after_stripping_fails(outdir, cdk_assets, capsys):
    # nine assets just under the threshold stay, together over 256 MiB
    medium = {}
    for i in range(9):
        asset_id = f"{i}" * 64
        _sparse(outdir / f"asset.{asset_id}" / "part.bin", STRIP_THRESHOLD_BYTES - MIB)
        medium[asset_id] = {"source": {"path": f"../asset.{asset_id}", "packaging": "zip"},
                            "destinations": _destination("222222222222", "ee")}
    manifest = outdir / "assembly-P-Staging" / "PStagingTraining.assets.json"
    entries = json.loads(manifest.read_text())
    entries["files"].update(medium)
    manifest.write_text(json.dumps(entries))
    assert large_assets.main([str(outdir)]) == 1
    assert not (outdir / f"asset.{BIG}").exists()  # the large one was still published and stripped
    assert directory_bytes(outdir) > CLOUDFORMATION_INPUT_ARTIFACT_LIMIT
    err = capsys.readouterr().err
    assert "over the 256 MiB that CodePipeline's CloudFormation actions accept" in err and "limits.html" in err


def test_nothing_large_publishes_nothing(outdir, cdk_assets):
    import shutil

    shutil.rmtree(outdir / f"asset.{BIG}")
    assert large_assets.main([str(outdir)]) == 0
    assert cdk_assets() == []
