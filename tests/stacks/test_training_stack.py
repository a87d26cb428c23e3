"""Training stack: pipelines with their definitions, model package group, least-privilege execution role."""

from __future__ import annotations

import json

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template
from pydantic import ValidationError

from contracts.instances import HOSTING_FAMILIES, TRAINING_FAMILIES
from envconfig.classes import resolve_scheme
from envconfig.config import GPU_FAMILIES, ClassesConfig, ConfigError, instance_family, load_config
from stacks.app_builder import build_app, cdk_json_context
from stacks.training_pipelines import ServingContractWarning, pipeline_settings


@pytest.fixture(scope="module", params=["dev", "prod"])
def env(request, synth):
    return synth(request.param)


@pytest.fixture(scope="module")
def template(env):
    return env.template(env.stacks.training)


def substituted_definitions(template) -> dict[str, dict]:
    """Each pipeline's definition with the Fn::Sub placeholders replaced by dummy values, parsed."""
    found = {}
    for props in (r["Properties"] for r in template.find_resources("AWS::SageMaker::Pipeline").values()):
        body, variables = props["PipelineDefinition"]["PipelineDefinitionBody"]["Fn::Sub"]
        for name in variables:
            body = body.replace("${" + name + "}", f"dummy-{name.lower()}")
        assert "${" not in body.replace("${!", ""), "every placeholder must be substituted by the stack"
        found[props["PipelineName"]] = json.loads(body)
    return found


def test_both_pipelines_exist_with_a_definition_for_every_placeholder(env, template):
    definitions = substituted_definitions(template)
    assert set(definitions) == {f"{env.config.prefix}-training", f"{env.config.prefix}-tuning"}
    for definition in definitions.values():
        step_types = {step["Type"] for step in definition["Steps"]}
        assert {"Processing", "Condition"} <= step_types


def test_training_pipeline_steps_in_order(env, template):
    definition = substituted_definitions(template)[f"{env.config.prefix}-training"]
    assert [(step["Name"], step["Type"]) for step in definition["Steps"]] == [
        ("PrepareDataset", "Processing"), ("TrainSegmentation", "Training"),
        ("PrepareServingValidation", "Processing"), ("CreateCandidateModel", "Model"),
        ("TransformValidation", "Transform"), ("EvaluateModel", "Processing"), ("IsFirstModel", "Condition")]
    [condition] = definition["Steps"][-1]["Arguments"]["IfSteps"]  # a first model: today's gate
    assert [(s["Name"], s["Type"]) for s in condition["Arguments"]["IfSteps"]] == [
        ("ExportModel", "Processing"), ("RegisterModel", "RegisterModel")]
    assert [s["Type"] for s in condition["Arguments"]["ElseSteps"]] == ["Fail"]
    # one gate condition for mIoU and one per safety-critical class
    floors = len(env.config.classes.safety_critical_iou_floors)
    assert len(condition["Arguments"]["Conditions"]) == 1 + floors
    # Against an incumbent: the same, plus one regression condition per safety-critical class.
    against = definition["Steps"][-1]["Arguments"]["ElseSteps"][-1]
    assert against["Name"] == "QualityGateVsIncumbent" and len(against["Arguments"]["Conditions"]) == 1 + 2 * floors
    parameters = {p["Name"]: p["DefaultValue"] for p in definition["Parameters"]}
    assert parameters["MaxIoURegression"] == env.config.training.incumbent_tolerance


def test_export_step_gets_the_python_311_image_and_the_shipped_wheels(env, template):
    """The stack fills ExportImage from its Images mapping (PyTorch 2.5 py311) and ExportWheelsUri with the wheel
    asset, which the pipeline role may read; the role may pull the export image."""
    body, variables = next(iter(template.find_resources("AWS::SageMaker::Pipeline").values()))["Properties"][
        "PipelineDefinition"]["PipelineDefinitionBody"]["Fn::Sub"]
    assert variables["ExportImage"] == {"Fn::FindInMap": ["Images", {"Ref": "AWS::Region"}, "Export"]}
    assert "ExportWheelsUri" in variables and "${ExportWheelsUri}" in body and "${ExportImage}" in body
    images = template.to_json()["Mappings"]["Images"]
    assert all(":2.5-cpu-py311" in region["Export"] for region in images.values())
    statements = [s for p in template.find_resources("AWS::IAM::Policy").values()
                  for s in p["Properties"]["PolicyDocument"]["Statement"]]
    (pull,) = [s for s in statements if s.get("Sid") == "PullAlgorithmAndProcessingImages"]
    assert {"Fn::FindInMap": ["Images", {"Ref": "AWS::Region"}, "ExportRepository"]} in pull["Resource"]


def test_training_uses_gpu_instances(env):
    cfg = env.config.training
    for instance_type in (cfg.instance_type, cfg.transform_instance_type):
        assert instance_family(instance_type) in GPU_FAMILIES
    assert instance_family(cfg.instance_type) in TRAINING_FAMILIES
    assert instance_family(cfg.transform_instance_type) in HOSTING_FAMILIES


def hyperparameters_of(definitions: dict[str, dict], prefix: str) -> tuple[dict, dict]:
    train = next(s for s in definitions[f"{prefix}-training"]["Steps"] if s["Name"] == "TrainSegmentation")
    tune = next(s for s in definitions[f"{prefix}-tuning"]["Steps"] if s["Name"] == "TuneSegmentation")
    return train["Arguments"]["HyperParameters"], tune["Arguments"]["TrainingJobDefinition"]["StaticHyperParameters"]


def test_the_definitions_show_the_hyperparameters_derived_from_the_serving_resolution(env, template):
    # dev: g4dn.xlarge (T4 16 GiB), prod: p3.2xlarge (V100 16 GiB); both serve 1024x512.
    assert (env.config.preprocessing.target_width, env.config.preprocessing.target_height) == (1024, 512)
    definitions = substituted_definitions(template)
    train, tune = hyperparameters_of(definitions, env.config.prefix)
    for static in (train, tune):
        assert (static["base_size"], static["crop_size"], static["validation_mini_batch_size"]) == ("1024", "512", "6")
    parameters = {p["Name"]: p for p in definitions[f"{env.config.prefix}-training"]["Parameters"]}
    assert parameters["MiniBatchSize"]["DefaultValue"] == 6  # the training pipeline's mini_batch_size
    ranges = definitions[f"{env.config.prefix}-tuning"]["Steps"]
    tuning = next(s for s in ranges if s["Name"] == "TuneSegmentation")["Arguments"]["HyperParameterTuningJobConfig"]
    batch = next(r for r in tuning["ParameterRanges"]["IntegerParameterRanges"] if r["Name"] == "mini_batch_size")
    assert (batch["MinValue"], batch["MaxValue"]) == ("2", "6")


def test_tuning_never_shares_a_checkpoint_prefix(env, template):
    definitions = substituted_definitions(template)
    tune = next(s for s in definitions[f"{env.config.prefix}-tuning"]["Steps"] if s["Name"] == "TuneSegmentation")
    job = tune["Arguments"]["TrainingJobDefinition"]
    assert "CheckpointConfig" not in job and not job.get("EnableManagedSpotTraining", False)
    train = next(s for s in definitions[f"{env.config.prefix}-training"]["Steps"] if s["Name"] == "TrainSegmentation")
    assert ("CheckpointConfig" in train["Arguments"]) == env.config.training.use_spot_instances


def _with_training(**changes):
    config = load_config("dev")
    return config.model_copy(update={"training": config.training.model_copy(update=changes)})


def test_overrides_that_break_the_serving_contract_win_with_a_warning():
    config = _with_training(hyperparameters={"algorithm": "deeplab", "crop_size": 240, "base_size": 520})
    with pytest.warns(ServingContractWarning) as record:
        settings = pipeline_settings(config, resolve_scheme(config))
    messages = [str(w.message) for w in record]
    assert len(messages) == 2 and all(m.startswith("config/dev.yaml: training.hyperparameters: ") for m in messages)
    assert "base_size 520 is 49% away from the long side of the serving resolution 1024x512" in messages[0]
    assert "crop_size 240 is below 480" in messages[1]
    assert (settings.hyperparameters["crop_size"], settings.hyperparameters["base_size"]) == ("240", "520")
    # The batch sizes follow the smaller crop: 6 x (512/240)^2 on a T4.
    assert settings.hyperparameters["mini_batch_size"] == "27"


def test_overrides_that_keep_the_contract_and_the_shipped_configs_warn_nothing(recwarn):
    for config in (load_config("dev"), load_config("prod"),
                   _with_training(hyperparameters={"crop_size": 480, "mini_batch_size": 4})):
        pipeline_settings(config, resolve_scheme(config))
    assert not [w for w in recwarn if issubclass(w.category, ServingContractWarning)]


@pytest.mark.parametrize(("instance_type", "batch"), [
    ("ml.p2.xlarge", "4"), ("ml.p3.2xlarge", "6"), ("ml.g4dn.2xlarge", "6"), ("ml.g5.2xlarge", "8"),
    ("ml.p3.8xlarge", "24"), ("ml.g5.48xlarge", "64"),
])
def test_batch_size_defaults_per_training_instance(instance_type, batch):
    config = load_config("dev")
    config = config.model_copy(update={"training": type(config.training).model_validate(
        {**config.training.model_dump(), "instance_type": instance_type})})
    settings = pipeline_settings(config, resolve_scheme(config))
    hyperparameters = settings.hyperparameters
    assert hyperparameters["mini_batch_size"] == hyperparameters["validation_mini_batch_size"] == batch


def test_model_package_group(env, template):
    template.has_resource_properties("AWS::SageMaker::ModelPackageGroup",
                                     {"ModelPackageGroupName": f"{env.config.prefix}-segmentation"})


def test_images_are_mapped_per_region(env, template):
    mapping = template.to_json()["Mappings"]
    images = next(iter(mapping.values()))
    regions = [env.config.region] if env.config.region else ["us-east-1", "eu-west-1", "ap-northeast-1"]
    for region in regions:
        assert images[region]["Algorithm"].endswith(".amazonaws.com/semantic-segmentation:1")
        assert "pytorch-training" in images[region]["Processing"]


def role_statements(template) -> list[dict]:
    statements = []
    for policy in template.find_resources("AWS::IAM::Policy").values():
        statements += policy["Properties"]["PolicyDocument"]["Statement"]
    return statements


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


READ_ONLY_ON_STAR = {"ecr:GetAuthorizationToken", "cloudwatch:PutMetricData"}


def test_execution_role_has_no_wildcard_write_on_star(template):
    for statement in role_statements(template):
        if "*" in as_list(statement["Resource"]):
            assert set(as_list(statement["Action"])) <= READ_ONLY_ON_STAR, statement
        assert all(not action.endswith(":*") for action in as_list(statement["Action"])), statement


def test_execution_role_has_no_full_access_managed_policy(template):
    for role in template.find_resources("AWS::IAM::Role").values():
        assert "AmazonSageMakerFullAccess" not in json.dumps(role.get("Properties", {}).get("ManagedPolicyArns", []))


def test_pass_role_is_limited_to_sagemaker(template):
    passes = [s for s in role_statements(template) if "iam:PassRole" in as_list(s["Action"])]
    assert passes and all(s["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
                          for s in passes)


def test_custom_scheme_reaches_the_pipelines_with_its_classes():
    config = load_config("dev").model_copy(update={"classes": ClassesConfig(
        scheme="custom", custom=[{"name": "road", "color": [1, 2, 3]}, {"name": "curb", "color": [4, 5, 6]}],
        safety_critical_iou_floors={"curb": 0.3})})
    settings = pipeline_settings(config, resolve_scheme(config))
    assert settings.num_classes == 2 and settings.hyperparameters["num_classes"] == "2"
    assert json.loads(settings.custom_classes_json) == [{"name": "road", "color": [1, 2, 3]},
                                                         {"name": "curb", "color": [4, 5, 6]}]


def test_safety_floor_for_a_class_outside_the_scheme_fails_with_the_allowed_names():
    message = r"\['person'\] are not classes of the 'camvid' scheme \(allowed: sky"
    with pytest.raises(ValidationError, match=message):  # when the config is validated (load_config: ConfigError)
        ClassesConfig(scheme="camvid", safety_critical_iou_floors={"person": 0.5})
    # A config assembled in code without validation is still caught at synth.
    unvalidated = ClassesConfig.model_construct(scheme="camvid", custom=None,
                                                safety_critical_iou_floors={"person": 0.5})
    config = load_config("dev").model_copy(update={"classes": unvalidated})
    with pytest.raises(ConfigError, match=message):
        resolve_scheme(config)


@pytest.fixture(scope="module")
def camvid_only(tmp_path_factory):
    """An environment whose config names nothing but its prefix and `classes: {scheme: camvid}`, synthesized."""
    config_dir = tmp_path_factory.mktemp("camvid-config")
    (config_dir / "dev.yaml").write_text("prefix: roadseg-camvid\nclasses:\n  scheme: camvid\n")
    config = load_config("dev", config_dir)
    outdir = tmp_path_factory.mktemp("cdk-camvid")
    app = cdk.App(outdir=str(outdir), context={**cdk_json_context(), "env": "dev", "aws:cdk:bundling-stacks": [],
                                                "aws:cdk:disable-asset-staging": True})
    app, stacks = build_app(config, app)
    app.synth()
    template = Template.from_json(json.loads((outdir / stacks.training.template_file).read_text()))
    return config, substituted_definitions(template)


def test_camvid_only_config_synthesizes_with_camvid_safety_floors(camvid_only):
    config, definitions = camvid_only
    assert config.classes.safety_critical_iou_floors == {"pedestrian": 0.5, "bicyclist": 0.4}
    assert set(definitions) == {"roadseg-camvid-training", "roadseg-camvid-tuning"}
    for definition in definitions.values():
        parameters = {p["Name"]: p for p in definition["Parameters"]}
        floors = {name: p["DefaultValue"] for name, p in parameters.items() if name.startswith("MinIoU")}
        assert floors == {"MinIoUPedestrian": 0.5, "MinIoUBicyclist": 0.4}
        assert parameters["MinMIoU"]["DefaultValue"] == config.training.min_miou
        gate = next(step for step in definition["Steps"] if step["Name"] == "IsFirstModel")["Arguments"]["IfSteps"][0]
        pairs = [(c["LeftValue"]["Std:JsonGet"]["Path"], c["RightValue"]) for c in gate["Arguments"]["Conditions"]]
        assert pairs == [("gate.mIoU", {"Get": "Parameters.MinMIoU"}),
                         ("gate.pedestrian", {"Get": "Parameters.MinIoUPedestrian"}),
                         ("gate.bicyclist", {"Get": "Parameters.MinIoUBicyclist"})]
        evaluate = next(step for step in definition["Steps"] if step["Name"] == "EvaluateModel")
        arguments = evaluate["Arguments"]["AppSpecification"]["ContainerArguments"]
        assert arguments[arguments.index("--scheme") + 1] == "camvid"


def test_explicit_safety_floors_override_the_scheme_defaults():
    config = load_config("dev").model_copy(update={"classes": ClassesConfig(
        scheme="camvid", safety_critical_iou_floors={"pedestrian": 0.7})})
    settings = pipeline_settings(config, resolve_scheme(config))
    assert dict(settings.safety_iou_floors) == {"pedestrian": 0.7}
    assert dict(load_config("prod").classes.safety_critical_iou_floors) == {
        "person": 0.6, "rider": 0.45, "bicycle": 0.5, "motorcycle": 0.4}


def test_custom_scheme_without_floors_gates_on_miou_only_when_it_says_so():
    custom = [{"name": "road", "color": [1, 2, 3]}, {"name": "walker", "color": [4, 5, 6], "vulnerable": True}]
    with pytest.raises(ValidationError, match=r"scheme 'custom' has no default safety floors.*\{walker: 0.5\}"):
        ClassesConfig(scheme="custom", custom=custom)
    config = load_config("dev").model_copy(update={"classes": ClassesConfig(
        scheme="custom", custom=custom, safety_critical_iou_floors={})})
    scheme = resolve_scheme(config)
    assert scheme.vulnerable_road_users == ("walker",)
    assert dict(pipeline_settings(config, scheme).safety_iou_floors) == {}
