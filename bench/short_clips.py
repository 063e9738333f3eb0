"""Decoding on short clips: each run's best weights decode its validation fold with every decoding
it can do (fallback off), and the clips are split by how many frames show the hand against the
fewest frames a CTC alignment of the true phrase needs (one per character, one more between
doubled letters). Clips that show the hand in fewer frames than that cannot be aligned by CTC if
the frames without a hand are dropped (`data.features.handless_frames=drop`); with `keep` the
model sees every frame. The table gives each decoding's score (competition metric) per group,
averaged over the runs given with the same label (the run directory's name up to `-seed`).

    python bench/short_clips.py RUN_DIR [RUN_DIR ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

from aslfr.data import prepare
from aslfr.data.landmark_stats import ctc_min_frames
from aslfr.export import convert as export
from aslfr.model.losses import edit_score
from aslfr.train.datasets import validation_dataset, validation_order
from aslfr.train.decoder import DatasetDecoder

GROUPS = (  # name -> which clips: hand frames h, the true phrase's fewest CTC frames n
    ("h < n", lambda h, n: h < n),
    ("n ≤ h < 2n", lambda h, n: (h >= n) & (h < 2 * n)),
    ("h ≥ 2n", lambda h, n: h >= 2 * n),
    ("all", lambda h, n: np.ones_like(h, bool)),
)


def raw_hand_frames(split, order) -> np.ndarray:
    """The clips `order`'s frames showing the hand as recorded (before resampling to
    data.max_frames), whether or not the frames without one are kept."""
    p, points = split.prepared, split.spec.hand_points
    out = []
    for i in order:
        seg = p.frames[p.offsets[i] : p.offsets[i + 1]]
        out.append(int((~np.isnan(seg[:, points, :])).any(axis=(1, 2)).sum()))
    return np.array(out)


def rescored(run_dir: Path) -> dict[tuple[str, str], tuple[float, int]]:
    """(group, decoding) -> (score, clips) on the run's validation fold."""
    run = export.RunFiles.load(run_dir)
    model, cfg = run.model(), run.cfg
    split = prepare.setup(
        cfg.data, cfg.paths.cache_dir, cfg.paths.data_dir, Path(tempfile.mkdtemp()), progress=False
    )
    model.cfg = dataclasses.replace(model.cfg, fallback_frames=0, fallback_tokens=())
    ds = validation_dataset(cfg, split, model.cfg, batch_size=64)
    weights = cfg.model.joint_weights or [model.cfg.joint_weight]
    hows = [how for how in ("attention", "ctc") if how in model.cfg.decodes]
    if "joint" in model.cfg.decodes:
        hows += [f"joint@{w}" for w in weights]
    truth, predicted = DatasetDecoder(model, split.vocab, hows).each(ds)
    h = raw_hand_frames(split, validation_order(cfg, split, model.cfg))  # in the decoded order
    n = np.array([ctc_min_frames(t) for t in truth])
    out = {}
    for group, pick in GROUPS:
        chosen = np.flatnonzero(pick(h, n))
        for how, texts in predicted.items():
            if len(chosen):
                score = edit_score([truth[i] for i in chosen], [texts[i] for i in chosen]).score
                out[group, how] = (score, len(chosen))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dirs", nargs="+", type=Path)
    args = ap.parse_args()
    by_label = defaultdict(list)
    for run_dir in args.run_dirs:
        by_label[re.sub(r"-seed\d+$", "", run_dir.name)].append(rescored(run_dir))
    hows = list(dict.fromkeys(how for runs in by_label.values() for r in runs for _, how in r))
    print(
        "h: the clip's frames showing the hand (as recorded, before resampling); "
        "n: the fewest frames CTC needs for its true phrase\n"
    )
    print("| runs | clips | n of clips | " + " | ".join(hows) + " |")
    print("|---|---|---|" + "---|" * len(hows))
    for label, runs in by_label.items():
        for group, _ in GROUPS:
            counts = [r[group, hows[0]][1] for r in runs if (group, hows[0]) in r]
            cells = []
            for how in hows:
                got = [r[group, how][0] for r in runs if (group, how) in r]
                spread = (max(got) - min(got)) / 2 if got else 0
                cells.append(f"{np.mean(got):.3f} ± {spread:.3f}" if got else "—")
            count = f"{np.mean(counts):.0f}" if counts else "0"
            print(f"| {label} ({len(runs)}) | {group} | {count} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
