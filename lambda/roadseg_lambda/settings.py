"""Typed configuration of the Lambda functions, read once from environment variables.

The CDK stack is the only producer of these variables. Every value is validated when the settings are
loaded and every problem is reported in one ``SettingsError`` that names the variable, what it got and
what is allowed. Variables that only some functions need (bucket, endpoint names, class names) are
optional here; each handler states what it needs with ``get_settings(*required)``.

Contract (name: default, meaning):

- INFERENCE_BUCKET: -, bucket holding async inputs, results, failures and quarantine
- ASYNC_INPUT_PREFIX: "async-input/", RESULTS_PREFIX: "results/", QUARANTINE_PREFIX: "quarantine/",
  FAILURES_PREFIX: "failures/" (a missing trailing "/" is added)
- ASYNC_ENDPOINT_NAME, REALTIME_ENDPOINT_NAME: -, SageMaker endpoint names
- ASYNC_REQUEST_TTL_SECONDS: 21600, RequestTTLSeconds of InvokeEndpointAsync (60..21600)
- CLASS_NAMES: -, JSON list of class names in train-ID order (2..254 unique names)
- CLASS_COLORS: generated palette, JSON list of [r, g, b] (same length as CLASS_NAMES)
- IGNORE_INDEX: 255, mask value meaning "no class" (must not be a class index)
- TARGET_WIDTH, TARGET_HEIGHT: 1024, 512, inference resolution; frames are fitted inside keeping their
  aspect ratio and never upscaled
- ROI: empty, "left,top,right,bottom" as FRACTIONS (0..1) of the EXIF-oriented source frame, e.g.
  "0,0.25,1,1" drops the top quarter. Fractions (not pixels) so one setting fits cameras of any resolution.
- MAX_INPUT_BYTES: 20971520, MAX_INPUT_PIXELS: 40000000, JPEG_QUALITY: 90 (1..95)
- KEY_PATTERN: regex with named groups vehicle, camera, timestamp, matched against the key after "incoming/"
- VRU_MIN_PIXELS: 50 (mask pixels at inference resolution)
- WRITE_OVERLAY: false, RESTORE_ORIGINAL_SIZE: false ("true"/"false", also 1/0/yes/no)
- MODEL_PACKAGE_VERSION: empty, copied into result documents
- REALTIME_MAX_PAYLOAD_BYTES: 6291456 (1..6291456, the SageMaker real-time body limit)
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

DEFAULT_KEY_PATTERN = r"^(?P<vehicle>[^/]+)/(?P<camera>[^/]+)/(?P<timestamp>[^/]+)\.(?:jpe?g|png)$"
SAGEMAKER_REALTIME_BODY_LIMIT = 6_291_456
KEY_PATTERN_GROUPS = ("vehicle", "camera", "timestamp")

# Names a handler may pass to get_settings() / Settings.require().
OPTIONAL_VARIABLES = {
    "INFERENCE_BUCKET": "inference_bucket",
    "ASYNC_ENDPOINT_NAME": "async_endpoint_name",
    "REALTIME_ENDPOINT_NAME": "realtime_endpoint_name",
    "CLASS_NAMES": "class_names",
}


class SettingsError(ValueError):
    """The environment does not hold a valid configuration; the message names each variable at fault."""


@dataclass(frozen=True)
class Settings:
    inference_bucket: str | None
    async_input_prefix: str
    results_prefix: str
    quarantine_prefix: str
    failures_prefix: str
    async_endpoint_name: str | None
    realtime_endpoint_name: str | None
    async_request_ttl_seconds: int
    class_names: tuple[str, ...]
    class_colors: tuple[tuple[int, int, int], ...]
    ignore_index: int
    target_width: int
    target_height: int
    roi: tuple[float, float, float, float] | None
    max_input_bytes: int
    max_input_pixels: int
    jpeg_quality: int
    key_pattern: re.Pattern[str]
    vru_min_pixels: int
    write_overlay: bool
    model_package_version: str | None
    restore_original_size: bool
    realtime_max_payload_bytes: int

    @property
    def target_size(self) -> tuple[int, int]:
        return (self.target_width, self.target_height)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        reader = _Reader(env)
        class_names = reader.get("CLASS_NAMES", None, _parse_class_names)
        values: dict[str, Any] = {
            "inference_bucket": reader.get("INFERENCE_BUCKET", None, _parse_bucket),
            "async_input_prefix": reader.get("ASYNC_INPUT_PREFIX", "async-input/", _parse_prefix),
            "results_prefix": reader.get("RESULTS_PREFIX", "results/", _parse_prefix),
            "quarantine_prefix": reader.get("QUARANTINE_PREFIX", "quarantine/", _parse_prefix),
            "failures_prefix": reader.get("FAILURES_PREFIX", "failures/", _parse_prefix),
            "async_endpoint_name": reader.get("ASYNC_ENDPOINT_NAME", None, _parse_endpoint_name),
            "realtime_endpoint_name": reader.get("REALTIME_ENDPOINT_NAME", None, _parse_endpoint_name),
            "async_request_ttl_seconds": reader.get("ASYNC_REQUEST_TTL_SECONDS", "21600", _int_range(60, 21600)),
            "class_names": class_names or (),
            "ignore_index": reader.get("IGNORE_INDEX", "255", _int_range(0, 255)),
            "target_width": reader.get("TARGET_WIDTH", "1024", _int_range(16, 8192)),
            "target_height": reader.get("TARGET_HEIGHT", "512", _int_range(16, 8192)),
            "roi": reader.get("ROI", "", _parse_roi),
            "max_input_bytes": reader.get("MAX_INPUT_BYTES", str(20 * 1024 * 1024), _int_range(1, 2**40)),
            "max_input_pixels": reader.get("MAX_INPUT_PIXELS", "40000000", _int_range(256, 2**40)),
            "jpeg_quality": reader.get("JPEG_QUALITY", "90", _int_range(1, 95)),
            "key_pattern": reader.get("KEY_PATTERN", DEFAULT_KEY_PATTERN, _parse_key_pattern),
            "vru_min_pixels": reader.get("VRU_MIN_PIXELS", "50", _int_range(1, 2**40)),
            "write_overlay": reader.get("WRITE_OVERLAY", "false", _parse_bool),
            "model_package_version": reader.get("MODEL_PACKAGE_VERSION", "", _optional_str),
            "restore_original_size": reader.get("RESTORE_ORIGINAL_SIZE", "false", _parse_bool),
            "realtime_max_payload_bytes": reader.get(
                "REALTIME_MAX_PAYLOAD_BYTES",
                str(SAGEMAKER_REALTIME_BODY_LIMIT),
                _int_range(1, SAGEMAKER_REALTIME_BODY_LIMIT),
            ),
        }
        colors = reader.get("CLASS_COLORS", None, _parse_colors)
        if class_names and colors is not None and len(colors) != len(class_names):
            reader.errors.append(
                f"CLASS_COLORS: has {len(colors)} colours but CLASS_NAMES has {len(class_names)} classes; "
                "give one [r, g, b] per class"
            )
        values["class_colors"] = colors if colors is not None else default_palette(len(class_names or ()))
        ignore = values["ignore_index"]
        if class_names and isinstance(ignore, int) and ignore < len(class_names):
            reader.errors.append(
                f"IGNORE_INDEX: {ignore} is a class index (CLASS_NAMES has {len(class_names)} classes); "
                f"use a value >= {len(class_names)}, usually 255"
            )
        if reader.errors:
            raise SettingsError("invalid Lambda configuration:\n  " + "\n  ".join(reader.errors))
        return cls(**values)

    def require(self, *names: str) -> Settings:
        """Raise SettingsError naming every variable in ``names`` that is not set."""
        missing = []
        for name in names:
            attr = OPTIONAL_VARIABLES.get(name)
            if attr is None:
                raise ValueError(f"{name} is not an optional setting (known: {', '.join(OPTIONAL_VARIABLES)})")
            if not getattr(self, attr):
                missing.append(name)
        if missing:
            raise SettingsError(
                "invalid Lambda configuration:\n  "
                + "\n  ".join(f"{name}: required by this function but not set" for name in missing)
            )
        return self


@lru_cache(maxsize=8)
def get_settings(*required: str) -> Settings:
    """Settings from ``os.environ``, loaded once per process (tests call ``get_settings.cache_clear()``)."""
    return Settings.from_env().require(*required)


def default_palette(n: int) -> tuple[tuple[int, int, int], ...]:
    """The PASCAL VOC colour map (bit-interleaved), deterministic and distinct for up to 256 classes."""
    colors = []
    for index in range(n):
        r = g = b = 0
        c = index
        for shift in range(7, -1, -1):
            r |= ((c >> 0) & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        colors.append((r, g, b))
    return tuple(colors)


class _Reader:
    def __init__(self, env: Mapping[str, str]):
        self.env = env
        self.errors: list[str] = []

    def get(self, name: str, default: str | None, parse: Callable[[str], Any]) -> Any:
        raw = self.env.get(name)
        if raw is None or raw.strip() == "":  # unset and empty mean the same: the default
            if default is None:
                return None
            raw = default
        try:
            return parse(raw.strip())
        except ValueError as exc:
            shown = raw if len(raw) <= 120 else raw[:117] + "..."
            self.errors.append(f"{name}: {exc} (got {shown!r})")
            return None


def _int_range(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw, 10)
        except ValueError:
            raise ValueError(f"must be an integer within {low}..{high}") from None
        if not low <= value <= high:
            raise ValueError(f"must be within {low}..{high}")
        return value

    return parse


_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def _parse_bucket(raw: str) -> str:
    if not _BUCKET.match(raw):
        raise ValueError("must be an S3 bucket name (3-63 lowercase letters, digits, '.', '-')")
    return raw


def _parse_prefix(raw: str) -> str:
    if raw.startswith("/"):
        raise ValueError("must be an S3 key prefix without a leading '/', e.g. 'results/'")
    return raw if raw.endswith("/") else raw + "/"


_ENDPOINT = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")


def _parse_endpoint_name(raw: str) -> str:
    if not _ENDPOINT.match(raw):
        raise ValueError("must be a SageMaker endpoint name (1-63 letters, digits and '-')")
    return raw


def _parse_class_names(raw: str) -> tuple[str, ...]:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        raise ValueError('must be a JSON list of class names, e.g. ["road", "sidewalk", ...]') from None
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError("must be a JSON list of non-empty strings")
    if not 2 <= len(value) <= 254:
        raise ValueError(f"must list 2..254 classes, got {len(value)}")
    if len(set(value)) != len(value):
        raise ValueError("class names must be unique")
    return tuple(value)


def _parse_colors(raw: str) -> tuple[tuple[int, int, int], ...]:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        raise ValueError("must be a JSON list of [r, g, b] lists") from None
    if not isinstance(value, list):
        raise ValueError("must be a JSON list of [r, g, b] lists")
    colors = []
    for item in value:
        if (
            not isinstance(item, list)
            or len(item) != 3
            or not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in item)
        ):
            raise ValueError(f"each colour must be [r, g, b] with integers 0..255, found {item!r}")
        colors.append((item[0], item[1], item[2]))
    return tuple(colors)


def _parse_roi(raw: str) -> tuple[float, float, float, float] | None:
    if raw == "":
        return None
    parts = raw.split(",")
    try:
        left, top, right, bottom = (float(p) for p in parts)
    except ValueError:
        raise ValueError("must be 'left,top,right,bottom' as fractions 0..1 of the frame, e.g. '0,0.25,1,1'") from None
    if not all(0.0 <= v <= 1.0 for v in (left, top, right, bottom)):
        raise ValueError("values are fractions of the frame and must be within 0..1 (pixel ROIs are not supported)")
    if not (left < right and top < bottom):
        raise ValueError("needs left < right and top < bottom")
    return (left, top, right, bottom)


def _parse_key_pattern(raw: str) -> re.Pattern[str]:
    try:
        pattern = re.compile(raw)
    except re.error as exc:
        raise ValueError(f"is not a valid regular expression: {exc}") from None
    missing = [g for g in KEY_PATTERN_GROUPS if g not in pattern.groupindex]
    if missing:
        raise ValueError(f"must define the named groups {', '.join(KEY_PATTERN_GROUPS)}; missing {', '.join(missing)}")
    return pattern


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _parse_bool(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError("must be 'true' or 'false'")


def _optional_str(raw: str) -> str | None:
    return raw or None
