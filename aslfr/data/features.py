"""Landmark features: which columns to read, the canonical (right-dominant) side, hand-less frames,
and normalization statistics.

A `FeatureSpec` is built from `data.features`. For every output point it knows the raw column to
take for a right-dominant sequence and, when `mirror` is on, the mirrored column for a left-dominant
one (left and right hands, and the left/right partners of lips and pose, swap; x becomes 1 - x).
`extract` turns one raw sequence [frames, columns] into [frames, points, axes]; `aslfr.export`
builds the same computation from TensorFlow ops for the competition graph.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from functools import cached_property

import numpy as np

from aslfr.config import Features, HandlessFrames, Hands
from aslfr.data import layout
from aslfr.errors import ConfigError

HAND_GROUPS = ("hand", "other_hand")


@dataclass(frozen=True)
class FeatureSpec:
    hands: Hands  # dominant: the signing hand only; both: signing hand, then the other
    lip_points: tuple[int, ...]
    pose_points: tuple[int, ...]
    z: bool
    mirror: bool  # mirror left-dominant sequences to the right side
    handless_frames: HandlessFrames  # drop | keep frames where no selected hand is visible
    hand_relative: bool  # add the signing hand relative to its wrist, scaled by its size
    # Derived in __post_init__:
    points: tuple[tuple[str, str, int], ...] = field(init=False)  # (group, part, index), right-dominant

    @classmethod
    def from_config(cls, features: Features) -> FeatureSpec:
        """From the `data.features` group."""
        return cls(
            hands=features.hands,
            lip_points=tuple(features.lip_points) if features.lips else (),
            pose_points=tuple(features.pose_points) if features.pose else (),
            z=features.z,
            mirror=features.mirror,
            handless_frames=features.handless_frames,
            hand_relative=features.hand_relative,
        )

    def __post_init__(self):
        for part, idx in (("face", self.lip_points), ("pose", self.pose_points)):
            bad = [i for i in idx if i not in layout.MIRROR[part]]
            if bad:
                raise ConfigError(
                    f"{part} points {bad} are not supported (lips: the 40 lip points "
                    f"of the face mesh; pose: 0-32)"
                )
        points = [("hand", "right_hand", i) for i in range(layout.HAND_POINTS)]
        if self.hands == Hands.both:
            points += [("other_hand", "left_hand", i) for i in range(layout.HAND_POINTS)]
        points += [("lips", "face", i) for i in self.lip_points]
        points += [("pose", "pose", i) for i in self.pose_points]
        object.__setattr__(self, "points", tuple(points))

    # -- layout of the output -------------------------------------------------------------
    @property
    def axes(self) -> tuple[str, ...]:
        return layout.AXES if self.z else layout.AXES[:2]

    @property
    def n_points(self) -> int:
        return len(self.points)

    @property
    def n_features(self) -> int:
        """Features per frame the model sees: every point's coordinates, plus (hand_relative)
        hand points 1-20 relative to the wrist."""
        extra = (layout.HAND_POINTS - 1) * len(self.axes) if self.hand_relative else 0
        return self.n_points * len(self.axes) + extra

    def group_points(self, group: str) -> np.ndarray:
        """Indices (into the point axis) of one group: hand, other_hand, lips or pose."""
        return np.array([k for k, (g, _, _) in enumerate(self.points) if g == group], np.int64)

    @cached_property
    def mirror_permutation(self) -> np.ndarray:
        """[n_points]: the point each output point becomes under a horizontal mirror. The two
        hand slots swap (hands=both; a single signing hand stays in its slot and only changes
        chirality with x), lips and pose swap with their left/right partners; a point whose
        partner is not selected stays where it is."""
        swap_slot = {"hand": "other_hand", "other_hand": "hand"}
        where = {(g, i): k for k, (g, _, i) in enumerate(self.points)}
        out = []
        for k, (g, part, i) in enumerate(self.points):
            target = (swap_slot[g], i) if g in HAND_GROUPS else (g, layout.MIRROR[part][i])
            out.append(where.get(target, k))
        return np.array(out, np.int64)

    @property
    def hand_points(self) -> np.ndarray:
        return np.array([k for k, (g, _, _) in enumerate(self.points) if g in HAND_GROUPS], np.int64)

    # -- raw columns --------------------------------------------------------------------
    def _source(self, group: str, part: str, index: int, dominant_left: bool) -> tuple[str, int]:
        if not dominant_left:
            return part, index
        if self.mirror:
            return layout.MIRROR_PART[part], layout.MIRROR[part][index]
        if group in HAND_GROUPS:  # no mirror: just take the other hand
            return layout.MIRROR_PART[part], index
        return part, index

    @cached_property
    def columns(self) -> list[str]:
        """Raw columns to read, in file order: every landmark any output point may come from,
        plus the x of both hands (to find the dominant hand)."""
        wanted: dict[str, set[int]] = {p: set() for p in layout.PART_POINTS}
        wanted["left_hand"].update(range(layout.HAND_POINTS))
        wanted["right_hand"].update(range(layout.HAND_POINTS))
        for dominant_left in (False, True):
            for group, part, i in self.points:
                src_part, src_i = self._source(group, part, i, dominant_left)
                wanted[src_part].add(src_i)
        return layout.landmark_columns(wanted, self.axes)

    @cached_property
    def _position(self) -> dict[str, int]:
        return {c: k for k, c in enumerate(self.columns)}

    def gather(self, dominant_left: bool) -> tuple[np.ndarray, bool]:
        """[points, axes] indices into `columns`, and whether x must be flipped (x -> 1 - x)."""
        return self._gathers[bool(dominant_left)], bool(dominant_left and self.mirror)

    @cached_property
    def _gathers(self) -> dict[bool, np.ndarray]:
        return {
            left: np.array(
                [
                    [self._position[layout.column(a, *self._source(g, p, i, left))] for a in self.axes]
                    for g, p, i in self.points
                ],
                np.int64,
            )
            for left in (False, True)
        }

    def hand_x_columns(self, part: str) -> np.ndarray:
        return np.array(
            [self._position[layout.column("x", part, i)] for i in range(layout.HAND_POINTS)], np.int64
        )

    @classmethod
    def from_dict(cls, d: Mapping) -> FeatureSpec:
        """The inverse of `to_dict` (features.json in a run directory)."""
        return cls(
            hands=Hands(d["hands"]),
            lip_points=tuple(d["lip_points"]),
            pose_points=tuple(d["pose_points"]),
            z=bool(d["z"]),
            mirror=bool(d["mirror"]),
            handless_frames=HandlessFrames(d["handless_frames"]),
            hand_relative=bool(d.get("hand_relative", False)),
        )

    def to_dict(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k != "points"}
        d.update(
            lip_points=list(self.lip_points),
            pose_points=list(self.pose_points),
            columns=self.columns,
            points=[list(p) for p in self.points],
            axes=list(self.axes),
        )
        return d


@dataclass(frozen=True)
class Extracted:
    frames: np.ndarray  # [kept frames, points, axes] float32, NaN = not detected
    dominant_left: bool


def dominant_is_left(raw: np.ndarray, spec: FeatureSpec) -> tuple[bool, int, int]:
    """Whether the left hand is seen in more frames than the right (ties: right), and both counts."""
    n_right = int((~np.isnan(raw[:, spec.hand_x_columns("right_hand")])).any(axis=1).sum())
    n_left = int((~np.isnan(raw[:, spec.hand_x_columns("left_hand")])).any(axis=1).sum())
    return n_left > n_right, n_left, n_right


def extract(raw: np.ndarray, spec: FeatureSpec) -> Extracted | None:
    """One raw sequence [frames, len(spec.columns)] -> canonical features, or None when no hand
    is ever visible (the caller counts it as skipped)."""
    dominant_left, n_left, n_right = dominant_is_left(raw, spec)
    if n_left + n_right == 0:
        return None
    idx, flip = spec.gather(dominant_left)
    x = raw[:, idx]  # [T, P, D] (fancy indexing copies)
    if flip:
        x[..., 0] = 1.0 - x[..., 0]
    visible = ~np.isnan(x[:, spec.hand_points, :]).all(axis=(1, 2))
    if spec.handless_frames == HandlessFrames.drop:
        x = x[visible]
    return Extracted(np.ascontiguousarray(x, np.float32), dominant_left)


# -- normalization ---------------------------------------------------------------------------
@dataclass(frozen=True)
class NormStats:
    mean: np.ndarray  # [features]
    std: np.ndarray

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def identity(cls, n_features: int) -> NormStats:
        """Mean 0, std 1: leaves features as they are (untrained models, benchmarks)."""
        return cls(np.zeros(n_features, np.float32), np.ones(n_features, np.float32))

    @classmethod
    def from_dict(cls, d: Mapping) -> NormStats:
        return cls(np.asarray(d["mean"], np.float32), np.asarray(d["std"], np.float32))


def compute_stats(
    frames: np.ndarray,
    offsets: np.ndarray,
    sequences: np.ndarray,
    transform=None,
    chunk_frames: int = 1 << 18,
) -> NormStats:
    """Per feature mean/std over the detected values of the given sequences only (the training
    folds: validation never leaks in). `transform` maps a block of frames [n, points, axes] to
    the model's per-frame features [n, features] (default: flatten). Streams over the
    (memory-mapped) frames."""
    transform = transform or (lambda a: a.reshape(len(a), -1))
    shape = (transform(np.zeros((1, *frames.shape[1:]), np.float32)).shape[1],)
    total = np.zeros(shape, np.float64)
    square = np.zeros(shape, np.float64)
    count = np.zeros(shape, np.int64)
    # Merge runs of consecutive sequences into contiguous frame ranges, then stream in chunks.
    seq = np.unique(sequences)
    for run in np.split(seq, np.flatnonzero(np.diff(seq) != 1) + 1) if len(seq) else ():
        start, end = int(offsets[run[0]]), int(offsets[run[-1] + 1])
        for lo in range(start, end, chunk_frames):
            block = np.asarray(transform(np.asarray(frames[lo : min(end, lo + chunk_frames)])), np.float64)
            ok = ~np.isnan(block)
            block = np.where(ok, block, 0.0)
            total += block.sum(0)
            square += (block * block).sum(0)
            count += ok.sum(0)
    n = np.maximum(count, 1)
    mean = total / n
    std = np.sqrt(np.maximum(square / n - mean * mean, 0.0))
    std = np.where((count > 1) & (std > 1e-6), std, 1.0)  # a constant or never-seen point: scale 1
    return NormStats(mean.astype(np.float32), std.astype(np.float32))
