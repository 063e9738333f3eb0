"""Joint decoding's CTC weight, chosen after training: each run's best weights decode its
validation fold with attention, CTC and joint decoding at several `model.joint_weight`s, scored by
the competition metric ((N - D) / N over the fold). No retraining: the weight only steers the
search.

    python bench/joint_weight.py RUN_DIR [RUN_DIR ...] [--weights 0.3 0.5 0.7 0.85]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

from aslfr.data import prepare
from aslfr.export import convert as export
from aslfr.model.losses import edit_score
from aslfr.train.datasets import validation_dataset
from aslfr.train.decoder import DatasetDecoder


def rescored(run_dir: Path, weights: list[float]) -> dict[str, float]:
    run = export.RunFiles.load(run_dir)
    model, cfg = run.model(), run.cfg
    split = prepare.setup(
        cfg.data, cfg.paths.cache_dir, cfg.paths.data_dir, Path(tempfile.mkdtemp()), progress=False
    )
    ds = validation_dataset(cfg, split, model.cfg, batch_size=64)
    trained = model.cfg
    out = {}
    for how, weight in [("attention", None), ("ctc", None), *(("joint", w) for w in weights)]:
        if how not in trained.decodes:
            continue
        model.cfg = dataclasses.replace(trained, joint_weight=weight or trained.joint_weight)
        truth, predicted = DatasetDecoder(model, split.vocab, how)(ds)
        out[how if weight is None else f"joint {weight}"] = edit_score(truth, predicted).score
    model.cfg = trained
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dirs", nargs="+", type=Path)
    ap.add_argument("--weights", nargs="*", type=float, default=[0.3, 0.5, 0.7, 0.85])
    args = ap.parse_args()
    rows = {run_dir: rescored(run_dir, args.weights) for run_dir in args.run_dirs}
    columns = list(dict.fromkeys(k for r in rows.values() for k in r))
    print("| run | " + " | ".join(columns) + " |")
    print("|---|" + "---|" * len(columns))
    for run_dir, scores in rows.items():
        cells = [f"{scores[c]:.4f}" if c in scores else "—" for c in columns]
        print(f"| {run_dir} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
