"""The job settings: per-environment lists that SageMaker requests cannot carry inline, as files.

A container argument holds at most 256 characters and a Processing job's environment value too
(contracts.service_limits), so a custom class scheme (7 classes already pass 256 characters as JSON) or a camera map
never travels inline. The stacks stage these files at synth from the config (stacks.code_assets.staged_job_settings)
as one asset, which every Processing job that needs them receives as the ``settings`` input, mounted in
SETTINGS_DIR; processing_entry.py unpacks the asset's zip there before the step runs, and the arguments name the
files (``--classes-file``, ``--cameras-json @file``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

SETTINGS_INPUT = "settings"  # the ProcessingInput's InputName
SETTINGS_DIR = "/opt/ml/processing/input/settings"  # its LocalPath (jobs/processing_entry.py unpacks it there)
CLASSES_FILE = "classes.json"  # segcore.classes.load_classes_file: [{"name": ..., "color": [r, g, b]}, ...]
CAMERAS_FILE = "cameras.json"  # drivelogs.extract.parse_cameras: {"/topic": "camera", ...}


def classes_path() -> str:
    """Where a step finds the custom class list (``--classes-file``)."""
    return f"{SETTINGS_DIR}/{CLASSES_FILE}"


def cameras_argument() -> str:
    """``--cameras-json``'s value that reads the camera map from its file."""
    return f"@{SETTINGS_DIR}/{CAMERAS_FILE}"


def settings_files(custom_classes: Sequence[Mapping[str, Any]] | None,
                   cameras: Mapping[str, str] | None) -> dict[str, str]:
    """File name -> text of the settings asset. Always ``settings.json`` (what the asset holds, so it is never an
    empty directory); ``classes.json`` for a custom scheme, ``cameras.json`` for a camera map."""
    files = {"settings.json": json.dumps({"custom_classes": bool(custom_classes), "cameras": bool(cameras)},
                                         sort_keys=True) + "\n"}
    if custom_classes:
        files[CLASSES_FILE] = json.dumps(list(custom_classes), separators=(",", ":")) + "\n"
    if cameras:
        files[CAMERAS_FILE] = json.dumps(dict(cameras), sort_keys=True, indent=1) + "\n"
    return files
