"""Upload offline W&B runs with W&B's own `wandb sync`, from this environment, in one command.

    aslfr-sync [DIR ...] [--dry-run] [--all]

Finds every W&B run folder (`offline-run-*`) under each DIR (default: outputs, multirun and
sweeps-out), following the links a sweep's or multirun's `wandb/` directory gathers, each run
once; skips runs W&B has already synced (its `.synced` mark) unless --all; then runs
`python -m wandb sync --include-offline FOLDER ...` with this interpreter, so the W&B it uses is
the project's whatever the PATH holds.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

DEFAULT_DIRS = ("outputs", "multirun", "sweeps-out")


def run_folders(dirs: list[Path], include_synced: bool = False) -> list[Path]:
    """The offline W&B run folders under `dirs` (links followed), each run once (the first path
    found for it), in a stable order; runs marked synced are left out unless include_synced."""
    found: dict[Path, Path] = {}
    for top in dirs:
        for here, subdirs, _ in os.walk(top, followlinks=True):
            subdirs.sort()
            for name in list(subdirs):
                if not name.startswith("offline-run-"):
                    continue
                subdirs.remove(name)  # a run folder holds no other runs
                folder = Path(here) / name
                logs = list(folder.glob("run-*.wandb"))
                if not logs:
                    continue
                synced = any(Path(f"{log}.synced").exists() for log in logs)
                if synced and not include_synced:
                    continue
                found.setdefault(folder.resolve(), folder)
    return sorted(found.values())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="aslfr-sync", description=__doc__.splitlines()[0])
    ap.add_argument("dirs", nargs="*", type=Path, help=f"default: {' '.join(DEFAULT_DIRS)}")
    ap.add_argument("--dry-run", action="store_true", help="list the runs, upload nothing")
    ap.add_argument("--all", action="store_true", help="also runs W&B has synced before")
    args = ap.parse_args(argv)
    dirs = args.dirs or [Path(d) for d in DEFAULT_DIRS if Path(d).is_dir()]
    missing = [str(d) for d in dirs if not d.is_dir()]
    if missing:
        sys.exit(f"error: no such directory: {', '.join(missing)}")
    folders = run_folders(dirs, include_synced=args.all)
    print(f"{len(folders)} offline W&B run(s) to sync under {', '.join(map(str, dirs)) or '(nothing)'}")
    for folder in folders:
        print(f"  {folder}")
    if args.dry_run or not folders:
        return
    cmd = [sys.executable, "-m", "wandb", "sync", "--include-offline", *map(str, folders)]
    sys.exit(subprocess.run(cmd).returncode)


if __name__ == "__main__":
    main()
