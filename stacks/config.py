"""Moved to envconfig/config.py. These names stay importable from here only until the rehearsal (demo/) and the
files of the model-export work that still name this module take the new path; nothing in stacks/ imports it."""

from envconfig.config import ConfigError, EnvironmentConfig, available_environments, load_config

__all__ = ["ConfigError", "EnvironmentConfig", "available_environments", "load_config"]
