"""envconfig's monitoring section: what it accepts and the one-line refusals."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from envconfig.config import MAX_CAMERA_ALARMS, EnvironmentConfig, MonitoringConfig, load_config
from stacks.drift_monitoring import drift_settings


def test_defaults_are_the_anchors_and_hourly() -> None:
    cfg = MonitoringConfig()
    assert (cfg.psi_threshold, cfg.js_threshold, cfg.band_sigmas, cfg.alarm_windows) == (0.2, 0.2, 3.0, 3)
    assert cfg.schedule_hours == 1 and cfg.window == 1
    assert MonitoringConfig(drift_schedule="daily").window == 24
    assert MonitoringConfig(drift_schedule="daily", window_hours=48).window == 48


@pytest.mark.parametrize("values, fragment", [
    ({"drift_schedule": "daily", "alarm_windows": 8}, "604800"),  # 8 days: PutMetricAlarm's 7-day range
    ({"anomaly_signals": ["flicker"]}, "not published per camera"),
    ({"cameras": ["front", "front"]}, "at most once"),
    ({"cameras": ["front camera"]}, "camera name"),
    ({"psi_threshold": 0}, "greater than 0"),
])
def test_refusals(values: dict, fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        MonitoringConfig(**values)


def test_cameras_default_to_the_drive_cameras_and_the_alarms_fit_a_stack() -> None:
    base = {"name": "dev", "prefix": "roadseg-dev"}
    config = EnvironmentConfig.model_validate({**base, "drives": {"cameras": {"/cam/b": "rear", "/cam/a": "front"}}})
    assert config.monitored_cameras == ["front", "rear"]
    explicit = EnvironmentConfig.model_validate({**base, "monitoring": {"cameras": []},
                                                 "drives": {"cameras": {"/cam/a": "front"}}})
    assert explicit.monitored_cameras == []
    too_many = [f"c{i}" for i in range(MAX_CAMERA_ALARMS // 4 + 1)]
    with pytest.raises(ValidationError, match="CloudFormation's 500 resources"):
        EnvironmentConfig.model_validate({**base, "monitoring": {"cameras": too_many}})


def test_the_function_settings_follow_the_config() -> None:
    config = load_config("prod")
    settings = drift_settings(config, "/roadseg/x/serving/model-package-arn")
    assert settings.environment == config.prefix and settings.cameras == ("front",)
    assert settings.window_seconds == 3600 and settings.thresholds.psi == config.monitoring.psi_threshold


def test_anomaly_alarms_default_to_input_signals_only() -> None:
    """Output signals (class fractions, drivable fraction) move with every model rollout: their learnt band is the
    old model's, so an anomaly alarm on them would fire on each approval."""
    from contracts.signals import INPUT_SIGNALS, OUTPUT_SIGNALS

    defaults = MonitoringConfig().anomaly_signals
    assert defaults == ["brightness", "contrast", "sharpness", "saturation"]
    assert set(defaults) <= set(INPUT_SIGNALS) and not set(defaults) & set(OUTPUT_SIGNALS)


def test_signal_cameras_are_the_drive_and_monitoring_cameras_and_reach_the_functions() -> None:
    from contracts.lambda_env import PreprocessorEnvironment
    from envconfig.lambda_env import preprocessor_environment
    from segcore.classes import get_scheme

    base = {"name": "dev", "prefix": "roadseg-dev"}
    config = EnvironmentConfig.model_validate({**base, "monitoring": {"cameras": ["side"]},
                                               "drives": {"cameras": {"/cam/b": "rear", "/cam/a": "front"}}})
    assert config.signal_cameras == ["front", "rear", "side"] and config.monitored_cameras == ["side"]
    env = preprocessor_environment(config, get_scheme("cityscapes"), inference_bucket="bucket-x",
                                   async_endpoint_name="a", realtime_endpoint_name="r").to_env()
    assert env["METRICS_CAMERAS"] == "front,rear,side"
    assert PreprocessorEnvironment.from_env(env).metrics_cameras == ("front", "rear", "side")
    assert drift_settings(config, "/p").cameras == ("front", "rear", "side")
    with pytest.raises(ValidationError, match="'unknown' is the signal metrics' name"):
        EnvironmentConfig.model_validate({**base, "monitoring": {"cameras": ["unknown"]}})
    many = {f"/cam/{i}": f"camera-with-a-long-name-{i:03d}" for i in range(40)}
    with pytest.raises(ValidationError, match="at most 1024"):
        EnvironmentConfig.model_validate({**base, "drives": {"cameras": many}, "monitoring": {"cameras": []}})


def test_the_any_camera_rule_must_fit_put_composite_alarm(monkeypatch) -> None:
    """The composite rule names each judged camera's drift alarm; PutCompositeAlarm takes 10,240 characters. With
    METRICS_CAMERAS' 1 KB the real limit is out of reach, so the refusal is shown with a smaller one."""
    import contracts.signal_metrics as signal_metrics

    base = {"name": "dev", "prefix": "roadseg-dev", "drives": {"cameras": {"/cam/a": "front", "/cam/b": "rear"}}}
    rule = signal_metrics.any_camera_alarm_rule(
        signal_metrics.drift_alarm_name("roadseg-dev", c) for c in ["front", "rear", signal_metrics.UNKNOWN_CAMERA])
    assert rule == ('ALARM("roadseg-dev-drift-front") OR ALARM("roadseg-dev-drift-rear") OR '
                    'ALARM("roadseg-dev-drift-unknown")')
    EnvironmentConfig.model_validate(base)
    monkeypatch.setattr(signal_metrics, "MAX_COMPOSITE_ALARM_RULE_CHARS", len(rule) - 1)
    with pytest.raises(ValidationError, match=f"rule would be {len(rule)} characters, more than {len(rule) - 1}"):
        EnvironmentConfig.model_validate(base)
