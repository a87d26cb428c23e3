"""Class (a), limits, for the delivery assembly: what each CodePipeline CloudFormation action receives.

CDK Pipelines hands every CloudFormation deploy action the Synth step's primary output, the whole cloud assembly
directory (``cdk.out``) with every staged asset in it; CodePipeline accepts input artifacts of at most 256 MB for
CloudFormation actions (CODEPIPELINE_QUOTAS_DOC; aws-cdk#21325, #9917). The wheelhouses alone are ~390 MB, so the
Synth step ends with ``python -m stacks.delivery.large_assets cdk.out`` (STRIP_MODULE): it publishes every staged
file asset of at least STRIP_THRESHOLD_BYTES to its destinations (as cdk-assets would) and deletes it from there.
The Assets wave then finds those objects already published and skips them without reading their sources (cdk-assets
lists the destination before it packages the source).

The rule (registered: ``make synth`` runs it with the others) measures what remains: the directory's bytes, less
the large staged assets, which count as absent only where the step producing the action's input artifact ends with
the strip command (its CodeBuild project's buildspec says so). What it cannot
know offline: the zipped size (it counts uncompressed bytes, an upper bound, as the wheels barely compress) and
whether the publish succeeds at run time; the strip step itself re-measures the directory after stripping and fails
above the limit.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from contracts import cloud_assembly
from stacks.checks.service_contracts.assembly import Assembly, Resource
from stacks.checks.service_contracts.rules import Context, Violation, rule

CODEPIPELINE_QUOTAS_DOC = "https://docs.aws.amazon.com/codepipeline/latest/userguide/limits.html"
CLOUDFORMATION_INPUT_ARTIFACT_LIMIT = 256 * 1024 * 1024
# Staged file assets this large are published by the Synth step and stripped from its output: the two wheelhouses
# (~212 and ~174 MB) and the bundled rollout function (~100 MB); what stays is templates and small code (~2 MB).
STRIP_THRESHOLD_BYTES = 32 * 1024 * 1024
STRIP_MODULE = "stacks.delivery.large_assets"
NAME = "codepipeline-cloudformation-input-artifact-size"


def directory_bytes(directory: Path) -> int:
    """Bytes of every file under ``directory`` (uncompressed: an upper bound of the zipped artifact, as the
    wheelhouses' wheels are already compressed and barely shrink)."""
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file() and not p.is_symlink())


def source_bytes(path: Path) -> int:
    return directory_bytes(path) if path.is_dir() else path.stat().st_size


@dataclass(frozen=True)
class StagedFileAsset:
    """A file asset of one asset manifest whose source was staged into the assembly directory."""

    manifest: Path  # the *.assets.json naming it (cdk-assets --path)
    asset_id: str
    source: Path  # resolved: <outdir>/asset.<hash>[.ext]
    destinations: tuple[str, ...]
    size: int

    @property
    def selectors(self) -> list[str]:
        """``<asset id>:<destination id>``, as ``cdk-assets publish`` and CDK Pipelines' Assets wave select them."""
        return [f"{self.asset_id}:{destination}" for destination in self.destinations]


def staged_file_assets(outdir: Path) -> list[StagedFileAsset]:
    """Every file asset whose source is an ``asset.*`` entry directly in ``outdir`` (nested stages stage theirs in
    the top directory, ``../asset.<hash>``). Templates (also file assets) and sources left outside (asset staging
    disabled) are never among them."""
    root = outdir.resolve()
    found = []
    for manifest in cloud_assembly.asset_manifests(outdir):
        for asset_id, entry in json.loads(manifest.read_text()).get("files", {}).items():
            path = (entry.get("source") or {}).get("path")
            if not path:
                continue  # built by an executable: nothing staged
            source = (manifest.parent / path).resolve()
            if source.parent != root or not source.name.startswith("asset.") or not source.exists():
                continue
            found.append(StagedFileAsset(manifest, asset_id, source, tuple(entry.get("destinations", {})),
                                         source_bytes(source)))
    return found


def large_file_assets(outdir: Path, threshold: int = STRIP_THRESHOLD_BYTES) -> list[StagedFileAsset]:
    """The staged file assets the Synth step publishes and strips (at least ``threshold`` bytes)."""
    return [asset for asset in staged_file_assets(outdir) if asset.size >= threshold]


def remaining_bytes(outdir: Path, stripped: list[StagedFileAsset]) -> int:
    """The directory's bytes without the sources of ``stripped`` (each counted once: stages share sources)."""
    gone = {asset.source: asset.size for asset in stripped}
    return directory_bytes(outdir) - sum(gone.values())


# -- the rule ---------------------------------------------------------------------------------------------------------

def _pipeline_actions(pipeline: Resource) -> Iterator[tuple[str, dict]]:
    for stage in pipeline.properties.get("Stages", []):
        for action in stage.get("Actions", []):
            yield stage["Name"], action


def _build_commands(project: Resource | None) -> list[str]:
    """The build-phase commands of a CodeBuild project's inline buildspec ([] if none or unreadable)."""
    spec = ((project.properties.get("Source") or {}).get("BuildSpec") if project else None)
    try:
        parsed = json.loads(spec) if isinstance(spec, str) else None
    except ValueError:
        return []
    commands = (((parsed or {}).get("phases") or {}).get("build") or {}).get("commands") or []
    return [c for c in commands if isinstance(c, str)]


def strips_large_assets(assembly: Assembly, pipeline: Resource, artifact: str) -> bool:
    """Does the action producing ``artifact`` end with the strip command (last build command, so that nothing
    writes the directory after it)?"""
    for _, action in _pipeline_actions(pipeline):
        if artifact in [o.get("Name") for o in action.get("OutputArtifacts", [])]:
            project = assembly.target(pipeline.stack, (action.get("Configuration") or {}).get("ProjectName"),
                                      "AWS::CodeBuild::Project")
            commands = _build_commands(project)
            return bool(commands) and f"-m {STRIP_MODULE}" in commands[-1]
    return False


def input_artifact_violations(assembly: Assembly, limit: int = CLOUDFORMATION_INPUT_ARTIFACT_LIMIT
                              ) -> Iterator[Violation]:
    """A violation per CloudFormation action whose input artifact (the Synth output: the assembly directory, as CDK
    Pipelines builds it, less what its producer strips) exceeds ``limit``."""
    outdir = assembly.directory
    if outdir is None:
        return  # built from templates alone: no directory to measure
    sizes: dict[bool, int] = {}
    for pipeline in assembly.resources("AWS::CodePipeline::Pipeline"):
        for stage, action in _pipeline_actions(pipeline):
            if (action.get("ActionTypeId") or {}).get("Provider") != "CloudFormation":
                continue
            for artifact in [a["Name"] for a in action.get("InputArtifacts", [])]:
                strips = strips_large_assets(assembly, pipeline, artifact)
                if strips not in sizes:
                    sizes[strips] = remaining_bytes(outdir, large_file_assets(outdir) if strips else [])
                if sizes[strips] <= limit:
                    continue
                what = ("the synthesized assembly less the assets its Synth step strips" if strips else
                        f"the synthesized assembly (its producer does not end with `python -m {STRIP_MODULE}`)")
                yield Violation(NAME, f"{pipeline.stack}/{stage}/{action['Name']}",
                                f"its input artifact {artifact} is {what}, {sizes[strips] / 2**20:.0f} MiB "
                                f"(limit {limit / 2**20:.0f} MiB): the deploy action fails", CODEPIPELINE_QUOTAS_DOC)


@rule(NAME)
def cloudformation_input_artifacts_within_limit(assembly: Assembly, context: Context) -> Iterator[Violation]:
    yield from input_artifact_violations(assembly)


def check_directory(outdir: Path, limit: int = CLOUDFORMATION_INPUT_ARTIFACT_LIMIT) -> list[Violation]:
    return list(input_artifact_violations(Assembly.from_directory(outdir), limit))

