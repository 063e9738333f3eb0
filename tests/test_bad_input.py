"""Bad input: a clear message naming the file (and row) and the fix, exit status != 0, no traceback;
per-sequence problems skipped and counted by reason (or an error with data.on_bad_sequence=error)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from aslfr.data import layout, prepare
from aslfr.errors import DataError

from conftest import ROOT, subprocess_env, typed_cfg, write_sequences


def run_prepare(root: Path, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    env = subprocess_env()
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "aslfr.data.prepare",
            "data=kaggle",
            f"data.root={root}",
            f"paths.data_dir={tmp_path / 'data'}",
            f"hydra.run.dir={tmp_path / 'run'}",
            "data.n_folds=2",
            *extra,
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )


def good(n: int = 4, first_id: int = 10) -> list[dict]:
    return [
        {
            "sequence_id": first_id + i,
            "participant_id": i % 2,
            "phrase": "abc",
            "hands": [False, True, True, True, False],
        }
        for i in range(n)
    ]


def assert_clean_failure(proc, *needles: str) -> None:
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    for needle in needles:
        assert needle in proc.stderr, (needle, proc.stderr)


@pytest.mark.slow
def test_csv_missing_required_column(tmp_path):
    root = write_sequences(tmp_path / "kaggle", good())
    df = pd.read_csv(root / layout.TRAIN_CSV)
    df.drop(columns="participant_id").to_csv(root / layout.TRAIN_CSV, index=False)
    proc = run_prepare(root, tmp_path)
    assert_clean_failure(proc, "train.csv", "participant_id")


@pytest.mark.slow
def test_row_pointing_at_missing_parquet(tmp_path):
    root = write_sequences(tmp_path / "kaggle", good())
    df = pd.read_csv(root / layout.TRAIN_CSV)
    df.loc[2, "path"] = "train_landmarks/424242.parquet"
    df.to_csv(root / layout.TRAIN_CSV, index=False)
    proc = run_prepare(root, tmp_path)
    # row 2 of the table is line 4 of the file (header, then rows 0 and 1)
    assert_clean_failure(proc, "train.csv line 4", "sequence_id 12", "424242.parquet")


@pytest.mark.slow
def test_truncated_parquet(tmp_path):
    root = write_sequences(tmp_path / "kaggle", good())
    path = root / "train_landmarks" / "1000.parquet"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    proc = run_prepare(root, tmp_path)
    assert_clean_failure(proc, "1000.parquet", "truncated or corrupt")


@pytest.mark.slow
def test_parquet_lacking_a_landmark_column(tmp_path):
    root = write_sequences(tmp_path / "kaggle", good())
    path = root / "train_landmarks" / "1000.parquet"
    pq.write_table(pq.read_table(path).drop_columns(["y_right_hand_8"]), path)
    proc = run_prepare(root, tmp_path)
    assert_clean_failure(proc, "1000.parquet", "y_right_hand_8")


BAD = [
    ({"phrase": "caf\u00e9 \u20ac5"}, "unknown_characters"),
    ({"phrase": "x" * 32}, "phrase_too_long"),
    ({"hands": [False] * 6}, "no_hands"),
]


@pytest.fixture
def bad_root(tmp_path) -> Path:
    seqs = good(6)
    for k, (change, _) in enumerate(BAD):
        seqs[k].update(change)
    root = write_sequences(tmp_path / "kaggle", seqs)
    # a CSV row whose sequence_id is absent from its parquet file
    df = pd.read_csv(root / layout.TRAIN_CSV, keep_default_na=False)
    extra = df.iloc[[0]].assign(sequence_id=999, phrase="zz")
    pd.concat([df, extra]).to_csv(root / layout.TRAIN_CSV, index=False)
    return root


def test_bad_sequences_are_skipped_and_counted(bad_root, tmp_path):
    cfg = typed_cfg(["data=kaggle", f"data.root={bad_root}", "data.n_folds=2"], tmp_path)
    split = prepare.setup_from_config(cfg, progress=False)
    skipped = split.prepared.meta["skipped"]
    assert skipped == {"unknown_characters": 1, "phrase_too_long": 1, "no_hands": 1, "missing_in_parquet": 1}
    assert sorted(split.prepared.sequence_id) == [13, 14, 15]
    text = prepare.summary(split, cfg.data)
    for reason in skipped:
        assert f"[{reason}]" in text
    assert "skipped 1: hands never visible" in text


@pytest.mark.slow
def test_summary_printed_by_prepare_names_skips(bad_root, tmp_path):
    proc = run_prepare(bad_root, tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout + proc.stderr
    assert "7 read, 3 kept, 4 skipped" in out
    assert "skipped 1: phrase longer than the model can emit" in out
    assert (tmp_path / "run" / "folds.csv").is_file()


@pytest.mark.parametrize("change, reason", BAD)
def test_bad_sequence_is_an_error_when_asked(change, reason, tmp_path):
    seqs = good(3)
    seqs[1].update(change)
    root = write_sequences(tmp_path / "kaggle", seqs)
    cfg = typed_cfg(
        ["data=kaggle", f"data.root={root}", "data.n_folds=2", "data.on_bad_sequence=error"], tmp_path
    )
    with pytest.raises(DataError, match=r"line 3 \(sequence_id 11\)"):
        prepare.setup_from_config(cfg, progress=False)


@pytest.mark.slow
def test_missing_sequence_is_an_error_when_asked(tmp_path):
    root = write_sequences(tmp_path / "kaggle", good(3))
    df = pd.read_csv(root / layout.TRAIN_CSV, keep_default_na=False)
    pd.concat([df, df.iloc[[0]].assign(sequence_id=999)]).to_csv(root / layout.TRAIN_CSV, index=False)
    proc = run_prepare(root, tmp_path, "data.on_bad_sequence=error")
    assert_clean_failure(
        proc, "train.csv line 5 (sequence_id 999)", "absent from its parquet", "data.on_bad_sequence=skip"
    )


@pytest.mark.slow
def test_kaggle_without_root_is_a_clear_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "aslfr.data.prepare", "data=kaggle", f"hydra.run.dir={tmp_path}"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode != 0
    assert "data.root" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_bad_character_map(tmp_path):
    root = write_sequences(tmp_path / "kaggle", good())
    (root / layout.CHARACTER_MAP_JSON).write_text('{"a": 0, "b": 5}')
    proc = run_prepare(root, tmp_path)
    assert_clean_failure(proc, layout.CHARACTER_MAP_JSON)


def test_no_hands_sequence_with_nan_everywhere_is_counted(tmp_path):
    frames = np.full((5, len(layout.landmark_columns())), np.nan, np.float32)
    seqs = good(2) + [{"sequence_id": 77, "participant_id": 1, "phrase": "a", "frames": frames}]
    root = write_sequences(tmp_path / "kaggle", seqs)
    cfg = typed_cfg(["data=kaggle", f"data.root={root}", "data.n_folds=2"], tmp_path)
    split = prepare.setup_from_config(cfg, progress=False)
    assert split.prepared.meta["skipped"] == {"no_hands": 1}
    assert split.prepared.meta["skipped_examples"]["no_hands"] == [77]


def test_error_mode_is_not_bypassed_by_a_cache_entry_with_skips(bad_root, tmp_path):
    def setup(data_dir: Path, *extra: str):
        cfg = typed_cfg(["data=kaggle", f"data.root={bad_root}", "data.n_folds=2", *extra], data_dir)
        return prepare.setup_from_config(cfg, progress=False)

    with pytest.raises(DataError) as fresh:  # a fresh cache: the first bad row stops the build
        setup(tmp_path / "fresh", "data.on_bad_sequence=error")
    skipped = setup(tmp_path / "shared")  # the default (skip) builds an entry with 4 skips
    assert sum(skipped.prepared.meta["skipped"].values()) == 4
    with pytest.raises(DataError) as reused:  # the same entry may not be used with error
        setup(tmp_path / "shared", "data.on_bad_sequence=error")
    assert str(reused.value) == str(fresh.value)
    assert "train.csv line 2 (sequence_id 10)" in str(reused.value)
    assert "data.on_bad_sequence=skip" in str(reused.value)
    again = setup(tmp_path / "shared")  # the entry is kept, and skip mode still reuses it
    assert again.prepared.meta["cache_hit"] is True
    assert again.prepared.path == skipped.prepared.path


def test_error_mode_reuses_an_entry_without_skips(tmp_path):
    root = write_sequences(tmp_path / "kaggle", good(4))
    cfg = typed_cfg(["data=kaggle", f"data.root={root}", "data.n_folds=2"], tmp_path)
    first = prepare.setup_from_config(cfg, progress=False)
    strict = typed_cfg(
        ["data=kaggle", f"data.root={root}", "data.n_folds=2", "data.on_bad_sequence=error"], tmp_path
    )
    second = prepare.setup_from_config(strict, progress=False)
    assert second.prepared.meta["cache_hit"] is True
    assert second.prepared.path == first.prepared.path


@pytest.mark.slow
def test_unknown_on_bad_sequence_value_is_an_error_even_with_a_cache_entry(tmp_path):
    root = write_sequences(tmp_path / "kaggle", good(4))
    assert run_prepare(root, tmp_path).returncode == 0
    proc = run_prepare(root, tmp_path, "data.on_bad_sequence=warn")
    # the schema refuses it at compose time, before the cache is looked at
    assert_clean_failure(proc, "Invalid value 'warn', expected one of [skip, error]")
