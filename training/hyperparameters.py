"""Hyperparameters of the built-in Semantic Segmentation algorithm, checked before a job is paid for.

The algorithm only reports a bad hyperparameter after an instance has started (minutes, money); this
model rejects it at synth or pipeline-definition time with the name, the bad value and what is allowed.
Values the algorithm would silently ignore (momentum with adam, ...) are dropped with a recorded warning,
and values it would silently change (crop_size) are changed here, visibly.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

# The algorithm's segmentation heads (hyperparameter `algorithm`; deeplab is DeepLabV3), its backbones and
# optimizers: the one list of each (config validation, pipeline parameter enum, tuning ranges).
HEADS: tuple[str, ...] = ("fcn", "psp", "deeplab")
BACKBONES: tuple[str, ...] = ("resnet-50", "resnet-101")
OPTIMIZERS: tuple[str, ...] = ("adam", "adagrad", "nag", "rmsprop", "sgd")

# Defaults of the algorithm itself (used for the hyperparameters an earlier job did not set).
ALGORITHM_DEFAULTS: dict[str, str] = {"backbone": "resnet-50", "algorithm": "fcn", "crop_size": "240"}

# What each hyperparameter accepts, as shown in error messages (reference: segmentation-hyperparameters).
ALLOWED: dict[str, str] = {
    "num_classes": "an integer within 2..254",
    "num_training_samples": "a positive integer (the number of training images)",
    "backbone": ", ".join(BACKBONES),
    "algorithm": ", ".join(HEADS),
    "use_pretrained_model": "True, False",
    "base_size": "an integer > 16",
    "crop_size": "an integer > 16 (rounded up to a multiple of 8)",
    "epochs": "a positive integer",
    "learning_rate": "a number with 0 < x <= 1",
    "optimizer": ", ".join(OPTIMIZERS),
    "lr_scheduler": "poly, cosine, step",
    "lr_scheduler_step": 'comma-separated increasing positive epochs, e.g. "10,20" (only with lr_scheduler=step)',
    "lr_scheduler_factor": "a number within 0..1 (lr_scheduler=step only)",
    "mini_batch_size": "a positive integer",
    "validation_mini_batch_size": "a positive integer",
    "momentum": "a number with 0 < x <= 1 (optimizer=sgd only)",
    "weight_decay": "a number with 0 < x < 1 (optimizer=sgd only)",
    "gamma1": "a number within 0..1 (optimizer=rmsprop only)",
    "gamma2": "a number within 0..1 (optimizer=rmsprop only)",
    "syncbn": "True, False",
    "early_stopping": "True, False",
    "early_stopping_min_epochs": "an integer >= 0",
    "early_stopping_patience": "a positive integer",
    "early_stopping_tolerance": "a number within 0..1",
}
HYPERPARAMETER_NAMES: tuple[str, ...] = tuple(ALLOWED)

# Hyperparameters that only one setting of another uses: (owner field, owner value).
_ONLY_WITH: dict[str, tuple[str, Any]] = {
    "momentum": ("optimizer", "sgd"),
    "weight_decay": ("optimizer", "sgd"),
    "gamma1": ("optimizer", "rmsprop"),
    "gamma2": ("optimizer", "rmsprop"),
    "lr_scheduler_factor": ("lr_scheduler", "step"),
    "early_stopping_min_epochs": ("early_stopping", True),
    "early_stopping_patience": ("early_stopping", True),
    "early_stopping_tolerance": ("early_stopping", True),
}
# Incremental training reloads the earlier network: these must not change.
INCREMENTAL_FIXED = ("backbone", "algorithm", "crop_size", "num_classes")


class HyperparameterError(ValueError):
    """A hyperparameter is missing, unknown or invalid; the message names it and what is allowed."""


def _render(value: Any) -> str:
    """The string the algorithm expects: "True"/"False", plain decimals without exponents."""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, float):
        return format(Decimal(repr(value)), "f")
    return str(value)


class Hyperparameters(BaseModel):
    """Every hyperparameter of the algorithm with roadseg's defaults (deeplab, pretrained resnet-50)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    num_classes: Annotated[int, Field(ge=2, le=254)]
    num_training_samples: Annotated[int, Field(gt=0)]
    backbone: Literal[BACKBONES] = "resnet-50"
    algorithm: Literal[HEADS] = "deeplab"
    use_pretrained_model: bool = True
    base_size: Annotated[int, Field(gt=16)] = 520
    crop_size: Annotated[int, Field(gt=16)] = 240
    epochs: Annotated[int, Field(gt=0)] = 10
    learning_rate: Annotated[float, Field(gt=0, le=1)] = 0.001
    optimizer: Literal[OPTIMIZERS] = "sgd"
    lr_scheduler: Literal["poly", "cosine", "step"] = "poly"
    lr_scheduler_step: str | None = None
    lr_scheduler_factor: Annotated[float, Field(ge=0, le=1)] = 0.1
    mini_batch_size: Annotated[int, Field(gt=0)] = 16
    validation_mini_batch_size: Annotated[int, Field(gt=0)] = 16
    momentum: Annotated[float, Field(gt=0, le=1)] = 0.9
    weight_decay: Annotated[float, Field(gt=0, lt=1)] = 0.0001
    gamma1: Annotated[float, Field(ge=0, le=1)] = 0.9
    gamma2: Annotated[float, Field(ge=0, le=1)] = 0.9
    syncbn: bool = False
    early_stopping: bool = False
    early_stopping_min_epochs: Annotated[int, Field(ge=0)] = 5
    early_stopping_patience: Annotated[int, Field(gt=0)] = 4
    early_stopping_tolerance: Annotated[float, Field(ge=0, le=1)] = 0.0

    _notices: list[str] = PrivateAttr(default_factory=list)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_numbers(cls, value: Any, info: Any) -> Any:
        # pydantic would read True as 1: a YAML "epochs: yes" is a mistake, not one epoch.
        if isinstance(value, bool) and info.field_name not in ("use_pretrained_model", "syncbn", "early_stopping"):
            raise ValueError("a boolean is not a number here")
        return value

    @field_validator("lr_scheduler_step", mode="before")
    @classmethod
    def _steps_text(cls, value: Any) -> Any:
        # YAML gives 10 or [10, 20]; the algorithm wants "10,20".
        if isinstance(value, int):
            return str(value)
        if isinstance(value, (list, tuple)):
            return ",".join(str(v) for v in value)
        return value

    @field_validator("lr_scheduler_step")
    @classmethod
    def _steps_valid(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = [p.strip() for p in value.split(",")]
        if not all(p.isdigit() and int(p) > 0 for p in parts):
            raise ValueError("every step must be a positive integer epoch")
        steps = [int(p) for p in parts]
        if any(b <= a for a, b in zip(steps, steps[1:], strict=False)):
            raise ValueError("steps must be strictly increasing")
        return ",".join(str(s) for s in steps)

    @model_validator(mode="after")
    def _cross_field(self) -> Hyperparameters:
        explicit = self.model_fields_set
        if self.lr_scheduler == "step" and self.lr_scheduler_step is None:
            raise ValueError(
                "lr_scheduler_step is required when lr_scheduler is 'step': give the epochs at which the "
                'learning rate drops, e.g. "10,20"'
            )
        if self.lr_scheduler != "step" and self.lr_scheduler_step is not None:
            raise ValueError(
                f"lr_scheduler_step is only used with lr_scheduler 'step', not '{self.lr_scheduler}': "
                "remove it or set lr_scheduler to step"
            )
        if self.lr_scheduler_step is not None:
            late = [s for s in self.lr_scheduler_step.split(",") if int(s) >= self.epochs]
            if late:
                self._notices.append(
                    f"lr_scheduler_step epoch(s) {', '.join(late)} are not below epochs ({self.epochs}) "
                    "and never take effect"
                )
        for name, (owner, owner_value) in _ONLY_WITH.items():
            if name in explicit and getattr(self, owner) != owner_value:
                self._notices.append(
                    f"{name} is ignored: only {owner}={_render(owner_value)} uses it, and {owner} is "
                    f"{_render(getattr(self, owner))}; it is left out of the job's hyperparameters"
                )
        if self.crop_size % 8:
            rounded = -(-self.crop_size // 8) * 8
            self._notices.append(f"crop_size {self.crop_size} is rounded up to {rounded} by the algorithm")
            # Frozen model: write the value the algorithm will really use, once, during validation.
            self.__dict__["crop_size"] = rounded
        return self

    @property
    def warnings(self) -> list[str]:
        """What validation changed or will leave out, for the synth log and the pipeline description."""
        return list(self._notices)

    def notices(self) -> list[str]:
        """Same as :attr:`warnings`."""
        return self.warnings

    def to_algorithm_strings(self) -> dict[str, str]:
        """HyperParameters for CreateTrainingJob: strings only, without values the algorithm ignores."""
        rendered = {}
        for name in HYPERPARAMETER_NAMES:
            value = getattr(self, name)
            if value is None:
                continue
            if name in _ONLY_WITH:
                owner, owner_value = _ONLY_WITH[name]
                if getattr(self, owner) != owner_value:
                    continue
            rendered[name] = _render(value)
        return rendered

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | None = None, **required: Any) -> Hyperparameters:
        """Build from config or pipeline values (strings such as "True" or "0.01" accepted).

        ``required`` carries values roadseg computes (num_classes from the scheme, num_training_samples
        from preparation); a conflicting value in ``mapping`` is an error rather than a silent override.
        """
        values = dict(mapping or {})
        unknown = sorted(k for k in [*values, *required] if k not in HYPERPARAMETER_NAMES)
        if unknown:
            hints = []
            for name in unknown:
                close = difflib.get_close_matches(name, HYPERPARAMETER_NAMES, n=1)
                hints.append(f"'{name}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
            raise HyperparameterError(
                f"unknown hyperparameter(s) {', '.join(hints)}; "
                f"known hyperparameters: {', '.join(HYPERPARAMETER_NAMES)}"
            )
        for name, value in required.items():
            if name in values and str(values[name]) != str(value):
                raise HyperparameterError(
                    f"hyperparameter '{name}' is {values[name]!r} in the configuration but roadseg computed "
                    f"{value!r}: remove it from the configuration"
                )
            values[name] = value
        values = {k: (v.strip() if isinstance(v, str) else v) for k, v in values.items()}
        try:
            return cls(**values)
        except ValidationError as exc:
            raise HyperparameterError(_describe(exc)) from None


def _describe(error: ValidationError) -> str:
    """One line per problem, naming the hyperparameter, the bad value and the allowed values."""
    lines = []
    for err in error.errors():
        message = err["msg"].removeprefix("Value error, ")
        if not err["loc"]:
            lines.append(message)
            continue
        name = str(err["loc"][0])
        if err["type"] == "missing":
            lines.append(f"hyperparameter '{name}' is required; allowed: {ALLOWED.get(name, '?')}")
        else:
            lines.append(
                f"hyperparameter '{name}' has invalid value {err.get('input')!r} ({message}); "
                f"allowed: {ALLOWED.get(name, '?')}"
            )
    return "; ".join(lines)


def _previous_value(previous: Mapping[str, str], name: str) -> str | None:
    # DescribeTrainingJob may return JSON-quoted strings ('"deeplab"') for jobs started by the SDK.
    value = previous.get(name, ALGORITHM_DEFAULTS.get(name))
    return None if value is None else str(value).strip().strip('"')


def check_incremental(previous: Mapping[str, str], new: Hyperparameters) -> None:
    """Refuse incremental training whose network shape differs from the earlier model's."""
    mismatches = []
    for name in INCREMENTAL_FIXED:
        before = _previous_value(previous, name)
        if before is None:
            raise HyperparameterError(
                f"the earlier model's hyperparameters have no '{name}': cannot check incremental training; "
                "pass the earlier training job's HyperParameters"
            )
        if name == "crop_size" and before.isdigit():
            before = str(-(-int(before) // 8) * 8)  # the earlier job ran with the rounded value too
        after = _render(getattr(new, name))
        if before != after:
            mismatches.append(f"{name}: earlier model {before!r}, new {after!r}")
    if mismatches:
        raise HyperparameterError(
            f"incremental training must keep {', '.join(INCREMENTAL_FIXED)} of the earlier model; "
            f"changed: {'; '.join(mismatches)} (train from scratch instead, or set them back)"
        )


@dataclass(frozen=True)
class TunableRange:
    """A search range of automatic model tuning (the tuning pipeline's ParameterRanges)."""

    name: str
    kind: Literal["continuous", "integer", "categorical"]
    min: float | None = None
    max: float | None = None
    values: tuple[str, ...] = ()
    scaling: Literal["Logarithmic", "Linear", "Auto"] = "Auto"

    def as_parameter_range(self) -> dict[str, Any]:
        """This range in the CreateHyperParameterTuningJob ParameterRanges item shape."""
        if self.kind == "categorical":
            return {"Name": self.name, "Values": list(self.values)}
        lo, hi = (int(self.min), int(self.max)) if self.kind == "integer" else (self.min, self.max)
        return {"Name": self.name, "MinValue": _render(lo), "MaxValue": _render(hi), "ScalingType": self.scaling}


# The tuning pipeline's search space (training.pipelines turns these into the SDK's parameter ranges), within
# the ranges the AWS semantic-segmentation tuning guide recommends.
TUNABLE_RANGES: tuple[TunableRange, ...] = (
    TunableRange("learning_rate", "continuous", 1e-4, 1e-1, scaling="Logarithmic"),
    TunableRange("mini_batch_size", "integer", 4, 32),
    TunableRange("momentum", "continuous", 0.9, 0.999),
    TunableRange("weight_decay", "continuous", 1e-5, 1e-3),
    TunableRange("optimizer", "categorical", values=("sgd", "adam", "rmsprop")),
    TunableRange("algorithm", "categorical", values=HEADS),
)
