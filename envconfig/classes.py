"""The environment's class scheme (segcore.classes), resolved from its ``classes:`` section and checked."""

from __future__ import annotations

from envconfig.config import ConfigError, EnvironmentConfig
from segcore.classes import ClassScheme, scheme_from_config


def resolve_scheme(config: EnvironmentConfig) -> ClassScheme:
    """The config's class scheme, with its safety floors checked against it.

    A loaded config has passed the same check (``ClassesConfig``); this one guards configs assembled in code
    without validation (``model_copy(update=...)``, ``model_construct``).
    """
    scheme = scheme_from_config(config.classes)
    try:
        scheme.check_class_names(config.classes.safety_critical_iou_floors,
                                 f"config/{config.name}.yaml: classes.safety_critical_iou_floors")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return scheme
