"""The synthesized templates keep the contracts: what each Lambda is configured with parses with the code that reads
it, resources carry the names contracts.naming gives them, and both code assets ship contracts/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from contracts import naming
from contracts.lambda_env import FRAME_PREPARATION_VARIABLES, SERVICE_NAMES, RolloutEnvironment
from envconfig.classes import resolve_scheme
from envconfig.config import available_environments
from segcore.settings import Settings

ENVIRONMENTS = available_environments()
# CDK tokens in the preprocessors' environment (resolved by CloudFormation), replaced by what they resolve to.
TOKEN_SAMPLES = {"INFERENCE_BUCKET": "roadseg-dev-inferencebucket-1a2b3c4d", "MODEL_PACKAGE_VERSION": "7"}
PREPROCESSORS = ("ingest", "postprocess", "realtime")
DRIVES_TABLE = "roadseg-dev-drives"


def functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Handler module -> the function's properties."""
    return {r["Properties"]["Handler"].split(".")[0]: r["Properties"]
            for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::Function"
            and r["Properties"].get("Handler", "").endswith(".handler")}


@pytest.mark.parametrize("env_name", ENVIRONMENTS)
def test_preprocessor_environment_parses_with_the_lambda_settings(synth, env_name: str) -> None:
    env = synth(env_name)
    config, cfg = env.config, env.config.preprocessing
    scheme = resolve_scheme(config)
    by_module = functions(env.template(env.stacks.inference).to_json())
    for module in PREPROCESSORS:
        variables = by_module[module]["Environment"]["Variables"]
        tokens = {name for name, value in variables.items() if not isinstance(value, str)}
        # ingest and postprocess count drive frames in the drives table (a Ref); the real-time front does not.
        counts_drives = module in ("ingest", "postprocess")
        assert tokens == set(TOKEN_SAMPLES) | ({"DRIVES_TABLE"} if counts_drives else set()), module
        settings = Settings.from_env({**variables, **TOKEN_SAMPLES, **({"DRIVES_TABLE": DRIVES_TABLE} if counts_drives
                                                                       else {})})
        assert settings.drives_table == (DRIVES_TABLE if counts_drives else None)
        assert settings.service_name == SERVICE_NAMES[module]
        assert (settings.realtime_endpoint_name, settings.async_endpoint_name) == naming.endpoint_names(config.prefix)
        assert settings.class_names == tuple(scheme.names) and settings.ignore_index == scheme.ignore_index
        assert settings.class_colors == tuple(tuple(c.color) for c in scheme.classes)
        assert settings.target_size == (cfg.target_width, cfg.target_height)
        assert settings.roi == (tuple(cfg.roi) if cfg.roi else None)
        assert settings.key_pattern.pattern == cfg.key_pattern
        assert settings.vru_classes == tuple(scheme.vulnerable_road_users)  # the scheme's, not built-in names
        assert (settings.write_overlay, settings.restore_original_size) == (cfg.write_overlay,
                                                                            cfg.restore_original_size)
        assert settings.require("INFERENCE_BUCKET", "ASYNC_ENDPOINT_NAME", "REALTIME_ENDPOINT_NAME", "CLASS_NAMES")


@pytest.mark.parametrize("env_name", ENVIRONMENTS)
def test_the_gate_prepares_frames_with_the_functions_variables(synth, env_name: str) -> None:
    """PrepareServingValidation's job environment is, variable for variable, the frame preparation the
    preprocessor functions are deployed with (tests/lambda/test_serving_parity.py: same variables, same bytes)."""
    env = synth(env_name)
    by_module = functions(env.template(env.stacks.inference).to_json())
    training = env.template(env.stacks.training).to_json()["Resources"].values()
    pipelines = [r["Properties"] for r in training if r["Type"] == "AWS::SageMaker::Pipeline"]
    assert len(pipelines) == 2
    for pipeline in pipelines:
        body, _ = pipeline["PipelineDefinition"]["PipelineDefinitionBody"]["Fn::Sub"]
        [step] = [s for s in json.loads(body)["Steps"] if s["Name"] == "PrepareServingValidation"]
        gate = step["Arguments"]["Environment"]
        assert set(gate) == set(FRAME_PREPARATION_VARIABLES)
        for module in PREPROCESSORS:
            variables = by_module[module]["Environment"]["Variables"]
            assert gate == {name: variables[name] for name in FRAME_PREPARATION_VARIABLES}, module
    if env.config.preprocessing.roi:  # prod cuts the hood off: the gate scores the same region
        assert gate["ROI"] == ",".join(str(float(v)) for v in env.config.preprocessing.roi)


@pytest.mark.parametrize("env_name", ENVIRONMENTS)
def test_rollout_environment_parses(synth, env_name: str) -> None:
    env = synth(env_name)
    variables = functions(env.template(env.stacks.inference).to_json())["rollout"]["Environment"]["Variables"]
    prefix = env.config.prefix
    assert RolloutEnvironment.from_env(variables) == RolloutEnvironment(
        stack_name=naming.inference_stack_name(prefix), model_package_group=naming.model_package_group_name(prefix),
        parameter_name=naming.MODEL_PACKAGE_PARAMETER, service_name=SERVICE_NAMES["rollout"])


@pytest.mark.parametrize("env_name", ENVIRONMENTS)
def test_resources_carry_their_contract_names(synth, env_name: str) -> None:
    env = synth(env_name)
    prefix, stacks = env.config.prefix, env.stacks
    names = naming.stack_names(prefix)
    assert [s.stack_name for s in stacks.all] == [names[naming.DATA], names[naming.TRAINING], names[naming.INFERENCE]]
    for stack, key in zip(stacks.all, (naming.DATA, naming.TRAINING, naming.INFERENCE)):
        outputs = set(env.template(stack).to_json().get("Outputs", {}))
        assert {k for k, s in naming.OUTPUT_STACKS.items() if s == key} <= outputs, stack.stack_name
    training = env.template(stacks.training).to_json()["Resources"].values()
    assert {r["Properties"]["PipelineName"] for r in training if r["Type"] == "AWS::SageMaker::Pipeline"} == set(
        naming.pipeline_names(prefix))
    assert [r["Properties"]["ModelPackageGroupName"] for r in training
            if r["Type"] == "AWS::SageMaker::ModelPackageGroup"] == [naming.model_package_group_name(prefix)]
    inference = env.template(stacks.inference).to_json()["Resources"]
    endpoints = [r["Properties"] for r in inference.values() if r["Type"] == "AWS::SageMaker::Endpoint"]
    assert {e["EndpointName"] for e in endpoints} == set(naming.endpoint_names(prefix))
    rollback = {inference[a["AlarmName"]["Ref"]]["Properties"]["AlarmName"] for e in endpoints
                for a in e["DeploymentConfig"]["AutoRollbackConfiguration"]["Alarms"]}
    assert rollback == set(naming.rollback_alarm_names(prefix))


EXPORT_REQUIREMENTS = Path(__file__).resolve().parents[2] / "export" / "requirements.txt"


def file_assets(outdir: Path, stack_name: str) -> list[Path]:
    manifest = json.loads((outdir / f"{stack_name}.assets.json").read_text())
    return [outdir / a["source"]["path"] for a in manifest["files"].values() if a["source"]["packaging"] == "zip"]


def test_lambda_code_asset_ships_contracts_next_to_roadseg_lambda(synth) -> None:
    env = synth(ENVIRONMENTS[0])
    # Bundling skipped: the staged source; the drive path's processing package and wheels are the other zips.
    (code,) = [a for a in file_assets(env.outdir, env.stacks.inference.stack_name) if (a / "ingest.py").is_file()]
    for name in ("ingest.py", "rollout.py", "requirements.txt", "segcore/settings.py",
                 "contracts/__init__.py", "contracts/lambda_env.py", "contracts/documents.py", "contracts/layout.py"):
        assert (code / name).is_file(), name


def test_processing_asset_ships_training_roadseg_lambda_and_contracts(synth) -> None:
    env = synth(ENVIRONMENTS[0])
    assets = file_assets(env.outdir, env.stacks.training.stack_name)
    (package,) = [a for a in assets if (a / "training").is_dir()]
    # the export environment's wheels, ExportModel installs them (the job settings asset is the other one)
    (wheels,) = [a for a in assets if a != package and any(a.glob("*.whl"))]
    assert sorted(w.name.split("-")[0] for w in wheels.glob("*.whl")) == sorted(
        line.split("==")[0].replace("-", "_").lower() for line in EXPORT_REQUIREMENTS.read_text().splitlines()
        if line and not line.startswith("#"))
    for name in ("training/__init__.py", "training/evaluate.py", "training/prepare.py", "training/serving.py",
                 "roadseg_lambda/__init__.py", "segcore/imaging.py", "segcore/masks.py",
                 "segcore/settings.py", "contracts/__init__.py", "contracts/documents.py",
                 "contracts/lambda_env.py"):
        assert (package / name).is_file(), name
    assert not (package / "ingest.py").exists() and not (package / "requirements.txt").exists()  # handlers stay out
    assert not list(package.rglob("__pycache__"))
