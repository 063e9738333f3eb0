"""Tests of aslfr.data.landmark_stats and `aslfr-synthetic --report/--compare-to/--stats-plot`:
exact statistics of files written in the competition's layout with known content, the command line,
and the synthetic generator's hand detection within the ranges it is built for."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aslfr.data import landmark_stats as ls
from aslfr.data import layout
from aslfr.data import synthetic as syn
from aslfr.data.synthetic import dataset as syn_dataset

# ------------------------------------------------------------------------------ known content


def _hand(frames: int, wrist_x: np.ndarray, seen: np.ndarray, outside: bool) -> np.ndarray:
    """(frames, 3 axes, 21) of one hand: every point at the wrist's x and y 0.5, the middle knuckle
    0.05 above it (hand size 0.05); with `outside`, point 19 at x -0.02 and point 20 at x 1.05;
    z 0 at the wrist, -0.01 elsewhere; NaN where not seen."""
    out = np.zeros((frames, 3, 21), np.float32)
    out[:, 0] = wrist_x[:, None]
    out[:, 1] = 0.5
    out[:, 1, layout.MIDDLE_KNUCKLE] = 0.45
    out[:, 2, 1:] = -0.01
    if outside:
        out[:, 0, 19], out[:, 0, 20] = -0.02, 1.05
    out[~seen] = np.nan
    return out


def _columns(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Both hands -> the file's hand columns (x of left then right, then y, then z)."""
    return np.concatenate([np.concatenate([left[:, a], right[:, a]], 1) for a in range(3)], 1)


# sequence 11: "hello" (5 characters, a doubled l: CTC needs 6 frames), 10 frames, the right hand
# seen in frames 2, 3, 4 and 7 (wrist x = frame / 10), never the left.
# sequence 22: "ab", 6 frames, the left hand in all (wrist still at x 0.3), the right in frames 0, 5.
SEEN_11 = np.isin(np.arange(10), [2, 3, 4, 7])
SEEN_22_RIGHT = np.isin(np.arange(6), [0, 5])


def _write_known(root: Path, scatter: bool = False) -> Path:
    (root / layout.TRAIN_DIR).mkdir(parents=True)
    a = _columns(
        _hand(10, np.zeros(10), np.zeros(10, bool), False), _hand(10, np.arange(10) / 10, SEEN_11, True)
    )
    b = _columns(
        _hand(6, np.full(6, 0.3), np.ones(6, bool), False), _hand(6, np.full(6, 0.6), SEEN_22_RIGHT, False)
    )
    columns = ls.hand_columns()
    frames = [pd.DataFrame(a, columns=columns), pd.DataFrame(b, columns=columns)]
    for sid, df in zip((11, 22), frames):
        df.insert(0, layout.FRAME_COLUMN, np.arange(len(df), dtype=np.int16))
        df.index = pd.Index(np.full(len(df), sid, np.int64), name=layout.INDEX_COLUMN)
    df = pd.concat(frames)
    if scatter:  # rows of a sequence not contiguous, frames out of order
        df = df.iloc[np.random.default_rng(0).permutation(len(df))]
    df.to_parquet(root / layout.TRAIN_DIR / "5.parquet")
    pd.DataFrame(
        [
            (f"{layout.TRAIN_DIR}/5.parquet", 5, 11, 3, "hello"),
            (f"{layout.TRAIN_DIR}/5.parquet", 5, 22, 4, "ab"),
        ],
        columns=list(layout.CSV_COLUMNS),
    ).to_csv(root / layout.TRAIN_CSV, index=False)
    (root / layout.CHARACTER_MAP_JSON).write_text(json.dumps({c: i for i, c in enumerate(layout.CHARACTERS)}))
    return root


@pytest.fixture(scope="module")
def known(tmp_path_factory) -> Path:
    return _write_known(tmp_path_factory.mktemp("known") / "root")


def test_ctc_minimum_and_missing_runs():
    assert ls.ctc_min_frames("hello") == 6 and ls.ctc_min_frames("aaa") == 5 and ls.ctc_min_frames("") == 0
    interior, edge = ls.missing_runs(SEEN_11)
    assert interior.tolist() == [2] and sorted(edge.tolist()) == [2, 2]
    interior, edge = ls.missing_runs(np.zeros(4, bool))
    assert interior.size == 0 and edge.tolist() == [4]
    interior, edge = ls.missing_runs(np.ones(3, bool))
    assert interior.size == 0 and edge.size == 0


@pytest.mark.parametrize("scatter", [False, True], ids=["contiguous", "scattered"])
def test_statistics_of_known_files_are_exact(known, tmp_path, scatter):
    root = _write_known(tmp_path / "scattered") if scatter else known
    stats = ls.collect(root, progress=False)
    assert stats.clips == 2 and stats.missing_in_parquet == 0
    assert stats.frames == [10, 6]
    assert stats.left == [0, 6] and stats.right == [4, 2]
    assert stats.any_hand == [4, 6] and stats.both == [0, 2]
    assert stats.dominant == [4, 6] and stats.other == [0, 2]
    assert stats.phrase_length == [5, 2] and stats.ctc_length == [6, 2]
    assert stats.longest_gap == [2, 0]
    assert stats.interior_runs == {2: 1} and stats.edge_runs == {2: 2}
    # 4 + 6 + 2 detected hands of 21 points; points 19 and 20 of sequence 11's 4 frames are outside
    x = stats.coords["x"]
    assert x.n == 12 * 21 and x.count_outside(0.0, 1.0) == 8
    assert x.min == pytest.approx(-0.02) and x.max == pytest.approx(1.05)
    assert stats.coords["z"].n == 12 * 20 and stats.coords["z"].max == pytest.approx(-0.01)
    # the dominant wrist: 0.2 -> 0.3 -> 0.4 (frames 2-4; 7 follows a gap), and still for 5 steps
    steps = stats.wrist_step
    assert steps.n == 7 and steps.max == pytest.approx(0.1) and steps.mean == pytest.approx(0.2 / 7)
    assert stats.wrist_step_hands.max == pytest.approx(2.0, rel=1e-3)

    text = dict(ls.rows(stats))
    assert text["clips"] == "2"
    assert text["clips: frames with a hand < phrase length"] == "0.500"
    assert text["clips: frames with a hand < CTC minimum (n + doubled)"] == "0.500"
    assert (
        text["all frames: left / right / any / both"]
        == f"{6 / 16:.3f} / {6 / 16:.3f} / {10 / 16:.3f} / {2 / 16:.3f}"
    )
    assert text["hand x outside [0, 1], fraction of points"] == f"{8 / 252:.4f}"


def test_max_clips_and_a_clip_missing_from_its_file(known, tmp_path):
    assert ls.collect(known, max_clips=1, progress=False).frames == [10]
    root = _write_known(tmp_path / "root")
    meta = pd.read_csv(root / layout.TRAIN_CSV)
    extra = meta.iloc[[0]].assign(sequence_id=33, phrase="xyz")
    pd.concat([meta, extra]).to_csv(root / layout.TRAIN_CSV, index=False)
    stats = ls.collect(root, progress=False)
    assert stats.clips == 2 and stats.missing_in_parquet == 1
    assert dict(ls.rows(stats))["clips listed but absent from their file"] == "1"


def test_a_file_without_hand_columns_names_it(tmp_path):
    root = _write_known(tmp_path / "root")
    path = root / layout.TRAIN_DIR / "5.parquet"
    pd.read_parquet(path).drop(columns=["x_left_hand_3"]).to_parquet(path)
    with pytest.raises(Exception, match=r"5\.parquet: lacks the hand column\(s\) x_left_hand_3"):
        ls.collect(root, progress=False)


# ------------------------------------------------------------------------------------ command line


def test_compare_to_prints_both_sets_side_by_side(known, tmp_path, capsys):
    args = [str(tmp_path), "--n-sequences", "12", "--n-signers", "3", "--seed", "2", "--quiet"]
    plot = tmp_path / "stats.png"
    assert syn.main([*args, "--compare-to", str(known), "--stats-plot", str(plot)]) == 0
    out = capsys.readouterr().out.splitlines()
    spec = syn.SyntheticSpec(n_sequences=12, n_signers=3, seed=2)
    generated = tmp_path / f"synthetic-{syn.spec_digest(spec)}"
    assert out[0] == str(generated)
    header = next(line for line in out if line.lstrip().startswith("synthetic ("))
    assert f"synthetic ({generated.name})" in header and str(known) in header
    assert header.index("synthetic (") < header.index(str(known))
    clips = next(line for line in out if line.startswith("clips "))
    assert clips.split() == ["clips", "12", "2"]
    below = next(line for line in out if line.startswith("clips: frames with a hand < phrase length"))
    assert below.split()[-1] == "0.500"
    assert any(line.startswith("frames per clip") for line in out)
    assert out[-1] == str(plot) and plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_root_reads_one_set_and_generates_nothing(known, tmp_path, capsys):
    assert syn.main([str(tmp_path / "data"), "--report", str(known), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert not (tmp_path / "data").exists()
    assert "synthetic" not in out and str(known) in out.splitlines()[0]
    assert "frames per clip" in out


def test_report_of_a_missing_directory_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        syn.main(["--report", str(tmp_path / "nowhere"), "--quiet"])
    assert stop.value.code != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nowhere" in err[0] and "Kaggle" in err[0]


# --------------------------------------------------------------- the generator's hand detection


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> ls.DatasetStats:
    spec = syn.SyntheticSpec(n_sequences=400, n_signers=12, seed=11, sequences_per_file=400)
    root = syn.generate(spec, tmp_path_factory.mktemp("gen") / "data", progress=False)
    return ls.collect(root, progress=False)


def test_generated_hand_detection_is_in_its_intended_ranges(generated):
    f = generated.per_clip()
    frames = f["frames"].sum()
    # one dominant hand, found in most but far from all frames; the other hand rarely
    assert 0.55 <= f["any_hand"].sum() / frames <= 0.8
    assert f["both"].sum() / frames < 0.05
    assert 0.03 <= (f["other"] > 0).mean() <= 0.3
    assert np.quantile(f["dominant_fraction"], 0.25) < 0.7 < np.quantile(f["dominant_fraction"], 0.9)
    # the detector loses the hand in runs, not single frames
    interior = generated.run_lengths("interior")
    assert interior.mean() > 2.5 and np.quantile(interior, 0.95) >= 6
    # clips of tens to hundreds of frames, ~9 per character; some too short for CTC, a few handless
    assert 100 <= np.median(f["frames"]) <= 220 and f["frames"].max() > 250
    assert 8 <= frames / f["phrase_length"].sum() <= 11
    assert 4.5 <= np.median(f["hand_frames_per_char"]) <= 8
    assert 0.02 <= (f["any_hand"] < f["phrase_length"]).mean() <= 0.12
    assert (f["any_hand"] == 0).mean() <= 0.04
    # x, y normalized to the image, a few points beyond its edges; hand z small, relative to the wrist
    for axis in ("x", "y"):
        outside = generated.coords[axis].count_outside(0.0, 1.0) / generated.coords[axis].n
        assert 0 < outside < 0.05, axis
    z = generated.coords["z"].quantiles((0.01, 0.99))
    assert -0.4 < z[0] < 0 < z[1] < 0.3


def test_signers_differ_in_how_well_their_hand_is_found():
    _, _, jobs = syn_dataset._plan(syn.SyntheticSpec(n_sequences=60, n_signers=30, seed=3))
    signers = jobs[0].signers
    detect = np.array([s.detect for s in signers])
    runs = np.array([s.miss_run for s in signers])
    assert detect.min() >= 0.3 and detect.max() <= 0.98 and np.ptp(detect) > 0.3
    assert runs.min() >= 1.5 and runs.max() <= 8 and np.ptp(runs) > 3


def test_detector_runs_have_the_rate_and_run_length_asked():
    from aslfr.data.synthetic.sequence import _detected

    rng = np.random.default_rng(0)
    seen = np.concatenate([_detected(rng, 200, 0.7, 5.0) for _ in range(300)])
    assert seen.size == 60_000
    assert seen.mean() == pytest.approx(0.7, abs=0.03)
    interior, _ = ls.missing_runs(seen)
    assert interior.mean() == pytest.approx(5.0, rel=0.1)
    assert _detected(rng, 50, 1.0, 3.0).all()
