"""Class (a), limits, for the delivery assembly: what each CodePipeline CloudFormation action receives.

CDK Pipelines hands every CloudFormation deploy action the Synth step's primary output, the whole cloud assembly
directory (``cdk.out``) with every staged asset in it; CodePipeline accepts input artifacts of at most 256 MB for
CloudFormation actions (CODEPIPELINE_QUOTAS_DOC; aws-cdk#21325, #9917). The check needs the directory, which
:class:`~stacks.service_contracts.assembly.Assembly` does not keep, so it is a function over the directory
(``python -m stacks.service_contracts.delivery cdk.out``) rather than a registered rule.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from stacks.service_contracts.rules import Violation

CODEPIPELINE_QUOTAS_DOC = "https://docs.aws.amazon.com/codepipeline/latest/userguide/limits.html"
CLOUDFORMATION_INPUT_ARTIFACT_LIMIT = 256 * 1024 * 1024
NAME = "codepipeline-cloudformation-input-artifact-size"


def directory_bytes(directory: Path) -> int:
    """Bytes of every file under ``directory`` (uncompressed: an upper bound of the zipped artifact, as the
    wheelhouses' wheels are already compressed and barely shrink)."""
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file() and not p.is_symlink())


def cloudformation_input_artifacts(outdir: Path) -> list[tuple[str, str, str]]:
    """(pipeline stack, stage/action, input artifact) of every CloudFormation action of the pipelines in the
    assembly at ``outdir``."""
    manifest = json.loads((outdir / "manifest.json").read_text())
    found = []
    for name, artifact in manifest["artifacts"].items():
        if artifact.get("type") != "aws:cloudformation:stack":
            continue
        template = json.loads((outdir / artifact["properties"]["templateFile"]).read_text())
        for resource in template.get("Resources", {}).values():
            if resource.get("Type") != "AWS::CodePipeline::Pipeline":
                continue
            for stage in resource["Properties"].get("Stages", []):
                for action in stage.get("Actions", []):
                    if (action.get("ActionTypeId") or {}).get("Provider") == "CloudFormation":
                        for input_artifact in action.get("InputArtifacts", []):
                            found.append((name, f"{stage['Name']}/{action['Name']}", input_artifact["Name"]))
    return found


def check_directory(outdir: Path, limit: int = CLOUDFORMATION_INPUT_ARTIFACT_LIMIT) -> list[Violation]:
    """A violation per CloudFormation action whose input artifact (the Synth output: this whole directory, as CDK
    Pipelines builds it) exceeds ``limit``."""
    actions = cloudformation_input_artifacts(outdir)
    if not actions:
        return []
    size = directory_bytes(outdir)
    if size <= limit:
        return []
    return [Violation(NAME, f"{stack}/{action}", f"its input artifact {artifact} is the synthesized assembly, "
                      f"{size / 2**20:.0f} MiB (limit {limit / 2**20:.0f} MiB): the deploy action fails",
                      CODEPIPELINE_QUOTAS_DOC)
            for stack, action, artifact in actions]


def main(argv: list[str] | None = None) -> int:
    outdir = Path((argv or sys.argv[1:] or ["cdk.out"])[0])
    violations = check_directory(outdir)
    for violation in violations:
        print(violation)
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
