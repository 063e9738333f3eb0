"""The command line: ``aslfr-synthetic [OUT_DIR]`` or ``python -m aslfr.data.synthetic [OUT_DIR]``.

Writes the data set of the options' `SyntheticSpec` to OUT_DIR/synthetic-<digest> (or, with --exact,
to OUT_DIR itself; OUT_DIR defaults to $ASLFR_DATA_DIR or ``data``, where train.py keeps it) and, with
--plot PNG, draws the hand shapes. With --compare-to ROOT it prints the landmark statistics
(`aslfr.data.landmark_stats`) of that data set and of the Kaggle-layout directory ROOT side by side;
--report prints them for the synthetic set alone, --report ROOT for ROOT alone; --stats-plot PNG draws
their distributions.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from aslfr.data import landmark_stats
from aslfr.data.synthetic.dataset import SyntheticSpec, ensure, generate
from aslfr.data.synthetic.picture import plot_alphabet
from aslfr.errors import exit_on_error


@exit_on_error
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="aslfr-synthetic",
        description="Write a synthetic ASLFR data set in the Kaggle layout to OUT_DIR/synthetic-<digest>.",
    )
    defaults = SyntheticSpec()
    parser.add_argument(
        "out_dir",
        type=Path,
        nargs="?",
        default=Path(os.environ.get("ASLFR_DATA_DIR", "data")),
        help="data directory (the data set goes in a subdirectory; default: $ASLFR_DATA_DIR or data)",
    )
    parser.add_argument("--n-sequences", type=int, default=defaults.n_sequences)
    parser.add_argument("--n-signers", type=int, default=defaults.n_signers)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--sequences-per-file", type=int, default=defaults.sequences_per_file)
    parser.add_argument("--face", choices=("lips", "full"), default=defaults.face)
    parser.add_argument("--n-supplemental", type=int, default=defaults.n_supplemental)
    parser.add_argument("--exact", action="store_true", help="write into OUT_DIR itself (must not exist)")
    parser.add_argument("--plot", type=Path, metavar="PNG", help="also draw the hand shapes to PNG")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    stats = parser.add_argument_group("landmark statistics (aslfr.data.landmark_stats)")
    stats.add_argument(
        "--compare-to",
        type=Path,
        metavar="ROOT",
        action="append",
        default=[],
        help="print the synthetic set's statistics beside those of ROOT (Kaggle layout; repeatable)",
    )
    stats.add_argument(
        "--report",
        type=Path,
        metavar="ROOT",
        nargs="?",
        const=_SYNTHETIC,
        help="print one set's statistics: ROOT's, or without ROOT the synthetic set's",
    )
    stats.add_argument("--stats-plot", type=Path, metavar="PNG", help="draw the compared sets' distributions")
    stats.add_argument("--max-clips", type=int, metavar="N", help="read at most N clips of each set")
    stats.add_argument(
        "--supplemental", action="store_true", help="also read supplemental_metadata.csv's clips"
    )
    args = parser.parse_args(argv)
    if args.max_clips is not None and args.max_clips < 1:
        parser.error("--max-clips must be at least 1")
    if args.report is not None and args.report != _SYNTHETIC and args.compare_to:
        parser.error(
            "--report ROOT reports one set; use --compare-to ROOT to compare it with the synthetic set"
        )
    spec = SyntheticSpec(
        n_sequences=args.n_sequences,
        n_signers=args.n_signers,
        seed=args.seed,
        sequences_per_file=args.sequences_per_file,
        face=args.face,
        n_supplemental=args.n_supplemental,
    )
    measuring = args.report is not None or args.compare_to or args.stats_plot
    if args.report is not None and args.report != _SYNTHETIC:
        roots = {str(args.report): args.report}  # one given set: nothing to generate
    else:
        if args.exact:
            root = generate(spec, args.out_dir, progress=not args.quiet)
        else:
            root = ensure(spec, args.out_dir, progress=not args.quiet)
        print(root)
        roots = {f"synthetic ({root.name})": root, **{str(r): r for r in args.compare_to}}
    if args.plot:
        print(plot_alphabet(args.plot, seed=args.seed))
    if measuring:
        sets = {
            name: landmark_stats.collect(
                root,
                name=name,
                use_supplemental=args.supplemental,
                max_clips=args.max_clips,
                progress=not args.quiet,
            )
            for name, root in roots.items()
        }
        print(landmark_stats.comparison_table(sets))
        if args.stats_plot:
            print(landmark_stats.plot(sets, args.stats_plot))
    return 0


_SYNTHETIC = Path("<synthetic>")  # --report without ROOT


if __name__ == "__main__":
    sys.exit(main())
