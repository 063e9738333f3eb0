"""The quality table: val/score on fold 0 of the synthetic default, mean ± spread over seeds, for the
transformer (`model=small`, the default) and the conformer (`model=conformer_small`), each decoded
with attention, CTC and joint decoding, with each decoding's ms per sequence.

Each (model, seed) is one default `train.py` run (24 epochs, probe, export), timed wall-clock. A
model with both heads scores every decoding at every evaluation from the same weights; the table
takes the scores of the evaluation with the run's best val/score (the weights it exports). Each
run's best weights are then exported with each decoding and timed on the budget's benchmark set
(LiteRT, 1 thread; raw on this machine, and on the reference CPU). Runs already finished in
--out are reused, so the script can be re-run after an interruption.

    python bench/quality.py [--models small conformer_small] [--seeds 0 1] [--out bench-out/quality]
                            [--set KEY=VALUE ...]   (overrides for every run, e.g. trainer.batch_size=64)
"""

from __future__ import annotations

import argparse
import functools
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from aslfr import names
from aslfr.experiments.offline import read_runs
from aslfr.export import budget, reference
from aslfr.export import convert as export
from aslfr.model.decoding import transcribe
from aslfr.train.rundir import RunDir

from _common import ROOT

DECODES = ("attention", "ctc", "joint")


def train(model: str, seed: int, run_dir: Path, overrides: list[str]) -> float | None:
    """One default run with `overrides` (reused when finished); its wall-clock seconds (None if reused)."""
    if RunDir(run_dir).status().get("status") == "finished":
        return None
    t0 = time.perf_counter()
    cmd = [
        sys.executable,
        "train.py",
        f"model={model}",
        *overrides,
        f"trainer.seed={seed}",
        f"hydra.run.dir={run_dir}",
    ]
    subprocess.run(cmd, cwd=ROOT, check=True)
    return time.perf_counter() - t0


def scores_at_best(run_dir: Path) -> dict[str, float]:
    """Every decoding's val/score at the evaluation of the run's best val/score."""
    summary = json.loads((run_dir / names.SUMMARY_FILE).read_text())
    (run,) = read_runs(run_dir)
    best = [
        row
        for row in run.history
        if row.get(names.EPOCH) == summary[names.BEST_EPOCH] and names.VAL_SCORE in row
    ][-1]
    by_decode = {how: best[names.val_score(how)] for how in DECODES if names.val_score(how) in best}
    return by_decode or {run.config["model"]["decode"]: best[names.VAL_SCORE]}  # one head: one decoding


def latencies(run_dir: Path, passes: int) -> dict[str, float]:
    """ms per benchmark sequence of the run's best weights exported with each decoding it can do."""
    run = export.RunFiles.load(run_dir)
    model = run.model()
    bench = run.cfg.budget.benchmark
    steps = int(bench.characters) + 1
    inputs = budget.benchmark_inputs(run.pre.spec, bench)
    out = {}
    for how in model.cfg.decodes:
        module = export.inference_module(model, run.pre, steps, functools.partial(transcribe, how=how))
        out[how] = budget.latency_ms(export.convert_module(module), inputs, passes=passes)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=["small", "conformer_small"])
    ap.add_argument("--seeds", nargs="*", type=int, default=[0, 1])
    ap.add_argument("--out", type=Path, default=ROOT / "bench-out" / "quality")
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides for every run")
    args = ap.parse_args()

    rows = {}
    for model in args.models:
        for seed in args.seeds:
            run_dir = args.out / f"{model}-seed{seed}"
            seconds = train(model, seed, run_dir, args.set)
            rows[model, seed] = {
                "seconds": seconds,
                "scores": scores_at_best(run_dir),
                "ms": latencies(run_dir, args.passes),
            }
    factor = reference.cpu_factor(export.RunFiles.load(run_dir).cfg.budget.reference)
    print(
        f"\nfold 0 of the synthetic default; seeds {args.seeds}; ms per sequence: LiteRT, 1 thread, this "
        f"machine (x {factor:.2f} on the reference CPU)\n"
    )
    print("| model | decoding | val/score (mean ± spread) | ms / sequence | run wall-clock |")
    print("|---|---|---|---|---|")
    for model in args.models:
        runs = [rows[model, s] for s in args.seeds]
        clock = [r["seconds"] for r in runs if r["seconds"]]
        wall = f"{np.mean(clock) / 60:.1f} min" if clock else "(reused)"
        for how in DECODES:
            got = [r["scores"][how] for r in runs if how in r["scores"]]
            if not got:
                continue
            ms = np.mean([r["ms"][how] for r in runs])
            spread = (max(got) - min(got)) / 2
            print(f"| `{model}` | {how} | {np.mean(got):.4f} ± {spread:.4f} | {ms:.2f} | {wall} |")


if __name__ == "__main__":
    main()
