"""The recipe's ablation table (as 1st place published theirs): each trick alone on top of the
default, then the combined recipe, on fold 0 of the synthetic default; seeds 0 and 1, the same
epochs; val/score mean ± spread (half the range) and its change against the default.

Each row is a default `train.py` run with the trick's overrides (24 epochs, model=small). The
default model has both heads, so every run also scores its CTC and joint decodings: the table gives
all three at the evaluation of the run's best val/score (attention decoding). `--scale 1000x16`
measures the same on a small set (1,000 sequences, 16 signers, 30 epochs), where a recipe matters
most. Runs already finished in --out are reused, so the script can be re-run after an interruption.

    python bench/ablation.py [--tricks time_mask ...] [--seeds 0 1] [--scale default|1000x16] [--out DIR]
                             [--set KEY=VALUE ...]   (overrides for every run, under each trick's own)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from quality import scores_at_best

from aslfr.train.rundir import RunDir

from _common import ROOT

TRICKS = {  # name -> (what it is, its overrides)
    "default": ("the default", []),
    "batch64_attention": (
        "batches of 64, attention decoding",
        ["trainer.batch_size=64", "model.decode=attention", "model.joint_weight=0.3"],
    ),
    "time_mask": ("temporal masking, p 0.5, up to half the frames", ["data.augment.time_mask.p=0.5"]),
    "token_noise": ("decoder-input noise, 20% of the input characters", ["model.token_noise=0.2"]),
    "ema": ("weights' moving average, momentum 0.99", ["optimizer.ema=0.99"]),
}
TRICKS["cutmix"] = ("CutMix within a signer, p 0.5", ["data.augment.cutmix.p=0.5"])
TRICKS["flip"] = ("horizontal flip, p 0.5", ["data.augment.flip.p=0.5"])
TRICKS["awp"] = ("adversarial weight perturbation 0.05 from half-way", ["optimizer.awp=0.05"])
TRICKS["fallback"] = ("fallback phrase under 5 hand frames", ["fallback.min_hand_frames=5"])
TRICKS["length_pool"] = (
    "length-grouped batches in pools of 8 (speed)",
    ["data.length_pool=8"],
)
TRICKS["conformer_small"] = ("the conformer family sized for 2 cores", ["model=conformer_small"])
TRICKS["handless_keep"] = (
    "frames without a hand kept (CTC sees every frame)",
    ["data.features.handless_frames=keep"],
)
TRICKS["conformer_small_keep"] = (
    "the conformer family, frames without a hand kept",
    ["model=conformer_small", "data.features.handless_frames=keep"],
)
TRICKS["three"] = (  # the combined row of docs/benchmarks.md's table with batches of 64
    "time mask + decoder-input noise + EMA together",
    [o for name in ("time_mask", "token_noise", "ema") for o in TRICKS[name][1]],
)
TRICKS["combined"] = (
    "the winners' recipe: every trick above together",
    [
        o
        for name in ("cutmix", "flip", "time_mask", "token_noise", "ema", "awp", "fallback")
        for o in TRICKS[name][1]
    ],
)


# The data the table is measured on: the synthetic default, or a small set as a new user might have
# (1,000 sequences from 16 signers, 30 epochs), where a recipe shows most.
SCALES = {
    "default": ("3,000 sequences / 30 signers (the synthetic default), 24 epochs", []),
    "1000x16": (
        "1,000 sequences / 16 signers, 30 epochs",
        ["data.n_sequences=1000", "data.n_signers=16", "trainer.epochs=30"],
    ),
}


def train(overrides: list[str], seed: int, run_dir: Path) -> float | None:
    """One default run with `overrides` (reused when finished); its wall-clock seconds."""
    if RunDir(run_dir).status().get("status") == "finished":
        return None
    t0 = time.perf_counter()
    cmd = [sys.executable, "train.py", *overrides, f"trainer.seed={seed}", f"hydra.run.dir={run_dir}"]
    subprocess.run(cmd, cwd=ROOT, check=True)
    return time.perf_counter() - t0


def mean_spread(values: list[float]) -> str:
    return f"{np.mean(values):.4f} ± {(max(values) - min(values)) / 2:.4f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tricks", nargs="*", default=list(TRICKS), choices=list(TRICKS))
    ap.add_argument("--seeds", nargs="*", type=int, default=[0, 1])
    ap.add_argument("--scale", default="default", choices=list(SCALES))
    ap.add_argument("--out", type=Path, help="runs' directory (default bench-out/ablation[-SCALE])")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides for every run")
    args = ap.parse_args()
    scale, data = SCALES[args.scale]
    suffix = "" if args.scale == "default" else f"-{args.scale}"
    out = args.out or ROOT / "bench-out" / f"ablation{suffix}"

    rows = {}
    for name in dict.fromkeys(["default", *args.tricks]):  # every table has its own default row
        _, overrides = TRICKS[name]
        for seed in args.seeds:
            run_dir = out / f"{name}-seed{seed}"
            seconds = train([*data, *args.set, *overrides], seed, run_dir)
            rows[name, seed] = {"seconds": seconds, "scores": scores_at_best(run_dir)}
    print(f"\nfold 0 of the synthetic generator, {scale}; model=small unless named; seeds {args.seeds}\n")
    print(
        "| trick | overrides | val/score (attention) | change | val/score_ctc | change "
        "| val/score_joint | change | wall-clock |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    decodes = ("attention", "ctc", "joint")
    base = {how: np.mean([rows["default", s]["scores"][how] for s in args.seeds]) for how in decodes}
    for name in dict.fromkeys(["default", *args.tricks]):
        what, overrides = TRICKS[name]
        runs = [rows[name, s] for s in args.seeds]
        cells = []
        for how in decodes:
            got = [r["scores"][how] for r in runs]
            change = "—" if name == "default" else f"{np.mean(got) - base[how]:+.4f}"
            cells += [mean_spread(got), change]
        clock = [r["seconds"] for r in runs if r["seconds"]]
        wall = f"{np.mean(clock) / 60:.1f} min" if clock else "(reused)"
        shown = " ".join(f"`{o}`" for o in overrides) or "—"
        print(f"| {what} | {shown} | {' | '.join(cells)} | {wall} |")


if __name__ == "__main__":
    main()
