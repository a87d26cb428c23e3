"""stacks/service_contracts/delivery.py: a CloudFormation action's input artifact (the Synth output) over 256 MB
fails the check; measured on a synthesized delivery assembly (assets not staged) and on one made too large."""

from __future__ import annotations

import shutil

import pytest

from stacks.app_builder import ROOT
from stacks.config import load_config
from stacks.service_contracts.delivery import CLOUDFORMATION_INPUT_ARTIFACT_LIMIT, check_directory

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


def test_a_small_assembly_passes_and_an_oversized_one_fails_every_deploy_action(assembly, tmp_path):
    assert check_directory(assembly) == []
    broken = tmp_path / "cdk.out"
    shutil.copytree(assembly, broken)
    with open(broken / "asset.big.bin", "wb") as sparse:
        sparse.truncate(CLOUDFORMATION_INPUT_ARTIFACT_LIMIT + 1)  # sparse: no disk used, st_size counts
    violations = check_directory(broken)
    assert len(violations) == 2 * 4  # two stages x four stacks: each change set (Prepare) reads the artifact
    assert all(v.resource.endswith(".Prepare") for v in violations)
    assert all("limit 256 MiB" in str(v) and "limits.html" in str(v) for v in violations)
    assert {v.resource.split("/")[1] for v in violations} == {"Staging", "Prod"}
