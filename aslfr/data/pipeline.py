"""tf.data over the prepared cache: batches of normalized frames with masks and target tokens,
train-time augmentation switched by config, none at validation.

Each element is a dict:
  frames [B, max_frames, features] float32  normalized; NaN = landmark not detected; 0 on padding
  mask   [B, max_frames] float32              1 on real frames, 0 on padding
  tokens [B, max_phrase_length + 1] int32     characters, EOS, then PAD

`frame_features`, `normalize` and `fit_length` are the exact TensorFlow ops the exported TFLite
graph runs too.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from aslfr.config import Augment, HandlessFrames
from aslfr.data import layout
from aslfr.data.features import FeatureSpec, NormStats


# -- shared with export -------------------------------------------------------------------------
def frame_features(x: tf.Tensor, spec: FeatureSpec) -> tf.Tensor:
    """[T, P, D] landmarks -> [T, spec.n_features]: every coordinate and, with
    `hand_relative`, the signing hand's points 1-20 relative to its wrist, divided by the
    wrist-to-middle-knuckle distance (position and size of the hand factored out)."""
    flat = tf.reshape(x, [tf.shape(x)[0], spec.n_points * len(spec.axes)])
    if not spec.hand_relative:
        return flat
    hand = tf.gather(x, spec.group_points("hand"), axis=1)  # [T, 21, D]
    wrist = hand[:, layout.WRIST : layout.WRIST + 1]
    size = tf.norm(hand[:, layout.MIDDLE_KNUCKLE, :2] - hand[:, layout.WRIST, :2], axis=-1)[:, None, None]
    relative = (hand[:, layout.WRIST + 1 :] - wrist) / tf.maximum(size, 1e-6)  # the wrist is first
    n_relative = (layout.HAND_POINTS - 1) * len(spec.axes)
    return tf.concat([flat, tf.reshape(relative, [tf.shape(x)[0], n_relative])], -1)


def canonical_frames(raw: tf.Tensor, spec: FeatureSpec) -> tf.Tensor:
    """TensorFlow twin of `features.extract` for the export graph: raw [T, len(spec.columns)]
    -> [kept, P, D] (dominant hand by visible frames, mirrored to the right, handless frames
    dropped). Where extract gives up (no hand ever visible) every frame is kept, and an empty
    input becomes one missing frame, so inference always has something to decode."""

    def seen(part):
        x_cols = tf.gather(raw, spec.hand_x_columns(part), axis=1)
        return tf.reduce_sum(tf.cast(tf.reduce_any(~tf.math.is_nan(x_cols), axis=1), tf.int32))

    left = seen("left_hand") > seen("right_hand")
    (idx_right, _), (idx_left, flip) = spec.gather(False), spec.gather(True)
    x = tf.where(left, tf.gather(raw, idx_left, axis=1), tf.gather(raw, idx_right, axis=1))
    if flip:
        x = tf.where(left, tf.concat([1.0 - x[..., :1], x[..., 1:]], axis=-1), x)
    if spec.handless_frames == HandlessFrames.drop:
        hand = tf.gather(x, spec.hand_points, axis=1)
        visible = ~tf.reduce_all(tf.math.is_nan(hand), axis=[1, 2])
        x = tf.cond(tf.reduce_any(visible), lambda: tf.boolean_mask(x, visible), lambda: x)
    empty = tf.fill([1, spec.n_points, len(spec.axes)], tf.constant(np.nan, tf.float32))
    return tf.cond(tf.shape(x)[0] > 0, lambda: x, lambda: empty)


def normalize(x: tf.Tensor, stats: NormStats) -> tf.Tensor:
    """[T, F] features -> standardized with the training folds' statistics (NaN stays NaN)."""
    return (x - tf.constant(stats.mean)) / tf.constant(stats.std)


def nearest_indices(n: tf.Tensor, m: tf.Tensor) -> tf.Tensor:
    """m indices spread evenly over n frames (nearest frame to each of m evenly spaced centres)."""
    n_f, m_f = tf.cast(n, tf.float32), tf.cast(m, tf.float32)
    idx = tf.floor((tf.range(m_f) + 0.5) * n_f / m_f)
    return tf.minimum(tf.cast(idx, tf.int32), tf.cast(n, tf.int32) - 1)


def resample(x: tf.Tensor, max_frames: int) -> tf.Tensor:
    """[T, ...] -> [min(T, max_frames), ...]: longer sequences are resampled to max_frames
    (nearest frames, so no NaN is smeared), shorter ones kept as they are."""
    n = tf.shape(x)[0]
    return tf.cond(n > max_frames, lambda: tf.gather(x, nearest_indices(n, max_frames)), lambda: x)


def fit_length(x: tf.Tensor, max_frames: int) -> tuple[tf.Tensor, tf.Tensor]:
    """[T, ...] -> ([max_frames, F] frames, [max_frames] mask): `resample`d, then padded."""
    x = resample(x, max_frames)
    kept = tf.shape(x)[0]
    flat = tf.reshape(x, [kept, -1])
    flat = tf.pad(flat, [[0, max_frames - kept], [0, 0]])
    mask = tf.range(max_frames) < kept
    return flat, mask


# -- augmentation -------------------------------------------------------------------------------
class Augmenter:
    """Train-time augmentation of one raw sequence [T, P, D], from `data.augment`. Randomness
    comes from a per-element seed pair (stateless ops), so a run is reproducible from its seed."""

    def __init__(self, augment: Augment, spec: FeatureSpec):
        self.augment = augment
        hand = spec.group_points("hand")
        self.fingers = tf.constant([[int(hand[i]) for i in f] for f in layout.FINGERS], tf.int32)
        self.hand = tf.constant(spec.hand_points, tf.int32)
        self.parts = [
            tf.constant(spec.group_points(g), tf.int32) for g in ("lips", "pose") if len(spec.group_points(g))
        ]
        self.n_points = spec.n_points
        self.mirror = tf.constant(spec.mirror_permutation, tf.int32)

    def _coin(self, p: float, seed) -> tf.Tensor:
        return tf.random.stateless_uniform([], seed) < p

    def _uniform(self, seed, low, high, shape=()) -> tf.Tensor:
        return tf.random.stateless_uniform(shape, seed, low, high)

    def resample(self, x, seed):
        c = self.augment.resample
        n = tf.shape(x)[0]
        factor = self._uniform(seed, c.low, c.high)
        m = tf.maximum(1, tf.cast(tf.round(tf.cast(n, tf.float32) * factor), tf.int32))
        return tf.gather(x, nearest_indices(n, m))

    def affine(self, x, seed):
        c = self.augment.affine
        seeds = tf.random.experimental.stateless_split(seed, 5)
        xy = x[..., :2]
        centre = _nanmean(tf.reshape(xy, [-1, 2]))
        scale = self._uniform(seeds[0], 1 - c.scale, 1 + c.scale)
        angle = self._uniform(seeds[1], -1.0, 1.0) * c.rotate_deg * math.pi / 180
        shear = self._uniform(seeds[2], -c.shear, c.shear)
        shift = self._uniform(seeds[3], -c.shift, c.shift, [2])
        cos, sin = tf.cos(angle), tf.sin(angle)
        matrix = scale * tf.stack([[cos, -sin], [sin, cos]]) @ tf.stack([[1.0, shear], [0.0, 1.0]])
        moved = tf.einsum("tpd,ed->tpe", xy - centre, matrix) + centre + shift
        return tf.concat([moved, x[..., 2:]], axis=-1)

    def finger_dropout(self, x, seed):
        c = self.augment.finger_dropout
        seeds = tf.random.experimental.stateless_split(seed, 2)
        k = tf.random.stateless_uniform([], seeds[0], 1, c.max_fingers + 1, tf.int32)
        order = tf.argsort(tf.random.stateless_uniform([5], seeds[1]))
        points = tf.reshape(tf.gather(self.fingers, order[:k]), [-1])
        return _blank_points(x, points, self.n_points)

    def hand_dropout(self, x, seed):
        rate = self.augment.hand_dropout.rate
        frames = tf.random.stateless_uniform([tf.shape(x)[0]], seed) < rate
        points = tf.scatter_nd(self.hand[:, None], tf.ones_like(self.hand, tf.bool), [self.n_points])
        blank = frames[:, None] & points[None, :]
        return tf.where(blank[..., None], tf.constant(np.nan, tf.float32), x)

    def part_dropout(self, x, seed):
        if not self.parts:
            return x
        choice = tf.random.stateless_uniform([], seed, 0, len(self.parts), tf.int32)
        branches = [lambda p=p: _blank_points(x, p, self.n_points) for p in self.parts]
        return tf.switch_case(choice, branches)

    def flip(self, x, seed):
        """A horizontal mirror of the whole clip: x -> 1 - x, hands and the left/right partners
        of lips and pose swapped. On top of the mirroring to the dominant side, so the model
        also sees the other hand's chirality."""
        x = tf.gather(x, self.mirror, axis=1)
        return tf.concat([1.0 - x[..., :1], x[..., 1:]], axis=-1)

    def time_mask(self, x, seed):
        """One span of up to max_fraction of the frames masked (every landmark missing, as when
        nothing is detected: the model's learned missing-frame embedding), as 3rd place did."""
        seeds = tf.random.experimental.stateless_split(seed, 2)
        n = tf.shape(x)[0]
        longest = tf.cast(tf.cast(n, tf.float32) * self.augment.time_mask.max_fraction, tf.int32)
        length = tf.random.stateless_uniform([], seeds[0], 0, longest + 1, tf.int32)
        start = tf.random.stateless_uniform([], seeds[1], 0, n - length + 1, tf.int32)
        frames = tf.range(n)
        masked = (frames >= start) & (frames < start + length)
        return tf.where(masked[:, None, None], tf.constant(np.nan, tf.float32), x)

    def __call__(self, x: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        # New steps go last: a stateless split's first rows do not depend on how many are drawn,
        # so the older steps keep their seeds and a default run its results.
        steps = ("resample", "affine", "finger_dropout", "hand_dropout", "part_dropout", "time_mask", "flip")
        seeds = tf.random.experimental.stateless_split(seed, 2 * len(steps))
        for k, name in enumerate(steps):
            p = getattr(self.augment, name).p
            if p <= 0:
                continue
            augmented = functools.partial(getattr(self, name), x, seeds[2 * k + 1])
            x = tf.cond(self._coin(p, seeds[2 * k]), augmented, functools.partial(tf.identity, x))
        return x


class CutMix:
    """CutMix within a signer (1st place: +0.005; 5th on CTC alignments: ~+0.02): with
    probability p, a sequence is spliced with another of the same participant at corresponding
    cut points: the first fraction f of sequence A's frames and of its characters, then sequence
    B's frames and characters from its own fraction g on (f, g uniform in 0.2..0.8). Same hands,
    same camera, so the seam is plausible; the phrase follows the frames roughly, as fingerspelling
    is close to uniform in time. Phrases longer than the token row are cut."""

    def __init__(self, p, participants, indices, load, table, pad: int, eos: int):
        self.p, self.load, self.table, self.pad, self.eos = p, load, table, pad, eos
        indices = np.asarray(indices, np.int64)
        order = indices[np.argsort(np.asarray(participants)[indices], kind="stable")]
        groups = np.asarray(participants)[order]
        first = np.searchsorted(groups, groups, side="left")
        last = np.searchsorted(groups, groups, side="right")
        start, size = np.zeros(len(participants), np.int64), np.ones(len(participants), np.int64)
        start[order], size[order] = first, last - first
        self.order, self.start, self.size = (tf.constant(a) for a in (order, start, size))

    def __call__(self, i, x, tokens, seed):
        seeds = tf.random.experimental.stateless_split(seed, 4)
        use = tf.random.stateless_uniform([], seeds[0]) < self.p
        pick = tf.random.stateless_uniform([], seeds[1], 0, tf.gather(self.size, i), tf.int64)
        j = tf.gather(self.order, tf.gather(self.start, i) + pick)
        return tf.cond(
            use & (j != i),
            lambda: self.splice(x, tokens, self.load(j), tf.gather(self.table, j), seeds[2], seeds[3]),
            lambda: (x, tokens),
        )

    def splice(self, xa, ta, xb, tb, seed_a, seed_b):
        fa = tf.random.stateless_uniform([], seed_a, 0.2, 0.8)
        fb = tf.random.stateless_uniform([], seed_b, 0.2, 0.8)

        def cut(n, f):
            return tf.cast(tf.round(tf.cast(n, tf.float32) * f), tf.int32)

        na = tf.reduce_sum(tf.cast(ta < self.pad, tf.int32))  # characters come first
        nb = tf.reduce_sum(tf.cast(tb < self.pad, tf.int32))
        frames = tf.concat([xa[: cut(tf.shape(xa)[0], fa)], xb[cut(tf.shape(xb)[0], fb) :]], axis=0)
        length = tf.shape(ta)[0]
        chars = tf.concat([ta[: cut(na, fa)], tb[cut(nb, fb) : nb]], axis=0)[: length - 1]
        row = tf.concat([chars, [self.eos]], axis=0)
        row = tf.pad(row, [[0, length - tf.shape(row)[0]]], constant_values=self.pad)
        return frames, tf.ensure_shape(row, ta.shape)


def _nanmean(v: tf.Tensor) -> tf.Tensor:
    ok = ~tf.math.is_nan(v)
    total = tf.reduce_sum(tf.where(ok, v, 0.0), axis=0)
    return total / tf.maximum(tf.reduce_sum(tf.cast(ok, tf.float32), axis=0), 1.0)


def _blank_points(x: tf.Tensor, points: tf.Tensor, n_points: int) -> tf.Tensor:
    hit = tf.scatter_nd(points[:, None], tf.ones_like(points, tf.bool), [n_points])
    return tf.where(hit[None, :, None], tf.constant(np.nan, tf.float32), x)


# -- the data set -------------------------------------------------------------------------------
def frame_source(frames: np.ndarray) -> Callable[[], tf.Tensor]:
    """All frames [total, points, axes] as a tensor that tf.data functions read with no Python
    (a Python call in the pipeline can deadlock with the interpreter when an iterator is torn
    down mid-epoch): the cache's memory-mapped frames.bin is mapped by TensorFlow itself
    (ImmutableConst, nothing is loaded up front); an in-memory array becomes a constant."""
    if (
        isinstance(frames, np.memmap)
        and frames.offset == 0
        and frames.dtype == np.float32
        and frames.flags.c_contiguous
        and frames.nbytes == os.path.getsize(frames.filename)
    ):
        shape, path = list(frames.shape), str(frames.filename)
        return lambda: tf.raw_ops.ImmutableConst(dtype=tf.float32, shape=shape, memory_region_name=path)
    array = tf.constant(np.asarray(frames, np.float32))
    return lambda: array


def evaluation_order(indices, offsets, max_frames: int, length_step: int) -> np.ndarray:
    """The sequences `indices` in the order an evaluation data set serves them: as given, or
    shortest first (stable) when `length_step` cuts batches to their longest sequence."""
    indices = np.asarray(indices, np.int64)
    if not length_step:
        return indices
    lengths = np.minimum(np.diff(np.asarray(offsets))[indices], max_frames)
    return indices[np.argsort(lengths, kind="stable")]


def make_dataset(
    frames: np.ndarray,
    offsets: np.ndarray,
    tokens: np.ndarray,
    indices: np.ndarray,
    *,
    spec: FeatureSpec,
    stats: NormStats,
    max_frames: int,
    batch_size: int,
    training: bool,
    augment: Augment | None = None,
    seed: int = 0,
    length_step: int = 0,
    bucket_by_length: bool = False,
    length_pool: int = 0,
    participants: np.ndarray | None = None,
    pad: int = 0,
    eos: int = 0,
) -> tf.data.Dataset:
    """Batches of the sequences `indices` of a prepared set (frames/offsets as in the cache,
    tokens [N, L] from `Vocab.encode`).

    Training: an endless stream of full batches, reshuffled every epoch, augmented if
    `augment.enabled`. Validation: every sequence once, never augmented, in the given order.
    `length_step` > 0 cuts each batch to its longest sequence rounded up to a multiple of
    `length_step` frames (at most `max_frames`), so no work is spent on padding the model would
    mask anyway; validation then runs shortest first, and with `bucket_by_length` training
    batches are grouped by length (buckets `length_step` frames wide). `length_pool` = N > 0
    groups them while keeping the shuffle: N batches' worth of shuffled (and augmented)
    sequences are sorted by length, cut into N batches, and those are served in random order.
    CutMix within a signer (`augment.cutmix`) needs each sequence's `participants` (row-aligned
    with `offsets`) and the PAD and EOS tokens."""
    indices = np.asarray(indices, np.int64)
    if not training:
        indices = evaluation_order(indices, offsets, max_frames, length_step)
    all_frames = frame_source(frames)
    bounds = tf.constant(np.asarray(offsets, np.int64))

    def load(i):
        return all_frames()[bounds[i] : bounds[i + 1]]

    table = tf.constant(tokens, tf.int32)
    ds = tf.data.Dataset.from_tensor_slices(indices)
    if training:
        ds = ds.shuffle(max(1, len(indices)), seed=seed, reshuffle_each_iteration=True).repeat()
    augmenter = Augmenter(augment, spec) if training and augment and augment.enabled else None
    ds = tf.data.Dataset.zip(ds, tf.data.Dataset.random(seed=seed).batch(2))

    cutmix = None
    if augmenter is not None and augment.cutmix.p > 0:
        if participants is None:
            raise ValueError("augment.cutmix needs the sequences' participants")
        cutmix = CutMix(augment.cutmix.p, participants, indices, load, table, pad, eos)

    def element(i, pair):
        seed = tf.cast(pair % (2**31 - 1), tf.int32)
        x, tokens = load(i), tf.gather(table, i)
        if cutmix is not None:
            x, tokens = cutmix(i, x, tokens, tf.random.experimental.stateless_fold_in(seed, 1))
        if augmenter is not None:
            x = augmenter(x, seed)
        x, mask = fit_length(normalize(frame_features(x, spec), stats), max_frames)
        # The mask travels as float32: tf.distribute cannot aggregate bool tensors across replicas.
        return {"frames": x, "mask": tf.cast(mask, tf.float32), "tokens": tokens}

    ds = ds.map(element, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if training and length_step and length_pool > 0:
        ds = _grouped_in_pools(ds, batch_size, int(length_pool), seed)
    elif training and length_step and bucket_by_length:
        bounds = list(range(length_step + 1, max_frames + 1, length_step))
        ds = ds.bucket_by_sequence_length(
            lambda e: tf.cast(tf.reduce_sum(e["mask"]), tf.int32),
            bounds,
            [batch_size] * (len(bounds) + 1),
            no_padding=True,
            drop_remainder=True,
        )
    else:
        ds = ds.batch(batch_size, drop_remainder=training)
    if length_step:
        ds = ds.map(lambda b: cut_to_length(b, length_step, max_frames))
    return ds.prefetch(tf.data.AUTOTUNE)


def _grouped_in_pools(ds: tf.data.Dataset, batch_size: int, pool: int, seed: int) -> tf.data.Dataset:
    """Batches of similar length without giving up the shuffle: `pool` batches' worth of
    elements sorted by length, cut into `pool` batches, served in a random order (a new one
    for every pool, from the run's seed)."""

    def regroup(big, pair):
        order = tf.argsort(tf.reduce_sum(big["mask"], axis=1), stable=True)
        batches = {
            key: tf.reshape(tf.gather(value, order), tf.concat([[pool, batch_size], tf.shape(value)[1:]], 0))
            for key, value in big.items()
        }
        shuffled = tf.argsort(tf.random.stateless_uniform([pool], tf.cast(pair % (2**31 - 1), tf.int32)))
        return tf.data.Dataset.from_tensor_slices({k: tf.gather(v, shuffled) for k, v in batches.items()})

    pools = ds.batch(batch_size * pool, drop_remainder=True)
    return tf.data.Dataset.zip(pools, tf.data.Dataset.random(seed=seed + 1).batch(2)).flat_map(regroup)


def cut_to_length(batch: dict, step: int, max_frames: int) -> dict:
    """Drop the trailing frames that are padding in every sequence of the batch, keeping a
    multiple of `step` frames (so the model sees a handful of distinct shapes)."""
    longest = tf.cast(tf.reduce_max(tf.reduce_sum(batch["mask"], axis=1)), tf.int32)
    n = tf.clip_by_value((longest + step - 1) // step * step, step, max_frames)
    return {**batch, "frames": batch["frames"][:, :n], "mask": batch["mask"][:, :n]}
