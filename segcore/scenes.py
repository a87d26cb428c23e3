"""Procedural driving-like scenes with exact Cityscapes ground truth, for tests, demos and smoke runs.

Real datasets cannot ship with the repository, and a pipeline that only ever saw solid-colour squares
would not exercise what matters (perspective, occlusion, thin poles, small people). Every shape is drawn
once on an *appearance* canvas; the RGB image and the mask are both lookups of that canvas, so the mask
matches the picture pixel for pixel by construction. Seeded and deterministic.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from segcore.classes import CITYSCAPES

# (appearance, Cityscapes class, base colour). Several appearances per class keep the image from being
# a recoloured mask: lane markings are white but "road", a rider's head is skin-coloured but "rider".
APPEARANCES: tuple[tuple[str, str, tuple[int, int, int]], ...] = (
    ("sky", "sky", (135, 172, 215)),
    ("facade", "building", (122, 112, 102)),
    ("facade2", "building", (152, 132, 116)),
    ("window", "building", (58, 68, 84)),
    ("foliage", "vegetation", (70, 108, 46)),
    ("trunk", "vegetation", (92, 72, 52)),
    ("grass", "terrain", (128, 150, 82)),
    ("pavement", "sidewalk", (172, 166, 160)),
    ("road", "road", (82, 82, 88)),
    ("lane", "road", (232, 232, 222)),
    ("pole", "pole", (112, 112, 118)),
    ("sign", "traffic sign", (232, 202, 40)),
    ("sign2", "traffic sign", (205, 40, 42)),
    ("housing", "traffic light", (38, 40, 38)),
    ("lamp_red", "traffic light", (232, 42, 30)),
    ("lamp_green", "traffic light", (40, 222, 92)),
    ("paint_red", "car", (172, 30, 32)),
    ("paint_blue", "car", (40, 62, 152)),
    ("paint_silver", "car", (186, 186, 192)),
    ("glass", "car", (40, 50, 62)),
    ("tyre", "car", (22, 22, 22)),
    ("skin", "person", (222, 182, 150)),
    ("coat", "person", (62, 62, 112)),
    ("coat2", "person", (142, 62, 42)),
    ("trousers", "person", (42, 42, 52)),
    ("jacket", "rider", (202, 122, 32)),
    ("rider_skin", "rider", (222, 182, 150)),
    ("frame", "bicycle", (30, 30, 30)),
    ("motorbike", "motorcycle", (122, 22, 22)),
)
_A = {name: i for i, (name, _, _) in enumerate(APPEARANCES)}
_CLASS_OF = np.full(256, CITYSCAPES.ignore_index, dtype=np.uint8)
for _i, (_, _cls, _) in enumerate(APPEARANCES):
    _CLASS_OF[_i] = CITYSCAPES.index(_cls)
CITIES = ("aachen", "bremen")


class _Scene:
    """Drawing state: the appearance canvas plus the road geometry objects are placed on."""

    def __init__(self, width: int, height: int, rng: np.random.Generator) -> None:
        self.w, self.h, self.rng = width, height, rng
        self.canvas = Image.new("L", (width, height), _A["sky"])
        self.draw = ImageDraw.Draw(self.canvas)
        self.horizon = height * rng.uniform(0.40, 0.50)
        self.vanish_x = width * rng.uniform(0.42, 0.58)
        self.road_bottom = (width * rng.uniform(-0.05, 0.15), width * rng.uniform(0.85, 1.05))

    def depth(self, y: float) -> float:
        """Perspective scale at image row y: 0 at the horizon, 1 at the bottom edge."""
        return max(0.0, (y - self.horizon) / (self.h - self.horizon))

    def road_edges(self, y: float) -> tuple[float, float]:
        s = self.depth(y)
        half_top = self.w * 0.015
        left = self.vanish_x - half_top + s * (self.road_bottom[0] - self.vanish_x + half_top)
        right = self.vanish_x + half_top + s * (self.road_bottom[1] - self.vanish_x - half_top)
        return left, right

    def sidewalk_edges(self, y: float) -> tuple[float, float]:
        """Outer edges of the left and right sidewalks at row y."""
        left, right = self.road_edges(y)
        width = (right - left) * 0.35
        return left - width, right + width

    def rect(self, x0: float, y0: float, x1: float, y1: float, app: str) -> None:
        # At least one pixel wide and high, so thin things survive small test images.
        x1, y1 = max(x1, x0 + 1), max(y1, y0 + 1)
        self.draw.rectangle([round(x0), round(y0), round(x1) - 1, round(y1) - 1], fill=_A[app])

    def ellipse(self, x0: float, y0: float, x1: float, y1: float, app: str, width: int = 0) -> None:
        x1, y1 = max(x1, x0 + 1), max(y1, y0 + 1)
        box = [round(x0), round(y0), round(x1) - 1, round(y1) - 1]
        if width:
            self.draw.ellipse(box, outline=_A[app], width=width)
        else:
            self.draw.ellipse(box, fill=_A[app])

    def polygon(self, points: list[tuple[float, float]], app: str) -> None:
        self.draw.polygon([(round(x), round(y)) for x, y in points], fill=_A[app])


def _background(sc: _Scene) -> None:
    w, h, rng, hz = sc.w, sc.h, sc.rng, sc.horizon
    x = 0.0
    while x < w:
        bw = w * rng.uniform(0.08, 0.22)
        if rng.random() < 0.85:
            top = max(0.0, hz - h * rng.uniform(0.12, 0.42))
            facade = "facade" if rng.random() < 0.5 else "facade2"
            sc.rect(x, top, x + bw, hz + h * 0.02, facade)
            win = max(2.0, bw / 8)
            for wy in np.arange(top + win, hz - win, 2.2 * win):
                for wx in np.arange(x + win, x + bw - win, 2.2 * win):
                    sc.rect(wx, wy, wx + win, wy + win * 1.3, "window")
        x += bw
    for _ in range(int(rng.integers(2, 6))):
        cx, r = w * rng.uniform(0, 1), h * rng.uniform(0.05, 0.12)
        sc.rect(cx - r * 0.12, hz - r, cx + r * 0.12, hz + h * 0.02, "trunk")
        sc.ellipse(cx - r, hz - 2.6 * r, cx + r, hz - 0.6 * r, "foliage")
    sc.rect(0, hz, w, h, "grass")
    sl_top, sr_top = sc.sidewalk_edges(hz)
    sl_bot, sr_bot = sc.sidewalk_edges(h)
    rl_top, rr_top = sc.road_edges(hz)
    rl_bot, rr_bot = sc.road_edges(h)
    sc.polygon([(sl_top, hz), (sr_top, hz), (sr_bot, h), (sl_bot, h)], "pavement")
    sc.polygon([(rl_top, hz), (rr_top, hz), (rr_bot, h), (rl_bot, h)], "road")
    # Dashed centre line: equal steps in depth, so dashes shrink towards the horizon.
    for k in range(12):
        s0, s1 = 0.92 ** (2 * k + 1), 0.92 ** (2 * k)
        y0, y1 = hz + s0 * (h - hz), hz + s1 * (h - hz)
        c0, c1 = sum(sc.road_edges(y0)) / 2, sum(sc.road_edges(y1)) / 2
        hw0, hw1 = max(0.5, w * 0.006 * s0), max(0.5, w * 0.006 * s1)
        sc.polygon([(c0 - hw0, y0), (c0 + hw0, y0), (c1 + hw1, y1), (c1 - hw1, y1)], "lane")


def _sidewalk_x(sc: _Scene, y: float, side: int) -> float:
    road_l, road_r = sc.road_edges(y)
    walk_l, walk_r = sc.sidewalk_edges(y)
    t = sc.rng.uniform(0.2, 0.8)
    x = walk_l + t * (road_l - walk_l) if side < 0 else road_r + t * (walk_r - road_r)
    # Near the camera the sidewalk may leave the frame: keep the object in view, on the verge.
    return float(np.clip(x, sc.w * 0.03, sc.w * 0.97))


def _pole(sc: _Scene, y: float, side: int, head: str) -> None:
    s, h = sc.depth(y), sc.h
    x = _sidewalk_x(sc, y, side)
    pw, ph = max(1.0, sc.w * 0.008 * s), h * 0.75 * s
    top = y - ph
    sc.rect(x - pw / 2, top, x + pw / 2, y, "pole")
    size = max(2.0, sc.w * 0.035 * s)
    if head == "sign":
        if sc.rng.random() < 0.5:
            sc.polygon([(x - size / 2, top), (x + size / 2, top), (x, top + size)], "sign")
        else:
            sc.ellipse(x - size / 2, top, x + size / 2, top + size, "sign2")
    else:
        sc.rect(x - size / 3, top, x + size / 3, top + 2.4 * size, "housing")
        lit = "lamp_red" if sc.rng.random() < 0.5 else "lamp_green"
        slot = 0 if lit == "lamp_red" else 2
        cy = top + 0.15 * size + slot * 0.75 * size
        sc.ellipse(x - size / 5, cy, x + size / 5, cy + 0.45 * size, lit)


def _car(sc: _Scene, y: float) -> None:
    left, right = sc.road_edges(y)
    cw = (right - left) * sc.rng.uniform(0.2, 0.28)
    x = sc.rng.uniform(left, max(left, right - cw))
    ch = cw * 0.55
    paint = ("paint_red", "paint_blue", "paint_silver")[int(sc.rng.integers(3))]
    sc.rect(x, y - ch, x + cw, y - ch * 0.15, paint)
    sc.rect(x + cw * 0.15, y - ch * 0.95, x + cw * 0.85, y - ch * 0.6, "glass")
    r = max(1.0, ch * 0.22)
    for wx in (x + cw * 0.2, x + cw * 0.8):
        sc.ellipse(wx - r, y - 2 * r, wx + r, y, "tyre")


def _person(sc: _Scene, y: float, side: int) -> None:
    s = sc.depth(y)
    x = _sidewalk_x(sc, y, side)
    ph = sc.h * 0.42 * s
    pw = ph * 0.28
    coat = "coat" if sc.rng.random() < 0.5 else "coat2"
    sc.rect(x - pw / 4, y - ph * 0.45, x - pw / 16, y, "trousers")
    sc.rect(x + pw / 16, y - ph * 0.45, x + pw / 4, y, "trousers")
    sc.rect(x - pw / 2, y - ph * 0.82, x + pw / 2, y - ph * 0.42, coat)
    sc.ellipse(x - pw / 4, y - ph, x + pw / 4, y - ph * 0.8, "skin")


def _two_wheeler(sc: _Scene, y: float, motor: bool) -> None:
    s = sc.depth(y)
    left, right = sc.road_edges(y)
    x = left + (right - left) * sc.rng.uniform(0.05, 0.2)
    r = max(1.0, sc.h * 0.05 * s)
    ring = max(1, round(r * 0.25))
    app = "motorbike" if motor else "frame"
    for cx in (x - 1.4 * r, x + 1.4 * r):
        sc.ellipse(cx - r, y - 2 * r, cx + r, y, app, width=ring)
    if motor:
        sc.rect(x - 1.2 * r, y - 1.9 * r, x + 1.2 * r, y - 0.9 * r, app)
    else:
        sc.polygon([(x - 1.4 * r, y - r), (x, y - r), (x + 1.4 * r, y - r), (x + 0.2 * r, y - 2.1 * r)], app)
    sc.rect(x - 0.45 * r, y - 3.9 * r, x + 0.45 * r, y - 1.9 * r, "jacket")
    sc.ellipse(x - 0.35 * r, y - 4.6 * r, x + 0.35 * r, y - 3.8 * r, "rider_skin")


def _appearance(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    sc = _Scene(width, height, rng)
    _background(sc)
    hz, h = sc.horizon, sc.h

    def row(lo: float, hi: float) -> float:
        return hz + (h - hz) * rng.uniform(lo, hi)

    objects = [(row(0.3, 0.6), "pole", -1), (row(0.3, 0.6), "light", 1), (row(0.15, 0.35), "pole", 1)]
    objects += [(row(0.25, 0.95), "car", 0) for _ in range(int(rng.integers(1, 4)))]
    objects += [(row(0.45, 0.9), "person", int(rng.choice([-1, 1]))) for _ in range(int(rng.integers(1, 4)))]
    if rng.random() < 0.5:
        objects.append((row(0.35, 0.8), "bicycle", 0))
    if rng.random() < 0.3:
        objects.append((row(0.35, 0.8), "motorcycle", 0))
    for y, kind, side in sorted(objects):  # far to near: nearer things occlude farther ones
        if kind == "pole":
            _pole(sc, y, side, "sign")
        elif kind == "light":
            _pole(sc, y, side, "light")
        elif kind == "car":
            _car(sc, y)
        elif kind == "person":
            _person(sc, y, side)
        else:
            _two_wheeler(sc, y, motor=kind == "motorcycle")
    return np.asarray(sc.canvas)


def generate_scene(width: int, height: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A (H, W, 3) uint8 RGB image and its (H, W) uint8 Cityscapes train-ID mask."""
    if width < 16 or height < 8:
        raise ValueError(f"scene size {width}x{height} is too small: use at least 16x8")
    rng = np.random.default_rng(seed)
    app = _appearance(width, height, rng)
    base = np.array([color for _, _, color in APPEARANCES], dtype=np.int16)
    colors = np.clip(base + rng.integers(-12, 13, size=base.shape), 0, 255).astype(np.int16)
    rgb = colors[app]
    # Mild luminance grain plus a sky that brightens towards the horizon: not a flat palette.
    rgb += rng.integers(-7, 8, size=(height, width, 1), dtype=np.int16)
    sky_shade = np.linspace(-18, 12, height, dtype=np.float32).astype(np.int16)[:, None, None]
    rgb += np.where((app == _A["sky"])[:, :, None], sky_shade, 0).astype(np.int16)
    return np.clip(rgb, 0, 255).astype(np.uint8), _CLASS_OF[app]


def _scene_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def write_cityscapes_tree(
    root: str | Path, n_train: int, n_val: int, width: int = 256, height: int = 128, seed: int = 0
) -> dict[str, list[str]]:
    """Cityscapes layout (leftImg8bit PNG + gtFine labelIds PNG); returns base names per split."""
    root = Path(root)
    to_label = CITYSCAPES.train_to_label_lut()
    bases: dict[str, list[str]] = {"train": [], "validation": []}
    index = 0
    for split, folder, count in (("train", "train", n_train), ("validation", "val", n_val)):
        for i in range(count):
            city = CITIES[i % len(CITIES)]
            base = f"{city}_{index:06d}_000019"
            rgb, mask = generate_scene(width, height, _scene_seed(seed, index))
            image_dir = root / "leftImg8bit" / folder / city
            gt_dir = root / "gtFine" / folder / city
            image_dir.mkdir(parents=True, exist_ok=True)
            gt_dir.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rgb).save(image_dir / f"{base}_leftImg8bit.png")
            Image.fromarray(to_label[mask]).save(gt_dir / f"{base}_gtFine_labelIds.png")
            bases[split].append(base)
            index += 1
    return bases


def write_generic_tree(
    root: str | Path, n_train: int, n_val: int, width: int = 256, height: int = 128, seed: int = 0
) -> dict[str, list[str]]:
    """Generic layout (images/*.jpg, masks/*.png in train IDs, split.json); returns names per split."""
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    names: dict[str, list[str]] = {"train": [], "validation": []}
    for index in range(n_train + n_val):
        split = "train" if index < n_train else "validation"
        name = f"frame_{index:05d}"
        rgb, mask = generate_scene(width, height, _scene_seed(seed, index))
        Image.fromarray(rgb).save(root / "images" / f"{name}.jpg", quality=92)
        Image.fromarray(mask).save(root / "masks" / f"{name}.png")
        names[split].append(name)
    (root / "split.json").write_text(json.dumps(names, indent=1))
    return names


def write_broken_frames(directory: str | Path) -> list[str]:
    """Files every reader must reject: empty, truncated JPEG and PNG, text named .jpg, a GIF."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rgb, _ = generate_scene(64, 32, 7)
    jpeg, png = io.BytesIO(), io.BytesIO()
    Image.fromarray(rgb).save(jpeg, "JPEG", quality=90)
    Image.fromarray(rgb).save(png, "PNG")
    files = {
        "empty.jpg": b"",
        "truncated.jpg": jpeg.getvalue()[: len(jpeg.getvalue()) * 2 // 3],
        "truncated.png": png.getvalue()[: len(png.getvalue()) // 2],
        "notes.jpg": b"this is a text file, not a camera frame\n",
    }
    for name, data in files.items():
        (directory / name).write_bytes(data)
    frames = [Image.fromarray(rgb).convert("P"), Image.fromarray(255 - rgb).convert("P")]
    frames[0].save(directory / "animated.gif", save_all=True, append_images=frames[1:], duration=100)
    return [*files, "animated.gif"]
