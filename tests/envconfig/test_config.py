"""Configuration: every environment loads, and bad values fail with one message naming file, key, allowed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

import contracts.instances
import envconfig.config
from contracts.instances import HOSTING_FAMILIES, TRAINING_FAMILIES, instance_family
from envconfig.config import CONFIG_DIR, ConfigError, available_environments, load_config
from segcore.classes import scheme_from_config

TWO_CUSTOM = [{"name": "road", "color": [1, 2, 3]}, {"name": "walker", "color": [4, 5, 6]}]


def write_env(tmp_path: Path, name: str, changes: dict) -> Path:
    data = yaml.safe_load((CONFIG_DIR / "dev.yaml").read_text())
    for dotted, value in changes.items():
        node = data
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(data))
    return tmp_path


def test_every_environment_loads():
    assert {"dev", "prod"} <= set(available_environments())
    for env in available_environments():
        assert load_config(env).name == env


def test_prod_retains_and_dev_destroys():
    dev, prod = load_config("dev"), load_config("prod")
    assert not dev.retain and prod.retain
    assert dev.account is None and dev.region is None  # env-agnostic synth
    assert prod.account and prod.region
    assert prod.realtime_endpoint.data_capture.enabled and not dev.realtime_endpoint.data_capture.enabled


@pytest.mark.parametrize(
    ("changes", "key", "expected"),
    [
        ({"training.instance_type": "p3.2xlarge"}, "training.instance_type", "ml.<family>.<size>"),
        ({"realtime_endpoint.instance_type": "ml.m5.xlarge"}, "realtime_endpoint.instance_type", "has no GPU"),
        ({"async_endpoint.max_capacity": -1}, "async_endpoint.max_capacity", "greater than or equal to 0"),
        ({"async_endpoint.min_capacity": 3, "async_endpoint.max_capacity": 2}, "async_endpoint",
         "min_capacity (3) must be <= max_capacity (2)"),
        ({"removal_policy": "keep"}, "removal_policy", "'destroy' or 'retain'"),
        ({"trainning": {}}, "trainning", "unknown key"),
        ({"training.tuning.max_parallel_jobs": 9, "training.tuning.max_jobs": 4}, "training.tuning",
         "max_parallel_jobs (9) must be <= max_jobs (4)"),
        ({"classes.scheme": "custom", "classes.custom": [{"name": "road", "color": [1, 2, 3]}]}, "classes",
         "num_classes must be within 2..254"),
        ({"classes.scheme": "custom", "classes.custom": [{"name": f"c{i}", "color": [0, 0, 0]} for i in range(255)]},
         "classes", "num_classes must be within 2..254"),
        ({"classes.scheme": "kitti"}, "classes.scheme", "'cityscapes', 'camvid' or 'custom'"),
        ({"classes.scheme": "custom", "classes.custom": TWO_CUSTOM}, "classes",
         "scheme 'custom' has no default safety floors: set classes.safety_critical_iou_floors"),
        ({"classes.scheme": "camvid", "classes.safety_critical_iou_floors": {"person": 0.5}}, "classes",
         "['person'] are not classes of the 'camvid' scheme (allowed: sky, building"),
        ({"classes.safety_critical_iou_floors": {"person": 1.5}}, "classes.safety_critical_iou_floors.person",
         "less than or equal to 1"),
        ({"classes.scheme": "custom", "classes.safety_critical_iou_floors": {},
          "classes.custom": [{**TWO_CUSTOM[0], "vulnerable": "maybe"}, TWO_CUSTOM[1]]}, "classes.custom.0.vulnerable",
         "valid boolean"),
        ({"preprocessing.roi": [0, 0, 1.2, 0.5]}, "preprocessing.roi", "fractions of the frame"),
        ({"preprocessing.key_pattern": "^(?P<vehicle>.+)$"}, "preprocessing.key_pattern", "named groups"),
    ],
)
def test_invalid_values_name_file_key_and_allowed(tmp_path, changes, key, expected):
    config_dir = write_env(tmp_path, "dev", changes)
    with pytest.raises(ConfigError) as excinfo:
        load_config("dev", config_dir)
    message = str(excinfo.value)
    assert str(config_dir / "dev.yaml") in message
    assert f": {key}:" in message
    assert expected in message


def test_unknown_environment_lists_available(tmp_path):
    shutil.copy(CONFIG_DIR / "dev.yaml", tmp_path / "dev.yaml")
    with pytest.raises(ConfigError, match=r"environment 'staging'.*available: dev"):
        load_config("staging", tmp_path)


def test_non_dev_environment_must_pin_account_and_region(tmp_path):
    config_dir = write_env(tmp_path, "qa", {"name": "qa"})
    with pytest.raises(ConfigError, match="environment 'qa' must pin 'account' and 'region'"):
        load_config("qa", config_dir)


def test_broken_yaml_is_reported_with_the_file(tmp_path):
    (tmp_path / "dev.yaml").write_text("prefix: [unclosed\n")
    with pytest.raises(ConfigError, match=r"dev\.yaml:\d+:\d+: not valid YAML"):
        load_config("dev", tmp_path)


@pytest.mark.parametrize(
    ("classes", "floors"),
    [
        ({"scheme": "cityscapes"}, {"person": 0.5, "rider": 0.4, "bicycle": 0.4, "motorcycle": 0.3}),
        ({"scheme": "camvid"}, {"pedestrian": 0.5, "bicyclist": 0.4}),
        ({"scheme": "camvid", "safety_critical_iou_floors": None}, {"pedestrian": 0.5, "bicyclist": 0.4}),
        ({"scheme": "camvid", "safety_critical_iou_floors": {"bicyclist": 0.6}}, {"bicyclist": 0.6}),
        ({"scheme": "custom", "custom": TWO_CUSTOM, "safety_critical_iou_floors": {}}, {}),
        ({"scheme": "custom", "custom": TWO_CUSTOM, "safety_critical_iou_floors": {"walker": 0.45}}, {"walker": 0.45}),
    ],
    ids=["cityscapes-defaults", "camvid-defaults", "null-is-defaults", "explicit-wins", "custom-none", "custom"],
)
def test_safety_floors_default_to_the_schemes_and_explicit_ones_win(tmp_path, classes, floors):
    (tmp_path / "dev.yaml").write_text(yaml.safe_dump({"prefix": "roadseg-dev", "classes": classes}))
    assert load_config("dev", tmp_path).classes.safety_critical_iou_floors == floors


def test_custom_classes_flag_their_vulnerable_road_users(tmp_path):
    custom = [TWO_CUSTOM[0], {**TWO_CUSTOM[1], "vulnerable": True}]
    config_dir = write_env(tmp_path, "dev", {"classes.scheme": "custom", "classes.custom": custom,
                                             "classes.safety_critical_iou_floors": {"walker": 0.5}})
    classes = load_config("dev", config_dir).classes
    assert [c.vulnerable for c in classes.custom] == [False, True]
    assert scheme_from_config(classes).vulnerable_road_users == ("walker",)


def test_instance_families_are_the_ones_of_training_instances():
    assert envconfig.config.GPU_FAMILIES is contracts.instances.GPU_FAMILIES
    assert envconfig.config.NVME_FAMILIES is contracts.instances.NVME_FAMILIES
    assert envconfig.config.instance_family is contracts.instances.instance_family


DOCS = "https://docs.aws.amazon.com/sagemaker/latest/dg/semantic-segmentation.html#semantic-segmentation-instances"


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        # Training: GPU only, the families the algorithm's page names (P2, P3, G4dn, G5).
        ("training.instance_type", "ml.m5.xlarge", "'ml.m5.xlarge' has no GPU: use one of the families p2, p3, g4dn, "
                                                   "g5, the GPU families the Semantic Segmentation algorithm "
                                                   "documents for training"),
        ("training.instance_type", "ml.p4d.24xlarge", "'ml.p4d.24xlarge': the Semantic Segmentation algorithm does "
                                                      "not document p4d for training: use one of the families p2, p3, "
                                                      "g4dn, g5"),
        ("training.instance_type", "ml.g6.xlarge", "does not document g6 for training"),
        ("training.instance_type", "ml.p3dn.24xlarge", "does not document p3dn for training"),
        # Hosting (endpoints and the validation transform): the documented GPU inference families (P3, G4dn).
        ("realtime_endpoint.instance_type", "ml.m5.xlarge", "'ml.m5.xlarge' has no GPU: use one of the families p3, "
                                                            "g4dn, the GPU families the Semantic Segmentation "
                                                            "algorithm documents for inference (CPU c5, m5 is "
                                                            "documented too, but roadseg hosts on GPUs by design)"),
        ("realtime_endpoint.instance_type", "ml.g5.xlarge", "does not document g5 for inference: use one of the "
                                                            "families p3, g4dn"),
        ("async_endpoint.instance_type", "ml.c5.2xlarge", "has no GPU: use one of the families p3, g4dn"),
        ("async_endpoint.instance_type", "ml.g6e.xlarge", "does not document g6e for inference"),
        ("training.transform_instance_type", "ml.p2.xlarge", "does not document p2 for inference"),
        ("training.transform_instance_type", "ml.m5.xlarge", "has no GPU: use one of the families p3, g4dn"),
    ],
)
def test_instance_matrix_allows_only_the_families_the_algorithm_documents(tmp_path, key, value, expected):
    config_dir = write_env(tmp_path, "dev", {key: value})
    with pytest.raises(ConfigError) as excinfo:
        load_config("dev", config_dir)
    message = str(excinfo.value)
    assert f"{config_dir / 'dev.yaml'}: {key}: " in message
    assert expected in message and DOCS in message


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("training.instance_type", "ml.p2.xlarge"),
        ("training.instance_type", "ml.p3.16xlarge"),
        ("training.instance_type", "ml.g4dn.12xlarge"),
        ("training.instance_type", "ml.g5.48xlarge"),
        ("training.transform_instance_type", "ml.p3.2xlarge"),
        ("realtime_endpoint.instance_type", "ml.g4dn.2xlarge"),
        ("async_endpoint.instance_type", "ml.p3.2xlarge"),
    ],
)
def test_instance_matrix_accepts_the_documented_families(tmp_path, key, value):
    config = load_config("dev", write_env(tmp_path, "dev", {key: value}))
    node = config
    for part in key.split("."):
        node = getattr(node, part)
    assert node == value


def test_shipped_environments_are_inside_the_instance_matrix():
    for env in available_environments():
        config = load_config(env)
        assert instance_family(config.training.instance_type) in TRAINING_FAMILIES
        for instance_type in (config.training.transform_instance_type, config.realtime_endpoint.instance_type,
                              config.async_endpoint.instance_type):
            assert instance_family(instance_type) in HOSTING_FAMILIES


# -- drives: (stacks/drive_processing.py) ---------------------------------------------------------------------------


def test_drives_defaults_synthesize_and_scene_thresholds_become_builder_options(tmp_path):
    drives = load_config("dev").drives
    assert drives.cameras == {} and drives.extraction_max_instances >= 1
    assert drives.scenes.builder_arguments() == {}
    config = load_config("dev", write_env(tmp_path, "dev", {
        "drives.cameras": {"/camera/front/image_raw": "front"}, "drives.rate_hz": 10,
        "drives.scenes": {"collapse_below": 0.25, "min_frames": 3, "min_duration_s": 0.5}}))
    assert config.drives.cameras == {"/camera/front/image_raw": "front"}
    assert config.drives.scenes.builder_arguments() == {"--collapse-below": "0.25", "--min-frames": "3",
                                                        "--min-duration": "0.5"}


@pytest.mark.parametrize(("changes", "expected"), [
    ({"drives.cameras": {"camera/front": "front"}}, "must be a ROS topic name starting with '/'"),
    ({"drives.cameras": {"/a": "front/left"}}, "camera name 'front/left'"),
    ({"drives.cameras": {"/a": "front", "/b": "front"}}, "each camera name at most once"),
    ({"drives.extraction_instance_type": "m5.xlarge"}, "is not a SageMaker instance type"),
    ({"drives.extraction_max_instances": 0}, "drives.extraction_max_instances"),
    ({"drives.rate_hz": 0}, "drives.rate_hz"),
    ({"drives.scenes": {"collapse_below": 2}}, "drives.scenes.collapse_below"),
    ({"drives.scenes": {"min_gap": 2}}, "unknown key"),
])
def test_invalid_drives_values_are_named(tmp_path, changes, expected):
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        load_config("dev", write_env(tmp_path, "dev", changes))


# -- serving size and output expiry (refused at load, not after a GPU run or a lost replay) ---------------------------

@pytest.mark.parametrize("key, value, nearest", [("preprocessing.target_width", 1020, "use 1016 or 1024"),
                                                 ("preprocessing.target_height", 17, "use 16 or 24")])
def test_serving_size_not_a_multiple_of_8_is_refused_with_the_nearest_sizes(tmp_path, key, value, nearest):
    config_dir = write_env(tmp_path, "dev", {key: value})
    with pytest.raises(ConfigError) as excinfo:
        load_config("dev", config_dir)
    message = str(excinfo.value)
    assert f": {key}: {value} is not a multiple of 8" in message and nearest in message
    assert "psp and deeplab" in message and len(message.splitlines()) == 2  # the header and one line


def test_serving_size_multiple_is_the_exports_output_stride():
    from export.model import OUTPUT_STRIDE, ExportError, check_network_size

    assert envconfig.config.SERVING_SIZE_MULTIPLE == OUTPUT_STRIDE
    config = load_config("dev")
    check_network_size("psp", config.preprocessing.target_width, config.preprocessing.target_height)
    with pytest.raises(ExportError):  # what the config now refuses is what the export would refuse
        check_network_size("deeplab", 1020, 512)


@pytest.mark.parametrize("runtime_hours, minimum", [(1, 16), (4, 16), (24, 16), (25, 17), (120, 20)])
def test_minimum_output_days_covers_dead_letters_stream_retries_and_the_drive(runtime_hours, minimum):
    assert envconfig.config.minimum_output_days(runtime_hours) == minimum


@pytest.mark.parametrize("key", ["retention.inference_output_days", "retention.quarantine_days"])
def test_outputs_expiring_before_their_last_reader_are_refused(tmp_path, key):
    config_dir = write_env(tmp_path, "dev", {key: 15, "drives.max_runtime_hours": 4})
    with pytest.raises(ConfigError) as excinfo:
        load_config("dev", config_dir)
    message = str(excinfo.value)
    assert f"{key}: 15 days is shorter than" in message and "set it to 16 or more" in message
    assert load_config("dev", write_env(tmp_path, "dev", {key: 16})).retention


def test_expiry_minimum_matches_the_synthesized_queues_and_stream(synth):
    """The constants the minimum is made of are the ones the templates carry."""
    import json

    env = synth("dev")
    inference = json.loads((env.outdir / env.stacks.inference.template_file).read_text())["Resources"]
    queues = [r["Properties"] for r in inference.values() if r["Type"] == "AWS::SQS::Queue"]
    assert queues and max(q.get("MessageRetentionPeriod", 345600) for q in queues) == \
        envconfig.config.DEAD_LETTER_RETENTION_DAYS * 86400
    streams = [r["Properties"] for r in inference.values() if r["Type"] == "AWS::Lambda::EventSourceMapping"
               and "MaximumRecordAgeInSeconds" in r["Properties"]]
    assert [s["MaximumRecordAgeInSeconds"] for s in streams] == [envconfig.config.STREAM_MAX_RECORD_AGE_HOURS * 3600]
    data = json.loads((env.outdir / env.stacks.data.template_file).read_text())["Resources"]
    rules = [rule for r in data.values() if r["Type"] == "AWS::S3::Bucket"
             for rule in (r["Properties"].get("LifecycleConfiguration") or {}).get("Rules", [])
             if rule.get("Prefix") and "ExpirationInDays" in rule]
    minimum = envconfig.config.minimum_output_days(env.config.drives.max_runtime_hours)
    assert rules and all(rule["ExpirationInDays"] >= minimum for rule in rules)
