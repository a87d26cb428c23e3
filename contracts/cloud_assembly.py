"""Reading a cloud assembly (what ``cdk synth`` writes to cdk.out): its manifest, its stacks' templates, the
bootstrap versions its artifacts require and its asset manifests.

The one reader of the format for both sides of the synth: the checks that run over it (stacks/checks: the summary,
the integration contracts, the delivery Synth step's asset stripping) and the operator's preflight
(roadseg/preflight/assembly.py), which may not import stacks/. Standard library only.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MANIFEST = "manifest.json"
STACK_ARTIFACT = "aws:cloudformation:stack"
ASSET_MANIFEST_ARTIFACT = "cdk:asset-manifest"
NESTED_ASSEMBLY_ARTIFACT = "cdk:cloud-assembly"  # a CDK Pipelines stage, in a directory of its own


@dataclass(frozen=True)
class StackArtifact:
    """One stack of the manifest. ``environment``: (account, region) of a stack synthesized for a pinned
    environment (its template carries literal ARNs), None for an environment-agnostic one."""

    artifact_id: str
    name: str  # the CloudFormation stack name
    template_file: str  # relative to the assembly directory
    environment: tuple[str, str] | None


def is_cloud_assembly(directory: Path) -> bool:
    return (directory / MANIFEST).is_file()


def read_manifest(directory: Path) -> dict:
    return json.loads((directory / MANIFEST).read_text())


def stack_artifacts(manifest: dict) -> list[StackArtifact]:
    """The stacks of a manifest, in its order."""
    found = []
    for artifact_id, artifact in (manifest.get("artifacts") or {}).items():
        if artifact.get("type") != STACK_ARTIFACT:
            continue
        props = artifact.get("properties") or {}
        account, _, region = (artifact.get("environment") or "").removeprefix("aws://").partition("/")
        pinned = account.isdigit() and not region.startswith("unknown")
        found.append(StackArtifact(artifact_id, props.get("stackName") or artifact_id, props["templateFile"],
                                   (account, region) if pinned else None))
    return found


def read_template(directory: Path, stack: StackArtifact) -> dict:
    return json.loads((directory / stack.template_file).read_text())


def stack_templates(directory: Path) -> Iterator[tuple[StackArtifact, dict]]:
    """Each stack of the assembly at ``directory`` with its template, in the manifest's order."""
    for stack in stack_artifacts(read_manifest(directory)):
        yield stack, read_template(directory, stack)


def bootstrap_requirements(manifest: dict, default_parameter: str) -> dict[str, int]:
    """SSM parameter holding a bootstrap stack's version -> the highest version any stack or asset manifest
    requires (``default_parameter`` where an artifact names none)."""
    required: dict[str, int] = {}
    for artifact in (manifest.get("artifacts") or {}).values():
        props = artifact.get("properties") or {}
        if artifact.get("type") not in (STACK_ARTIFACT, ASSET_MANIFEST_ARTIFACT):
            continue
        version = props.get("requiresBootstrapStackVersion")
        if version is not None:
            parameter = props.get("bootstrapStackVersionSsmParameter") or default_parameter
            required[parameter] = max(required.get(parameter, 0), int(version))
    return required


def asset_manifests(directory: Path) -> list[Path]:
    """The asset manifests of the assembly at ``directory`` and of its nested assemblies (the pipeline's stages)."""
    found = []
    for artifact in read_manifest(directory).get("artifacts", {}).values():
        properties = artifact.get("properties") or {}
        if artifact.get("type") == ASSET_MANIFEST_ARTIFACT:
            found.append(directory / properties["file"])
        elif artifact.get("type") == NESTED_ASSEMBLY_ARTIFACT:
            found += asset_manifests(directory / properties["directoryName"])
    return found
