"""What `make synth` prints after synthesis: stacks, and the pipelines' derived hyperparameters and gate input."""

from __future__ import annotations

from stacks.checks.summary import main, pipeline_lines, summarize


def test_synth_summary_shows_stacks_derived_hyperparameters_and_the_gates_resolution(synth, capsys):
    env = synth("dev")
    assert [name for name, _ in summarize(env.outdir)] == ["RoadsegDevData", "RoadsegDevInference",
                                                           "RoadsegDevTraining"]
    lines = pipeline_lines(env.outdir)
    cfg = env.config.preprocessing
    assert any("PrepareServingValidation -> CreateCandidateModel" in line for line in lines)
    assert any(line.endswith("EvaluateModel -> IsFirstModel ? (QualityGate ? (ExportModel -> RegisterModel) : "
                             "GateFailed) : (CreateIncumbentModel -> TransformIncumbent -> EvaluateVsIncumbent -> "
                             "QualityGateVsIncumbent ? (ExportModelVsIncumbent -> RegisterModelVsIncumbent) : "
                             "GateFailedVsIncumbent)") for line in lines)
    assert f"  hyperparameters: base_size={max(cfg.target_width, cfg.target_height)}, crop_size=512" in "\n".join(lines)
    assert f"  gate measures at {cfg.target_width}x{cfg.target_height}" in "\n".join(lines)
    assert main([str(env.outdir)]) == 0 and "roadseg-dev-tuning:" in capsys.readouterr().out


def test_summary_without_an_assembly_says_how_to_make_one(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2 and "make synth" in capsys.readouterr().err
