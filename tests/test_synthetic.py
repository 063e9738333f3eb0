"""Tests of aslfr.synthetic: the Kaggle layout, determinism, atomic writes and a learnable signal."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aslfr import atomic
from aslfr.data import layout
from aslfr.data import synthetic as syn
from aslfr.data.synthetic import dataset as syn_dataset

SMALL = syn.SyntheticSpec(n_sequences=120, n_signers=8, seed=7, sequences_per_file=50, n_supplemental=30)
HAND_COLUMNS = {
    part: [layout.column(a, part, i) for a in layout.AXES for i in range(21)]
    for part in ("left_hand", "right_hand")
}


def _read_all(root: Path, csv_name: str = layout.TRAIN_CSV) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    meta = pd.read_csv(root / csv_name)
    return meta, {path: pd.read_parquet(root / path) for path in meta.path.unique()}


def _sequences(meta: pd.DataFrame, files: dict[str, pd.DataFrame]) -> dict[int, pd.DataFrame]:
    return {int(r.sequence_id): files[r.path].loc[[r.sequence_id]] for r in meta.itertuples()}


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    return syn.generate(SMALL, tmp_path_factory.mktemp("small") / "data", progress=False)


@pytest.fixture(scope="module")
def small_data(small):
    meta, files = _read_all(small)
    return meta, files, _sequences(meta, files)


# ------------------------------------------------------------------------------------------ layout


def test_files_and_csv_columns(small):
    names = sorted(p.name for p in small.iterdir())
    assert names == sorted(
        [
            layout.TRAIN_CSV,
            layout.SUPPLEMENTAL_CSV,
            layout.CHARACTER_MAP_JSON,
            layout.TRAIN_DIR,
            layout.SUPPLEMENTAL_DIR,
        ]
    )
    for csv_name, folder, count in (
        (layout.TRAIN_CSV, layout.TRAIN_DIR, 120),
        (layout.SUPPLEMENTAL_CSV, layout.SUPPLEMENTAL_DIR, 30),
    ):
        meta = pd.read_csv(small / csv_name)
        assert tuple(meta.columns) == layout.CSV_COLUMNS
        assert len(meta) == count
        assert all(re.fullmatch(rf"{folder}/\d{{7,10}}\.parquet", p) for p in meta.path)
        assert (meta.path == folder + "/" + meta.file_id.astype(str) + ".parquet").all()
        assert sorted(p.name for p in (small / folder).iterdir()) == sorted(
            Path(p).name for p in meta.path.unique()
        )
        assert meta.sequence_id.is_unique and (meta.sequence_id > 0).all()
        assert meta.participant_id.between(0, 254).all()
        assert meta.groupby("path").size().max() <= SMALL.sequences_per_file
    train, supplemental = (pd.read_csv(small / name) for name in (layout.TRAIN_CSV, layout.SUPPLEMENTAL_CSV))
    assert train.participant_id.nunique() == SMALL.n_signers
    assert not set(train.sequence_id) & set(supplemental.sequence_id)
    assert not set(train.file_id) & set(supplemental.file_id)


def test_character_map_is_exact(small):
    mapping = json.loads((small / layout.CHARACTER_MAP_JSON).read_text())
    assert mapping == {c: i for i, c in enumerate(layout.CHARACTERS)}
    assert len(mapping) == 59 and list(mapping) == list(layout.CHARACTERS)


def test_parquet_schema(small_data):
    meta, files, _ = small_data
    expected = layout.landmark_columns(syn.written_points("lips"))
    assert len(expected) == 3 * (40 + 21 + 33 + 21)
    assert [int(c.split("_")[-1]) for c in expected if c.startswith("x_face_")] == sorted(syn.LIP_POINTS)
    for df in files.values():
        assert df.index.name == layout.INDEX_COLUMN and df.index.dtype == np.int64
        assert list(df.columns) == [layout.FRAME_COLUMN, *expected]
        assert df[layout.FRAME_COLUMN].dtype == np.int16
        assert (df.dtypes.iloc[1:] == np.float32).all()


def test_every_sequence_is_in_its_file_contiguous_in_frame_order(small_data):
    meta, files, _ = small_data
    for path, df in files.items():
        ids = df.index.to_numpy()
        starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
        assert len(starts) == df.index.nunique(), "rows of a sequence are contiguous"
        assert set(ids) == set(meta.sequence_id[meta.path == path])
        for start, stop in zip(starts, np.r_[starts[1:], len(ids)]):
            assert np.array_equal(df[layout.FRAME_COLUMN].to_numpy()[start:stop], np.arange(stop - start))


def test_full_face_has_all_1630_columns(tmp_path):
    spec = syn.SyntheticSpec(n_sequences=6, n_signers=3, seed=1, face="full")
    root = syn.generate(spec, tmp_path / "full", progress=False)
    meta, files = _read_all(root)
    df = next(iter(files.values()))
    assert len(df.columns) == 1630  # frame + 1,629 landmark columns, as in the competition's files
    assert list(df.columns) == [layout.FRAME_COLUMN, *layout.landmark_columns()]
    face = df[[c for c in df.columns if "_face_" in c]].to_numpy()
    assert not np.isnan(face).any()
    x, y = (df[[layout.column(a, "face", i) for i in range(468)]].to_numpy() for a in ("x", "y"))
    assert x.min() > 0 and x.max() < 1 and y.min() > 0 and y.max() < 1
    # the face is an oval around the lips, which sit in its lower half
    lips_y = df[[layout.column("y", "face", i) for i in syn.LIP_POINTS]].to_numpy().mean(1)
    assert (y.min(1) < lips_y).all() and (lips_y < y.max(1)).all()
    assert (lips_y > (y.min(1) + y.max(1)) / 2).all()


def test_coordinates_look_like_mediapipe(small_data):
    meta, files, _ = small_data
    df = pd.concat(files.values())
    for part in ("face", "pose"):
        assert not df.filter(like=f"_{part}_").isna().any().any(), f"{part} is always present"
    hand = df[HAND_COLUMNS["right_hand"] + HAND_COLUMNS["left_hand"]]
    xy = hand.filter(regex="^[xy]_").to_numpy()
    assert np.nanmin(xy) > -0.2 and np.nanmax(xy) < 1.2
    for part in ("left_hand", "right_hand"):
        z = df[[layout.column("z", part, i) for i in range(21)]].to_numpy()
        seen = ~np.isnan(z[:, 0])
        assert np.all(z[seen, 0] == 0), "hand z is relative to the wrist"
        assert 0.005 < np.nanstd(z[seen, 1:]) < 0.2
    pose_y = df[[layout.column("y", "pose", i) for i in range(33)]].to_numpy()
    assert (pose_y[:, 27:29] > 1).mean() > 0.9, "the ankles are below the image"
    assert np.abs(df.filter(regex="^z_pose_").to_numpy()).max() < 3


# ------------------------------------------------------------------------------------- determinism


def test_same_spec_same_data_and_different_seed_differs(small, small_data, tmp_path):
    again = syn.generate(SMALL, tmp_path / "again", progress=False)
    for name in (layout.TRAIN_CSV, layout.SUPPLEMENTAL_CSV, layout.CHARACTER_MAP_JSON):
        assert (small / name).read_bytes() == (again / name).read_bytes()
    meta, files, _ = small_data
    for path, df in files.items():
        other = pd.read_parquet(again / path)
        assert df.index.equals(other.index)
        assert np.array_equal(df.to_numpy(), other.to_numpy(), equal_nan=True)

    reseeded = syn.SyntheticSpec(**{**SMALL.__dict__, "seed": SMALL.seed + 1})
    different = syn.generate(reseeded, tmp_path / "different", progress=False)
    assert (different / layout.TRAIN_CSV).read_bytes() != (small / layout.TRAIN_CSV).read_bytes()
    assert syn.spec_digest(reseeded) != syn.spec_digest(SMALL)


def test_sequences_do_not_depend_on_the_grouping_into_files(small_data, tmp_path):
    """One file written by this process vs three written by worker processes: same sequences."""
    meta, files, sequences = small_data
    spec = syn.SyntheticSpec(**{**SMALL.__dict__, "sequences_per_file": 1000, "n_supplemental": 0})
    root = syn.generate(spec, tmp_path / "one_file", progress=False)
    one_meta, one_files = _read_all(root)
    assert one_meta.path.nunique() == 1
    assert sorted(one_meta.sequence_id) == sorted(meta.sequence_id)
    for r in one_meta.itertuples():
        mine = one_files[r.path].loc[[r.sequence_id]].to_numpy()
        assert np.array_equal(mine, sequences[r.sequence_id].to_numpy(), equal_nan=True)


def test_spec_digest_is_stable_and_short():
    digest = syn.spec_digest(syn.SyntheticSpec())
    assert re.fullmatch(r"[0-9a-f]{12}", digest)
    assert digest == syn.spec_digest(syn.SyntheticSpec())
    assert digest != syn.spec_digest(syn.SyntheticSpec(face="full"))
    with pytest.raises(ValueError):
        syn.SyntheticSpec(face="half")
    with pytest.raises(ValueError):
        syn.SyntheticSpec(n_signers=256)


# ------------------------------------------------------------------------------------------- phrases


def test_make_phrase_statistics():
    rng = np.random.default_rng(0)
    phrases = [syn.make_phrase(rng) for _ in range(3000)]
    lengths = np.array([len(p) for p in phrases])
    assert lengths.min() >= 1 and lengths.max() <= 31
    assert 15 <= lengths.mean() <= 21
    assert (lengths <= 3).sum() > 0, "a few very short phrases"
    assert set("".join(phrases)) <= set(layout.CHARACTERS)
    assert all(p == p.lower() and p == p.strip() for p in phrases)
    kinds = {
        "url": r"^(https?://|www\.)",
        "phone": r"^\+?\d+[-. ]\d+[-. ]\d+",
        "email": r"@",
        "address": r"^\d+ [a-z]",
    }
    for kind, pattern in kinds.items():
        assert sum(bool(re.search(pattern, p)) for p in phrases) > 100, kind


def test_a_few_hundred_sequences_use_all_59_characters():
    train, _, _ = syn_dataset._plan(syn.SyntheticSpec(n_sequences=300, n_signers=10, seed=3))
    assert set("".join(train.phrase)) == set(layout.CHARACTERS)


def test_phrases_repeat_somewhat_and_signers_sign_many_phrases(small_data):
    meta, _, _ = small_data
    counts = meta.phrase.value_counts()
    assert counts.max() > 1 and counts.size > 0.6 * len(meta)
    per_signer = meta.groupby("participant_id").phrase.agg(["size", "nunique"])
    assert (per_signer["nunique"] >= 0.7 * per_signer["size"]).all()


# -------------------------------------------------------------------------------------------- signal


def _visible(df: pd.DataFrame, part: str) -> np.ndarray:
    return ~np.isnan(df[layout.column("x", part, 0)].to_numpy())


def test_hands_are_missing_as_a_whole(small_data):
    _, files, _ = small_data
    for df in files.values():
        for columns in HAND_COLUMNS.values():
            missing = np.isnan(df[columns].to_numpy())
            assert np.all(missing.all(1) | ~missing.any(1))


def test_frames_per_character_and_sequence_lengths(small_data):
    meta, _, sequences = small_data
    frames = np.array([len(sequences[s]) for s in meta.sequence_id])
    visible = np.array([max(_visible(sequences[s], p).sum() for p in HAND_COLUMNS) for s in meta.sequence_id])
    chars = meta.phrase.str.len().to_numpy()
    assert 110 <= frames.mean() <= 220 and frames.min() < 100
    assert 7 <= frames.sum() / chars.sum() <= 12
    assert 5 <= np.median(visible / chars) <= 11
    assert np.mean(visible <= 5) < 0.1, "near-empty clips are rare"
    # idle frames: the hand is missing or low at the start and the end of most clips
    first_rows = [sequences[s].iloc[:3] for s in meta.sequence_id]
    low_or_missing = [
        np.all(
            np.isnan(r["y_right_hand_0"]) & np.isnan(r["y_left_hand_0"])
            | (r["y_right_hand_0"] > 0.7)
            | (r["y_left_hand_0"] > 0.7)
        )
        for r in first_rows
    ]
    assert np.mean(low_or_missing) > 0.5


def test_signers_differ_in_speed(small_data):
    meta, _, sequences = small_data
    meta = meta.assign(rate=[len(sequences[s]) / len(p) for s, p in zip(meta.sequence_id, meta.phrase)])
    speeds = meta.groupby("participant_id").rate.median()
    assert speeds.max() / speeds.min() > 1.2


def test_left_handed_signers_are_mirrored(small_data):
    meta, _, sequences = small_data
    dominant = {}
    for participant, rows in meta.groupby("participant_id"):
        counts = {p: sum(_visible(sequences[s], p).sum() for s in rows.sequence_id) for p in HAND_COLUMNS}
        dominant[participant] = max(counts, key=counts.get)
    lefties = [p for p, hand in dominant.items() if hand == "left_hand"]
    assert 1 <= len(lefties) <= 3  # ~20% of 8

    def handedness(seq: pd.DataFrame, part: str) -> float:
        """Median side of the thumb relative to the wrist->pinky line (the hand's 2-D chirality)."""
        p = {
            i: seq[[layout.column("x", part, i), layout.column("y", part, i)]].to_numpy() for i in (0, 5, 17)
        }
        a, b = p[5] - p[0], p[17] - p[0]
        return float(np.nanmedian(np.sign(a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0])))

    for participant, rows in meta.groupby("participant_id"):
        part = dominant[participant]
        wrist = "15" if part == "left_hand" else "16"
        seqs = [sequences[s] for s in rows.sequence_id]
        both = pd.concat(seqs)
        seen = _visible(both, part)
        hand_x = both[layout.column("x", part, 0)].to_numpy()[seen]
        nose_x = both[layout.column("x", "pose", 0)].to_numpy()[seen]
        assert (np.median(hand_x - nose_x) > 0) == (part == "left_hand"), "the hand is on its own side"
        # the pose wrist of that side is at the hand's wrist
        gap = np.hypot(
            *(
                both[f"{a}_pose_{wrist}"].to_numpy()[seen] - both[f"{a}_{part}_0"].to_numpy()[seen]
                for a in "xy"
            )
        )
        assert np.median(gap) < 0.03
        signs = [handedness(s, part) for s in seqs if _visible(s, part).sum() > 10]
        assert np.median(signs) == (1.0 if part == "left_hand" else -1.0)


def test_lips_move_with_the_mouthing(small_data):
    meta, _, sequences = small_data
    opening = [np.ptp(s["y_face_14"].to_numpy() - s["y_face_13"].to_numpy()) for s in sequences.values()]
    assert np.median(opening) > 0.002
    corners = np.concatenate(
        [s["x_face_291"].to_numpy() - s["x_face_61"].to_numpy() for s in sequences.values()]
    )
    assert np.all(corners > 0), "corner 61 (the subject's right) is on the image's left, also when mirrored"


def test_characters_are_distinguishable_and_confusable_pairs_close():
    shapes = {c: syn.canonical_hand(c) for c in layout.CHARACTERS}
    assert all(s.shape == (21, 3) for s in shapes.values())

    def distance(a: str, b: str) -> float:
        return float(np.sqrt(((shapes[a] - shapes[b]) ** 2).sum(-1)).mean())

    pairs = [(a, b) for i, a in enumerate(layout.CHARACTERS) for b in layout.CHARACTERS[i + 1 :]]
    distances = np.array([distance(a, b) for a, b in pairs])
    assert distances.min() > 0.02, "no two characters share a shape"
    typical = np.median(distances)
    for a, b in syn.CONFUSABLE_PAIRS:
        assert distance(a, b) < np.percentile(distances, 10) < typical, (a, b)
    for a, b in (("m", "n"), ("a", "s"), ("0", "o"), ("v", "2"), ("1", "d"), ("6", "w")):
        assert (a, b) in syn.CONFUSABLE_PAIRS
    assert set(syn.MOVING_CHARACTERS) == {"j", "z"}


def test_hand_pose_is_a_plausible_hand():
    open_hand = syn.canonical_hand("5")
    bones = np.array([np.linalg.norm(open_hand[a] - open_hand[b]) for a, b in syn.HAND_BONES])
    assert bones.min() > 0.15 and bones.max() < 1.1
    fist, flat = syn.canonical_hand("s"), syn.canonical_hand("b")
    tips = [8, 12, 16, 20]
    assert (flat[tips, 1] > 1.5).all() and (fist[tips, 1] < 1.1).all(), "a fist's fingertips are curled"
    # the thumb is on the right hand's +x side, the little finger on the other
    assert open_hand[4, 0] > open_hand[0, 0] > open_hand[20, 0]
    rolled = syn.hand_pose(np.r_[syn.CHARACTER_ANGLES[layout.CHARACTERS.index("b")][:20], -90, 0, 0])
    assert np.allclose(rolled[:, 0], flat[:, 1], atol=1e-9), "roll -90 points the fingers to +x"


# --------------------------------------------------------------------------------- atomic, ensure


def test_generate_refuses_an_existing_root(small):
    with pytest.raises(FileExistsError):
        syn.generate(SMALL, small, progress=False)


def test_interrupted_generation_leaves_nothing_behind(tmp_path, monkeypatch):
    def broken(job, root):
        raise RuntimeError("killed")

    monkeypatch.setattr(syn_dataset, "_write_file", broken)
    spec = syn.SyntheticSpec(n_sequences=5, n_signers=2)
    with pytest.raises(RuntimeError):
        syn.generate(spec, tmp_path / "root", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_ensure_generates_once_and_ignores_leftover_temp_dirs(tmp_path):
    spec = syn.SyntheticSpec(n_sequences=12, n_signers=3, seed=5)
    root = tmp_path / f"synthetic-{syn.spec_digest(spec)}"
    # a crashed run's directory (dead pid on this host) and a live run's one (this very process)
    dead = tmp_path / atomic.temp_name(root.name, pid=999999999)
    live = tmp_path / atomic.temp_name(root.name, pid=os.getpid())
    for leftover in (dead, live):
        (leftover / layout.TRAIN_DIR).mkdir(parents=True)
        (leftover / layout.TRAIN_CSV).write_text("path,file_id,sequence_id,participant_id,phrase\n")

    assert syn.ensure(spec, tmp_path, progress=False) == root
    assert not dead.exists() and live.exists()
    meta = pd.read_csv(root / layout.TRAIN_CSV)
    assert len(meta) == 12

    def stamp():
        files = sorted(root.rglob("*"))
        return [(p.relative_to(root), p.stat().st_mtime_ns, p.stat().st_ino) for p in files]

    before = stamp()
    assert syn.ensure(spec, tmp_path, progress=False) == root
    assert stamp() == before, "the data set was not written again"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([root.name, live.name])


# ------------------------------------------------------------------------------- CLI and picture


def test_command_line(tmp_path, capsys):
    assert syn.main([str(tmp_path), "--n-sequences", "8", "--n-signers", "2", "--seed", "4", "--quiet"]) == 0
    root = Path(capsys.readouterr().out.strip())
    spec = syn.SyntheticSpec(n_sequences=8, n_signers=2, seed=4)
    assert root == tmp_path / f"synthetic-{syn.spec_digest(spec)}"
    assert len(pd.read_csv(root / layout.TRAIN_CSV)) == 8


def test_plot_alphabet(tmp_path):
    path = syn.plot_alphabet(tmp_path / "alphabet.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 20_000
