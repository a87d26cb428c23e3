"""The environment's job settings asset (contracts.job_settings), from the config.

Pure, without the CDK: both stacks stage these files (stacks.code_assets.staged_job_settings), and the local
rehearsal (demo/) zips the same files for the pipelines it runs.
"""

from __future__ import annotations

import json

from contracts.job_settings import settings_files
from envconfig.config import EnvironmentConfig
from segcore.classes import ClassScheme, classes_json


def job_settings(config: EnvironmentConfig, scheme: ClassScheme) -> dict[str, str]:
    """The files of the environment's job settings asset (contracts.job_settings): the custom class list and the
    drives' camera map, which no request carries inline. One content per environment, shared by both stacks."""
    custom = json.loads(classes_json(scheme)) if config.classes.scheme == "custom" else None
    return settings_files(custom, dict(config.drives.cameras))
