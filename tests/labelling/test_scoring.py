"""labelling.scoring with a real (tiny) ONNX model in an edge bundle written as the ExportModel step writes it
(tests/roadseg/test_segment.py's: a 1x1 convolution copying R, G, B to the logits of road, car, person)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from contracts.labelling import SCORE_COLUMNS
from labelling import scoring
from labelling.scoring import Scorer, ScoringError, load_bundle, pool_frames, score_frames, softmax, write_scores
from labelling.selection import Budget, NearDuplicates, select_frames
from segcore.bundle_runtime import network_input
from segcore.imaging import prepare_frame
from segcore.signals import probability_signals
from tests.labelling.timeline_fixtures import frame as timeline_frame
from tests.labelling.timeline_fixtures import write_table
from tests.roadseg.test_segment import BLUE, RED, frame, write_bundle

GREY = (128, 118, 110)  # near the normalisation mean: the three logits close, the model unsure


@pytest.fixture
def bundle(tmp_path):
    return write_bundle(tmp_path / "bundle")


@pytest.fixture
def frames(tmp_path):
    root = tmp_path / "frames"
    frame(root / "veh-1" / "d1" / "front" / "1.jpg", RED, (128, 64))
    frame(root / "veh-1" / "d1" / "front" / "2.jpg", GREY, (128, 64))
    frame(root / "veh-1" / "d1" / "front" / "3.png", BLUE, (48, 48), "PNG")
    (root / "veh-1" / "d1" / "front" / "4.jpg").write_text("not a picture")
    return root


def test_an_unsure_frame_scores_higher_entropy_and_lower_margin(bundle, frames):
    scorer = Scorer(load_bundle(bundle), "cpu", region=8)
    red = scorer.score((frames / "veh-1/d1/front/1.jpg").read_bytes())
    grey = scorer.score((frames / "veh-1/d1/front/2.jpg").read_bytes())
    assert grey["mean_entropy"] > 0.9 > 0.3 > red["mean_entropy"]
    assert grey["mean_margin"] < 0.1 < 0.5 < red["mean_margin"]
    assert set(red) == {"mean_entropy", "mean_margin", "region_score"}


def test_the_scores_are_segcore_signals_of_the_softmax_with_the_padding_cut_off(bundle, frames):
    loaded = load_bundle(bundle)
    data = (frames / "veh-1/d1/front/3.png").read_bytes()  # square: padded to the 64x32 network input
    prepared = prepare_frame(data, loaded.prepare_options)
    tensor, (width, height) = network_input(prepared.jpeg, loaded.network_size)
    assert (width, height) == (32, 32)
    logits = tensor[0, :3, :height, :width]  # the model copies the normalised channels to the logits
    expected = probability_signals(softmax(logits.copy()), region=8)
    assert Scorer(loaded, "cpu", region=8).score(data) == pytest.approx(expected, abs=2e-6)


def test_softmax_sums_to_one_and_is_stable():
    logits = np.array([[[1000.0]], [[999.0]], [[-5.0]]], dtype=np.float32)
    p = softmax(logits)
    assert np.isfinite(p).all() and p.sum() == pytest.approx(1.0) and p[0, 0, 0] > p[1, 0, 0] > p[2, 0, 0]


def test_a_pool_is_scored_and_counts_reconcile(bundle, frames, tmp_path):
    pool = ["incoming/veh-1/d1/front/1.jpg", "incoming/veh-1/d1/front/4.jpg", "incoming/veh-1/d1/front/9.jpg",
            "incoming/veh-1/d1/front/2.jpg"]
    listed = pool_frames(frames, pool=pool, key_prefix="incoming/")
    run = score_frames(Scorer(load_bundle(bundle), "cpu"), listed)
    assert run.summary["pool"] == 4 and run.summary["scored"] == 2 and run.summary["missing"] == 1
    assert sum(run.summary["refused"].values()) == 1 and run.summary["missing_keys"] == [pool[2]]
    written = write_scores(run, tmp_path / "out")
    table = pq.read_table(written)
    assert table.schema.names == [name for name, _ in SCORE_COLUMNS]
    assert table.column("frame_key").to_pylist() == [pool[0], pool[3]]
    assert json.loads((tmp_path / "out" / scoring.SUMMARY_FILE).read_text())["scored"] == 2


def test_selection_joins_the_scores(bundle, frames, tmp_path):
    """The loop: timeline -> pool -> scores -> selection; the unsure grey frame wins on the model signals."""
    rows = [timeline_frame("veh-1", "d1", "front", i) for i in range(3)]
    keys = ["incoming/veh-1/d1/front/1.jpg", "incoming/veh-1/d1/front/2.jpg", "incoming/veh-1/d1/front/3.png"]
    for row, key in zip(rows, keys, strict=True):
        row["frame_key"] = key
    write_table(tmp_path / "timeline", rows)
    run = score_frames(Scorer(load_bundle(bundle), "cpu", region=8), pool_frames(frames, pool=keys,
                                                                                 key_prefix="incoming/"))
    written = write_scores(run, tmp_path / "scores")
    selection = select_frames(tmp_path / "timeline", budget=Budget(frames=1), seed=1, model_scores=[written],
                              near_duplicates=NearDuplicates(min_gap_s=0, max_hamming=None))
    assert selection.picks[0].frame_key == keys[1]


def test_the_command(bundle, frames, tmp_path, capsys):
    (tmp_path / "pool.txt").write_text("incoming/veh-1/d1/front/1.jpg\nincoming/veh-1/d1/front/2.jpg\n")
    code = scoring.main(["--bundle", str(bundle), "--frames", str(frames), "--pool", str(tmp_path / "pool.txt"),
                         "--key-prefix", "incoming/", "--output", str(tmp_path / "out"), "--device", "cpu"])
    assert code == 0
    assert "scored 2 of 2 frames" in capsys.readouterr().out
    assert pq.read_table(tmp_path / "out" / scoring.SCORES_FILE).num_rows == 2
    # every frame file under the folder, one of them text named .jpg: refused with the ingest's code, not fatal
    assert scoring.main(["--bundle", str(bundle), "--frames", str(frames), "--output", str(tmp_path / "all")]) == 0
    assert json.loads((tmp_path / "all" / scoring.SUMMARY_FILE).read_text())["refused"] == {"unsupported_format": 1}


def _edit_json(path, edit) -> None:
    document = json.loads(path.read_text())
    edit(document)
    path.write_text(json.dumps(document))


@pytest.mark.parametrize(("breaking", "message"), [
    (lambda b: (b / "bundle.json").unlink(), "bundle.json is missing"),
    (lambda b: (b / "model.onnx").write_bytes(b"x" + (b / "model.onnx").read_bytes()[1:]), "does not match its SHA"),
    (lambda b: (b / "preprocessing.json").write_text("{"), "preprocessing.json is not valid JSON"),
    # The checks of the loader roadseg segment uses too (segcore.bundle_runtime.EdgeBundle), not a copy of some.
    (lambda b: _edit_json(b / "preprocessing.json", lambda d: d["output"].update(shape=[1, 5, 32, 64])),
     "preprocessing.json output.shape: is [1, 5, 32, 64]; with the 3 classes of classes.json it must be"),
    (lambda b: _edit_json(b / "classes.json", lambda d: d.update(vulnerable_road_users=["cyclist"])),
     "classes.json vulnerable_road_users (VRU_CLASSES: ['cyclist'] are not in CLASS_NAMES"),
])
def test_a_bad_bundle_is_one_line_and_exit_code_2(bundle, frames, tmp_path, capsys, breaking, message):
    breaking(bundle)
    code = scoring.main(["--bundle", str(bundle), "--frames", str(frames), "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1


def test_bad_pool_and_frames(bundle, frames, tmp_path):
    with pytest.raises(ScoringError, match="does not start with the key prefix"):
        pool_frames(frames, pool=["other/1.jpg"], key_prefix="incoming/")
    with pytest.raises(ScoringError, match="is not a folder"):
        pool_frames(tmp_path / "nowhere")
    assert scoring.main(["--bundle", str(bundle), "--frames", str(frames), "--pool", str(tmp_path / "none.txt"),
                         "--output", str(tmp_path / "o")]) == 2
    (tmp_path / "gone.txt").write_text("veh-9/x.jpg\n")
    assert scoring.main(["--bundle", str(bundle), "--frames", str(frames), "--pool", str(tmp_path / "gone.txt"),
                         "--output", str(tmp_path / "o")]) == 1  # listed but missing: the job failed


def test_workers_score_the_same_rows_in_the_pool_order(bundle, frames):
    scorer = Scorer(load_bundle(bundle), "cpu", region=8)
    listed = pool_frames(frames)
    one = score_frames(scorer, listed)
    three = score_frames(scorer, listed, workers=3)
    assert three.rows == one.rows and [r["frame_key"] for r in one.rows] == [f.frame_key for f in listed][:3]
    assert three.summary["refused"] == one.summary["refused"] == {"unsupported_format": 1}
    with pytest.raises(ScoringError, match="at least 1"):
        score_frames(scorer, listed, workers=0)
