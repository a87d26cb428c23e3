"""The preprocessor functions' environment, from the config (contracts.lambda_env.PreprocessorEnvironment).

Pure, without the CDK: the inference stack (stacks.preprocessors) sets it on each function, and the local rehearsal
(demo/) hands the same environment to the handlers it runs.
"""

from __future__ import annotations

import dataclasses

from contracts.lambda_env import PreprocessorEnvironment, frame_preparation_environment
from contracts.layout import INFERENCE
from envconfig.config import EnvironmentConfig
from segcore.classes import ClassScheme


def preprocessor_environment(config: EnvironmentConfig, scheme: ClassScheme, *, inference_bucket: str,
                             async_endpoint_name: str, realtime_endpoint_name: str,
                             model_package_version: str | None = None,
                             drives_table: str | None = None) -> PreprocessorEnvironment:
    """The environment every preprocessor function gets (pure: the local rehearsal builds it the same way).

    The bucket name and model package version may be CDK tokens; each function adds its own ``service_name``.
    """
    cfg = config.preprocessing
    # The frame preparation (target size, ROI, limits, JPEG quality) from the one mapping the quality gate's serving
    # step and the roadseg command use too (contracts.lambda_env.frame_preparation_environment).
    return dataclasses.replace(
        frame_preparation_environment(cfg),
        inference_bucket=inference_bucket,
        async_input_prefix=INFERENCE.async_input, results_prefix=INFERENCE.results,
        quarantine_prefix=INFERENCE.quarantine, failures_prefix=INFERENCE.failures,
        async_endpoint_name=async_endpoint_name, realtime_endpoint_name=realtime_endpoint_name,
        class_names=tuple(scheme.names), class_colors=tuple(tuple(c.color) for c in scheme.classes),
        ignore_index=scheme.ignore_index,
        key_pattern=cfg.key_pattern, vru_min_pixels=cfg.vru_min_pixels,
        vru_classes=tuple(scheme.vulnerable_road_users),
        write_overlay=cfg.write_overlay, restore_original_size=cfg.restore_original_size,
        model_package_version=model_package_version,
        drives_table=drives_table,
        metrics_environment=config.prefix,  # the signal metrics' Environment dimension (contracts.signal_metrics)
        metrics_cameras=tuple(config.signal_cameras) or None,  # their Camera values; any other is "unknown"
    )
