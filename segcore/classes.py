"""Label schemes: the one place that says which class a pixel value means.

Preparation, evaluation, the synthetic scene generator and the stacks all read class names, colours and
ID mappings from here, so a scheme cannot drift between the data the model is trained on and the gate
that judges it. Standard library and numpy only: this module runs inside SageMaker Processing containers.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

IGNORE_INDEX = 255
MIN_CLASSES = 2
MAX_CLASSES = 254  # the algorithm's num_classes range; 255 is the ignore value
SCHEME_NAMES = ("cityscapes", "camvid", "custom")

DRIVABLE_CLASSES = ("road",)

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class SegClass:
    """One trainable class: its pixel value in annotation masks, its name and its display colour."""

    train_id: int
    name: str
    color: RGB


@dataclass(frozen=True)
class ClassScheme:
    """An ordered set of classes; ``classes[i].train_id == i`` always holds.

    ``label_id_to_train_id`` is set for datasets whose raw annotations use other IDs (Cityscapes
    labelIds); raw IDs it does not list map to ``ignore_index``.

    ``vulnerable_road_users`` are the classes whose errors hurt people first (pedestrians, cyclists, ...).
    ``safety_iou_floors`` are the scheme's default IoU floors of the quality gate, class name -> floor in 0..1:
    the environment config's ``classes.safety_critical_iou_floors`` defaults to them. A custom scheme has none
    (its config must state its floors).
    """

    name: str
    classes: tuple[SegClass, ...]
    ignore_index: int = IGNORE_INDEX
    label_id_to_train_id: Mapping[int, int] | None = field(default=None, hash=False)
    vulnerable_road_users: tuple[str, ...] = ()
    safety_iou_floors: Mapping[str, float] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        _check_classes(self.name, self.classes, self.ignore_index)
        object.__setattr__(self, "vulnerable_road_users", tuple(self.vulnerable_road_users))
        self.check_class_names(self.vulnerable_road_users, "vulnerable_road_users")
        if len(set(self.vulnerable_road_users)) != len(self.vulnerable_road_users):
            raise ValueError(f"scheme '{self.name}': vulnerable road users {self.vulnerable_road_users} repeat a class")
        object.__setattr__(self, "safety_iou_floors", check_iou_floors(self, self.safety_iou_floors))
        if self.label_id_to_train_id is not None:
            mapping = dict(self.label_id_to_train_id)
            for label_id, train_id in mapping.items():
                if not 0 <= label_id <= 255:
                    raise ValueError(f"scheme '{self.name}': label id {label_id} is outside 0..255 (masks are 8-bit)")
                if train_id != self.ignore_index and not 0 <= train_id < len(self.classes):
                    raise ValueError(
                        f"scheme '{self.name}': label id {label_id} maps to train id {train_id}, which is neither "
                        f"a class (0..{len(self.classes) - 1}) nor the ignore index {self.ignore_index}"
                    )
            # Frozen means frozen: nobody may edit the mapping of a shared scheme constant.
            object.__setattr__(self, "label_id_to_train_id", MappingProxyType(mapping))

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.classes)

    def check_class_names(self, names: Iterable[str], what: str) -> None:
        """ValueError ``<what>: [...] are not classes of the '<scheme>' scheme (allowed: ...)`` for unknown names."""
        unknown = sorted(set(names) - set(self.names))
        if unknown:
            raise ValueError(
                f"{what}: {unknown} are not classes of the '{self.name}' scheme (allowed: {', '.join(self.names)})"
            )

    def index(self, name: str) -> int:
        """Train ID of a class name; a typo fails with the list of valid names."""
        for c in self.classes:
            if c.name == name:
                return c.train_id
        raise ValueError(f"scheme '{self.name}' has no class '{name}'; valid names: {', '.join(self.names)}")

    def palette(self) -> list[int]:
        """Flat 768-value palette for Pillow "P" mode masks; unused entries and the ignore index are black."""
        flat = [0] * 768
        for c in self.classes:
            flat[3 * c.train_id : 3 * c.train_id + 3] = list(c.color)
        return flat

    def label_lut(self) -> np.ndarray:
        """uint8[256] lookup from raw label IDs to train IDs (unmapped IDs -> ignore index)."""
        if self.label_id_to_train_id is None:
            raise ValueError(
                f"scheme '{self.name}' has no label-id mapping: its masks must already hold train ids "
                f"(0..{self.num_classes - 1}, {self.ignore_index} = ignore)"
            )
        lut = np.full(256, self.ignore_index, dtype=np.uint8)
        for label_id, train_id in self.label_id_to_train_id.items():
            lut[label_id] = train_id
        return lut

    def train_to_label_lut(self) -> np.ndarray:
        """uint8[256] inverse of :meth:`label_lut`: each train ID to its (lowest) raw label ID.

        The ignore index maps to the lowest label ID that is ignored (Cityscapes: 0 "unlabeled"), so
        synthetic raw annotations round-trip through :meth:`label_lut`.
        """
        forward = self.label_lut()
        inverse = np.zeros(256, dtype=np.uint8)
        for train_id in [*range(self.num_classes), self.ignore_index]:
            sources = np.flatnonzero(forward == train_id)
            if sources.size == 0:
                raise ValueError(f"scheme '{self.name}': train id {train_id} has no raw label id mapping to it")
            inverse[train_id] = sources[0]
        return inverse

    def valid_values(self) -> frozenset[int]:
        """Pixel values a train-ID mask of this scheme may hold."""
        return frozenset([*range(self.num_classes), self.ignore_index])


def _check_classes(scheme: str, classes: Sequence[SegClass], ignore_index: int) -> None:
    if not MIN_CLASSES <= len(classes) <= MAX_CLASSES:
        raise ValueError(
            f"scheme '{scheme}' has {len(classes)} classes; the algorithm needs {MIN_CLASSES}..{MAX_CLASSES}"
        )
    if not 0 <= ignore_index <= 255 or ignore_index < len(classes):
        raise ValueError(
            f"scheme '{scheme}': ignore index {ignore_index} must be within {len(classes)}..255 "
            f"(above every train id, 8-bit)"
        )
    seen: set[str] = set()
    for position, c in enumerate(classes):
        if c.train_id != position:
            raise ValueError(
                f"scheme '{scheme}': class '{c.name}' has train id {c.train_id} at position {position}; "
                "list classes in train-id order 0, 1, 2, ..."
            )
        if not isinstance(c.name, str) or not c.name.strip():
            raise ValueError(f"scheme '{scheme}': class {position} needs a non-empty name")
        if c.name in seen:
            raise ValueError(f"scheme '{scheme}': class name '{c.name}' appears more than once; names must be unique")
        seen.add(c.name)
        if len(c.color) != 3 or any(not isinstance(v, int) or not 0 <= v <= 255 for v in c.color):
            raise ValueError(f"scheme '{scheme}': class '{c.name}' colour {c.color!r} must be three ints in 0..255")


def check_iou_floors(scheme: ClassScheme, floors: Mapping[str, float]) -> Mapping[str, float]:
    """``floors`` as a read-only mapping once every name is a class of ``scheme`` and every floor is in 0..1."""
    scheme.check_class_names(floors, "safety_iou_floors")
    bad = {n: f for n, f in floors.items() if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 <= f <= 1}
    if bad:
        raise ValueError(f"scheme '{scheme.name}': IoU floors must be numbers within 0..1, got {bad}")
    return MappingProxyType({n: float(f) for n, f in floors.items()})


def _classes(entries: Iterable[tuple[str, RGB]]) -> tuple[SegClass, ...]:
    return tuple(SegClass(i, name, tuple(color)) for i, (name, color) in enumerate(entries))


# Official cityscapesScripts labels.py: the 19 evaluated classes in train-id order with their colours.
CITYSCAPES = ClassScheme(
    name="cityscapes",
    classes=_classes(
        [
            ("road", (128, 64, 128)),
            ("sidewalk", (244, 35, 232)),
            ("building", (70, 70, 70)),
            ("wall", (102, 102, 156)),
            ("fence", (190, 153, 153)),
            ("pole", (153, 153, 153)),
            ("traffic light", (250, 170, 30)),
            ("traffic sign", (220, 220, 0)),
            ("vegetation", (107, 142, 35)),
            ("terrain", (152, 251, 152)),
            ("sky", (70, 130, 180)),
            ("person", (220, 20, 60)),
            ("rider", (255, 0, 0)),
            ("car", (0, 0, 142)),
            ("truck", (0, 0, 70)),
            ("bus", (0, 60, 100)),
            ("train", (0, 80, 100)),
            ("motorcycle", (0, 0, 230)),
            ("bicycle", (119, 11, 32)),
        ]
    ),
    # labelId -> trainId for labelIds 0..33; every other labelId (and -1, license plate) is ignored.
    label_id_to_train_id={
        **{label_id: IGNORE_INDEX for label_id in range(34)},
        7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9,
        23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
    },
    vulnerable_road_users=("person", "rider", "bicycle", "motorcycle"),
    safety_iou_floors={"person": 0.5, "rider": 0.4, "bicycle": 0.4, "motorcycle": 0.3},
)

# The 11-class CamVid variant used by SegNet and most CamVid benchmarks, with its usual colours.
CAMVID = ClassScheme(
    name="camvid",
    classes=_classes(
        [
            ("sky", (128, 128, 128)),
            ("building", (128, 0, 0)),
            ("pole", (192, 192, 128)),
            ("road", (128, 64, 128)),
            ("sidewalk", (60, 40, 222)),
            ("tree", (128, 128, 0)),
            ("sign symbol", (192, 128, 128)),
            ("fence", (64, 64, 128)),
            ("car", (64, 0, 128)),
            ("pedestrian", (64, 64, 0)),
            ("bicyclist", (0, 128, 192)),
        ]
    ),
    # CamVid's 11 classes have no separate rider or motorcycle: a cyclist and their bicycle are "bicyclist".
    vulnerable_road_users=("pedestrian", "bicyclist"),
    safety_iou_floors={"pedestrian": 0.5, "bicyclist": 0.4},
)

_BUILT_IN = {"cityscapes": CITYSCAPES, "camvid": CAMVID}


def custom_scheme(
    name: str, classes: Sequence[tuple[str, RGB]], vulnerable_road_users: Sequence[str] = ()
) -> ClassScheme:
    """A user-defined scheme; classes get train IDs in list order. It has no default IoU floors."""
    entries = list(classes)
    if not MIN_CLASSES <= len(entries) <= MAX_CLASSES:
        raise ValueError(
            f"custom scheme '{name}' has {len(entries)} classes; the algorithm needs {MIN_CLASSES}..{MAX_CLASSES}"
        )
    names = [entry[0] for entry in entries]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"custom scheme '{name}': class names must be unique, repeated: {', '.join(duplicates)}")
    for entry in entries:
        color = entry[1]
        if not isinstance(color, Sequence) or len(color) != 3:
            raise ValueError(f"custom scheme '{name}': class '{entry[0]}' colour {color!r} must be [r, g, b]")
    return ClassScheme(
        name=name,
        classes=_classes((n, tuple(c)) for n, c in entries),
        vulnerable_road_users=tuple(vulnerable_road_users),
    )


def _custom_entries(custom: Iterable[Any]) -> list[tuple[str, RGB]]:
    """Accept config objects (``.name``/``.color``), dicts or ``(name, colour)`` pairs."""
    entries = []
    for item in custom:
        if hasattr(item, "name") and hasattr(item, "color"):
            entries.append((item.name, tuple(item.color)))
        elif isinstance(item, Mapping):
            entries.append((item["name"], tuple(item["color"])))
        else:
            name, color = item
            entries.append((name, tuple(color)))
    return entries


def _custom_vulnerable(custom: Iterable[Any]) -> list[str]:
    """Names of the custom classes flagged ``vulnerable`` (config objects or dicts; pairs carry no flag)."""
    names = []
    for item in custom:
        flag = item.get("vulnerable", False) if isinstance(item, Mapping) else getattr(item, "vulnerable", False)
        if flag is True:
            names.append(item["name"] if isinstance(item, Mapping) else item.name)
        elif flag is not False:
            raise ValueError(f"custom class {item!r}: 'vulnerable' must be true or false")
    return names


def get_scheme(name: str, custom: Iterable[Any] | None = None) -> ClassScheme:
    """Scheme by name: "cityscapes", "camvid", or "custom" with its class list.

    Custom classes are config objects (``.name``, ``.color``, optional ``.vulnerable``), dicts with the same
    keys, or ``(name, colour)`` pairs; those flagged ``vulnerable`` are the scheme's vulnerable road users.
    """
    key = name.strip().lower()
    if key == "custom":
        if not custom:
            raise ValueError("scheme 'custom' needs its class list: pairs of name and (r, g, b) colour")
        custom = list(custom)
        return custom_scheme("custom", _custom_entries(custom), _custom_vulnerable(custom))
    if key not in _BUILT_IN:
        raise ValueError(f"unknown class scheme '{name}'; choose one of {', '.join(SCHEME_NAMES)}")
    if custom:
        raise ValueError(f"a custom class list is only allowed with scheme 'custom', not '{name}'")
    return _BUILT_IN[key]


def scheme_from_config(classes_cfg: Any) -> ClassScheme:
    """Scheme from the ``classes`` section of the environment config (``.scheme``, ``.custom``)."""
    return get_scheme(classes_cfg.scheme, getattr(classes_cfg, "custom", None))


def load_classes_file(path: str | Path) -> list[tuple[str, RGB]]:
    """Read a custom class list (JSON ``[{"name": ..., "color": [r, g, b]}, ...]``) for the CLIs."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read the class list {path}: {exc}") from None
    return parse_classes_json(text, source=str(path))


def parse_classes_json(text: str, source: str = "--classes-json") -> list[tuple[str, RGB]]:
    """Parse a custom class list given inline (for a local run: the pipelines and drive jobs pass the list's file,
    --classes-file, from the job settings; an inline list breaks SageMaker's 256-character argument limit)."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"cannot read the class list {source}: {exc}") from None
    if not isinstance(raw, list) or not all(isinstance(i, Mapping) and {"name", "color"} <= i.keys() for i in raw):
        raise ValueError(f'{source}: expected a JSON list of {{"name": ..., "color": [r, g, b]}} objects')
    return _custom_entries(raw)


def classes_json(scheme: ClassScheme) -> str:
    """The inverse of parse_classes_json, for a custom scheme."""
    return json.dumps([{"name": c.name, "color": list(c.color)} for c in scheme.classes], separators=(",", ":"))


def add_scheme_arguments(parser: Any) -> None:
    """--scheme plus the two ways to give a custom class list, shared by the prepare and evaluate CLIs."""
    parser.add_argument("--scheme", default="cityscapes", choices=list(SCHEME_NAMES))
    parser.add_argument("--classes-file", type=Path, help='scheme custom: JSON [{"name": ..., "color": [r, g, b]}]')
    parser.add_argument("--classes-json", help="scheme custom: the same list inline")


def scheme_from_arguments(args: Any) -> ClassScheme:
    """The scheme the CLI arguments name; ValueError with the reason when they are inconsistent."""
    custom = None
    if args.classes_file and args.classes_json:
        raise ValueError("give the custom classes once: --classes-file or --classes-json, not both")
    if args.classes_file:
        custom = load_classes_file(args.classes_file)
    elif args.classes_json:
        custom = parse_classes_json(args.classes_json)
    return get_scheme(args.scheme, custom)
