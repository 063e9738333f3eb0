"""A `debug=default` run with TensorFlow's graph optimizer (Grappler) on and off, side by side:
whole `train.py` processes as a user starts them, rounds alternating so that machine noise hits
both alike, on the same data (generated once, before the first round).

Grappler rewrites each traced graph at its first call; in a run of a few steps that costs more
than the steps it speeds up, which is why the debug preset sets `trainer.grappler=false`.

    python bench/debug_run.py [--rounds 3] [override ...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed_run(data_dir: Path, run_dir: Path, grappler: bool, overrides: list[str]) -> float:
    """Seconds of one train.py process (start-up included)."""
    cmd = [
        sys.executable,
        "train.py",
        "debug=default",
        f"trainer.grappler={str(grappler).lower()}",
        f"paths.data_dir={data_dir}",
        f"hydra.run.dir={run_dir}",
        *overrides,
    ]
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": str(ROOT)}
    t = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("overrides", nargs="*", help="Hydra overrides for every run (e.g. model=conformer_small)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        timed_run(tmp / "data", tmp / "warm", True, args.overrides)  # data and feature cache
        seconds: dict[bool, list[float]] = {True: [], False: []}
        for r in range(args.rounds):
            for grappler in (True, False) if r % 2 == 0 else (False, True):
                run_dir = tmp / f"round{r}-grappler-{grappler}"
                seconds[grappler].append(timed_run(tmp / "data", run_dir, grappler, args.overrides))
                print(f"round {r + 1}: grappler={grappler!s:5} {seconds[grappler][-1]:6.1f} s", flush=True)
    on, off = (statistics.median(seconds[g]) for g in (True, False))
    print(f"\nmedian of {args.rounds}: grappler on {on:.1f} s, off {off:.1f} s; off/on = {off / on:.2f}")


if __name__ == "__main__":
    main()
