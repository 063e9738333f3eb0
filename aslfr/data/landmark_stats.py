"""What a landmark data set in the Kaggle layout looks like, measured: the statistics that decide
whether a model trained on it can read a real clip.

For each clip (a row of train.csv, optionally supplemental_metadata.csv): frames; frames with the
left, the right, any hand detected; runs of frames where the clip's dominant hand (the one detected
in more frames) is missing; the phrase's length against the frames with a hand, and the fraction of
clips whose hand frames are fewer than the phrase's characters (or than the n + r frames CTC needs
for n characters with r doubled letters: such a clip cannot be aligned by CTC); the coordinate range
of detected hand points; the dominant wrist's motion from one detected frame to the next, in image
units and in hand sizes (wrist to middle knuckle).

Only the 126 hand columns are read, each parquet file once, streamed in record batches through the
reader's own sequence splitter (`reader._sequences`; a file whose sequences' rows are scattered
is sorted first, as the reader does); per-point values go into fixed-width histograms,
so memory does not grow with the data set. Quantiles of per-point values are exact to the histogram's
bin width (`COORD_BIN`, `STEP_BIN`, `SIZE_STEP_BIN`).

    stats = collect(root)                  # a `DatasetStats`
    print(comparison_table({"synthetic": a, "real": b}))
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from aslfr.data import layout, reader
from aslfr.errors import DataError

HANDS = ("left_hand", "right_hand")
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)

# Per-point histograms: coordinates in [-1, 2) image units, wrist steps in [0, 0.5) image units and
# [0, 5) hand sizes; values outside the range land in the first or last bin (min/max are kept exactly).
COORD_RANGE, COORD_BIN = (-1.0, 2.0), 1e-3
STEP_RANGE, STEP_BIN = (0.0, 0.5), 1e-4
SIZE_STEP_RANGE, SIZE_STEP_BIN = (0.0, 5.0), 1e-3


def hand_columns() -> list[str]:
    """The x, y, z columns of both hands, in file order."""
    return layout.landmark_columns({hand: range(layout.HAND_POINTS) for hand in HANDS})


def ctc_min_frames(phrase: str) -> int:
    """Frames CTC needs to emit `phrase`: one per character plus a blank between doubled letters."""
    return len(phrase) + sum(a == b for a, b in zip(phrase, phrase[1:]))


def missing_runs(seen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lengths of the runs of False in `seen`, split into (interior, edge): interior runs lie between
    two detected frames, edge runs touch the clip's first or last frame. A clip never detected
    gives one edge run of its whole length."""
    padded = np.concatenate([[True], seen.astype(bool), [True]])
    change = np.flatnonzero(padded[1:] != padded[:-1])
    starts, stops = change[0::2], change[1::2]  # missing runs: [start, stop) in clip frames
    lengths = stops - starts
    edge = (starts == 0) | (stops == len(seen))
    return lengths[~edge], lengths[edge]


class _Histogram:
    """Counts of values in fixed bins, with the exact minimum and maximum and the sum."""

    def __init__(self, lo: float, hi: float, width: float):
        self.lo, self.width = lo, width
        self.counts = np.zeros(int(round((hi - lo) / width)), dtype=np.int64)
        self.n, self.total = 0, 0.0
        self.min, self.max = math.inf, -math.inf

    def add(self, values: np.ndarray) -> None:
        values = values[np.isfinite(values)]
        if not values.size:
            return
        index = np.clip(((values - self.lo) / self.width).astype(np.int64), 0, self.counts.size - 1)
        self.counts += np.bincount(index, minlength=self.counts.size)
        self.n += values.size
        self.total += float(values.sum(dtype=np.float64))
        self.min, self.max = min(self.min, float(values.min())), max(self.max, float(values.max()))

    def count_outside(self, lo: float, hi: float) -> int:
        """Values below `lo` or at/above `hi` (to the bin width)."""
        a, b = (int(round((v - self.lo) / self.width)) for v in (lo, hi))
        return int(self.counts[: max(a, 0)].sum() + self.counts[max(b, 0) :].sum())

    def quantiles(self, qs: Sequence[float] = QUANTILES) -> list[float]:
        if not self.n:
            return [math.nan] * len(qs)
        cumulative = np.cumsum(self.counts)
        out = []
        for q in qs:
            k = int(np.searchsorted(cumulative, q * self.n, side="left"))
            out.append(min(max(self.lo + (k + 0.5) * self.width, self.min), self.max))
        return out

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else math.nan


@dataclass
class DatasetStats:
    """The statistics of one data set (see the module's docstring)."""

    name: str
    # one value per clip
    frames: list[int] = field(default_factory=list)
    left: list[int] = field(default_factory=list)  # frames with the left hand detected
    right: list[int] = field(default_factory=list)
    any_hand: list[int] = field(default_factory=list)
    both: list[int] = field(default_factory=list)
    dominant: list[int] = field(default_factory=list)  # frames with the clip's dominant hand
    other: list[int] = field(default_factory=list)  # frames with its other hand
    phrase_length: list[int] = field(default_factory=list)
    ctc_length: list[int] = field(default_factory=list)
    longest_gap: list[int] = field(default_factory=list)  # longest interior run without the dominant hand
    # pooled over clips
    interior_runs: dict[int, int] = field(default_factory=dict)  # run length -> count
    edge_runs: dict[int, int] = field(default_factory=dict)
    coords: dict[str, _Histogram] = field(
        default_factory=lambda: {axis: _Histogram(*COORD_RANGE, COORD_BIN) for axis in layout.AXES}
    )
    wrist_step: _Histogram = field(default_factory=lambda: _Histogram(*STEP_RANGE, STEP_BIN))
    wrist_step_hands: _Histogram = field(default_factory=lambda: _Histogram(*SIZE_STEP_RANGE, SIZE_STEP_BIN))
    missing_in_parquet: int = 0

    @property
    def clips(self) -> int:
        return len(self.frames)

    def add_clip(self, raw: np.ndarray, phrase: str) -> None:
        """One clip's hand columns [frames, 126] (`hand_columns` order) and its phrase."""
        n = raw.shape[0]
        points = raw.reshape(n, 3, 2, layout.HAND_POINTS)  # frame, axis, hand, point
        seen = ~np.isnan(points[:, 0, :, layout.WRIST])  # (n, 2): a hand is missing as a whole
        left, right = (int(s) for s in seen.sum(0))
        major = 0 if left > right else 1
        self.frames.append(n)
        self.left.append(left)
        self.right.append(right)
        self.any_hand.append(int(seen.any(1).sum()))
        self.both.append(int(seen.all(1).sum()))
        self.dominant.append(max(left, right))
        self.other.append(min(left, right))
        self.phrase_length.append(len(phrase))
        self.ctc_length.append(ctc_min_frames(phrase))
        interior, edge = missing_runs(seen[:, major])
        self.longest_gap.append(int(interior.max()) if interior.size else 0)
        for runs, into in ((interior, self.interior_runs), (edge, self.edge_runs)):
            for length, count in zip(*np.unique(runs, return_counts=True)):
                into[int(length)] = into.get(int(length), 0) + int(count)
        for a, axis in enumerate(layout.AXES):
            values = points[:, a][seen[:, :, None].repeat(layout.HAND_POINTS, 2)]
            if axis == "z":  # hand z is relative to the wrist: the wrist's own 0 says nothing
                values = points[:, a, :, 1:][seen[:, :, None].repeat(layout.HAND_POINTS - 1, 2)]
            self.coords[axis].add(values)
        hand = points[:, :2, major]  # (n, 2 axes, 21)
        wrist = hand[:, :, layout.WRIST]
        both_seen = seen[1:, major] & seen[:-1, major]  # consecutive frames, both detected
        if both_seen.any():
            step = np.hypot(*(wrist[1:] - wrist[:-1])[both_seen].T)
            size = np.hypot(*(hand[:, :, layout.MIDDLE_KNUCKLE] - wrist)[1:][both_seen].T)
            self.wrist_step.add(step)
            self.wrist_step_hands.add(step / np.maximum(size, 1e-6))

    def per_clip(self) -> dict[str, np.ndarray]:
        """The per-clip arrays, and the ratios derived from them."""
        f = {k: np.asarray(getattr(self, k), dtype=np.float64) for k in _PER_CLIP}
        frames = np.maximum(f["frames"], 1)
        f["left_fraction"] = f["left"] / frames
        f["right_fraction"] = f["right"] / frames
        f["any_fraction"] = f["any_hand"] / frames
        f["dominant_fraction"] = f["dominant"] / frames
        f["other_fraction"] = f["other"] / frames
        f["hand_frames_per_char"] = f["any_hand"] / np.maximum(f["phrase_length"], 1)
        f["frames_per_char"] = f["frames"] / np.maximum(f["phrase_length"], 1)
        return f

    def run_lengths(self, which: str = "interior") -> np.ndarray:
        runs = self.interior_runs if which == "interior" else self.edge_runs
        if not runs:
            return np.zeros(0, dtype=np.int64)
        lengths = np.array(sorted(runs), dtype=np.int64)
        return np.repeat(lengths, [runs[k] for k in lengths.tolist()])


_PER_CLIP = (
    "frames",
    "left",
    "right",
    "any_hand",
    "both",
    "dominant",
    "other",
    "phrase_length",
    "ctc_length",
    "longest_gap",
)


def _file_sequences(path: Path, columns: list[str], batch_rows: int):
    """(sequence_id, raw [frames, columns]) of every sequence of one parquet file, frames in order."""
    read = [layout.INDEX_COLUMN, layout.FRAME_COLUMN, *columns]
    pf = reader.open_parquet(
        path,
        read,
        "hand column(s)",
        "the statistics need both hands' x, y, z columns as in the competition's files",
    )
    ids = pf.read(columns=[layout.INDEX_COLUMN], use_threads=False).column(0).to_numpy()
    runs = 1 + int(np.count_nonzero(ids[1:] != ids[:-1])) if ids.size else 0
    if runs == np.unique(ids).size:  # each sequence's rows together: stream the file
        batches = pf.iter_batches(batch_size=batch_rows, columns=read, use_threads=False)
    else:  # rows of a sequence are scattered: sort the (projected) file
        table = pq.read_table(path, columns=read).sort_by(
            [(layout.INDEX_COLUMN, "ascending"), (layout.FRAME_COLUMN, "ascending")]
        )
        batches = table.to_batches(batch_rows)
    for sid, frame, raw in reader._sequences(batches, columns):
        yield sid, _in_frame_order(frame, raw)


def _in_frame_order(frame: np.ndarray, raw: np.ndarray) -> np.ndarray:
    if len(frame) > 1 and np.any(np.diff(frame) < 0):
        return raw[np.argsort(frame, kind="stable")]
    return raw


def collect(
    root: Path,
    *,
    name: str | None = None,
    use_supplemental: bool = False,
    max_clips: int | None = None,
    progress: bool = True,
    batch_rows: int = 8192,
) -> DatasetStats:
    """The statistics of the Kaggle-layout directory `root` (train.csv; + supplemental_metadata.csv).

    Files are read one after the other, each streamed; `max_clips` stops after that many clips
    (files in train.csv's order), for a first look at a large set.
    """
    from tqdm.auto import tqdm

    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such directory; pass a directory in the Kaggle ASLFR layout")
    index = reader.read_index(root, use_supplemental)
    reader.check_files(root, index)
    columns = hand_columns()
    stats = DatasetStats(name=name or str(root))
    total = len(index) if max_clips is None else min(max_clips, len(index))
    with tqdm(
        total=total, desc=f"statistics of {stats.name}", unit="clip", disable=None if progress else True
    ) as bar:
        for path, rows in index.groupby("path", sort=False):
            if stats.clips >= total:
                break
            phrases = dict(zip(rows.sequence_id.tolist(), rows.phrase.tolist()))
            found = 0
            try:
                for sid, raw in _file_sequences(root / path, columns, batch_rows):
                    if sid not in phrases:
                        continue
                    stats.add_clip(raw, phrases[sid])
                    found += 1
                    bar.update()
                    if stats.clips >= total:
                        break
            except (pa.ArrowException, OSError) as e:
                raise DataError(
                    f"{root / path}: cannot read this parquet file ({type(e).__name__}: {e}); download it "
                    f"again, or remove its rows from {rows.csv.iloc[0]}"
                ) from None
            if stats.clips < total:
                stats.missing_in_parquet += len(phrases) - found
    return stats


# ------------------------------------------------------------------------------------------- report


def _quantiles(values: np.ndarray) -> list[float]:
    if not values.size:
        return [math.nan] * len(QUANTILES)
    return np.quantile(values, QUANTILES).tolist()


def _fmt(value: float, digits: int) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _spread(values: Sequence[float], mean: float, digits: int) -> str:
    """'p5 / p25 / p50 / p75 / p95 (mean m)'."""
    return " / ".join(_fmt(v, digits) for v in values) + f"  (mean {_fmt(mean, digits)})"


def rows(stats: DatasetStats) -> list[tuple[str, str]]:
    """(statistic, value) lines describing one data set; the same statistics for every set."""
    f = stats.per_clip()
    n = max(stats.clips, 1)
    frames_total = max(float(f["frames"].sum()), 1.0)
    out: list[tuple[str, str]] = [("clips", f"{stats.clips}")]
    if stats.missing_in_parquet:
        out.append(("clips listed but absent from their file", f"{stats.missing_in_parquet}"))

    def spread(key: str, digits: int) -> str:
        return _spread(_quantiles(f[key]), float(f[key].mean()) if f[key].size else math.nan, digits)

    out += [
        ("frames per clip", spread("frames", 0)),
        ("frames per character", spread("frames_per_char", 1)),
        ("fraction of frames with the left hand", spread("left_fraction", 2)),
        ("fraction of frames with the right hand", spread("right_fraction", 2)),
        ("fraction of frames with any hand", spread("any_fraction", 2)),
        ("fraction of frames with the dominant hand", spread("dominant_fraction", 2)),
        ("fraction of frames with the other hand", spread("other_fraction", 2)),
        (
            "all frames: left / right / any / both",
            " / ".join(f"{f[k].sum() / frames_total:.3f}" for k in ("left", "right", "any_hand", "both")),
        ),
        (
            "clips where the other hand is ever seen",
            f"{(f['other'] > 0).mean() if stats.clips else math.nan:.3f}",
        ),
    ]
    interior, edge = stats.run_lengths("interior"), stats.run_lengths("edge")
    out += [
        (
            "dominant hand missing: interior runs, frames",
            _spread(_quantiles(interior), float(interior.mean()) if interior.size else math.nan, 0)
            + f"  [{interior.size} runs]",
        ),
        (
            "dominant hand missing: runs at the ends, frames",
            _spread(_quantiles(edge), float(edge.mean()) if edge.size else math.nan, 0)
            + f"  [{edge.size} runs]",
        ),
        ("longest interior gap per clip, frames", spread("longest_gap", 0)),
        ("phrase length, characters", spread("phrase_length", 0)),
        ("frames with a hand", spread("any_hand", 0)),
        ("frames with a hand per character", spread("hand_frames_per_char", 2)),
        (
            "clips: frames with a hand < phrase length",
            f"{(f['any_hand'] < f['phrase_length']).sum() / n:.3f}",
        ),
        (
            "clips: frames with a hand < CTC minimum (n + doubled)",
            f"{(f['any_hand'] < f['ctc_length']).sum() / n:.3f}",
        ),
        (
            "clips: frames with a hand < 2 x phrase length",
            f"{(f['any_hand'] < 2 * f['phrase_length']).sum() / n:.3f}",
        ),
        ("clips without any hand", f"{(f['any_hand'] == 0).sum() / n:.3f}"),
    ]
    for axis in layout.AXES:
        h = stats.coords[axis]
        label = f"hand {axis}" + (" (relative to the wrist; points 1-20)" if axis == "z" else "")
        out.append(
            (label, _spread(h.quantiles(), h.mean, 3) + f"  [min {_fmt(h.min, 3)}, max {_fmt(h.max, 3)}]")
        )
    for axis in ("x", "y"):
        h = stats.coords[axis]
        out.append(
            (
                f"hand {axis} outside [0, 1], fraction of points",
                f"{h.count_outside(0.0, 1.0) / max(h.n, 1):.4f}",
            )
        )
    out += [
        ("dominant wrist step, image units", _spread(stats.wrist_step.quantiles(), stats.wrist_step.mean, 4)),
        (
            "dominant wrist step, hand sizes",
            _spread(stats.wrist_step_hands.quantiles(), stats.wrist_step_hands.mean, 3),
        ),
    ]
    return out


def report(stats: DatasetStats) -> str:
    """One data set's statistics as text."""
    return comparison_table({stats.name: stats})


def comparison_table(sets: Mapping[str, DatasetStats]) -> str:
    """The statistics of several data sets side by side: a line per statistic, a column per set.
    Spreads read 'p5 / p25 / median / p75 / p95 (mean)'."""
    columns = {name: dict(rows(stats)) for name, stats in sets.items()}
    labels = list(dict.fromkeys(label for values in columns.values() for label in values))
    label_width = max(len(label) for label in labels)
    widths = {
        name: max(len(name), *(len(values.get(label, "")) for label in labels))
        for name, values in columns.items()
    }
    lines = [
        "  ".join([" " * label_width, *(name.ljust(widths[name]) for name in columns)]).rstrip(),
        "  ".join(["-" * label_width, *("-" * widths[name] for name in columns)]),
    ]
    for label in labels:
        cells = [columns[name].get(label, "").ljust(widths[name]) for name in columns]
        lines.append("  ".join([label.ljust(label_width), *cells]).rstrip())
    lines.append("spreads: 5th / 25th / 50th / 75th / 95th percentile (mean)")
    return "\n".join(lines)


def plot(sets: Mapping[str, DatasetStats], path: Path) -> Path:
    """A PNG of the distributions side by side: frames per clip, fraction of frames with the dominant
    hand, hand frames per character, interior missing runs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from aslfr.atomic import replacing

    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    panels = [
        ("frames per clip", lambda s: s.per_clip()["frames"], np.linspace(0, 500, 51)),
        (
            "fraction of frames with the dominant hand",
            lambda s: s.per_clip()["dominant_fraction"],
            np.linspace(0, 1, 41),
        ),
        (
            "frames with a hand per character",
            lambda s: s.per_clip()["hand_frames_per_char"],
            np.linspace(0, 20, 41),
        ),
        (
            "interior runs without the dominant hand, frames",
            lambda s: s.run_lengths("interior"),
            np.arange(0.5, 41.5, 1),
        ),
    ]
    for ax, (title, values, bins) in zip(axes.flat, panels):
        for name, stats in sets.items():
            v = np.asarray(values(stats), dtype=np.float64)
            if v.size:
                ax.hist(
                    np.clip(v, bins[0], bins[-1]),
                    bins=bins,
                    density=True,
                    histtype="step",
                    linewidth=1.5,
                    label=name,
                )
        ax.set_title(title, fontsize=10)
        if "per character" in title:
            ax.axvline(1.0, color="grey", linestyle=":", linewidth=1)
    axes.flat[0].legend(fontsize=8)
    fig.suptitle("landmark statistics (density; values beyond the axis in the last bin)", fontsize=11)
    fig.tight_layout()
    path = Path(path)
    with replacing(path, suffix=".png") as temp:
        fig.savefig(temp, dpi=90, format="png")
    plt.close(fig)
    return path
