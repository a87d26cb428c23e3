"""stacks/checks/service_contracts/delivery.py, a registered rule: a CloudFormation action's input artifact (the
Synth output, less what the Synth step publishes and strips) over 256 MB fails; measured on the synthesized delivery
assembly (assets not staged) and on copies made too large. Large files are sparse: their size counts, no disk is
used."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from envconfig.config import load_config
from stacks.app_builder import ROOT
from stacks.checks.service_contracts import RULES, Assembly, Context, check
from stacks.checks.service_contracts.delivery import (
    CLOUDFORMATION_INPUT_ARTIFACT_LIMIT,
    NAME,
    STRIP_MODULE,
    STRIP_THRESHOLD_BYTES,
    check_directory,
    large_file_assets,
)

EXAMPLES = ROOT / "config" / "examples"


@pytest.fixture(scope="module")
def assembly(tmp_path_factory):
    import aws_cdk as cdk

    from stacks.app_builder import build_app, cdk_json_context

    outdir = tmp_path_factory.mktemp("cdk-delivery-artifacts")
    app = cdk.App(outdir=str(outdir), context={**cdk_json_context(), "env": "delivery",
                                               "aws:cdk:bundling-stacks": [], "aws:cdk:disable-asset-staging": True})
    app, _ = build_app(load_config("delivery", EXAMPLES), app, EXAMPLES)
    app.synth()
    return outdir


def _copy(assembly: Path, tmp_path: Path) -> Path:
    broken = tmp_path / "cdk.out"
    shutil.copytree(assembly, broken)
    return broken


def _stage_export_wheels(outdir: Path, size: int) -> str:
    """Stage the export wheelhouse as ``asset.<hash>`` of ``size`` bytes, as a synth with asset staging does (the
    test synth leaves it at .wheelhouse/export): both stages' Training manifests name ``../asset.<hash>``."""
    staged = None
    for manifest in outdir.glob("assembly-*/*Training*.assets.json"):
        entries = json.loads(manifest.read_text())
        (asset_id,) = [k for k, v in entries["files"].items() if v.get("displayName") == "Pipelines/ExportWheels"]
        entries["files"][asset_id]["source"]["path"] = f"../asset.{asset_id}"
        manifest.write_text(json.dumps(entries))
        staged = asset_id
    (outdir / f"asset.{staged}").mkdir()
    _sparse(outdir / f"asset.{staged}" / "mxnet.whl", size)
    return staged


def _sparse(path: Path, size: int) -> None:
    with open(path, "wb") as f:
        f.truncate(size)


def _drop_strip_command(outdir: Path) -> None:
    """The Synth project's buildspec without its last command (the strip step)."""
    template_file = outdir / "RoadsegDeliveryPipeline.template.json"
    template = json.loads(template_file.read_text())
    (project,) = [r for k, r in template["Resources"].items()
                  if r["Type"] == "AWS::CodeBuild::Project" and k.startswith("PipelineBuildSynth")]
    spec = json.loads(project["Properties"]["Source"]["BuildSpec"])
    assert STRIP_MODULE in spec["phases"]["build"]["commands"].pop()
    project["Properties"]["Source"]["BuildSpec"] = json.dumps(spec)
    template_file.write_text(json.dumps(template))


def test_the_rule_is_registered_and_the_synthesized_assembly_passes(assembly):
    assert NAME in RULES
    assert check_directory(assembly) == []
    assert [v for v in check(Assembly.from_directory(assembly), Context(account_pinned=True)) if v.rule == NAME] == []


def test_without_a_directory_there_is_nothing_to_measure(assembly):
    templated = Assembly.from_directory(assembly)
    assert list(RULES[NAME](Assembly(templated.templates, templated.environments), Context())) == []


def test_an_oversized_assembly_fails_every_deploy_action(assembly, tmp_path):
    broken = _copy(assembly, tmp_path)
    _sparse(broken / "asset.big.bin", CLOUDFORMATION_INPUT_ARTIFACT_LIMIT + 1)  # named by no manifest: kept
    violations = [v for v in check(Assembly.from_directory(broken), Context(account_pinned=True)) if v.rule == NAME]
    assert len(violations) == 2 * 4  # two stages x four stacks: each change set (Prepare) reads the artifact
    assert all(v.resource.endswith(".Prepare") for v in violations)
    assert all("limit 256 MiB" in str(v) and "limits.html" in str(v) for v in violations)
    assert {v.resource.split("/")[1] for v in violations} == {"Staging", "Prod"}
    assert all("less the assets its Synth step strips" in v.message for v in violations)


def test_a_large_staged_asset_counts_as_absent_because_the_synth_step_strips_it(assembly, tmp_path):
    outdir = _copy(assembly, tmp_path)
    asset_id = _stage_export_wheels(outdir, CLOUDFORMATION_INPUT_ARTIFACT_LIMIT + 1)
    found = large_file_assets(outdir)
    assert {a.asset_id for a in found} == {asset_id} and len(found) == 2  # one per stage's Training manifest
    assert all(len(a.destinations) == 1 for a in found)
    assert check_directory(outdir) == []


def test_without_the_strip_command_the_large_asset_counts(assembly, tmp_path):
    outdir = _copy(assembly, tmp_path)
    _stage_export_wheels(outdir, CLOUDFORMATION_INPUT_ARTIFACT_LIMIT + 1)
    _drop_strip_command(outdir)
    violations = check_directory(outdir)
    assert len(violations) == 2 * 4
    assert all(f"does not end with `python -m {STRIP_MODULE}`" in v.message for v in violations)


def test_a_staged_asset_under_the_threshold_stays_and_counts(assembly, tmp_path):
    outdir = _copy(assembly, tmp_path)
    _stage_export_wheels(outdir, STRIP_THRESHOLD_BYTES - 1)
    _sparse(outdir / "filler.bin", CLOUDFORMATION_INPUT_ARTIFACT_LIMIT - STRIP_THRESHOLD_BYTES + 2)
    assert large_file_assets(outdir) == []
    assert len(check_directory(outdir)) == 2 * 4  # over the limit only with the wheels it keeps
