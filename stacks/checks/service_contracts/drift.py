"""Metrics class of the integration contracts, one more edge: the drift monitor publishes what its alarms watch.
Registers with ``stacks.checks.service_contracts.rules.rule`` when imported.

- ``drift-alarms-watch-what-the-monitor-publishes``: every alarm on a ``monitoring.metrics.DRIFT_NAMESPACE``
  metric names, in its ``Environment`` dimension, the environment a drift function of the app publishes for
  (``DRIFT_ENVIRONMENT`` in its variables); that function's role may cloudwatch:PutMetricData into the namespace
  (a ``cloudwatch:namespace`` condition, when there is one, names it: CW_NAMESPACE_CONDITION_DOC) and may read the
  signal series it judges (cloudwatch:GetMetricData, cloudwatch:ListMetrics). An alarm on another environment
  value, or a function that may not publish there, leaves the alarm without a data point, and with
  ``notBreaching`` missing data it stays OK forever. The dimension NAMES are checked against the catalogue by
  ``metric-published-with-these-dimensions``; this rule checks the VALUES and the permission.
  The other end too: the environment a drift function judges, and the ``Environment`` of every alarm on a
  ``contracts.signal_metrics.SIGNAL_METRICS_NAMESPACE`` series (the anomaly-detection alarms), is one a function of
  the app publishes signal metrics for (``METRICS_ENVIRONMENT``, contracts.lambda_env): else the monitor reads
  empty series and judges every camera ``insufficient-data`` forever.
  And the any-camera drift alarm: a composite alarm (every ``AWS::CloudWatch::CompositeAlarm`` of the app) names at
  most ``MAX_COMPOSITE_ALARM_CHILDREN`` (100) alarms and ``MAX_COMPOSITE_ALARM_RULE_CHARS`` characters in its rule
  (COMPOSITE_ALARM_DOC), and notifies a topic.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

from contracts.signal_metrics import (
    COMPOSITE_ALARM_DOC,
    EMF_SPECIFICATION_DOC,
    MAX_COMPOSITE_ALARM_CHILDREN,
    MAX_COMPOSITE_ALARM_RULE_CHARS,
    SIGNAL_METRICS_NAMESPACE,
)
from monitoring.metrics import DRIFT_NAMESPACE
from stacks.checks.service_contracts.assembly import Assembly, Resource
from stacks.checks.service_contracts.rules import Context, Violation, _role_of_function, rule

NAME = "drift-alarms-watch-what-the-monitor-publishes"
CW_NAMESPACE_CONDITION_DOC = ("https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/"
                              "iam-cw-condition-keys-namespace.html")
ENVIRONMENT_VARIABLE = "DRIFT_ENVIRONMENT"
SIGNALS_ENVIRONMENT_VARIABLE = "METRICS_ENVIRONMENT"  # contracts.lambda_env: the signal metrics' Environment
READ_ACTIONS = ("cloudwatch:GetMetricData", "cloudwatch:ListMetrics")
# An alarm state function of a composite alarm's rule expression, each naming one alarm (PutCompositeAlarm).
CHILD_ALARM = re.compile(r"\b(?:ALARM|OK|INSUFFICIENT_DATA)\(")


def _publishers(assembly: Assembly, variable: str = ENVIRONMENT_VARIABLE
                ) -> dict[str, list[tuple[Resource, Resource | None]]]:
    """``variable``'s value -> [(function carrying it, its role)]."""
    found: dict[str, list[tuple[Resource, Resource | None]]] = {}
    for function in assembly.resources("AWS::Lambda::Function"):
        variables = (function.properties.get("Environment") or {}).get("Variables") or {}
        if variable in variables:
            value = assembly.text(function.stack, variables[variable])
            found.setdefault(value, []).append((function, _role_of_function(assembly, function)))
    return found


def _may_publish(assembly: Assembly, role: Resource | None) -> bool:
    if role is None:
        return False
    for statement in assembly.identity_statements(role):
        if statement.allows_action("cloudwatch:PutMetricData"):
            namespaces = statement.condition_values("cloudwatch:namespace")
            if not namespaces or DRIFT_NAMESPACE in namespaces:
                return True
    return False


def _metrics_in(props: dict, namespace: str) -> Iterator[dict]:
    if props.get("Namespace") == namespace:
        yield props
    for query in props.get("Metrics", []):
        metric = (query.get("MetricStat") or {}).get("Metric") or {}
        if metric.get("Namespace") == namespace:
            yield metric


@rule(NAME)
def drift_alarms(assembly: Assembly, _: Context) -> Iterator[Violation]:
    publishers = _publishers(assembly)
    for environment, functions in sorted(publishers.items()):
        for function, role in functions:
            if not _may_publish(assembly, role):
                yield Violation(NAME, function.path, f"publishes drift metrics for {environment} but its role may not "
                                f"cloudwatch:PutMetricData into {DRIFT_NAMESPACE}", CW_NAMESPACE_CONDITION_DOC)
            missing = [a for a in READ_ACTIONS if role is None or not assembly.role_allows(role, a, "*")]
            if missing:
                yield Violation(NAME, function.path, f"judges the signal series but may not {', '.join(missing)}",
                                CW_NAMESPACE_CONDITION_DOC)
    signal_publishers = _publishers(assembly, SIGNALS_ENVIRONMENT_VARIABLE)
    for environment, functions in sorted(publishers.items()):
        if environment not in signal_publishers:
            for function, _role in functions:
                yield Violation(NAME, function.path, f"judges the signal series of Environment={environment}, which "
                                f"no function publishes ({SIGNALS_ENVIRONMENT_VARIABLE} of the app's functions: "
                                f"{', '.join(sorted(signal_publishers)) or 'none'}): every camera would have no data",
                                EMF_SPECIFICATION_DOC)
    for alarm in assembly.resources("AWS::CloudWatch::Alarm"):
        for metric in _metrics_in(alarm.properties, SIGNAL_METRICS_NAMESPACE):
            environment = next((assembly.text(alarm.stack, d["Value"]) for d in metric.get("Dimensions", [])
                                if d["Name"] == "Environment"), None)
            if environment not in signal_publishers:
                yield Violation(NAME, alarm.path, f"watches {SIGNAL_METRICS_NAMESPACE} {metric.get('MetricName')} for "
                                f"Environment={environment}, which no function publishes: the alarm never sees a "
                                "data point", EMF_SPECIFICATION_DOC)
    for alarm in assembly.resources("AWS::CloudWatch::Alarm"):
        for metric in _metrics_in(alarm.properties, DRIFT_NAMESPACE):
            dimensions = {d["Name"]: assembly.text(alarm.stack, d["Value"]) for d in metric.get("Dimensions", [])}
            environment = dimensions.get("Environment")
            able = [f for f, role in publishers.get(environment, []) if _may_publish(assembly, role)]
            if not able:
                known = ", ".join(sorted(publishers)) or "none"
                yield Violation(NAME, alarm.path, f"watches {DRIFT_NAMESPACE} {metric.get('MetricName')} for "
                                f"Environment={environment}, which no drift function publishes (drift functions "
                                f"publish for: {known}): the alarm never sees a data point", CW_NAMESPACE_CONDITION_DOC)
    for alarm in assembly.resources("AWS::CloudWatch::CompositeAlarm"):
        rule = alarm.properties.get("AlarmRule")
        if isinstance(rule, str) and len(rule) > MAX_COMPOSITE_ALARM_RULE_CHARS:
            yield Violation(NAME, alarm.path, f"its rule is {len(rule):,} characters, PutCompositeAlarm takes at most "
                            f"{MAX_COMPOSITE_ALARM_RULE_CHARS:,}", COMPOSITE_ALARM_DOC)
        children = len(CHILD_ALARM.findall(json.dumps(rule)))
        if children > MAX_COMPOSITE_ALARM_CHILDREN:
            yield Violation(NAME, alarm.path, f"its rule names {children} alarms, a composite alarm takes at most "
                            f"{MAX_COMPOSITE_ALARM_CHILDREN}: PutCompositeAlarm refuses it", COMPOSITE_ALARM_DOC)
        if not alarm.properties.get("AlarmActions"):
            yield Violation(NAME, alarm.path, "notifies nobody (no AlarmActions)", COMPOSITE_ALARM_DOC)
