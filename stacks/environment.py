"""One environment's stacks (``RoadsegStacks``): what ``make deploy`` builds and what each stage of the promotion
pipeline holds. Kept apart from the app entry (stacks/app_builder.py), which chooses between this and the delivery
app, so that stacks/delivery/ imports it without an import circle."""

from __future__ import annotations

import aws_cdk as cdk

from contracts import naming
from envconfig.config import ConfigError, EnvironmentConfig
from stacks.data_stack import DataStack
from stacks.inference_stack import InferenceStack
from stacks.network import NetworkStack, network_stack_name
from stacks.training_stack import TrainingStack

SCALING_CONTEXT = "scaling"  # `-c scaling=off`: the first of two deploys that change an endpoint's instance type


def scaling_suspended(app: cdk.App | cdk.Stage) -> bool:
    value = str(app.node.try_get_context(SCALING_CONTEXT) or "on")
    if value not in ("on", "off"):
        raise ConfigError(f"context {SCALING_CONTEXT}={value!r}: use 'on' (default) or 'off'")
    return value == "off"


class RoadsegStacks:
    """The stacks of one environment, with typed references between them."""

    def __init__(self, app: cdk.App | cdk.Stage, config: EnvironmentConfig) -> None:
        # stack_name: the names operators and the CLI use, also inside a pipeline's Stage (which would prefix them).
        env = cdk.Environment(account=config.account, region=config.region) if config.account else None
        names = naming.stack_names(config.prefix)
        common = dict(env=env, tags={"roadseg:environment": config.name, **config.tags})
        self.data = DataStack(app, names[naming.DATA], config=config, stack_name=names[naming.DATA],
                              description=f"roadseg {config.name}: S3 buckets and KMS key", **common)
        # Isolated-network mode (config `network:`): the VPC and its endpoints; None without that section.
        self.network = NetworkStack(
            app, network_stack_name(config), config=config, data=self.data.buckets,
            stack_name=network_stack_name(config),
            description=f"roadseg {config.name}: isolated network (VPC endpoints)",
            **common) if config.network else None
        self.training = TrainingStack(app, names[naming.TRAINING], config=config, data=self.data.buckets,
                                      network=self.network,
                                      stack_name=names[naming.TRAINING],
                                      description=f"roadseg {config.name}: training and tuning pipelines", **common)
        self.inference = InferenceStack(app, names[naming.INFERENCE], config=config, data=self.data.buckets,
                                        stack_name=names[naming.INFERENCE],
                                        training=self.training.pipelines, suspend_scaling=scaling_suspended(app),
                                        network=self.network,
                                        description=f"roadseg {config.name}: GPU endpoints, rollout, monitoring",
                                        **common)

    @property
    def all(self) -> list[cdk.Stack]:
        return [self.data, *([self.network] if self.network else []), self.training, self.inference]
