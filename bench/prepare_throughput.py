"""Preparation throughput (sequences/s) of `aslfr.prepare` against the 2023 notebooks' way.

Both read the same Kaggle-layout files with all 1,630 columns and produce the same features:
  baseline  pd.read_parquet(file) whole, then df.loc[sequence_id, columns] per sequence
  aslfr     pyarrow column projection, record batches streamed, files in parallel
Both run the same per-sequence feature extraction; the ratio is measured side by side in one run.

    python bench/prepare_throughput.py [--sequences 3000] [--workers 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from aslfr.data import prepare as prep
from aslfr.data.features import FeatureSpec, extract

from _common import data_config, full_width_root

FULL_SET = 67_208


def baseline(root: Path, spec: FeatureSpec) -> tuple[int, float]:
    index = pd.read_csv(root / "train.csv")
    t0 = time.perf_counter()
    n = 0
    for path, rows in index.groupby("path", sort=False):
        df = pd.read_parquet(root / path)  # every column, as the notebooks did
        for sid in rows.sequence_id:
            raw = df.loc[[sid], spec.columns].to_numpy(np.float32)
            extract(raw, spec)
            n += 1
    return n, time.perf_counter() - t0


def ours(root: Path, cfg, workers: int) -> tuple[int, float]:
    cfg.num_workers = workers
    with tempfile.TemporaryDirectory() as cache_dir:
        t0 = time.perf_counter()
        prepared = prep.prepare(cfg, Path(cache_dir), Path(cache_dir), progress=False)
        seconds = time.perf_counter() - t0
    return prepared.meta["n_listed"], seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sequences", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    root = full_width_root(args.sequences)
    cfg = data_config(["data=kaggle", f"data.root={root}"])
    spec = FeatureSpec.from_config(cfg.features)
    n_cols = len(pd.read_parquet(next((root / "train_landmarks").glob("*.parquet"))).columns)
    n_ours, t_ours = ours(root, cfg, args.workers)
    n_base, t_base = baseline(root, spec)
    r_ours, r_base = n_ours / t_ours, n_base / t_base
    print(f"files: {root} ({args.sequences} sequences, {n_cols} columns + the sequence_id index)")
    print(f"features read: {len(spec.columns)} columns")
    print(f"baseline (pandas, whole file): {r_base:8.1f} sequences/s ({t_base:.1f} s)")
    print(f"aslfr.prepare ({args.workers} workers):    {r_ours:8.1f} sequences/s ({t_ours:.1f} s)")
    print(f"ratio: {r_ours / r_base:.1f}x (target >= 5x)")
    print(
        f"projected full training set ({FULL_SET:,} sequences) on this machine: "
        f"aslfr {FULL_SET / r_ours / 60:.1f} min, baseline {FULL_SET / r_base / 60:.1f} min"
    )


if __name__ == "__main__":
    main()
