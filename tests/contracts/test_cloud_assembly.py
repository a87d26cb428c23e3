"""contracts/cloud_assembly.py: stacks with their environments, bootstrap requirements and nested asset manifests."""

from __future__ import annotations

import json

from contracts import cloud_assembly

MANIFEST = {"version": "55.0.0", "artifacts": {
    "Pinned": {"type": "aws:cloudformation:stack", "environment": "aws://111111111111/eu-west-1",
               "properties": {"templateFile": "Pinned.template.json", "stackName": "RoadsegPinned",
                              "requiresBootstrapStackVersion": 6}},
    "Agnostic": {"type": "aws:cloudformation:stack", "environment": "aws://unknown-account/unknown-region",
                 "properties": {"templateFile": "Agnostic.template.json"}},
    "Agnostic.assets": {"type": "cdk:asset-manifest",
                        "properties": {"file": "Agnostic.assets.json", "requiresBootstrapStackVersion": 21,
                                       "bootstrapStackVersionSsmParameter": "/cdk-bootstrap/other/version"}},
    "Tree": {"type": "cdk:tree", "properties": {"file": "tree.json"}},
}}


def test_stack_artifacts_in_manifest_order_with_pinned_environments():
    stacks = cloud_assembly.stack_artifacts(MANIFEST)
    assert [(s.artifact_id, s.name, s.template_file, s.environment) for s in stacks] == [
        ("Pinned", "RoadsegPinned", "Pinned.template.json", ("111111111111", "eu-west-1")),
        ("Agnostic", "Agnostic", "Agnostic.template.json", None),
    ]


def test_bootstrap_requirements_per_parameter():
    assert cloud_assembly.bootstrap_requirements(MANIFEST, "/cdk-bootstrap/hnb659fds/version") == {
        "/cdk-bootstrap/hnb659fds/version": 6, "/cdk-bootstrap/other/version": 21}


def test_templates_and_nested_asset_manifests(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"artifacts": {
        **MANIFEST["artifacts"],
        "Stage": {"type": "cdk:cloud-assembly", "properties": {"directoryName": "assembly-Stage"}}}}))
    for name in ("Pinned", "Agnostic"):
        (tmp_path / f"{name}.template.json").write_text(json.dumps({"Resources": {name: {}}}))
    stage = tmp_path / "assembly-Stage"
    stage.mkdir()
    (stage / "manifest.json").write_text(json.dumps({"artifacts": {
        "S.assets": {"type": "cdk:asset-manifest", "properties": {"file": "S.assets.json"}}}}))
    assert cloud_assembly.is_cloud_assembly(tmp_path) and not cloud_assembly.is_cloud_assembly(tmp_path / "none")
    assert [(s.name, t) for s, t in cloud_assembly.stack_templates(tmp_path)] == [
        ("RoadsegPinned", {"Resources": {"Pinned": {}}}), ("Agnostic", {"Resources": {"Agnostic": {}}})]
    assert cloud_assembly.asset_manifests(tmp_path) == [tmp_path / "Agnostic.assets.json", stage / "S.assets.json"]
