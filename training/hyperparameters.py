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

from contracts.instances import gpu_count, training_gpu

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


# The tuning pipeline's search space (training.pipelines.tuning_job turns these into the SDK's parameter ranges), within
# the ranges the AWS semantic-segmentation tuning guide recommends.
TUNABLE_RANGES: tuple[TunableRange, ...] = (
    TunableRange("learning_rate", "continuous", 1e-4, 1e-1, scaling="Logarithmic"),
    TunableRange("mini_batch_size", "integer", 4, 32),
    TunableRange("momentum", "continuous", 0.9, 0.999),
    TunableRange("weight_decay", "continuous", 1e-5, 1e-3),
    TunableRange("optimizer", "categorical", values=("sgd", "adam", "rmsprop")),
    TunableRange("algorithm", "categorical", values=HEADS),
)


def tuning_ranges(max_mini_batch_size: int) -> tuple[TunableRange, ...]:
    """TUNABLE_RANGES with mini_batch_size capped at what fits the training GPU(s).

    The cap is the pipelines' mini_batch_size (the serving contract's estimate for the configured instance type, or
    an explicit override). The floor stays 4, lowered to a quarter of a small cap but never below 2 (batch
    normalisation on one sample per GPU is not worth trying); with a cap of 2 or less mini_batch_size is not
    searched at all (it stays a static hyperparameter).
    """
    ranges = []
    for tunable in TUNABLE_RANGES:
        if tunable.name == "mini_batch_size":
            high = min(int(tunable.max), max_mini_batch_size)
            low = max(2, min(int(tunable.min), high // 4))
            if high <= low:
                continue
            tunable = TunableRange(tunable.name, tunable.kind, low, high, scaling=tunable.scaling)
        ranges.append(tunable)
    return tuple(ranges)


# --------------------------------------------------------------------------------------------------
# One resolution contract: training derives from the serving resolution
# --------------------------------------------------------------------------------------------------
# The frames the endpoints see are preprocessing.target_width x target_height (the serving resolution). The
# algorithm rescales each training image so that its long side is base_size x random(0.5, 2.0) and trains on square
# crops of crop_size (segmentation-hyperparameters:
# https://docs.aws.amazon.com/sagemaker/latest/dg/segmentation-hyperparameters.html). So:
#   base_size  = the serving long side: the mean training scale is the inference scale (GluonCV's convention for
#                driving scenes, e.g. Cityscapes base_size 2048 = the frame width it is evaluated at).
#   crop_size  = 512 (a driving-scene crop: enough context for road users; GluonCV's Cityscapes crops are 768),
#                capped at the serving short side (rounded down to a multiple of 8, the algorithm rounds up): a crop
#                taller than the frame the model serves is mostly padding. The cap wins over the 480 floor, which
#                only a serving short side below 480 can break.
#   mini_batch_size, validation_mini_batch_size = what fits the configured training instance's GPU memory
#                (contracts.instances.TRAINING_GPUS, ESTIMATES until measured), scaled by the crop area, 3/4 for
#                resnet-101, times the instance's GPUs: the algorithm's page does not say whether mini_batch_size is
#                per GPU; its sibling image classification splits it across the GPUs of one instance
#                (https://docs.aws.amazon.com/sagemaker/latest/dg/IC-Hyperparameter.html), and so does GluonCV.
# Explicit training.hyperparameters values win; those that break the contract are reported by
# serving_contract_warnings (and warned about at synth).
DRIVING_CROP = 512
MIN_DRIVING_CROP = 480
BASE_SIZE_TOLERANCE = 0.25  # base_size further than this fraction from the serving long side breaks the contract
_BACKBONE_BATCH_FACTOR = {"resnet-50": 1.0, "resnet-101": 0.75}  # ESTIMATE: deeper backbone, more activations


@dataclass(frozen=True)
class ServingContract:
    """The serving resolution and the training instance the training hyperparameters derive from."""

    serving_width: int
    serving_height: int
    training_instance_type: str

    @property
    def long_side(self) -> int:
        return max(self.serving_width, self.serving_height)

    @property
    def short_side(self) -> int:
        return min(self.serving_width, self.serving_height)

    @property
    def resolution(self) -> str:
        return f"{self.serving_width}x{self.serving_height}"

    def base_size(self) -> int:
        return max(17, self.long_side)

    def crop_size(self) -> int:
        return max(24, min(DRIVING_CROP, self.short_side // 8 * 8))

    def crop_floor(self) -> int:
        """The smallest crop_size the contract accepts: 480, or the default when the serving frame is smaller."""
        return min(MIN_DRIVING_CROP, self.crop_size())

    def mini_batch_size(self, crop_size: int, backbone: str = "resnet-50") -> int:
        """Training samples per step that fit the instance's GPU memory (an ESTIMATE, see TRAINING_GPUS)."""
        gpu = training_gpu(self.training_instance_type)
        per_gpu = gpu.batch_at_512 * (DRIVING_CROP / crop_size) ** 2 * _BACKBONE_BATCH_FACTOR.get(backbone, 1.0)
        return max(1, int(per_gpu)) * gpu_count(self.training_instance_type)

    def defaults(self, explicit: Mapping[str, Any] | None = None) -> dict[str, int]:
        """The contract's base_size, crop_size and batch sizes, given the explicit values they depend on."""
        explicit = explicit or {}
        crop = _rounded_crop(explicit["crop_size"]) if "crop_size" in explicit else self.crop_size()
        batch = self.mini_batch_size(crop, str(explicit.get("backbone", "resnet-50")).strip())
        return {"base_size": self.base_size(), "crop_size": crop, "mini_batch_size": batch,
                "validation_mini_batch_size": batch}


def _rounded_crop(value: Any) -> int:
    try:
        return -(-int(str(value).strip()) // 8) * 8
    except ValueError:
        return DRIVING_CROP  # not a number: Hyperparameters reports it


def serving_contract_warnings(
    hyperparameters: Hyperparameters, explicit: set[str], contract: ServingContract
) -> list[str]:
    """One line per explicit hyperparameter that breaks the serving contract (the defaults never do)."""
    problems = []
    hp, long_side, short_side = hyperparameters, contract.long_side, contract.short_side
    serving = f"the serving resolution {contract.resolution} (preprocessing.target_width/target_height)"
    if "base_size" in explicit and abs(hp.base_size - long_side) > BASE_SIZE_TOLERANCE * long_side:
        problems.append(
            f"base_size {hp.base_size} is {abs(hp.base_size - long_side) / long_side:.0%} away from the long side of "
            f"{serving}: training scales (base_size x 0.5..2.0) no longer centre on the scale the model serves at; "
            f"remove it to use {contract.base_size()}"
        )
    if "crop_size" in explicit and hp.crop_size > short_side:
        problems.append(
            f"crop_size {hp.crop_size} is above the short side ({short_side}) of {serving}: crops larger than the "
            f"served frame are mostly padding; remove it to use {contract.crop_size()}"
        )
    elif "crop_size" in explicit and hp.crop_size < contract.crop_floor():
        problems.append(
            f"crop_size {hp.crop_size} is below {contract.crop_floor()}: too little context for driving scenes at "
            f"{serving}; remove it to use {contract.crop_size()}"
        )
    fit = contract.mini_batch_size(hp.crop_size, hp.backbone)
    for name in ("mini_batch_size", "validation_mini_batch_size"):
        if name in explicit and getattr(hp, name) > fit:
            problems.append(
                f"{name} {getattr(hp, name)} is above the {fit} estimated to fit {contract.training_instance_type} "
                f"at crop_size {hp.crop_size} with {hp.backbone} (an ESTIMATE, see contracts/instances.py): the job "
                "may run out of GPU memory"
            )
    return problems


def contract_hyperparameters(
    mapping: Mapping[str, Any] | None, contract: ServingContract, **required: Any
) -> tuple[Hyperparameters, list[str]]:
    """Hyperparameters with the serving contract's defaults under the explicit ``mapping``, and the contract's
    warnings about explicit values that break it. ``required`` as in :meth:`Hyperparameters.from_mapping`."""
    explicit = dict(mapping or {})
    derived = {k: v for k, v in contract.defaults(explicit).items() if k not in explicit}
    hyperparameters = Hyperparameters.from_mapping({**derived, **explicit}, **required)
    return hyperparameters, serving_contract_warnings(hyperparameters, set(explicit), contract)
