from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import training.prepare as prepare_module
from segcore.classes import CAMVID, CITYSCAPES, classes_json
from segcore.scenes import generate_scene, write_broken_frames
from training.prepare import PreparationError, main, prepare_dataset, read_split_file

REPO = Path(__file__).resolve().parents[2]


def scene(seed: int = 0, width: int = 64, height: int = 32) -> tuple[np.ndarray, np.ndarray]:
    return generate_scene(width, height, seed)


def read_report(output: Path) -> dict:
    return json.loads((output / "report.json").read_text())


def dropped_by_name(report: dict) -> dict[str, dict]:
    return {d["name"]: d for d in report["dropped"]}


def add_to_split(root: Path, split: str, *names: str) -> None:
    split_path = root / "split.json"
    data = json.loads(split_path.read_text())
    data[split].extend(names)
    split_path.write_text(json.dumps(data))


def split_pixel_counts(output: Path, split: str, num_classes: int) -> tuple[int, np.ndarray]:
    """Independent recount from the written masks."""
    total = np.zeros(256, dtype=np.int64)
    files = sorted((output / f"{split}_annotation").glob("*.png"))
    for path in files:
        total += np.bincount(np.asarray(Image.open(path)).ravel(), minlength=256)
    return len(files), total


# ------------------------------------------------------------------------------------- good data


def test_cityscapes_layout(cityscapes_tree, tmp_path):
    root, bases = cityscapes_tree
    out = tmp_path / "out"
    report = prepare_dataset(root, out, "cityscapes", CITYSCAPES)

    assert report == read_report(out)
    assert report["num_training_samples"] == 4 and report["dropped"] == []
    assert sorted(p.stem for p in (out / "train").iterdir()) == sorted(bases["train"])
    assert sorted(p.stem for p in (out / "validation_annotation").iterdir()) == sorted(bases["validation"])
    lut = CITYSCAPES.label_lut()
    for split, folder in (("train", "train"), ("validation", "val")):
        for base in bases[split]:
            city = base.split("_")[0]
            source = np.asarray(Image.open(root / "gtFine" / folder / city / f"{base}_gtFine_labelIds.png"))
            written = Image.open(out / f"{split}_annotation" / f"{base}.png")
            assert written.mode == "P" and written.getpalette() == CITYSCAPES.palette()
            np.testing.assert_array_equal(np.asarray(written), lut[source])
            image = Image.open(out / split / f"{base}.jpg")
            assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (64, 32))
        count, pixels = split_pixel_counts(out, split, 19)
        assert report["splits"][split]["images"] == count
        assert report["splits"][split]["pixels"] == {
            **{name: int(pixels[i]) for i, name in enumerate(CITYSCAPES.names)}, "ignore": int(pixels[255])}
    for split in ("train", "validation"):
        assert json.loads((out / "label_map" / f"{split}_label_map.json").read_text()) == {"scale": "1"}


def test_generic_layout(generic_tree, tmp_path):
    root, names = generic_tree
    out = tmp_path / "out"
    report = prepare_dataset(root, out, "generic", CITYSCAPES)
    assert (report["splits"]["train"]["images"], report["splits"]["validation"]["images"]) == (4, 2)
    for split in ("train", "validation"):
        for name in names[split]:
            source = np.asarray(Image.open(root / "masks" / f"{name}.png"))
            np.testing.assert_array_equal(np.asarray(Image.open(out / f"{split}_annotation" / f"{name}.png")), source)
        assert sorted(p.name for p in (out / split).iterdir()) == sorted(f"{n}.jpg" for n in names[split])
    assert sum(report["splits"]["train"]["pixels"].values()) == 4 * 64 * 32
    assert report["source_image_modes"] == {"RGB": 6}


def test_generic_csv_split_file_with_header_and_comments(generic_tree, tmp_path):
    root, names = generic_tree
    csv_path = tmp_path / "split.csv"
    lines = ["name,split", "# frames from the first drive"]
    lines += [f"{n}.jpg,train" for n in names["train"]] + [f"{n},val" for n in names["validation"]] + [""]
    csv_path.write_text("\n".join(lines))
    report = prepare_dataset(root, tmp_path / "out", "generic", CITYSCAPES, split_file=csv_path)
    assert report["num_training_samples"] == 4 and report["splits"]["validation"]["images"] == 2


def test_unlisted_files_are_reported_not_dropped(generic_tree, tmp_path, save_array):
    root, _ = generic_tree
    rgb, mask = scene(11)
    save_array(root / "images" / "spare.jpg", rgb)
    save_array(root / "masks" / "spare.png", mask)
    report = prepare_dataset(root, tmp_path / "out", "generic", CITYSCAPES)
    assert report["unassigned"] == ["spare"] and report["dropped"] == []


def test_parallel_workers_give_the_same_result(generic_tree, tmp_path):
    root, _ = generic_tree
    serial = prepare_dataset(root, tmp_path / "a", "generic", CITYSCAPES)
    parallel = prepare_dataset(root, tmp_path / "b", "generic", CITYSCAPES, workers=2)
    assert serial == parallel
    for path in (tmp_path / "a" / "train_annotation").iterdir():
        assert path.read_bytes() == (tmp_path / "b" / "train_annotation" / path.name).read_bytes()


# --------------------------------------------------------------------------------- image modes


def test_image_modes_become_rgb_jpeg(generic_tree, tmp_path, save_array):
    root, _ = generic_tree
    _, mask = scene(1)
    h, w = mask.shape
    gray = np.full((h, w), 100, dtype=np.uint8)
    colour = np.zeros((h, w, 3), dtype=np.uint8)
    colour[...] = (200, 40, 90)
    inputs = {
        "gray": (gray, "L", "PNG", "png"),
        "gray_alpha": (gray, "LA", "PNG", "png"),
        "rgba": (np.dstack([colour, np.full((h, w), 7, np.uint8)]), "RGBA", "PNG", "png"),
        "palette": (colour, "P", "PNG", "png"),
        "cmyk": (colour, "CMYK", "JPEG", "jpg"),
        "deep": (np.full((h, w), 40000, dtype=np.uint16), None, "PNG", "png"),
    }
    for name, (array, mode, fmt, ext) in inputs.items():
        save_array(root / "images" / f"{name}.{ext}", array, mode, fmt)
        save_array(root / "masks" / f"{name}.png", mask)
    add_to_split(root, "train", *inputs)
    assert Image.open(root / "images" / "deep.png").mode == "I;16"

    out = tmp_path / "out"
    report = prepare_dataset(root, out, "generic", CITYSCAPES)
    assert report["dropped"] == []
    assert report["source_image_modes"] == {"CMYK": 1, "I;16": 1, "L": 1, "LA": 1, "P": 1, "RGB": 6, "RGBA": 1}
    expected = {"gray": (100,) * 3, "gray_alpha": (100,) * 3, "rgba": (200, 40, 90), "palette": (200, 40, 90),
                "cmyk": (200, 40, 90), "deep": (40000 // 257,) * 3}
    for name, rgb in expected.items():
        img = Image.open(out / "train" / f"{name}.jpg")
        assert (img.format, img.mode) == ("JPEG", "RGB")
        mean = np.asarray(img).reshape(-1, 3).mean(axis=0)
        assert np.abs(mean - np.array(rgb)).max() < 6, (name, mean)


# ------------------------------------------------------------------------------------- bad pairs


def test_every_bad_pair_is_dropped_with_its_reason(generic_tree, tmp_path, save_array):
    root, _ = generic_tree
    broken = tmp_path / "broken"
    write_broken_frames(broken)
    rgb, mask = scene(2)
    images, masks = root / "images", root / "masks"

    def good_mask(name: str) -> None:
        save_array(masks / f"{name}.png", mask)

    save_array(images / "no_mask.jpg", rgb)
    good_mask("no_image")
    for name, source in (("empty", "empty.jpg"), ("truncated", "truncated.jpg"), ("text", "notes.jpg"),
                         ("gif_content", "animated.gif")):
        shutil.copy(broken / source, images / f"{name}.jpg")
        good_mask(name)
    shutil.copy(broken / "animated.gif", images / "gif_ext.gif")
    good_mask("gif_ext")
    save_array(images / "bad_mask_file.jpg", rgb)
    shutil.copy(broken / "truncated.png", masks / "bad_mask_file.png")
    save_array(images / "size.jpg", rgb)
    save_array(masks / "size.png", mask[::2, ::2])
    save_array(images / "rgb_mask.jpg", rgb)
    save_array(masks / "rgb_mask.png", np.dstack([mask] * 3))
    save_array(images / "deep_mask.jpg", rgb)
    save_array(masks / "deep_mask.png", mask.astype(np.uint16) * 300)
    save_array(images / "values.jpg", rgb)
    bad_values = mask.copy()
    bad_values[0, :3] = (19, 40, 19)
    save_array(masks / "values.png", bad_values)
    save_array(images / "jpeg_mask.jpg", rgb)
    save_array(masks / "jpeg_mask.jpg", mask)
    save_array(images / "two_images.jpg", rgb)
    save_array(images / "two_images.png", rgb)
    good_mask("two_images")
    expected = {
        "no_mask": "image without mask",
        "no_image": "mask without image",
        "ghost": "listed in the split file but neither images/ghost.* nor masks/ghost.png exists",
        "empty": "unreadable image: the file is empty (0 bytes)",
        "truncated": "unreadable image: OSError: image file is truncated",
        "text": "unreadable image: UnidentifiedImageError: cannot identify image file",
        "gif_content": "image content is GIF, not JPEG or PNG",
        "gif_ext": "unsupported image file type '.gif'",
        "bad_mask_file": "unreadable mask",
        "size": "size mismatch: image is 64x32, mask is 32x16",
        "rgb_mask": "mask is an RGB colour image, not single-channel 8-bit (mode L or P)",
        "deep_mask": "mask is 16-bit, not single-channel 8-bit",
        "values": "mask values 19, 40 are not classes of scheme 'cityscapes' (allowed: 0..18, 255)",
        "jpeg_mask": "mask jpeg_mask.jpg is not a .png",
        "two_images": "several images named 'two_images' (two_images.jpg, two_images.png)",
    }
    add_to_split(root, "train", *expected)

    out = tmp_path / "out"
    report = prepare_dataset(root, out, "generic", CITYSCAPES, max_bad_fraction=1.0)
    dropped = dropped_by_name(report)
    assert set(dropped) == set(expected)
    for name, reason in expected.items():
        assert reason in dropped[name]["reason"], (name, dropped[name]["reason"])
        assert dropped[name]["split"] == "train"
    assert dropped["no_mask"] == {"name": "no_mask", "image": "images/no_mask.jpg", "mask": None,
                                  "split": "train", "reason": dropped["no_mask"]["reason"]}
    assert dropped["no_image"]["image"] is None and dropped["no_image"]["mask"] == "masks/no_image.png"
    assert report["num_training_samples"] == 4
    assert report["candidates"] == 6 + len(expected)
    assert report["dropped_fraction"] == pytest.approx(len(expected) / (6 + len(expected)))
    # Nothing of a dropped pair reaches the channels.
    written = {p.stem for p in (out / "train").iterdir()} | {p.stem for p in (out / "train_annotation").iterdir()}
    assert not written & set(expected)


def test_cityscapes_bad_pairs(cityscapes_tree, tmp_path, save_array):
    root, bases = cityscapes_tree
    rgb, mask = scene(4)
    left, gt = root / "leftImg8bit" / "train", root / "gtFine" / "train"
    save_array(left / "aachen" / "aachen_999999_000019_leftImg8bit.png", rgb)
    save_array(gt / "bremen" / "bremen_888888_000019_gtFine_labelIds.png", mask)
    duplicate = bases["train"][0]  # an aachen frame; the same base again under another city
    shutil.copy(left / "aachen" / f"{duplicate}_leftImg8bit.png", left / "bremen" / f"{duplicate}_leftImg8bit.png")
    save_array(left / "bremen" / "bremen_777777_000019_leftImg8bit.png", rgb)
    save_array(gt / "bremen" / "bremen_777777_000019_gtFine_labelIds.png", np.full_like(mask, 40))
    # Other gtFine products are not masks and must be ignored.
    save_array(gt / "aachen" / f"{duplicate}_gtFine_color.png", np.dstack([mask] * 3))

    report = prepare_dataset(root, tmp_path / "out", "cityscapes", CITYSCAPES, max_bad_fraction=1.0)
    dropped = dropped_by_name(report)
    assert set(dropped) == {"aachen_999999_000019", "bremen_888888_000019", duplicate, "bremen_777777_000019"}
    assert "image without mask" in dropped["aachen_999999_000019"]["reason"]
    assert "mask without image" in dropped["bremen_888888_000019"]["reason"]
    assert "occurs more than once in train" in dropped[duplicate]["reason"]
    assert "mask values 40 are not classes" in dropped["bremen_777777_000019"]["reason"]
    assert dropped["bremen_888888_000019"]["mask"] == "gtFine/train/bremen/bremen_888888_000019_gtFine_labelIds.png"
    assert report["splits"]["train"]["images"] == 3


def test_oversized_images_are_dropped(generic_tree, tmp_path, monkeypatch):
    root, _ = generic_tree
    monkeypatch.setattr(prepare_module, "MAX_PIXELS", 1000)
    with pytest.raises(PreparationError, match="no usable train pairs remain; no usable validation pairs remain"):
        prepare_dataset(root, tmp_path / "out", "generic", CITYSCAPES)
    reasons = {d["reason"] for d in read_report(tmp_path / "out")["dropped"]}
    assert reasons == {"image is 64x32, more than the 1000 pixel limit"}


# ------------------------------------------------------------------------------------ thresholds


def test_bad_fraction_above_limit_fails_after_writing_report(generic_tree, tmp_path):
    root, _ = generic_tree
    (root / "images" / "frame_00000.jpg").write_bytes(b"")
    out = tmp_path / "out"
    with pytest.raises(PreparationError) as info:
        prepare_dataset(root, out, "generic", CITYSCAPES, max_bad_fraction=0.05)
    message = str(info.value)
    assert "1 of 6 pairs (16.7%) were dropped, more than the allowed 5.0% (max_bad_fraction 0.05 from the default)" \
        in message
    assert str(out / "report.json") in message
    assert [d["name"] for d in read_report(out)["dropped"]] == ["frame_00000"]


def test_bad_fraction_at_limit_passes(generic_tree, tmp_path):
    root, _ = generic_tree
    (root / "images" / "frame_00000.jpg").write_bytes(b"")
    report = prepare_dataset(root, tmp_path / "out", "generic", CITYSCAPES, max_bad_fraction=1 / 6)
    assert report["num_training_samples"] == 3 and report["dropped_fraction"] == pytest.approx(1 / 6)


def test_empty_validation_split_fails(generic_tree, tmp_path, save_array):
    root, names = generic_tree
    for name in names["validation"]:
        save_array(root / "masks" / f"{name}.png", np.zeros((32, 64, 3), np.uint8))
    with pytest.raises(PreparationError, match="no usable validation pairs remain.*report.json"):
        prepare_dataset(root, tmp_path / "out", "generic", CITYSCAPES, max_bad_fraction=1.0)


# ------------------------------------------------------------------------------- set-up mistakes


def test_wrong_layout(generic_tree, cityscapes_tree, tmp_path):
    with pytest.raises(PreparationError, match="is not a Cityscapes layout.*use --layout generic"):
        prepare_dataset(generic_tree[0], tmp_path / "a", "cityscapes", CITYSCAPES)
    with pytest.raises(PreparationError, match="is not a generic layout.*use --layout cityscapes"):
        prepare_dataset(cityscapes_tree[0], tmp_path / "b", "generic", CITYSCAPES)
    with pytest.raises(PreparationError, match="no labelId mapping"):
        prepare_dataset(cityscapes_tree[0], tmp_path / "c", "cityscapes", CAMVID)
    with pytest.raises(PreparationError, match="only used with --layout generic"):
        prepare_dataset(cityscapes_tree[0], tmp_path / "d", "cityscapes", CITYSCAPES, split_file=tmp_path / "x.json")
    with pytest.raises(PreparationError, match="unknown layout 'kitti'"):
        prepare_dataset(cityscapes_tree[0], tmp_path / "e", "kitti", CITYSCAPES)


def test_generic_needs_a_split_file(generic_tree, tmp_path):
    root, _ = generic_tree
    (root / "split.json").unlink()
    with pytest.raises(PreparationError, match="needs a split file: pass --split-file"):
        prepare_dataset(root, tmp_path / "out", "generic", CITYSCAPES)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("s.json", '{"train": ["a"], "validation": ["a.jpg"]}', "'a' is listed in both train and validation"),
        ("s.json", '{"train": "a"}', "'train' must be a list of file names"),
        ("s.json", '{"train": [}', "not valid JSON"),
        ("s.json", '{"test": ["a"]}', "split 'test' is not one of train, validation"),
        ("s.csv", "a,train\nb,holdout\n", "line 2: split 'holdout' is not one of train, validation"),
        ("s.csv", "a,train,extra\n", "line 1: expected 'name,split'"),
    ],
)
def test_bad_split_files(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(PreparationError, match=message):
        read_split_file(path)


def test_a_complete_dataset_is_replaced_only_with_overwrite(generic_tree, tmp_path):
    root, _ = generic_tree
    out = tmp_path / "out"
    first = prepare_dataset(root, out, "generic", CITYSCAPES)
    assert first["replaced"] is None and not (out / prepare_module.INCOMPLETE_MARKER).exists()
    (out / "notes.txt").write_text("mine")  # not the module's: never removed
    (out / "train" / "stale.jpg").write_bytes(b"left over")
    with pytest.raises(PreparationError) as info:
        prepare_dataset(root, out, "generic", CITYSCAPES)
    assert str(info.value) == (f"{out} already holds a prepared dataset (train): pass --overwrite to replace it, "
                               "or choose another --output")
    assert (out / "train" / "stale.jpg").exists()  # refused: nothing touched
    second = prepare_dataset(root, out, "generic", CITYSCAPES, overwrite=True)
    assert second["replaced"] == "the earlier dataset (--overwrite)"
    assert not (out / "train" / "stale.jpg").exists() and (out / "notes.txt").read_text() == "mine"
    assert len(list((out / "train").iterdir())) == 4


# ------------------------------------------------------------------------------------------- CLI


def test_cli_success_prints_one_line(generic_tree, tmp_path, capsys):
    root, _ = generic_tree
    code = main(["--layout", "generic", "--input", str(root), "--output", str(tmp_path / "out"), "--workers", "1"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.count("\n") == 1 and "num_training_samples=4" in out and "0 of 6 dropped" in out


def test_cli_report_dir(generic_tree, tmp_path, capsys):
    root, _ = generic_tree
    args = ["--layout", "generic", "--input", str(root), "--output", str(tmp_path / "out"), "--workers", "1",
            "--report-dir", str(tmp_path / "out" / "report")]
    assert main(args) == 0
    assert read_report(tmp_path / "out" / "report")["num_training_samples"] == 4
    assert not (tmp_path / "out" / "report.json").exists()


def test_cli_preparation_error_exits_2_with_message(generic_tree, tmp_path, capsys):
    root, _ = generic_tree
    (root / "images" / "frame_00001.jpg").write_bytes(b"not a jpeg")
    code = main(["--layout", "generic", "--input", str(root), "--output", str(tmp_path / "out"), "--workers", "1"])
    err = capsys.readouterr().err
    assert code == 2
    assert "error: 1 of 6 pairs (16.7%) were dropped" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--layout", "kitti"], "invalid choice: 'kitti'"),
        (["--layout", "generic", "--scheme", "custom"], "needs its class list"),
        (["--layout", "generic", "--max-bad-fraction", "lots"], "invalid float value"),
    ],
)
def test_cli_bad_arguments_exit_2(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as info:
        main([*args, "--input", str(tmp_path), "--output", str(tmp_path / "out")])
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_as_module_has_no_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "training.prepare", "--layout", "generic", "--input", str(tmp_path / "missing"),
         "--output", str(tmp_path / "out")],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 2
    assert "input directory" in result.stderr and "does not exist" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_cli_custom_classes_inline(generic_tree, tmp_path, capsys):
    root, _ = generic_tree
    inline = classes_json(CITYSCAPES)  # the same classes, given as a custom list
    code = main(["--layout", "generic", "--input", str(root), "--output", str(tmp_path / "out"), "--workers", "1",
                 "--scheme", "custom", "--classes-json", inline])
    assert code == 0, capsys.readouterr().err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["scheme"] == "custom" and report["classes"] == list(CITYSCAPES.names)


def test_cli_custom_classes_given_twice_is_an_error(generic_tree, tmp_path, capsys):
    root, _ = generic_tree
    (tmp_path / "classes.json").write_text('[{"name": "a", "color": [0, 0, 0]}, {"name": "b", "color": [1, 1, 1]}]')
    with pytest.raises(SystemExit) as exc:
        main(["--layout", "generic", "--input", str(root), "--output", str(tmp_path / "out"), "--scheme", "custom",
              "--classes-file", str(tmp_path / "classes.json"), "--classes-json", "[]"])
    assert exc.value.code == 2
    assert "--classes-file or --classes-json, not both" in capsys.readouterr().err


# ------------------------------------------------------------------- output: incomplete runs, bad paths


def test_a_rejected_run_stays_marked_incomplete_and_the_retry_replaces_it(generic_tree, tmp_path):
    root, _ = generic_tree
    out = tmp_path / "out"
    broken = root / "images" / "frame_00000.jpg"
    good = broken.read_bytes()
    broken.write_bytes(b"")
    with pytest.raises(PreparationError, match="were dropped"):
        prepare_dataset(root, out, "generic", CITYSCAPES)
    assert (out / prepare_module.INCOMPLETE_MARKER).is_file() and (out / "report.json").is_file()
    broken.write_bytes(good)  # the user fixes the dataset and runs the same command again: no --overwrite needed
    report = prepare_dataset(root, out, "generic", CITYSCAPES)
    assert report["replaced"] == "the incomplete output of an earlier run" and report["dropped"] == []
    assert not (out / prepare_module.INCOMPLETE_MARKER).exists()
    assert len(list((out / "train").iterdir())) == 4


def test_an_interrupted_run_is_replaced_by_the_retry(generic_tree, tmp_path, monkeypatch):
    root, _ = generic_tree
    out = tmp_path / "out"
    real, calls = prepare_module._process, []

    def interrupted(job):
        calls.append(job)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(job)

    monkeypatch.setattr(prepare_module, "_process", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prepare_dataset(root, out, "generic", CITYSCAPES)
    assert (out / prepare_module.INCOMPLETE_MARKER).exists() and any((out / "train").iterdir())
    monkeypatch.setattr(prepare_module, "_process", real)
    assert prepare_dataset(root, out, "generic", CITYSCAPES)["replaced"] == "the incomplete output of an earlier run"


def test_output_that_is_a_file_is_one_line(generic_tree, tmp_path):
    root, _ = generic_tree
    target = tmp_path / "out.txt"
    target.write_text("not a directory")
    with pytest.raises(PreparationError) as info:
        prepare_dataset(root, target, "generic", CITYSCAPES)
    assert str(info.value) == (f"--output {target} is a file, not a directory: pass the path of a directory (it is "
                               "created when missing)")
    assert target.read_text() == "not a directory"


def test_output_that_cannot_be_created_is_one_line(generic_tree, tmp_path):
    root, _ = generic_tree
    (tmp_path / "file").write_text("x")
    with pytest.raises(PreparationError) as info:
        prepare_dataset(root, tmp_path / "file" / "out", "generic", CITYSCAPES)  # under a file: ENOTDIR, even as root
    message = str(info.value)
    assert message.startswith(f"cannot write the output directory {tmp_path / 'file' / 'out'}")
    assert "Not a directory" in message and "choose a directory you can write to" in message
    assert "\n" not in message


def test_a_write_failure_mid_run_is_one_line_and_the_retry_replaces_the_output(generic_tree, tmp_path, monkeypatch):
    import errno

    root, _ = generic_tree
    out = tmp_path / "out"
    real_save = Image.Image.save

    def full_disk(self, fp, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(fp))

    monkeypatch.setattr(Image.Image, "save", full_disk)
    with pytest.raises(PreparationError) as info:
        prepare_dataset(root, out, "generic", CITYSCAPES)
    message = str(info.value)
    assert "No space left on device" in message and message.endswith("the next run replaces this incomplete output")
    assert str(out / "train") in message  # where it failed
    monkeypatch.setattr(Image.Image, "save", real_save)
    assert prepare_dataset(root, out, "generic", CITYSCAPES)["replaced"] == "the incomplete output of an earlier run"


def test_the_report_says_which_limit_applied(generic_tree, tmp_path, capsys):
    root, _ = generic_tree
    report = prepare_dataset(root, tmp_path / "a", "generic", CITYSCAPES)
    assert (report["max_bad_fraction"], report["max_bad_fraction_source"]) == (0.05, "the default")
    assert main(["--layout", "generic", "--input", str(root), "--output", str(tmp_path / "b"), "--workers", "1",
                 "--max-bad-fraction", "0.2"]) == 0
    assert "limit 20.0% from --max-bad-fraction" in capsys.readouterr().out
    assert (read_report(tmp_path / "b")["max_bad_fraction"], read_report(tmp_path / "b")["max_bad_fraction_source"]) \
        == (0.2, "--max-bad-fraction")


def test_cli_overwrite(generic_tree, tmp_path, capsys):
    root, _ = generic_tree
    args = ["--layout", "generic", "--input", str(root), "--output", str(tmp_path / "out"), "--workers", "1"]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 2
    assert "already holds a prepared dataset (train): pass --overwrite" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0
    assert "replaced the earlier dataset (--overwrite)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "0"], "argument --workers: 0 is not at least 1"),
        (["--workers", "-2"], "argument --workers: -2 is not at least 1"),
        (["--max-bad-fraction", "-0.1"], "argument --max-bad-fraction: -0.1 is not within 0..1"),
        (["--max-bad-fraction", "5"], "argument --max-bad-fraction: 5 is not within 0..1"),
    ],
)
def test_cli_refuses_out_of_range_numbers(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as info:
        main(["--layout", "generic", *args, "--input", str(tmp_path), "--output", str(tmp_path / "out")])
    assert info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
