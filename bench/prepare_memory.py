"""Peak memory while preparing one 1,000-sequence full-width file, against the decoded size of the
columns the features select (index and frame columns included). Target: below 2x.

The preparation runs in a child process: its peak resident set (VmHWM, reset just before the work
starts) minus its resident set before the work is what preparing the file cost.

    python bench/prepare_memory.py
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from _common import ROOT, data_config, full_width_root

CHILD = r"""
import json, sys, tempfile
from pathlib import Path
sys.path.insert(0, {root!r}); sys.path.insert(0, {bench!r})
from _common import data_config
from aslfr.data import prepare as prep

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024

cfg = data_config(["data=kaggle", "data.root={data}", "data.num_workers=1"])
with tempfile.TemporaryDirectory() as d:
    before = status("VmRSS:")
    open("/proc/self/clear_refs", "w").write("5")   # reset the peak (VmHWM) to the current RSS
    prepared = prep.prepare(cfg, Path(d), Path(d), progress=False)
    peak = status("VmHWM:")
print(json.dumps({{"before": before, "peak": peak, "sequences": len(prepared)}}))
"""


def main() -> None:
    import pyarrow.parquet as pq

    from aslfr.data.features import FeatureSpec

    root = full_width_root(1000, seed=2)
    cfg = data_config(["data=kaggle", f"data.root={root}"])
    spec = FeatureSpec.from_config(cfg.features)
    (path,) = (root / "train_landmarks").glob("*.parquet")
    meta = pq.ParquetFile(path).metadata
    rows = meta.num_rows
    decoded = rows * (len(spec.columns) * 4 + 8 + 2)  # float32 landmarks + int64 id + int16 frame
    code = CHILD.format(root=str(ROOT), bench=str(Path(__file__).parent), data=str(root))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    used = res["peak"] - res["before"]
    print(f"file: {path.name}, {rows:,} rows x {meta.num_columns} columns, {res['sequences']} sequences kept")
    print(
        f"decoded size of the {len(spec.columns)} selected columns (+ index, frame): "
        f"{decoded / 2**20:.1f} MiB"
    )
    print(f"peak memory while preparing it: {used / 2**20:.1f} MiB")
    print(f"ratio: {used / decoded:.2f}x (target < 2x)")


if __name__ == "__main__":
    main()
