"""Wall-clock of the synthetic default's generation and of its preparation (features cache), this
tree against git revision REV, side by side in one run.

    python bench/synthetic_speed.py [--against main] [--n-sequences 3000] [--repeats 2]

Each measurement is a fresh process (this tree's `aslfr`, or REV's extracted with `git archive`)
that generates the data set of `data=synthetic` into an empty directory and prepares it as
`aslfr-prepare` does; the two trees alternate, and the best of `--repeats` counts. Prints the
seconds and the ratios this tree / REV.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_MEASURE = """
import json, sys, time
from pathlib import Path
from hydra import compose, initialize_config_dir
from aslfr.config import register
from aslfr.data import prepare
conf, out, n = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
register()
with initialize_config_dir(config_dir=conf, version_base="1.3"):
    overrides = [f"data.n_sequences={n}", f"paths.data_dir={out}", f"paths.output_dir={out}/o"]
    cfg = compose("config", overrides=overrides)
start = time.perf_counter()
prepare.resolve_root(cfg.data, out, progress=False)
generated = time.perf_counter()
prepare.prepare(cfg.data, out / "cache", out, progress=False)
done = time.perf_counter()
print(json.dumps({"generate": generated - start, "prepare": done - generated}))
"""


def extract(revision: str, into: Path) -> Path:
    """`aslfr/` and `conf/` as git revision `revision` has them, under `into`."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", revision, "aslfr", "conf"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def measure(tree: Path, n_sequences: int, scratch: Path) -> dict[str, float]:
    out = Path(tempfile.mkdtemp(dir=scratch))
    try:
        env = {**os.environ, "PYTHONPATH": str(tree), "WANDB_MODE": "disabled"}
        result = subprocess.run(
            [sys.executable, "-c", _MEASURE, str(tree / "conf"), str(out), str(n_sequences)],
            cwd=tree,
            env=env,
            capture_output=True,
            text=True,
        )
        if result.returncode:
            raise SystemExit(f"measurement in {tree} failed:\n{result.stderr[-2000:]}")
        return json.loads(result.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--against", default="main", metavar="REV", help="git revision to compare with")
    ap.add_argument("--n-sequences", type=int, default=3000)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="aslfr-synthetic-speed-"))
    try:
        trees = {"this tree": ROOT, args.against: extract(args.against, scratch / "rev")}
        best = {name: {"generate": float("inf"), "prepare": float("inf")} for name in trees}
        for _ in range(args.repeats):
            for name, tree in trees.items():
                got = measure(tree, args.n_sequences, scratch)
                best[name] = {k: min(best[name][k], got[k]) for k in got}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"synthetic default, {args.n_sequences} sequences, best of {args.repeats} (s):")
    print(f"{'':12} {'generate':>9} {'prepare':>9} {'both':>9}")
    for name, t in best.items():
        print(f"{name:12} {t['generate']:>9.2f} {t['prepare']:>9.2f} {t['generate'] + t['prepare']:>9.2f}")
    ours, theirs = best["this tree"], best[args.against]
    print(
        f"this tree / {args.against}: generation {ours['generate'] / theirs['generate']:.3f}x, preparation "
        f"{ours['prepare'] / theirs['prepare']:.3f}x, both "
        f"{(ours['generate'] + ours['prepare']) / (theirs['generate'] + theirs['prepare']):.3f}x"
    )


if __name__ == "__main__":
    main()
