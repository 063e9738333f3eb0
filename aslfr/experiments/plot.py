"""Learning curves from a run directory's offline W&B run:

    aslfr-plot RUN_DIR [--out curve.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from aslfr.experiments.offline import read_runs  # noqa: E402


def learning_curve(run_dir: Path, out: Path) -> Path:
    runs = read_runs(run_dir)
    if not runs:
        raise SystemExit(f"no W&B run under {run_dir} (was it run with wandb.mode=disabled?)")
    run = runs[0]
    evals = [r for r in run.history if "val/score" in r]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    epochs = [r["epoch"] for r in evals]
    left.plot([r["epoch"] for r in run.history if "train/epoch_loss" in r],
              [r["train/epoch_loss"] for r in run.history if "train/epoch_loss" in r],
              label="train loss (incl. CTC aid)")
    left.plot(epochs, [r["val/loss"] for r in evals], "o-", label="val/loss")
    left.set_xlabel("epoch")
    left.legend()
    right.plot(epochs, [r["val/score"] for r in evals], "o-", label="val/score")
    right.plot(epochs, [r["val/top1"] for r in evals], "s--", label="val/top1")
    right.axhline(0.157, color="grey", ls=":", label="constant phrase (0.157)")
    right.set_xlabel("epoch")
    right.set_ylim(min(0, min(r["val/score"] for r in evals)), 1)
    right.legend(loc="lower right")
    fig.suptitle(f"{run.name}: best val/score {max(r['val/score'] for r in evals):.3f} "
                 "on held-out signers")
    fig.tight_layout()
    fig.savefig(out, dpi=80)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    print(learning_curve(args.run_dir, args.out or args.run_dir / "learning_curve.png"))


if __name__ == "__main__":
    main()
