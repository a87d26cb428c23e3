"""What `make synth` prints: one line per synthesized stack (name, resource count), then per pipeline its steps,
the training hyperparameters derived from the serving resolution, and the resolution the gate measures at:
`python -m stacks.checks.summary cdk.out`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from contracts import cloud_assembly


def summarize(outdir: Path) -> list[tuple[str, int]]:
    """(artifact id, resource count) of each stack, by artifact id."""
    return sorted((stack.artifact_id, len(template.get("Resources", {})))
                  for stack, template in cloud_assembly.stack_templates(outdir))


def pipeline_lines(outdir: Path) -> list[str]:
    """Steps, derived hyperparameters and the gate's serving resolution of each pipeline definition."""
    lines = []
    for _, template in cloud_assembly.stack_templates(outdir):
        for resource in template.get("Resources", {}).values():
            if resource.get("Type") != "AWS::SageMaker::Pipeline":
                continue
            body = resource["Properties"]["PipelineDefinition"]["PipelineDefinitionBody"]
            definition = json.loads(body["Fn::Sub"][0] if isinstance(body, dict) else body)
            name = resource["Properties"].get("PipelineName", "?")
            steps = {step["Name"]: step for step in definition.get("Steps", [])}
            defaults = {p["Name"]: p.get("DefaultValue") for p in definition.get("Parameters", [])}
            lines.append(f"{name}: {' -> '.join(_with_branches(steps.values()))}")
            arguments = next((s["Arguments"] for s in steps.values() if s["Type"] in ("Training", "Tuning")), {})
            static = arguments.get("HyperParameters") or arguments.get("TrainingJobDefinition", {}).get(
                "StaticHyperParameters", {})
            derived = {k: static[k] for k in ("base_size", "crop_size", "validation_mini_batch_size") if k in static}
            if "MiniBatchSize" in defaults:
                derived["mini_batch_size"] = defaults["MiniBatchSize"]
            lines.append("  hyperparameters: " + ", ".join(f"{k}={v}" for k, v in derived.items()))
            serving = steps.get("PrepareServingValidation", {}).get("Arguments", {}).get("Environment", {})
            if serving:
                roi = serving.get("ROI") or "whole frame"
                lines.append(f"  gate measures at {serving.get('TARGET_WIDTH')}x{serving.get('TARGET_HEIGHT')} "
                             f"(ROI {roi}, JPEG quality {serving.get('JPEG_QUALITY')}), as ingest sends")
    return lines


def _with_branches(steps) -> list[str]:
    """Step names in order; a condition shows its branches, nested ones in brackets:
    ``IsFirstModel ? (QualityGate ? (ExportModel -> RegisterModel) : GateFailed) : (CreateIncumbentModel -> ...)``."""
    names = []
    for step in steps:
        if step.get("Type") != "Condition":
            names.append(step["Name"])
            continue
        passed = " -> ".join(_with_branches(step["Arguments"].get("IfSteps", [])))
        failed = " -> ".join(_with_branches(step["Arguments"].get("ElseSteps", [])))
        if len(step["Arguments"].get("ElseSteps", [])) > 1:
            failed = f"({failed})"
        names.append(f"{step['Name']} ? ({passed}) : {failed}")
    return names


def main(argv: list[str]) -> int:
    outdir = Path(argv[0] if argv else "cdk.out")
    if not cloud_assembly.is_cloud_assembly(outdir):
        print(f"no cloud assembly in {outdir}: run `make synth` first", file=sys.stderr)
        return 2
    for name, count in summarize(outdir):
        print(f"{name:<40} {count:>4} resources")
    for line in pipeline_lines(outdir):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
