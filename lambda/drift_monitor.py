"""Drift monitor: the scheduled drift check per camera (issue 23). Handler string ``drift_monitor.handler``.

Trigger: an EventBridge schedule (stacks/drift_monitoring.py; ``monitoring.drift_schedule``: hourly or daily); the
event is not read. Each run judges the last whole window (``DRIFT_WINDOW_SECONDS``, ending on the hour) of every
camera against the reference profile of the model package now serving, and publishes ``DriftDetected`` per camera
(and PSI / Jensen-Shannon distance per camera and signal) in ``monitoring.metrics.DRIFT_NAMESPACE``; the alarms
on those notify the alarm topic. The flow is ``monitoring.job``: fetch (SSM GetParameter -> DescribeModelPackage
-> S3 GetObject of the profile; ListMetrics and GetMetricData with percentile-rank statistics) -> decide
(``monitoring.drift``, pure) -> act (PutMetricData) and one log line per camera.

Outcomes: ``{"action": "judged", ...}`` with the verdicts; ``{"action": "skipped", "reason": "no model serving"}``
while the serving parameter names no package (nothing is published: the alarms treat missing data as not
breaching). A serving package without a usable reference profile (registered before the gate wrote profiles; the
profile missing or invalid) publishes ``ReferenceMissing`` = 1 for the environment, whose alarm notifies the alarm
topic, and returns ``{"action": "skipped", "reason": "reference missing"}`` without raising: drift of a model nobody
can compare with must not pass in silence, but retrying cannot fix it. Real errors (access denied, throttling beyond
the client's retries, a bad setting) still raise (the Errors alarm).

Environment: ``monitoring.job.DriftSettings.to_env`` (DRIFT_ENVIRONMENT, DRIFT_SERVING_PARAMETER,
DRIFT_WINDOW_SECONDS, DRIFT_PSI_THRESHOLD, DRIFT_JS_THRESHOLD, DRIFT_BAND_SIGMAS, DRIFT_MIN_FRAMES, DRIFT_CAMERAS,
DRIFT_PER_SIGNAL).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from botocore.config import Config

from monitoring.job import DriftSettings, publish, run_drift

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "roadseg-drift-monitor"))
CLIENT_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=5, read_timeout=30)


def clients() -> dict[str, Any]:
    """One client per service, created up front in this thread (botocore#2991)."""
    return {name: boto3.client(name, config=CLIENT_CONFIG) for name in ("ssm", "sagemaker", "s3", "cloudwatch")}


def handler(event: dict[str, Any], context: Any, *, now: datetime | None = None,
            aws: dict[str, Any] | None = None) -> dict[str, Any]:
    settings = DriftSettings.from_env(os.environ)
    aws = aws or clients()
    run = run_drift(aws, settings, now or datetime.now(UTC))
    if run.reference_missing:
        # Not raised: every retry and every later run would fail the same way until an operator acts (a new package,
        # or a profile attached to this one), so the ReferenceMissing alarm says it once instead of hourly errors.
        publish(aws["cloudwatch"], settings, run)
        logger.error("the serving model package has no usable reference profile: drift is not judged",
                     extra={"reason": run.reference_missing, "window_end": run.end.isoformat()})
        return {"action": "skipped", "reason": "reference missing", **run.to_dict()}
    if run.reference is None:
        logger.info("no model package is serving: nothing to compare with", extra={"window_end": run.end.isoformat()})
        return {"action": "skipped", "reason": "no model serving", **run.to_dict()}
    published = publish(aws["cloudwatch"], settings, run)
    for verdict in run.verdicts:
        logger.info("drift verdict", extra={"camera": verdict.camera, "status": verdict.status,
                                            "drifted_signals": list(verdict.drifted_signals),
                                            "model_package_version": run.reference.package_version,
                                            "window_end": run.end.isoformat()})
    return {"action": "judged", "published": published, "requests": run.requests, **run.to_dict()}
