"""The command line: ``aslfr-synthetic OUT_DIR`` or ``python -m aslfr.data.synthetic OUT_DIR``.

Writes the data set of the options' `SyntheticSpec` to OUT_DIR/synthetic-<digest> (or, with --exact,
to OUT_DIR itself) and, with --plot PNG, draws the hand shapes.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from aslfr.data.synthetic.dataset import SyntheticSpec, ensure, generate
from aslfr.data.synthetic.picture import plot_alphabet


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="aslfr-synthetic",
        description="Write a synthetic ASLFR data set in the Kaggle layout to OUT_DIR/synthetic-<digest>.",
    )
    defaults = SyntheticSpec()
    parser.add_argument("out_dir", type=Path, help="data directory (the data set goes in a subdirectory)")
    parser.add_argument("--n-sequences", type=int, default=defaults.n_sequences)
    parser.add_argument("--n-signers", type=int, default=defaults.n_signers)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--sequences-per-file", type=int, default=defaults.sequences_per_file)
    parser.add_argument("--face", choices=("lips", "full"), default=defaults.face)
    parser.add_argument("--n-supplemental", type=int, default=defaults.n_supplemental)
    parser.add_argument("--exact", action="store_true", help="write into OUT_DIR itself (must not exist)")
    parser.add_argument("--plot", type=Path, metavar="PNG", help="also draw the hand shapes to PNG")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    spec = SyntheticSpec(
        n_sequences=args.n_sequences,
        n_signers=args.n_signers,
        seed=args.seed,
        sequences_per_file=args.sequences_per_file,
        face=args.face,
        n_supplemental=args.n_supplemental,
    )
    if args.exact:
        root = generate(spec, args.out_dir, progress=not args.quiet)
    else:
        root = ensure(spec, args.out_dir, progress=not args.quiet)
    print(root)
    if args.plot:
        print(plot_alphabet(args.plot, seed=args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
