"""Builds the roadseg CDK app for one environment (used by app.py and the tests)."""

from __future__ import annotations

import json
from pathlib import Path

import aws_cdk as cdk

from contracts import naming
from stacks.compliance import add_compliance_checks
from stacks.config import ConfigError, EnvironmentConfig
from stacks.data_stack import DataStack
from stacks.inference_stack import InferenceStack
from stacks.training_stack import TrainingStack

ROOT = Path(__file__).resolve().parent.parent


def cdk_json_context() -> dict:
    """cdk.json's context (feature flags), for apps built outside the CLI such as the tests."""
    return json.loads((ROOT / "cdk.json").read_text())["context"]


def inference_stack_name(config: EnvironmentConfig) -> str:
    """``contracts.naming.inference_stack_name`` of the config (kept for roadseg/preflight.py)."""
    return naming.inference_stack_name(config.prefix)


SCALING_CONTEXT = "scaling"  # `-c scaling=off`: the first of two deploys that change an endpoint's instance type


def scaling_suspended(app: cdk.App) -> bool:
    value = str(app.node.try_get_context(SCALING_CONTEXT) or "on")
    if value not in ("on", "off"):
        raise ConfigError(f"context {SCALING_CONTEXT}={value!r}: use 'on' (default) or 'off'")
    return value == "off"


class RoadsegStacks:
    """The stacks of one environment, with typed references between them."""

    def __init__(self, app: cdk.App, config: EnvironmentConfig) -> None:
        env = cdk.Environment(account=config.account, region=config.region) if config.account else None
        names = naming.stack_names(config.prefix)
        common = dict(env=env, tags={"roadseg:environment": config.name, **config.tags})
        self.data = DataStack(app, names[naming.DATA], config=config,
                              description=f"roadseg {config.name}: S3 buckets and KMS key", **common)
        self.training = TrainingStack(app, names[naming.TRAINING], config=config, data=self.data.buckets,
                                      description=f"roadseg {config.name}: training and tuning pipelines", **common)
        self.inference = InferenceStack(app, names[naming.INFERENCE], config=config, data=self.data.buckets,
                                        training=self.training.pipelines, suspend_scaling=scaling_suspended(app),
                                        description=f"roadseg {config.name}: GPU endpoints, rollout, monitoring",
                                        **common)

    @property
    def all(self) -> list[cdk.Stack]:
        return [self.data, self.training, self.inference]


def build_app(config: EnvironmentConfig, app: cdk.App | None = None) -> tuple[cdk.App, RoadsegStacks]:
    app = app or cdk.App()
    stacks = RoadsegStacks(app, config)
    add_compliance_checks(app)
    return app, stacks
