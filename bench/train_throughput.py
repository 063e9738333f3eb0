"""Training throughput (samples/s) of `model=large` against seed 001's implementation, and the
achieved FLOP/s as a fraction of a dense float32 matmul's, all measured side by side in one run.

  aslfr     aslfr.model (keras.layers.MultiHeadAttention, decoder over max_length positions),
            batches from aslfr.pipeline grouped by length and cut to their longest sequence
            (data.bucket_by_length=true, data.length_step=16), and as by default (random
            batches: their longest sequence is nearly always max_frames)
  seed 001  bench/seed001_model.py (per-head Dense projections, decoder over max_frames padded
            positions), batches always max_frames long, as seed 001 fed them

Same depths, widths, dropout, batch size, optimizer and loss (both through
`trainer.compile_model`); the batches come from the project's own tf.data pipeline over
sequences whose lengths follow the Kaggle data, and are held in memory so the timing is the
model's. The default row separates the architecture's share from the grouping's. Rounds
alternate so machine noise hits all rows alike. FLOPs are counted from the architecture
(matmuls and attention; training = 3 x forward, the usual convention).

    python bench/train_throughput.py [--model large] [--batch 64] [--steps 8] [--rounds 2]
                                     [--jit] [--precision mixed_bfloat16] [--versus mixed_bfloat16]

--versus P adds a row: the same model built under precision P (trainer.precision), on the
grouped batches, timed in the same rounds as the others, with its ratio to the grouped row.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import tensorflow as tf

from aslfr.data import pipeline
from aslfr.data.features import FeatureSpec, NormStats
from aslfr.data.layout import CHARACTERS
from aslfr.data.vocab import Vocab
from aslfr.model import model as aslfr_model
from aslfr.model.config import ModelConfig, model_config
from aslfr.train.loop import compile_model

import seed001_model
from _common import compose


def forward_flops(cfg: ModelConfig, frames: int | None = None) -> int:
    """Multiply-add FLOPs (x2) of one sequence's teacher-forced forward pass through aslfr.model
    on `frames` frames (default: max_frames)."""
    T, L, F, V = frames or cfg.max_frames, cfg.max_length, cfg.n_features, cfg.vocab_size
    enc, dec = cfg.encoder, cfg.decoder

    def dense(n, i, o):
        return 2 * n * i * o

    def attention(nq, nk, width, s, self_kv=True):
        inner = s.heads * s.head_dim
        kv_tokens = nq if self_kv else nk
        return (
            dense(nq, width, inner)
            + 2 * dense(kv_tokens, width, inner)  # Q, K, V
            + 2 * 2 * nq * nk * inner
            + dense(nq, inner, width)
        )  # scores, weights x V, out

    total = dense(T, F, enc.width) + dense(T, enc.width, enc.width)  # frame embedding
    for _ in range(enc.depth):
        total += attention(T, T, enc.width, enc)
        if enc.conv_kernel:
            total += 2 * T * enc.width * enc.conv_kernel + dense(T, enc.width, enc.width)
        total += 2 * dense(T, enc.width, int(enc.width * enc.mlp_ratio))
    total += dense(T, enc.width, dec.width)  # bridge
    if cfg.ctc_weight:
        total += dense(T, enc.width, cfg.pad + 1)
    for _ in range(dec.depth):
        total += attention(L, L, dec.width, dec)
        total += attention(L, T, dec.width, dec, self_kv=False)
        total += 2 * dense(L, dec.width, int(dec.width * dec.mlp_ratio))
    return total + dense(L, dec.width, V)


def kaggle_like_set(spec: FeatureSpec, mcfg: ModelConfig, n: int, seed: int = 0):
    """n sequences in the prepared-cache form (frames [N, points, axes], offsets, tokens) whose
    lengths follow the Kaggle data: frames with a visible hand per sequence ~ exponential with
    mean 94 (the reference's mean; its 5th percentile, 5, is the exponential's too); phrases of
    10-31 characters; the hand missing in ~10% of the kept frames (hand dropout)."""
    rng = np.random.default_rng(seed)
    lengths = np.maximum(1, rng.exponential(94, n).astype(np.int64))
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    frames = rng.uniform(0.2, 0.8, (offsets[-1], spec.n_points, len(spec.axes))).astype(np.float32)
    hand = spec.group_points("hand")
    frames[np.ix_(rng.random(offsets[-1]) < 0.1, hand)] = np.nan
    tokens = np.full((n, mcfg.max_length), mcfg.pad, np.int32)
    for row, n_chars in enumerate(rng.integers(10, mcfg.max_length, n)):
        tokens[row, :n_chars] = rng.integers(0, mcfg.pad, n_chars)
        tokens[row, n_chars] = mcfg.eos
    return frames, offsets, tokens


def batches(spec, mcfg, batch: int, length_step: int, n_batches: int, pool: int = 0) -> list[dict]:
    """Training batches from the project's own tf.data pipeline, held in memory so the timing
    is the model's: grouped by length in buckets (length_step > 0), or within shuffled pools of
    `pool` batches (data.length_pool), or not at all."""
    frames, offsets, tokens = kaggle_like_set(spec, mcfg, 40 * batch)
    ds = pipeline.make_dataset(
        frames,
        offsets,
        tokens,
        np.arange(len(tokens)),
        spec=spec,
        stats=NormStats.identity(spec.n_features),
        max_frames=mcfg.max_frames,
        batch_size=batch,
        training=True,
        augment=None,
        length_step=length_step,
        bucket_by_length=bool(length_step) and not pool,
        length_pool=pool,
    )
    return list(ds.take(n_batches))


def matmul_flops_per_s(n: int = 2048, repeats: int = 5) -> float:
    a = tf.random.normal([n, n])
    b = tf.random.normal([n, n])
    mm = tf.function(lambda a, b: tf.reduce_sum(tf.matmul(a, b)))
    mm(a, b).numpy()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        mm(a, b).numpy()
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def time_steps(model, batches, steps: int, start: int) -> float:
    t0 = time.perf_counter()
    for i in range(start, start + steps):
        b = batches[i % len(batches)]
        model.train_on_batch(b, b["tokens"])
    float(model.optimizer.iterations.numpy())  # wait for the last step
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="large")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--frames", type=int, default=128, help="data.max_frames (seed 001: 128)")
    ap.add_argument("--steps", type=int, default=8, help="steps per configuration per round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--jit", action="store_true", help="XLA-compile every train step")
    ap.add_argument("--precision", default="float32")
    ap.add_argument("--pool", type=int, default=8, help="data.length_pool of the pooled row")
    ap.add_argument("--versus", help="another trainer.precision, side by side (e.g. mixed_bfloat16)")
    args = ap.parse_args()

    cfg = compose(
        [
            f"model={args.model}",
            f"trainer.batch_size={args.batch}",
            f"data.max_frames={args.frames}",
            f"trainer.jit={str(args.jit).lower()}",
            f"trainer.precision={args.precision}",
        ]
    )
    import keras

    keras.mixed_precision.set_global_policy(args.precision)
    spec = FeatureSpec.from_config(cfg.data.features)
    mcfg = model_config(cfg.model, cfg.data, cfg.trainer.jit, spec, Vocab(CHARACTERS))
    step = int(cfg.data.length_step)
    n_batches = args.steps * args.rounds
    data = {
        "cut": batches(spec, mcfg, args.batch, step, n_batches),
        "pooled": batches(spec, mcfg, args.batch, step, n_batches, pool=args.pool),
        "full": batches(spec, mcfg, args.batch, 0, n_batches),
    }
    keras.utils.set_random_seed(0)
    ours = compile_model(aslfr_model.build(mcfg), cfg, 100, 10)
    seed = compile_model(seed001_model.build(mcfg), cfg, 100, 10)
    runs = {  # name: (model, batches)
        "aslfr, data.bucket_by_length=true": (ours, data["cut"]),
        f"aslfr, data.length_pool={args.pool}": (ours, data["pooled"]),
        "aslfr (default: no grouping)": (ours, data["full"]),
        "seed 001 (always max_frames)": (seed, data["full"]),
    }
    if args.versus:  # the layers read the global policy when they are built
        keras.mixed_precision.set_global_policy(args.versus)
        keras.utils.set_random_seed(0)
        other = compile_model(aslfr_model.build(mcfg), cfg, 100, 10)
        keras.mixed_precision.set_global_policy(args.precision)
        runs[f"aslfr, bucketed, {args.versus}"] = (other, data["cut"])
    for model, bs in runs.values():  # trace every shape, compile, warm up
        for shape in {b["frames"].shape[1]: b for b in bs}.values():
            model.train_on_batch(shape, shape["tokens"])
    seconds = dict.fromkeys(runs, 0.0)
    for r in range(args.rounds):
        for name, (model, bs) in runs.items():
            seconds[name] += time_steps(model, bs, args.steps, r * args.steps)
    n_samples = args.rounds * args.steps * args.batch
    rate = {name: n_samples / s for name, s in seconds.items()}
    peak = matmul_flops_per_s()
    names = list(runs)
    bucketed, pooled, default, seed001 = names[:4]
    frames_seen = [b["frames"].shape[1] for b in data["cut"][:n_batches]]
    pooled_seen = [b["frames"].shape[1] for b in data["pooled"][:n_batches]]
    flops = {
        bucketed: 3 * args.batch * sum(forward_flops(mcfg, t) for t in frames_seen),
        pooled: 3 * args.batch * sum(forward_flops(mcfg, t) for t in pooled_seen),
        default: 3 * args.batch * n_batches * forward_flops(mcfg),
    }

    print(
        f"model={args.model}: {ours.count_params():,} parameters (seed 001 style: "
        f"{seed.count_params():,}); batch {args.batch}, max_frames {mcfg.max_frames}, "
        f"{mcfg.max_length} decoder positions, precision {args.precision}, jit {args.jit}; "
        f"Kaggle-like lengths: mean {np.mean(frames_seen):.0f} frames per cut batch"
    )
    print(f"{'':34} {'samples/s':>10} {'vs seed 001':>12} {'GFLOP/s':>8} {'of matmul':>10}")
    for name in names:
        extra = ""
        if name in flops:
            achieved = flops[name] / seconds[name]
            extra = f" {achieved / 1e9:>8.1f} {achieved / peak:>10.0%}"
        print(f"{name:34} {rate[name]:>10.1f} {rate[name] / rate[seed001]:>11.2f}x{extra}")
    print(
        f"dense float32 matmul (2048^3): {peak / 1e9:.1f} GFLOP/s; training FLOPs per sample "
        f"at max_frames: {3 * forward_flops(mcfg) / 1e9:.2f} GFLOP"
    )
    print(
        f"targets: throughput >= 1.5x seed 001 -> {rate[bucketed] / rate[seed001]:.2f}x; "
        f"FLOP/s >= 30% of matmul -> {flops[bucketed] / seconds[bucketed] / peak:.0%}; "
        f"length pools >= 1.4x the default -> {rate[pooled] / rate[default]:.2f}x"
    )
    if args.versus:
        print(
            f"{args.versus} against {args.precision} (grouped batches, same rounds): "
            f"{rate[names[4]] / rate[bucketed]:.2f}x"
        )


if __name__ == "__main__":
    main()
