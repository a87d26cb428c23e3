"""The CDK app entry's choice (used by app.py and the tests): one environment's stacks (stacks/environment.py), or,
for a config with ``delivery:``, the promotion pipeline (stacks/delivery/app.py), whose stages hold environments'
stacks. Nothing below imports this module, so the delivery app and the environment form no import circle."""

from __future__ import annotations

import json
from pathlib import Path

import aws_cdk as cdk

from envconfig.config import EnvironmentConfig
from stacks.compliance import add_compliance_checks
from stacks.delivery.app import DeliveryStacks
from stacks.environment import RoadsegStacks

ROOT = Path(__file__).resolve().parent.parent


def cdk_json_context() -> dict:
    """cdk.json's context (feature flags), for apps built outside the CLI such as the tests."""
    return json.loads((ROOT / "cdk.json").read_text())["context"]


def build_app(config: EnvironmentConfig, app: cdk.App | None = None,
              config_dir: Path | None = None) -> tuple[cdk.App, RoadsegStacks | DeliveryStacks]:
    """The environment's stacks; for a config with ``delivery:``, the promotion pipeline instead (whose stages,
    read from ``config_dir`` (default: the config folder), hold the environments' stacks): ``DeliveryStacks``."""
    app = app or cdk.App()
    stacks = DeliveryStacks(app, config, config_dir) if config.delivery is not None else RoadsegStacks(app, config)
    add_compliance_checks(app)
    return app, stacks
