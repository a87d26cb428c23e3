"""The drift monitor in the inference stack: schedule, least-privilege role, alarms to the alarm topic with the
dimensions the function publishes, the dashboard section, the code asset and isolated-network mode."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from contracts import naming
from contracts.signal_metrics import (
    CAMERA_DIMENSION,
    ENVIRONMENT_DIMENSION,
    SIGNAL_METRICS_NAMESPACE,
    UNKNOWN_CAMERA,
    any_camera_alarm_rule,
    drift_alarm_name,
)
from monitoring.metrics import DRIFT_DETECTED, DRIFT_METRICS, DRIFT_NAMESPACE, DRIFTED_CAMERAS, REFERENCE_MISSING
from stacks.checks.service_contracts import Assembly, Context, check
from stacks.code_assets import lambda_files, stage


@pytest.fixture(scope="module", params=["dev", "prod"])
def env(request, synth):
    return synth(request.param)


@pytest.fixture(scope="module")
def template(env) -> dict:
    return json.loads((env.outdir / env.stacks.inference.template_file).read_text())


def _of_type(template: dict, kind: str) -> dict[str, dict]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def _drift_function(template: dict) -> tuple[str, dict]:
    (found,) = [(k, v) for k, v in _of_type(template, "AWS::Lambda::Function").items()
                if v["Properties"].get("Handler") == "drift_monitor.handler"]
    return found


def _role_statements(template: dict, function: dict) -> list[dict]:
    role = function["Properties"]["Role"]["Fn::GetAtt"][0]
    return [s for policy in _of_type(template, "AWS::IAM::Policy").values()
            if {"Ref": role} in policy["Properties"]["Roles"]
            for s in policy["Properties"]["PolicyDocument"]["Statement"]]


def _actions(statement: dict) -> list[str]:
    actions = statement["Action"]
    return [actions] if isinstance(actions, str) else actions


def test_the_schedule_invokes_the_function_with_a_dead_letter_queue(env, template):
    logical, function = _drift_function(template)
    (rule,) = [r for r in _of_type(template, "AWS::Events::Rule").values()
               if "ScheduleExpression" in r["Properties"]]
    hours = env.config.monitoring.schedule_hours
    assert rule["Properties"]["ScheduleExpression"] == ("rate(1 hour)" if hours == 1 else "cron(20 0 * * ? *)")
    (target,) = rule["Properties"]["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [logical, "Arn"]}
    assert target["DeadLetterConfig"]["Arn"] == {"Fn::GetAtt": [function["Properties"]["DeadLetterConfig"]["TargetArn"]
                                                                ["Fn::GetAtt"][0], "Arn"]}
    variables = function["Properties"]["Environment"]["Variables"]
    assert variables["DRIFT_ENVIRONMENT"] == env.config.prefix
    assert variables["DRIFT_SERVING_PARAMETER"] == naming.serving_package_parameter(env.config.prefix)
    assert variables["DRIFT_WINDOW_SECONDS"] == str(env.config.monitoring.window * 3600)
    assert variables["DRIFT_CAMERAS"] == ",".join(env.config.signal_cameras)
    # No retries of the scheduled invocation: the next run judges again (and a missing profile is not an error).
    (invoke,) = [c["Properties"] for c in _of_type(template, "AWS::Lambda::EventInvokeConfig").values()
                 if c["Properties"]["FunctionName"] == {"Ref": logical}]
    assert invoke["MaximumRetryAttempts"] == 0


def test_the_role_holds_exactly_what_the_job_calls(template):
    _, function = _drift_function(template)
    statements = _role_statements(template, function)
    allowed = {a for s in statements for a in _actions(s)}
    expected = {"ssm:GetParameter", "sagemaker:DescribeModelPackage", "cloudwatch:GetMetricData",
                "cloudwatch:ListMetrics", "cloudwatch:PutMetricData", "s3:GetObject*", "s3:GetBucket*", "s3:List*",
                "kms:Decrypt", "sqs:SendMessage", "kms:GenerateDataKey", "kms:Encrypt", "kms:ReEncrypt*",
                "kms:GenerateDataKey*", "kms:DescribeKey"}
    assert allowed <= expected, allowed - expected
    assert {"ssm:GetParameter", "sagemaker:DescribeModelPackage", "cloudwatch:GetMetricData",
            "cloudwatch:PutMetricData", "s3:GetObject*"} <= allowed
    assert not any(a.endswith(":*") or a == "*" for a in allowed)
    (put,) = [s for s in statements if "cloudwatch:PutMetricData" in _actions(s)]
    assert put["Condition"] == {"StringEquals": {"cloudwatch:namespace": DRIFT_NAMESPACE}}
    (ssm,) = [s for s in statements if "ssm:GetParameter" in _actions(s)]
    assert "serving/model-package-arn" in json.dumps(ssm["Resource"])
    (describe,) = [s for s in statements if "sagemaker:DescribeModelPackage" in _actions(s)]
    assert "-segmentation/*" in json.dumps(describe["Resource"])
    (read,) = [s for s in statements if "s3:GetObject*" in _actions(s)]
    assert "/pipelines/*" in json.dumps(read["Resource"])


def _alarms_on(template: dict, namespace: str) -> list[dict]:
    found = []
    for alarm in _of_type(template, "AWS::CloudWatch::Alarm").values():
        props = alarm["Properties"]
        metrics = [props] if "MetricName" in props else [
            q["MetricStat"]["Metric"] for q in props.get("Metrics", []) if "MetricStat" in q]
        if any(m.get("Namespace") == namespace for m in metrics):
            found.append(props)
    return found


def _topic(template: dict) -> str:
    (topic,) = [k for k, v in _of_type(template, "AWS::SNS::Topic").items()
                if "alarms" in json.dumps(v["Properties"].get("DisplayName", ""))]
    return topic


def test_drift_alarms_reach_the_alarm_topic_with_the_published_dimensions(env, template):
    topic = _topic(template)
    drift = _alarms_on(template, DRIFT_NAMESPACE)
    cameras = [*env.config.signal_cameras, UNKNOWN_CAMERA]  # every judged camera
    assert len(drift) == len(cameras) + 1
    windows = env.config.monitoring.alarm_windows
    for props in drift:
        assert props["AlarmActions"] == [{"Ref": topic}] and props["OKActions"] == [{"Ref": topic}]
        assert props["TreatMissingData"] == "ignore"  # published late each run: an empty newest period is not 'OK'
        dimensions = tuple(sorted(d["Name"] for d in props["Dimensions"]))
        assert dimensions == tuple(sorted(DRIFT_METRICS[props["MetricName"]]))  # what monitoring/metrics.py puts
        assert {"Name": ENVIRONMENT_DIMENSION, "Value": env.config.prefix} in props["Dimensions"]
        if props["MetricName"] == DRIFT_DETECTED:
            assert props["EvaluationPeriods"] == props["DatapointsToAlarm"] == windows
    assert sorted(p["MetricName"] for p in drift) == sorted([REFERENCE_MISSING] + [DRIFT_DETECTED] * len(cameras))
    alarmed = sorted(d["Value"] for p in drift for d in p["Dimensions"] if d["Name"] == CAMERA_DIMENSION)
    assert alarmed == sorted(cameras)


def test_any_camera_alarm_is_a_composite_of_the_per_camera_drift_alarms(env, template):
    """"Some camera drifted N windows in a row", not "some camera drifted in each of N windows": an alarm on the
    DriftedCameras count would fire when different cameras drift in successive windows."""
    topic = _topic(template)
    (composite,) = _of_type(template, "AWS::CloudWatch::CompositeAlarm").values()
    props = composite["Properties"]
    assert props["AlarmActions"] == [{"Ref": topic}] and props["OKActions"] == [{"Ref": topic}]
    rule = json.dumps(props["AlarmRule"])
    per_camera = [k for k, v in _of_type(template, "AWS::CloudWatch::Alarm").items()
                  if v["Properties"].get("MetricName") == DRIFT_DETECTED]
    assert len(per_camera) == len(env.config.signal_cameras) + 1
    names = [drift_alarm_name(env.config.prefix, c) for c in [*env.config.signal_cameras, UNKNOWN_CAMERA]]
    assert sorted(_of_type(template, "AWS::CloudWatch::Alarm")[k]["Properties"]["AlarmName"] for k in per_camera) \
        == sorted(names)
    assert props["AlarmRule"] == any_camera_alarm_rule(names)  # by name: the 10,240-character rule limit
    assert set(composite["DependsOn"]) >= set(per_camera)  # the named alarms exist before the rule names them
    assert rule.count("ALARM(") == len(per_camera) and " OR " in rule or len(per_camera) == 1
    assert not [a for a in _alarms_on(template, DRIFT_NAMESPACE) if a["MetricName"] == DRIFTED_CAMERAS]


def test_anomaly_detection_alarms_per_camera_and_signal(env, template):
    topic = _topic(template)
    anomaly = _alarms_on(template, SIGNAL_METRICS_NAMESPACE)
    cfg = env.config.monitoring
    assert len(anomaly) == len(env.config.monitored_cameras) * len(cfg.anomaly_signals)
    for props in anomaly:
        assert props["AlarmActions"] == [{"Ref": topic}]
        assert props["ComparisonOperator"] == "LessThanLowerOrGreaterThanUpperThreshold"
        (band,) = [q for q in props["Metrics"] if "Expression" in q]
        assert band["Expression"].startswith("ANOMALY_DETECTION_BAND(") and props["ThresholdMetricId"] == band["Id"]
    if env.config.monitored_cameras:
        assert anomaly


def test_the_function_is_watched(template):
    logical, _ = _drift_function(template)
    topic = _topic(template)
    watched = [a["Properties"] for a in _of_type(template, "AWS::CloudWatch::Alarm").values()
               if {"Name": "FunctionName", "Value": {"Ref": logical}} in a["Properties"].get("Dimensions", [])]
    names = sorted(p["MetricName"] for p in watched)
    assert names == ["Errors", "Invocations"]
    assert all(p["AlarmActions"] == [{"Ref": topic}] for p in watched)
    (not_running,) = [p for p in watched if p["MetricName"] == "Invocations"]
    assert not_running["TreatMissingData"] == "breaching" and not_running["ComparisonOperator"] == "LessThanThreshold"


def test_the_dashboard_has_a_row_per_camera(env, template):
    (dashboard,) = _of_type(template, "AWS::CloudWatch::Dashboard").values()
    body = json.dumps(dashboard["Properties"]["DashboardBody"])
    assert "Drift per camera" in body
    for camera in env.config.monitored_cameras:
        assert f"{camera}: drift" in body and f"{camera}: signal means (hourly)" in body


def test_every_contract_holds(env):
    context = Context(reserved_concurrency_declared=env.config.reserved_lambda_concurrency,
                      account_pinned=env.config.account is not None)
    violations = check(Assembly.from_directory(env.outdir), context)
    assert violations == [], "\n".join(map(str, violations))


def test_isolated_mode_runs_the_function_in_the_vpc_with_its_endpoints(isolated_synth):
    env = isolated_synth("isolated-create")
    templates = env.templates()
    inference = templates[env.stacks.inference.stack_name]
    _, function = _drift_function(inference)
    assert function["Properties"]["VpcConfig"]["SubnetIds"]
    violations = check(Assembly.from_directory(env.outdir), Context(reserved_concurrency_declared=0,
                                                                   account_pinned=True))
    assert violations == [], "\n".join(map(str, violations))


def test_the_lambda_asset_runs_the_handler_on_its_own(tmp_path: Path):
    """Only what the asset ships: lambda/, segcore/, contracts/ and monitoring/ (no training, envconfig or stacks)."""
    names = {name for name, _ in lambda_files()}
    assert {"drift_monitor.py", "monitoring/job.py", "monitoring/drift.py", "monitoring/queries.py"} <= names
    staged = stage(lambda_files(), tmp_path / "asset")
    code = ("import sys, drift_monitor, monitoring.job; "
            "assert not [m for m in sys.modules if m.split('.')[0] in ('training', 'envconfig', 'stacks', 'aws_cdk')]")
    environment = {**os.environ, "PYTHONPATH": str(staged)}
    result = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(staged)!r}); {code}"],
                            cwd=tmp_path, env=environment, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def _drift_rule(templates: dict) -> list[str]:
    from stacks.checks.service_contracts.drift import NAME, drift_alarms

    return [str(v) for v in drift_alarms(Assembly(templates), Context()) if v.rule == NAME]


def test_the_drift_contract_fails_on_an_alarm_for_another_environment(synth):
    import copy

    env = synth("prod")
    templates = {s.stack_name: json.loads((env.outdir / s.template_file).read_text()) for s in env.stacks.all}
    assert _drift_rule(templates) == []
    broken = copy.deepcopy(templates)
    inference = broken[env.stacks.inference.stack_name]
    for props in _alarms_on(inference, DRIFT_NAMESPACE):
        for dimension in props["Dimensions"]:
            if dimension["Name"] == ENVIRONMENT_DIMENSION:
                dimension["Value"] = "someone-else"
    found = _drift_rule(broken)
    assert len(found) == len(env.config.signal_cameras) + 2  # a drift alarm per judged camera, ReferenceMissing
    assert all("Environment=someone-else, which no drift function publishes" in v for v in found)


def test_the_drift_contract_fails_when_the_role_may_not_publish_there(synth):
    import copy

    env = synth("prod")
    templates = {s.stack_name: json.loads((env.outdir / s.template_file).read_text()) for s in env.stacks.all}
    broken = copy.deepcopy(templates)
    inference = broken[env.stacks.inference.stack_name]
    _, function = _drift_function(inference)
    for statement in _role_statements(inference, function):
        if "cloudwatch:PutMetricData" in _actions(statement):
            statement["Condition"] = {"StringEquals": {"cloudwatch:namespace": "roadseg"}}
    found = _drift_rule(broken)
    assert any("may not cloudwatch:PutMetricData into roadseg/drift" in v for v in found)
    assert any("which no drift function publishes" in v for v in found)  # and so every drift alarm is blind


def test_the_drift_contract_fails_when_nobody_publishes_the_signals_it_reads(synth):
    import copy

    env = synth("prod")
    templates = {s.stack_name: json.loads((env.outdir / s.template_file).read_text()) for s in env.stacks.all}
    broken = copy.deepcopy(templates)
    for function in _of_type(broken[env.stacks.inference.stack_name], "AWS::Lambda::Function").values():
        variables = (function["Properties"].get("Environment") or {}).get("Variables") or {}
        variables.pop("METRICS_ENVIRONMENT", None)
    found = _drift_rule(broken)
    assert any(f"judges the signal series of Environment={env.config.prefix}, which no function publishes" in v
               for v in found)
    anomaly = [v for v in found if "watches roadseg/signals" in v]
    assert len(anomaly) == len(env.config.monitored_cameras) * len(env.config.monitoring.anomaly_signals) > 0


def test_the_drift_contract_bounds_the_composite_alarm(synth):
    import copy

    env = synth("prod")
    templates = {s.stack_name: json.loads((env.outdir / s.template_file).read_text()) for s in env.stacks.all}
    broken = copy.deepcopy(templates)
    (composite,) = _of_type(broken[env.stacks.inference.stack_name], "AWS::CloudWatch::CompositeAlarm").values()
    composite["Properties"]["AlarmRule"] = " OR ".join(f'ALARM("a{i}")' for i in range(101))
    composite["Properties"]["AlarmActions"] = []
    found = _drift_rule(broken)
    assert any("names 101 alarms, a composite alarm takes at most 100" in v for v in found)
    assert any("notifies nobody" in v for v in found)
    composite["Properties"]["AlarmRule"] = " OR ".join(f'ALARM("{"x" * 200}-{i}")' for i in range(90))
    assert any("characters, PutCompositeAlarm takes at most 10,240" in v for v in _drift_rule(broken))


def test_daily_runs_fire_after_the_utc_day_closed():
    """Daily windows are UTC days ending 00:00 (monitoring.job.window_bounds, SETTLE 15 min): the run at 00:20 judges
    the day just closed."""
    from datetime import UTC, datetime

    from monitoring.job import SETTLE, window_bounds
    from stacks.drift_monitoring import drift_schedule

    assert drift_schedule("daily").expression_string == "cron(20 0 * * ? *)"
    assert drift_schedule("hourly").expression_string == "rate(1 hour)"
    run = datetime(2026, 12, 8, 0, 20, tzinfo=UTC)
    assert run - SETTLE > datetime(2026, 12, 8, tzinfo=UTC)
    assert window_bounds(run, 86400) == (datetime(2026, 12, 7, tzinfo=UTC), datetime(2026, 12, 8, tzinfo=UTC))

