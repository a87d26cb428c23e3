"""Train/validation splits BY DRIVE for dataset versions: pure functions, no AWS.

Neighbouring frames of one drive are near-duplicates, so a drive's frames never straddle train and validation
(validation scores would measure memory, not generalisation). Which drives are validation is decided once,
seeded, when a first version is written (or when ``--reshuffle-validation`` asks for it); later versions keep the
validation drives of their parent, so gate results of models trained on different versions stay comparable:

- a frame of a drive the parent had in validation goes to validation (the validation set grows, never loses a
  frame, and no drive straddles); the decision says how many frames that added;
- a frame of any other drive goes to train.

A frame without a drive (uploaded outside a drive log) is its own group: nothing tells which frames were taken
together, so such frames are split one by one (``group_of``).

    group_of(drive, frame_name) -> str
    assign_splits(frames: Mapping[str, str], *, parent_validation_groups, validation_fraction, seed, reshuffle)
        -> SplitDecision  (frames: frame name -> group; raises SplitError with one line when no split is possible)
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

TRAIN = "train"
VALIDATION = "validation"
SPLITS = (TRAIN, VALIDATION)
DEFAULT_VALIDATION_FRACTION = 0.2
DEFAULT_SEED = 0
# The group of a frame that came without a drive: the frame alone (see the module docstring).
NO_DRIVE_PREFIX = "frame:"


class SplitError(ValueError):
    """No split by drive is possible (one line: what, why, how to fix)."""


def group_of(drive: str | None, frame_name: str) -> str:
    """The unit a split never cuts: the drive (``vehicle/drive``), or the frame itself when it has no drive."""
    return drive if drive else f"{NO_DRIVE_PREFIX}{frame_name}"


@dataclass(frozen=True)
class SplitDecision:
    """Split per frame plus what the decision rests on (recorded in the version's manifest)."""

    splits: Mapping[str, str]               # frame name -> train | validation
    validation_groups: tuple[str, ...]      # sorted
    seed: int
    validation_fraction: float
    reshuffled: bool                        # validation drawn afresh (first version or --reshuffle-validation)
    grown_validation_frames: int            # frames added to validation from drives already there

    def counts(self) -> dict[str, int]:
        counted = Counter(self.splits.values())
        return {split: counted.get(split, 0) for split in SPLITS}


def _draw_order(groups: Iterable[str], seed: int) -> list[str]:
    """The groups in a seeded order that does not depend on the order they were given in (or on PYTHONHASHSEED)."""
    ordered = sorted(groups)
    random.Random(seed).shuffle(ordered)
    return ordered


def _draw_validation(group_sizes: Mapping[str, int], validation_fraction: float, seed: int) -> set[str]:
    """Seeded groups whose frames make up about ``validation_fraction`` of all, at least one group, never all."""
    total = sum(group_sizes.values())
    target = validation_fraction * total
    chosen: set[str] = set()
    taken = 0
    for group in _draw_order(group_sizes, seed):
        if chosen and taken + group_sizes[group] / 2 > target:
            # Adding this group would overshoot by more than it undershoots: stop (the first group always goes in).
            continue
        if len(chosen) == len(group_sizes) - 1:
            break
        chosen.add(group)
        taken += group_sizes[group]
        if taken >= target:
            break
    return chosen


def assign_splits(frames: Mapping[str, str], *, parent_validation_groups: Iterable[str] | None = None,
                  validation_fraction: float = DEFAULT_VALIDATION_FRACTION, seed: int = DEFAULT_SEED,
                  reshuffle: bool = False, parent_frames: Iterable[str] = ()) -> SplitDecision:
    """Split ``frames`` (frame name -> group, see :func:`group_of`).

    ``parent_validation_groups``: the parent version's validation groups (None for a first version). They stay
    validation unless ``reshuffle``; then (and for a first version) validation groups are drawn with ``seed``.
    ``parent_frames``: the parent's frame names, to count the frames that joined a kept validation drive.
    """
    if not 0 < validation_fraction < 1:
        raise SplitError(f"validation fraction {validation_fraction} must be between 0 and 1 (e.g. 0.2)")
    if not frames:
        raise SplitError("no frames to split: the version would be empty")
    group_sizes = Counter(frames.values())
    draw = reshuffle or parent_validation_groups is None
    if draw:
        if len(group_sizes) < 2:
            only = next(iter(group_sizes))
            raise SplitError(
                f"all {len(frames)} frames come from one drive ({only}): splits are by drive, so a version needs "
                "frames of at least two drives (label frames of another drive, then import again)")
        validation = _draw_validation(group_sizes, validation_fraction, seed)
        grown = 0
    else:
        kept = set(parent_validation_groups or ())
        validation = kept & set(group_sizes)
        if not validation:
            raise SplitError(
                "none of the parent version's validation drives has frames in the new version, so it would have "
                "no validation frames: pass --reshuffle-validation to draw validation drives afresh")
        if validation == set(group_sizes):
            raise SplitError(
                "every drive of the new version is a validation drive of the parent, so it would have no training "
                "frames: label frames of other drives, or pass --reshuffle-validation")
    splits = {name: (VALIDATION if group in validation else TRAIN) for name, group in frames.items()}
    if not draw:
        known = set(parent_frames)
        grown = sum(1 for name, split in splits.items() if split == VALIDATION and name not in known)
    return SplitDecision(splits=splits, validation_groups=tuple(sorted(validation)), seed=seed,
                         validation_fraction=validation_fraction, reshuffled=draw, grown_validation_frames=grown)
