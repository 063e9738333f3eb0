"""The data layer end to end on real files: reader, features, folds, cache, tf.data."""

from __future__ import annotations

import dataclasses
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aslfr import atomic
from aslfr.data import cache, folds, layout, pipeline, prepare
from aslfr.data import reader as kaggle
from aslfr.data.features import FeatureSpec, compute_stats, extract
from aslfr.errors import ConfigError, DataError

from conftest import TINY, compose_cfg, subprocess_env, typed_cfg, write_sequences


def read_frames(root, rel, spec, wanted, **kw):
    """kaggle.read_file into memory: [(result, frames or None)] in file order."""
    sink = io.BytesIO()
    results = kaggle.read_file(root, rel, "train.csv", spec, wanted, sink, **kw)
    flat = np.frombuffer(sink.getvalue(), np.float32).reshape(-1, spec.n_points, len(spec.axes))
    out, at = [], 0
    for r in results:
        out.append((r, flat[at : at + r.n_frames] if r.status == "ok" else None))
        at += r.n_frames
    assert at == len(flat)
    return out


def prepared_for(overrides, tmp_path, **kw):
    cfg = typed_cfg(overrides, tmp_path)
    return cfg, prepare.setup_from_config(cfg, progress=False, **kw)


def test_kaggle_reader_on_synthetic_dir_yields_the_same_arrays(tmp_path):
    cfg, synth = prepared_for(TINY, tmp_path / "a")
    root = synth.prepared.meta["root"]
    same = [f"data.features.handless_frames={cfg.data.features.handless_frames.value}"]  # kaggle keeps them
    _, real = prepared_for(["data=kaggle", f"data.root={root}", "data.n_folds=4", *same], tmp_path / "b")
    a, b = synth.prepared, real.prepared
    assert len(a) > 100
    np.testing.assert_array_equal(np.asarray(a.frames), np.asarray(b.frames))
    for name in (
        "offsets",
        "sequence_id",
        "participant_id",
        "file_id",
        "phrase",
        "n_raw_frames",
        "dominant_left",
    ):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    np.testing.assert_array_equal(synth.fold, real.fold)
    np.testing.assert_array_equal(synth.stats.mean, real.stats.mean)
    assert a.meta["key"] == b.meta["key"]  # same files, same features: one cache entry


def test_reader_projects_columns_and_matches_pandas(tiny_root):
    spec = FeatureSpec.from_config(compose_cfg([], Path("/tmp")).data.features)
    index = kaggle.read_index(tiny_root, False)
    path = index.path.iloc[0]
    rows = index[index.path == path]
    wanted = {int(s): k for k, s in enumerate(rows.sequence_id)}
    results = read_frames(tiny_root, path, spec, wanted, batch_rows=1000)
    assert len(results) == len(wanted)
    df = pd.read_parquet(tiny_root / path)
    for r, frames in results:
        sid = int(rows.sequence_id.iloc[r.position])
        raw = df.loc[[sid], spec.columns].to_numpy(np.float32)
        ref = extract(raw, spec)
        assert r.n_raw_frames == len(raw)
        if ref is None:
            assert r.status == "no_hands" and frames is None
        else:
            np.testing.assert_array_equal(ref.frames, frames)
    # only the feature columns (plus index and frame) are ever requested
    assert len(spec.columns) < len(layout.landmark_columns()) / 8


def test_scattered_rows_and_unsorted_frames_are_read_correctly(tmp_path):
    seqs = [
        {"sequence_id": 5 + i, "participant_id": i, "phrase": "hi", "hands": [True] * (3 + i)}
        for i in range(3)
    ]
    root = write_sequences(tmp_path / "k", seqs)
    path = root / "train_landmarks" / "1000.parquet"
    df = pd.read_parquet(path)
    spec = FeatureSpec.from_config(compose_cfg([], tmp_path).data.features)
    wanted = {5 + i: i for i in range(3)}
    before = read_frames(root, "train_landmarks/1000.parquet", spec, wanted)
    df.iloc[np.random.default_rng(0).permutation(len(df))].to_parquet(path)  # rows shuffled
    after = read_frames(root, "train_landmarks/1000.parquet", spec, wanted, batch_rows=2)
    assert [r.position for r, _ in after] == [0, 1, 2]
    for (_, x), (_, y) in zip(before, after):
        np.testing.assert_array_equal(x, y)


def test_mirroring_maps_left_dominant_to_the_canonical_side(tmp_path):
    spec = FeatureSpec.from_config(compose_cfg([], tmp_path).data.features)
    cols = spec.columns
    rng = np.random.default_rng(1)
    right = rng.uniform(0.2, 0.8, (6, len(cols))).astype(np.float32)
    right[:, [k for k, c in enumerate(cols) if "_left_hand_" in c]] = np.nan
    # The same signing done with the left hand, seen in a mirror.
    left = np.empty_like(right)
    for k, c in enumerate(cols):
        axis, rest = c.split("_", 1)
        part, i = rest.rsplit("_", 1)
        src = layout.column(axis, layout.MIRROR_PART[part], layout.MIRROR[part][int(i)])
        v = right[:, cols.index(src)]
        left[:, k] = 1 - v if axis == "x" else v
    a, b = extract(right, spec), extract(left, spec)
    assert not a.dominant_left and b.dominant_left
    np.testing.assert_allclose(a.frames, b.frames, atol=1e-6)
    spec_no = dataclasses.replace(spec, mirror=False)
    c = extract(left[:, [cols.index(x) for x in spec_no.columns]], spec_no)
    assert not np.allclose(c.frames, a.frames)  # without mirroring the left hand stays as it is


def test_handless_frames_drop_or_keep(tmp_path):
    seqs = [
        {
            "sequence_id": 1,
            "participant_id": 0,
            "phrase": "a",
            "hands": [False, True, False, True, True, False],
        }
    ]
    write_sequences(tmp_path / "k", seqs)
    spec = FeatureSpec.from_config(compose_cfg([], tmp_path).data.features)
    raw = pd.read_parquet(tmp_path / "k/train_landmarks/1000.parquet")[spec.columns].to_numpy()
    assert len(extract(raw, spec).frames) == 3
    keep = dataclasses.replace(
        spec, hands="both", lip_points=(), pose_points=(11, 12), z=True, handless_frames="keep"
    )
    raw = pd.read_parquet(tmp_path / "k/train_landmarks/1000.parquet")[keep.columns].to_numpy()
    out = extract(raw, keep)
    assert out.frames.shape == (6, 21 + 21 + 2, 3)
    assert np.isnan(out.frames[0, :21]).all() and not np.isnan(out.frames[1, :21]).any()


def test_feature_sets(tmp_path):
    def spec(*o):
        return FeatureSpec.from_config(compose_cfg(list(o), tmp_path).data.features)

    assert spec("data.features.lips=false", "data.features.pose=false").n_points == 21
    assert (
        spec("data.features.hands=both", "data.features.lips=false", "data.features.pose=false").n_points
        == 42
    )
    assert spec().n_points == 21 + 40 + 12
    full = spec("data.features.hands=both", "data.features.z=true")
    assert full.n_features == (42 + 40 + 12) * 3 + 20 * 3  # + the hand relative to its wrist
    assert all(c[0] in "xyz" for c in full.columns) and len(full.columns) == (42 + 40 + 12) * 3


def test_folds_grouped_by_participant_and_deterministic(tmp_path):
    cfg, split = prepared_for(TINY, tmp_path)
    p = split.prepared
    signers_per_fold = [set(p.participant_id[split.fold == k]) for k in range(4)]
    for i in range(4):
        for j in range(i + 1, 4):
            assert not signers_per_fold[i] & signers_per_fold[j]
    assert set(p.participant_id[split.train]).isdisjoint(p.participant_id[split.val])
    listing = kaggle.read_index(Path(p.meta["root"]), False).participant_id.to_numpy()
    again = folds.assign_folds(p.participant_id, 4, int(cfg.data.split_seed), listing=listing)
    np.testing.assert_array_equal(again, split.fold)
    sizes = np.bincount(split.fold)
    assert sizes.min() > 0.5 * sizes.max()  # balanced in sequences, not just in signers
    table = pd.read_csv(tmp_path / "run" / "folds.csv")
    assert list(table.columns) == ["sequence_id", "participant_id", "fold"]
    assert table.groupby("participant_id").fold.nunique().max() == 1
    np.testing.assert_array_equal(table.sequence_id, p.sequence_id)
    train, val = folds.split(split.fold, -1)
    assert len(train) == len(p) and len(val) == 0


def test_fold_rule_depends_on_the_listing_only():
    rng = np.random.default_rng(0)
    # 30 signers of very different sizes, as in the competition's train.csv
    listing = np.repeat(np.arange(100, 130), rng.integers(20, 200, 30))
    fold = folds.assign_folds(listing, 5, seed=42)
    sizes = np.bincount(fold, minlength=5)
    assert sizes.max() - sizes.min() <= 0.05 * len(listing) / 5  # greedy largest-first: balanced
    assert all(len(set(fold[listing == s])) == 1 for s in np.unique(listing))
    # any subset of the rows (skips, other features) keeps every signer's fold
    keep = rng.random(len(listing)) < 0.4
    np.testing.assert_array_equal(folds.assign_folds(listing[keep], 5, 42, listing=listing), fold[keep])
    # a signer only in the supplemental rows gets a seeded hash; the others do not move
    loaded = np.concatenate([listing, np.full(7, 999)])
    both = folds.assign_folds(loaded, 5, 42, listing=listing)
    np.testing.assert_array_equal(both[: len(listing)], fold)
    assert len(set(both[len(listing) :])) == 1
    assert not np.array_equal(folds.assign_folds(listing, 5, seed=1), fold)  # the seed matters
    with pytest.raises(DataError, match=r"data.n_folds=5 .* the data has 3 signer\(s\)"):
        folds.assign_folds(np.array([1, 2, 3, 3]), 5, 42)
    # a fold whose signers were all skipped cannot validate; the range check keeps n_folds
    with pytest.raises(DataError, match="data.fold=1 has no sequence"):
        folds.split(np.array([0, 0, 2, 3]), 1, n_folds=5)
    with pytest.raises(DataError, match=r"out of range: use 0\.\.4"):
        folds.split(np.array([0, 0, 2, 3]), 5, n_folds=5)


def test_folds_do_not_move_with_supplemental_rows_or_skips(tmp_path):
    # one data set (generated once), three preparations of it
    base = [*TINY, "data.synthetic.n_supplemental=60", f"paths.data_dir={tmp_path / 'data'}"]
    _, plain = prepared_for(base, tmp_path / "a")
    _, supp = prepared_for([*base, "data.use_supplemental=true"], tmp_path / "b")
    _, short = prepared_for([*base, "data.max_phrase_length=12"], tmp_path / "c")
    tables = {name: pd.read_csv(tmp_path / name / "run" / "folds.csv") for name in "abc"}
    a, b, c = (tables[n].set_index("sequence_id") for n in "abc")
    # the training sequences: the same folds with and without the supplemental rows (every one of
    # the 60 but those whose hand is never found)
    skipped = sum(supp.prepared.meta["skipped"].values()) - sum(plain.prepared.meta["skipped"].values())
    assert len(b) == len(a) + 60 - skipped and skipped <= 3
    pd.testing.assert_frame_equal(b.loc[a.index], a)
    # supplemental sequences follow their signer's fold
    assert b.groupby("participant_id").fold.nunique().max() == 1
    # skips (here phrases longer than 12 characters) move no fold either
    assert 0 < len(c) < len(a)
    pd.testing.assert_frame_equal(a.loc[c.index], c)
    assert supp.prepared.meta["key"] != plain.prepared.meta["key"] != short.prepared.meta["key"]


def test_normalization_uses_training_folds_only(tmp_path):
    _, split = prepared_for(TINY, tmp_path)
    p = split.prepared
    train_frames = np.concatenate([p.sequence(i) for i in split.train])
    features = prepare.features_fn(split.spec)(train_frames)  # + the hand relative to its wrist
    assert features.shape[1] == split.spec.n_features == 73 * 2 + 20 * 2
    np.testing.assert_allclose(split.stats.mean, np.nanmean(features, 0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(split.stats.std, np.nanstd(features, 0), rtol=1e-4, atol=1e-5)
    all_stats = compute_stats(
        p.frames, p.offsets, np.arange(len(p)), transform=prepare.features_fn(split.spec)
    )
    assert not np.allclose(all_stats.mean, split.stats.mean)
    saved = json.loads((tmp_path / "run" / "features.json").read_text())
    np.testing.assert_allclose(saved["stats"]["mean"], split.stats.mean)
    assert saved["features"]["columns"] == split.spec.columns


def test_second_run_reads_no_parquet(tmp_path, monkeypatch):
    _, first = prepared_for(TINY, tmp_path)
    assert first.prepared.meta["cache_hit"] is False

    def fail(*a, **k):
        raise AssertionError("parquet read on a cache hit")

    monkeypatch.setattr(kaggle, "read_file", fail)
    _, second = prepared_for(TINY, tmp_path)
    assert second.prepared.meta["cache_hit"] is True
    np.testing.assert_array_equal(np.asarray(first.prepared.frames), np.asarray(second.prepared.frames))
    with pytest.raises(AssertionError, match="parquet read"):  # another feature config: new key
        prepared_for([*TINY, "data.features.z=true"], tmp_path)


def test_interrupted_preparation_is_never_taken_for_complete(tmp_path, monkeypatch):
    real = kaggle.read_file
    calls = []

    def dies_on_second_file(*a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(kaggle, "read_file", dies_on_second_file)
    with pytest.raises(KeyboardInterrupt):
        prepared_for([*TINY, "data.num_workers=1"], tmp_path)
    cache_dir = tmp_path / "data" / "cache"
    # nothing published, temp removed (the build lock's file stays: it is reused)
    assert [p.suffix for p in cache_dir.iterdir()] == [cache.LOCK_SUFFIX]
    # A preparation killed outright leaves its temp dir behind: never used, cleaned next time.
    stale = cache_dir / atomic.temp_name("deadbeef", pid=999999999)
    stale.mkdir()
    (stale / "meta.json").write_text("{}")
    monkeypatch.setattr(kaggle, "read_file", real)
    _, split = prepared_for(TINY, tmp_path)
    assert split.prepared.meta["cache_hit"] is False and not stale.exists()


@pytest.mark.parametrize("damage", ["flip", "truncate", "meta"])
def test_corrupt_cache_entry_is_detected_and_rebuilt(tmp_path, damage, caplog):
    _, first = prepared_for(TINY, tmp_path)
    entry = first.prepared.path
    reference = np.array(first.prepared.frames)
    del first
    if damage == "flip":
        with open(entry / cache.FRAMES_FILE, "r+b") as f:
            f.seek(100)
            byte = f.read(1)
            f.seek(100)
            f.write(bytes([byte[0] ^ 0xFF]))
    elif damage == "truncate":
        with open(entry / cache.FRAMES_FILE, "r+b") as f:
            f.truncate(1000)
    else:
        (entry / cache.META_FILE).write_text("{not json")
    _, second = prepared_for(TINY, tmp_path)
    assert second.prepared.meta["cache_hit"] is False
    assert "corrupt" in caplog.text
    np.testing.assert_array_equal(np.asarray(second.prepared.frames), reference)


def test_tf_data_batches_masks_and_augmentation(tmp_path):
    cfg, split = prepared_for(TINY, tmp_path)
    p = split.prepared
    max_len = int(cfg.data.max_phrase_length) + 1
    tokens = split.vocab.encode(list(p.phrase), max_len)
    kw = dict(spec=split.spec, stats=split.stats, max_frames=32, batch_size=8)
    val = pipeline.make_dataset(p.frames, p.offsets, tokens, split.val, training=False, **kw)
    batches = list(val)
    assert sum(len(b["tokens"]) for b in batches) == len(split.val)
    # the cache file is mapped by TensorFlow: no Python call inside the pipeline
    graph = val._as_serialized_graph().numpy()
    assert b"ImmutableConst" in graph and b"PyFunc" not in graph
    b = batches[0]
    assert b["frames"].shape == (8, 32, split.spec.n_features) and b["mask"].shape == (8, 32)
    # validation: in order, deterministic, not augmented; mask marks the real frames
    again = next(iter(val))
    np.testing.assert_array_equal(b["frames"].numpy(), again["frames"].numpy())
    lengths = np.minimum(p.lengths[split.val[:8]], 32)
    np.testing.assert_array_equal(b["mask"].numpy().sum(1), lengths)
    assert (b["frames"].numpy()[b["mask"].numpy() == 0] == 0).all()
    i = split.val[0]
    raw = p.sequence(i)[:32]
    expect = (prepare.features_fn(split.spec)(raw) - split.stats.mean) / split.stats.std
    if len(p.sequence(i)) <= 32:
        np.testing.assert_allclose(b["frames"][0, : len(expect)].numpy(), expect, rtol=1e-5, atol=1e-5)
    rel = (raw[:, 1:21] - raw[:, :1]) / np.linalg.norm(raw[:, 9] - raw[:, 0], axis=-1)[:, None, None]
    np.testing.assert_allclose(
        prepare.features_fn(split.spec)(raw)[:, 146:], rel.reshape(len(raw), -1), rtol=1e-5, atol=1e-5
    )
    dec = tokens[i]
    assert split.vocab.decode(dec) == p.phrase[i]
    np.testing.assert_array_equal(b["tokens"][0].numpy(), tokens[i])
    # training: shuffled, augmented, full batches only
    train = pipeline.make_dataset(
        p.frames, p.offsets, tokens, split.train, training=True, augment=cfg.data.augment, seed=1, **kw
    )
    e1 = [x["tokens"].numpy() for x in train.take(3)]
    e2 = [x["tokens"].numpy() for x in train.take(3)]
    assert not all(np.array_equal(a, c) for a, c in zip(e1, e2))  # reshuffled each epoch
    assert all(len(x["tokens"]) == 8 for x in train.take(len(split.train)))  # endless, full
    plain = pipeline.make_dataset(
        p.frames,
        p.offsets,
        tokens,
        split.train,
        training=True,
        augment=dataclasses.replace(cfg.data.augment, enabled=False),
        seed=1,
        **kw,
    )
    fresh = pipeline.make_dataset(
        p.frames, p.offsets, tokens, split.train, training=True, augment=cfg.data.augment, seed=1, **kw
    )
    x_aug, x_plain = next(iter(fresh)), next(iter(plain))
    np.testing.assert_array_equal(x_aug["tokens"], x_plain["tokens"])  # same order, same seed
    assert not np.allclose(np.nan_to_num(x_aug["frames"]), np.nan_to_num(x_plain["frames"]))


def test_length_pools_group_batches_by_length_and_keep_the_shuffle(tmp_path):
    """data.length_pool: every sequence still comes once per pass over the training set; within
    a pool the batches are sorted by length (so far less padding), but the pools' batches come
    in a random order and each pass draws other pools."""
    cfg, split = prepared_for(TINY, tmp_path)
    p = split.prepared
    tokens = split.vocab.encode(list(p.phrase), int(cfg.data.max_phrase_length) + 1)
    kw = dict(spec=split.spec, stats=split.stats, max_frames=512, batch_size=4, length_step=8, seed=3)
    pools = 4

    def stream(count=2 * pools, **extra):
        ds = pipeline.make_dataset(p.frames, p.offsets, tokens, split.train, training=True, **kw, **extra)
        return list(ds.take(count))

    grouped, plain = stream(length_pool=pools), stream()
    lengths = [b["mask"].numpy().sum(1) for b in grouped]
    pool_of = [np.concatenate(lengths[k : k + pools]) for k in (0, pools)]
    for pool, batches in zip(pool_of, (lengths[:pools], lengths[pools:])):
        # each batch holds a contiguous run of the pool's sorted lengths
        spans = sorted((b.min(), b.max()) for b in batches)
        assert all(hi <= lo2 for (_, hi), (lo2, _) in zip(spans, spans[1:])), spans
        assert np.array_equal(np.sort(np.concatenate(batches)), np.sort(pool))
    # served in random order (not shortest first every time), and less padding than plain batches
    firsts = [batches[0].mean() for batches in (lengths[:pools], lengths[pools:])]
    assert any(lengths[k].mean() > lengths[k + 1].mean() for k in range(2 * pools - 1)), firsts
    padded = sum(b["mask"].shape[1] * 4 for b in grouped) - sum(x.sum() for x in lengths)
    padded_plain = sum(b["mask"].shape[1] * 4 for b in plain) - sum(b["mask"].numpy().sum() for b in plain)
    assert padded < padded_plain
    # the pools are the plain stream's sequences, regrouped: the same ones, none lost or repeated
    n = len(split.train) // (4 * pools) * pools
    regrouped = sorted(tuple(t) for b in stream(n, length_pool=pools) for t in b["tokens"].numpy())
    assert regrouped == sorted(tuple(t) for b in stream(n) for t in b["tokens"].numpy())


def test_cutmix_splices_two_clips_of_one_signer_and_their_phrases(tmp_path):
    """augment.cutmix p=1: every training sequence is the head of one clip and the tail of
    another clip of the same participant (the phrase: a's head and b's tail); validation never."""
    cfg, split = prepared_for(TINY, tmp_path)
    p, vocab = split.prepared, split.vocab
    tokens = vocab.encode(list(p.phrase), int(cfg.data.max_phrase_length) + 1)
    # CutMix alone: every other augmentation off, so the frames and phrases can be traced
    steps = [f.name for f in dataclasses.fields(cfg.data.augment) if f.name != "enabled"]
    aug = dataclasses.replace(
        cfg.data.augment, **{k: dataclasses.replace(getattr(cfg.data.augment, k), p=0.0) for k in steps}
    )
    aug.cutmix.p = 1.0
    kw = dict(spec=split.spec, stats=split.stats, max_frames=512, batch_size=4, seed=5)
    mixed = pipeline.make_dataset(
        p.frames,
        p.offsets,
        tokens,
        split.train,
        training=True,
        augment=aug,
        participants=p.participant_id,
        pad=vocab.pad,
        eos=vocab.eos,
        **kw,
    )
    by_signer = {}
    for i in split.train:
        by_signer.setdefault(p.participant_id[i], []).append(p.phrase[i])
    longest = int(cfg.data.max_phrase_length)

    def splice_of(phrase, a, b):  # phrase == (a[:k] + b[m:]) cut to the longest phrase
        for k in range(len(a) + 1):
            if a[:k] != phrase[:k]:
                break
            rest = phrase[k:]
            for m in range(len(b) + 1):
                tail = b[m:]
                if tail == rest or (len(phrase) == longest and tail.startswith(rest)):
                    return True
        return False

    spliced = 0
    for batch in mixed.take(10):
        for row in batch["tokens"].numpy():
            phrase = vocab.decode(row)
            assert any(splice_of(phrase, a, b) for ps in by_signer.values() for a in ps for b in ps), phrase
            spliced += phrase not in set(p.phrase)
    assert spliced > 20  # (a splice of two clips is almost never a phrase of the set)
    val = pipeline.make_dataset(
        p.frames,
        p.offsets,
        tokens,
        split.val,
        training=False,
        augment=aug,
        participants=p.participant_id,
        pad=vocab.pad,
        eos=vocab.eos,
        **kw,
    )
    assert [vocab.decode(r) for b in val for r in b["tokens"].numpy()] == list(p.phrase[split.val])


def test_each_augmentation_does_what_it_says(tmp_path):
    import tensorflow as tf

    spec = FeatureSpec.from_config(compose_cfg([], tmp_path).data.features)
    aug_cfg = typed_cfg([], tmp_path).data.augment
    augmenter = pipeline.Augmenter(aug_cfg, spec)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.uniform(0.3, 0.7, (40, spec.n_points, 2)), tf.float32)
    seed = tf.constant([3, 4], tf.int32)
    assert 20 <= augmenter.resample(x, seed).shape[0] <= 60
    moved = augmenter.affine(x, seed).numpy()
    assert moved.shape == x.shape and not np.allclose(moved, x)
    # an affine map keeps collinear points collinear: compare pairwise distance ratios
    d0 = np.linalg.norm(x.numpy()[0, 0] - x.numpy()[0, 1])
    d1 = np.linalg.norm(moved[0, 0] - moved[0, 1])
    assert 0.6 < d1 / d0 < 1.6
    fingers = augmenter.finger_dropout(x, seed).numpy()
    gone = np.isnan(fingers).all(axis=(0, 2))
    assert 4 <= gone.sum() <= 8 and gone[spec.group_points("hand")].sum() == gone.sum()
    hand = augmenter.hand_dropout(x, seed).numpy()
    frames_gone = np.isnan(hand[:, spec.hand_points]).all(axis=(1, 2))
    assert 0 < frames_gone.sum() < 40
    assert not np.isnan(hand[:, spec.group_points("lips")]).any()
    part = augmenter.part_dropout(x, seed).numpy()
    lips_gone = np.isnan(part[:, spec.group_points("lips")]).all()
    pose_gone = np.isnan(part[:, spec.group_points("pose")]).all()
    assert lips_gone != pose_gone
    for k in range(20):  # temporal masking: one span of every landmark, up to half the frames
        masked = np.isnan(augmenter.time_mask(x, tf.constant([k, 7], tf.int32)).numpy()).all(axis=(1, 2))
        where = np.flatnonzero(masked)
        assert masked.sum() <= 20 and (len(where) == 0 or where[-1] - where[0] + 1 == len(where)), k
        assert not np.isnan(augmenter.time_mask(x, tf.constant([k, 7], tf.int32)).numpy()[~masked]).any()
    masks = [np.isnan(augmenter.time_mask(x, tf.constant([k, 1])).numpy()) for k in range(20)]
    spans = [m.all(axis=(1, 2)).sum() for m in masks]
    assert max(spans) > 5
    flipped = augmenter.flip(x, seed).numpy()  # a mirror: x -> 1 - x, partners swapped
    mirror = spec.mirror_permutation
    np.testing.assert_allclose(flipped[:, :, 0], 1 - x.numpy()[:, mirror, 0], atol=1e-6)
    np.testing.assert_allclose(augmenter.flip(flipped, seed).numpy(), x.numpy(), atol=1e-6)  # twice: none
    corner = spec.points.index(("lips", "face", 61))  # the mouth's corners swap, as do the wrists
    assert spec.points[mirror[corner]] == ("lips", "face", 291)
    assert spec.points[mirror[spec.points.index(("pose", "pose", 15))]] == ("pose", "pose", 16)
    both = FeatureSpec.from_config(typed_cfg(["data.features.hands=both"], tmp_path).data.features)
    hand, other = both.group_points("hand"), both.group_points("other_hand")
    np.testing.assert_array_equal(both.mirror_permutation[hand], other)  # the two hands swap


def test_fit_length_resamples_long_and_pads_short():
    import tensorflow as tf

    x = tf.reshape(tf.range(10, dtype=tf.float32), [10, 1, 1])
    frames, mask = pipeline.fit_length(x, 4)
    assert frames.numpy().ravel().tolist() == [1.0, 3.0, 6.0, 8.0] and mask.numpy().all()
    frames, mask = pipeline.fit_length(x[:3], 5)
    assert frames.numpy().ravel().tolist() == [0, 1, 2, 0, 0]
    assert mask.numpy().tolist() == [True, True, True, False, False]


def test_supplemental_is_read_when_asked(tmp_path):
    overrides = [*TINY, "data.synthetic.n_supplemental=30"]
    _, base = prepared_for(overrides, tmp_path)
    _, both = prepared_for([*overrides, "data.use_supplemental=true"], tmp_path)
    assert both.prepared.meta["n_listed"] == base.prepared.meta["n_listed"] + 30
    assert set(base.prepared.sequence_id) < set(both.prepared.sequence_id)
    root = Path(both.prepared.meta["root"])
    assert (root / layout.SUPPLEMENTAL_CSV).is_file()
    assert any((root / layout.SUPPLEMENTAL_DIR).glob("*.parquet"))


@pytest.mark.slow
def test_prepare_keeps_out_of_outputs(tmp_path):
    """aslfr-prepare writes its log, folds.csv and features.json beside the data, not
    to a new outputs/ directory per call (38 of 53 directories there were prepare runs)."""
    for _ in range(2):
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "aslfr.data.prepare",
                "debug=default",
                f"paths.data_dir={tmp_path / 'data'}",
            ],
            cwd=tmp_path,
            env=subprocess_env(),
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
    assert not (tmp_path / "outputs").exists()
    assert sorted(p.name for p in (tmp_path / "data" / "prepare").iterdir()) == [
        "features.json",
        "folds.csv",
        "prepare.log",
    ]


def test_supplemental_on_synthetic_data_without_any_names_the_key_to_set(tmp_path):
    with pytest.raises(ConfigError, match=r"data\.synthetic\.n_supplemental"):
        prepared_for([*TINY, "data.use_supplemental=true"], tmp_path)


def test_summary_says_whether_left_dominant_signers_were_mirrored(tmp_path):
    for mirror, words in (
        ("true", "left-dominant (mirrored):"),
        ("false", "left-dominant (not mirrored: data.features.mirror=false):"),
    ):
        cfg, split = prepared_for([*TINY, f"data.features.mirror={mirror}"], tmp_path)
        assert words in prepare.summary(split, cfg.data)


def test_length_step_cuts_padding_and_bucketing_groups_by_length(tmp_path):
    cfg, split = prepared_for(TINY, tmp_path)
    p = split.prepared
    tokens = split.vocab.encode(list(p.phrase), int(cfg.data.max_phrase_length) + 1)
    kw = dict(spec=split.spec, stats=split.stats, max_frames=128, batch_size=4, length_step=32)
    lengths = np.minimum(p.lengths, 128)
    val = list(pipeline.make_dataset(p.frames, p.offsets, tokens, split.val, training=False, **kw))
    # validation: every sequence once, shortest first, each batch cut to its longest sequence
    seen = np.concatenate([b["tokens"].numpy() for b in val])
    assert sorted(map(tuple, seen)) == sorted(map(tuple, tokens[split.val]))
    got = np.concatenate([b["mask"].numpy().sum(1) for b in val])
    np.testing.assert_array_equal(got, np.sort(lengths[split.val]))
    for b in val:
        n = b["frames"].shape[1]
        assert n % 32 == 0 and n - 32 < b["mask"].numpy().sum(1).max() <= n
    # training: full batches of similar lengths, cut the same way
    train = pipeline.make_dataset(
        p.frames,
        p.offsets,
        tokens,
        split.train,
        training=True,
        augment=dataclasses.replace(cfg.data.augment, enabled=False),
        bucket_by_length=True,
        **kw,
    )
    shapes = set()
    for b in train.take(3 * len(split.train) // 4):
        real = b["mask"].numpy().sum(1)
        n = b["frames"].shape[1]
        shapes.add(n)
        assert len(real) == 4 and n % 32 == 0
        assert n - 32 < real.min() <= real.max() <= n  # one length bucket per batch
    assert len(shapes) > 1
