"""The delivery app: the pipeline stack in the tools account, its stages' configs read from the same folder."""

from __future__ import annotations

from pathlib import Path

import aws_cdk as cdk

from envconfig.config import CONFIG_DIR, CONFIG_DIR_VARIABLE, ConfigError, EnvironmentConfig, load_config
from stacks.delivery.pipeline import DeliveryStack, delivery_stack_name

ROOT = CONFIG_DIR.parent


def relative_config_dir(config_dir: Path) -> str:
    """The folder as the pipeline's build passes it (relative to the repository root)."""
    try:
        return config_dir.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        raise ConfigError(f"{config_dir}: the delivery configuration must live inside the repository "
                          f"({ROOT}), which the pipeline checks out") from None


def stage_configs(config: EnvironmentConfig, config_dir: Path) -> list[EnvironmentConfig]:
    """The configs of ``delivery.stages``, each pinning its account and region (one-line ConfigError if not)."""
    found = []
    for name in config.delivery.stages:
        try:
            stage = load_config(name, config_dir)
        except ConfigError as exc:
            raise ConfigError(f"delivery.stages: {exc}") from None
        if not (stage.account and stage.region):
            raise ConfigError(f"{config_dir / (name + '.yaml')}: a delivery stage must pin 'account' and 'region'")
        if stage.delivery is not None:
            raise ConfigError(f"{config_dir / (name + '.yaml')}: a delivery stage cannot have a delivery section")
        found.append(stage)
    prefixes = [stage.prefix for stage in found]
    if len(set(prefixes)) != len(prefixes):
        raise ConfigError(f"delivery.stages: the stages' prefixes must differ, got {prefixes}")
    return found


class DeliveryStacks:
    """What build_app returns for a delivery config: the pipeline stack (``all``) and its stages."""

    def __init__(self, app: cdk.App, config: EnvironmentConfig, config_dir: Path | None = None) -> None:
        import os

        directory = config_dir or Path(os.environ.get(CONFIG_DIR_VARIABLE) or CONFIG_DIR)
        name = delivery_stack_name(config)
        self.pipeline = DeliveryStack(
            app, name, stack_name=name, config=config, stages=stage_configs(config, directory),
            config_dir=relative_config_dir(directory),
            env=cdk.Environment(account=config.account, region=config.region),
            tags={"roadseg:environment": config.name, **config.tags},
            description=f"roadseg {config.name}: the promotion pipeline ({' -> '.join(config.delivery.stages)})")

    @property
    def stages(self) -> list:
        return self.pipeline.stages

    @property
    def all(self) -> list[cdk.Stack]:
        return [self.pipeline]
