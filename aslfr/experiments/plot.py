"""Learning curves from a run directory's offline W&B run:

aslfr-plot RUN_DIR [--out curve.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from aslfr import names
from aslfr.experiments.offline import read_runs  # noqa: E402

# The score of always answering the same phrase ("2 a-e -aroe", the best constant on the real
# data; docs/competition.md): the line a model must clear to have learned anything.
CONSTANT_PHRASE_SCORE = 0.157


def score_curves(evals: list[dict]) -> dict[str, list[float]]:
    """val/score per evaluation and, for a model with both heads, each decoding's own score
    (val/score_attention, _ctc, _joint, and _joint@W with model.decode=best)."""
    each = sorted({key for r in evals for key in r if key.startswith(names.val_score(""))})
    keys = [names.VAL_SCORE, *each]
    return {key: [r[key] for r in evals] for key in keys if all(key in r for r in evals)}


def learning_curve(run_dir: Path, out: Path) -> Path:
    runs = read_runs(run_dir)
    if not runs:
        raise SystemExit(f"no W&B run under {run_dir} (was it run with wandb.mode=disabled?)")
    run = runs[0]
    evals = [r for r in run.history if names.VAL_SCORE in r]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    epochs = [r[names.EPOCH] for r in evals]
    left.plot(
        [r[names.EPOCH] for r in run.history if names.TRAIN_EPOCH_LOSS in r],
        [r[names.TRAIN_EPOCH_LOSS] for r in run.history if names.TRAIN_EPOCH_LOSS in r],
        label="train loss (incl. CTC aid)",
    )
    left.plot(epochs, [r[names.VAL_LOSS] for r in evals], "o-", label=names.VAL_LOSS)
    left.set_xlabel("epoch")
    left.legend()
    for key, values in score_curves(evals).items():
        right.plot(epochs, values, "o-" if key == names.VAL_SCORE else ":", label=key)
    if all(names.VAL_TOP1 in r for r in evals):  # (a CTC-only model has no teacher-forced tokens)
        right.plot(epochs, [r[names.VAL_TOP1] for r in evals], "s--", label=names.VAL_TOP1)
    right.axhline(
        CONSTANT_PHRASE_SCORE, color="grey", ls=":", label=f"constant phrase ({CONSTANT_PHRASE_SCORE})"
    )
    right.set_xlabel("epoch")
    right.set_ylim(min(0, min(r[names.VAL_SCORE] for r in evals)), 1)
    right.legend(loc="lower right")
    fig.suptitle(f"{run.name}: best val/score {max(r['val/score'] for r in evals):.3f} on held-out signers")
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
