"""Inference cost of the exported models in the LiteRT interpreter on 1 thread, side by side in
one run, on the budget's benchmark set (160-frame sequences, ~96 with the hand, 18 characters
+ EOS decoded; `conf/budget/default.yaml`):

1. Cached decoding against seed 001's decoding on the *same weights* (`model=large` by default):
     cached    aslfr.model.greedy_decode: one new position per step, keys/values cached
     seed 001  the whole decoder re-run over 128 padded positions for every token (positions
               past the phrase are PAD and causally masked, so the tokens are the same)
     matmuls   per step only the decoder's weight matrices, chained (no attention, norms or
               cache): at batch 1 a step streams every decoder weight from memory once, so
               this is the floor of any step
     encoder   the same graph with no decoding at all: the floor of any decoder
     no attention  cached decoding with the two attention products of every block (query x
               keys, weights x values, over the cache and over the encoder memory) left out:
               what the attention itself costs per step
   decoding cost = graph - encoder; target: seed 001's >= 5x ours, and ours <= 25% of the
   encoder pass. The share is also given for each `export.quantize`.
   A step against the matmul floor per step (target <= 1.25x), each as (graph of 19 tokens -
   graph of 1) / 18, timed on graphs of the decoding alone: their input is the encoder's output
   for the benchmark set (Keras), so the encoder's ~3 ms and its noise are not in the
   difference (with them, the same code read 1.5x-1.9x from run to run).
2. ms per sequence and MB for small, base and large, float32, fp16 and int8_dynamic.

    python bench/export_latency.py [--model large] [--frames 128] [--repeats 3]
"""

from __future__ import annotations

import argparse
from unittest import mock

import keras
import tensorflow as tf

from aslfr.export import budget
from aslfr.export import convert as export
from aslfr.model import decoding
from aslfr.model.decoding import _matrix
from aslfr.model.model import FingerspellingModel

from _common import compose


def recompute_decode(
    model: FingerspellingModel, frames, mask, max_length: int, early_stop: bool = True, positions: int = 128
):
    """Seed 001's decoding with this model's weights: for every new token, run the whole decoder
    (teacher-forced, causal) over `positions` padded positions and read position t."""
    cfg = model.cfg
    memory, mask = model.encode(frames, mask, training=False)
    mask = tf.cast(mask, tf.bool)
    pos = tf.concat([model.token_position, tf.zeros([positions - cfg.max_length, cfg.decoder.width])], axis=0)
    phrase = tf.concat([[[cfg.sos]], tf.fill([1, positions - 1], cfg.pad)], axis=1)
    out = tf.fill([max_length], cfg.pad)

    def body(t, phrase, out, stop):
        x = model.token_embedding(phrase) + pos
        for block in model.decoder_blocks:
            x = block(x, memory, mask)
        token = tf.argmax(model._logits(x)[0, t], output_type=tf.int32)
        out = tf.where(tf.range(max_length) == t, token, out)
        phrase = tf.where(tf.range(positions)[None] == t + 1, token, phrase)
        return t + 1, phrase, out, stop | (early_stop & (token == cfg.eos))

    def cond(t, phrase, out, stop):
        return (t < max_length) & ~stop

    _, _, out, _ = tf.while_loop(cond, body, (tf.constant(0), phrase, out, tf.constant(False)))
    return out[None]


def matmul_floor(model: FingerspellingModel, frames, mask, max_length: int, early_stop: bool = True):
    """The encoder, then per step only the decoder's matmuls (the same matrices as
    greedy_decode, each applied to the previous one's output)."""
    memory, mask = model.encode(frames, mask, training=False)
    mats = []
    for block in model.decoder_blocks:
        sa, ca = block.self_attention, block.cross_attention
        qkv = [_matrix(d) for d in (sa.query_dense, sa.key_dense, sa.value_dense)]
        mats += [tuple(tf.concat(parts, axis=-1) for parts in zip(*qkv))]  # one [W, 3HD]
        mats += [
            _matrix(d)
            for d in (
                sa.output_dense,
                ca.query_dense,
                ca.output_dense,
                block.mlp.layers[0],
                block.mlp.layers[2],
            )
        ]
    mats.append(_matrix(model.classifier))

    def body(t, x):
        h = x
        for kernel, bias in mats:
            h = tf.matmul(h[:, : kernel.shape[0]], kernel) + bias
        return t + 1, x + tf.reduce_sum(h)

    _, x = tf.while_loop(lambda t, x: t < max_length, body, (tf.constant(0), tf.reduce_mean(memory, axis=1)))
    return tf.fill([1, max_length], tf.cast(tf.reduce_sum(x) > 1e30, tf.int32))


def no_attention_products(q, keys, values, bias):
    """`decoding._attend_memory` or `_attend_cache` without its two products: the query as it is
    (the keys, values and mask kept alive by a term that adds nothing, so that the graph keeps
    its inputs)."""
    alive = sum(tf.reduce_sum(x[..., :1, :1]) for x in (keys, values)) + tf.reduce_sum(bias[..., :1])
    return tf.reshape(q, [-1, q.shape[1] * q.shape[2] * q.shape[3]]) + 0.0 * alive


def no_decode(model, frames, mask, max_length: int, early_stop: bool = True):
    """The encoder pass alone (its output is kept alive, so nothing is pruned)."""
    memory, mask = model.encode(frames, mask, training=False)
    token = tf.cast(tf.reduce_sum(memory) > 1e30, tf.int32)
    return tf.fill([1, max_length], token)


def decoding_alone(model: FingerspellingModel, steps: int, decode=None):
    """A graph of decoding only: input `inputs` [1, T, We], the encoder's output (T as the set
    has it); output as the export's. `decode` as `export.inference_module` takes it."""
    decode = decode or decoding.transcribe
    module = tf.Module()
    module.weights = [v.value for v in model.variables]

    signature = [tf.TensorSpec([1, None, model.cfg.encoder.width], tf.float32, name="inputs")]

    @tf.function(input_signature=signature)
    def serve(inputs):
        # the encoder is the identity here: its output is the input
        with mock.patch.object(model, "_encode", lambda frames, mask, training=None: (frames, mask)):
            mask = tf.ones([1, tf.shape(inputs)[1]], tf.bool)
            tokens = decode(model, inputs, mask, max_length=steps, early_stop=False)
        return {"outputs": tf.one_hot(tokens[0], model.cfg.vocab_size)}

    module.serve = serve
    return export.convert_module(module)


def encoder_outputs(model: FingerspellingModel, pre, inputs) -> list:
    """The encoder's output [1, T, We] for each raw benchmark sequence (Keras): the input of
    `decoding_alone`."""
    encoded = []
    for raw in inputs:
        frames, mask = export.preprocess(tf.constant(raw), pre)
        encoded.append(model._encode(frames, mask, training=False)[0].numpy())
    return encoded


def step_us(model: FingerspellingModel, pre, inputs, steps: int, repeats: int) -> dict[str, float]:
    """us per decoding step of the cached decoder, of it without its attention products, and of
    the matmul floor: (graph of `steps` tokens - graph of 1) / (steps - 1), decoding alone."""
    encoded = encoder_outputs(model, pre, inputs)
    graphs = {}
    for n in (steps, 1):
        graphs["cached", n] = decoding_alone(model, n)
        graphs["matmuls", n] = decoding_alone(model, n, matmul_floor)
        with (
            mock.patch.object(decoding, "_attend_memory", no_attention_products),
            mock.patch.object(decoding, "_attend_cache", no_attention_products),
        ):
            graphs["no attention", n] = decoding_alone(model, n)
    ms = dict.fromkeys(graphs, float("inf"))
    for _ in range(5 * repeats):  # interleaved, best of N for each (a pass is ~1 ms per sequence)
        for key, content in graphs.items():
            ms[key] = min(ms[key], budget.latency_ms(content, encoded))
    return {name: (ms[name, steps] - ms[name, 1]) / (steps - 1) * 1000 for name, n in graphs if n == steps}


def setup(name: str, frames: int):
    cfg = compose([f"model={name}", f"data.max_frames={frames}"])
    keras.utils.set_random_seed(0)
    return cfg, *budget.untrained(cfg)


def timed(content: bytes, inputs, repeats: int) -> float:
    return budget.latency_ms(content, inputs, passes=repeats)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="large")
    ap.add_argument("--frames", type=int, default=128, help="data.max_frames")
    ap.add_argument("--repeats", type=int, default=3, help="best of N passes over the set")
    ap.add_argument("--sizes", nargs="*", default=["small", "base", "large"])
    args = ap.parse_args()

    cfg, model, pre = setup(args.model, args.frames)
    bench = cfg.budget.benchmark
    steps = int(bench.characters) + 1
    inputs = budget.benchmark_inputs(pre.spec, bench)
    graphs = {
        name: export.convert_module(export.inference_module(model, pre, n, decode))
        for name, n, decode in (
            ("cached", steps, None),
            ("cached 1", 1, None),
            ("seed 001", steps, recompute_decode),
            ("matmuls", steps, matmul_floor),
            ("encoder", steps, no_decode),
        )
    }
    ms = {name: 0.0 for name in graphs}
    for _ in range(args.repeats):  # interleaved, best of N for each
        for name, content in graphs.items():
            t = budget.latency_ms(content, inputs)
            ms[name] = t if ms[name] == 0 else min(ms[name], t)
    enc = ms["encoder"]
    dec = {name: ms[name] - enc for name in ("cached", "seed 001", "matmuls")}
    per_step = (ms["cached"] - ms["cached 1"]) / (steps - 1)
    step = step_us(model, pre, inputs, steps, args.repeats)
    print(
        f"model={args.model} ({model.count_params():,} parameters), max_frames {args.frames}; "
        f"{len(inputs)} sequences of {bench.frames} frames ({bench.hand_frames} with the hand), "
        f"{steps} tokens decoded; LiteRT, 1 thread, best of {args.repeats}"
    )
    print(f"{'':10} {'ms/sequence':>12} {'decoding ms':>12}")
    for name in graphs:
        extra = f" {dec[name]:>12.2f}" if name in dec else ""
        print(f"{name:10} {ms[name]:>12.2f}{extra}")
    print(
        f"decoding: seed 001 / cached = {dec['seed 001'] / dec['cached']:.1f}x (target >= 5x); "
        f"whole sequence {ms['seed 001'] / ms['cached']:.1f}x faster"
    )
    print(
        f"cached decoding = {dec['cached'] / enc:.0%} of the encoder pass (target <= 25%); "
        f"the decoder's matmuls alone = {dec['matmuls'] / enc:.0%}"
    )
    print(
        f"  = set-up (the memory's keys/values) {dec['cached'] - steps * per_step:.2f} ms + "
        f"{steps} steps of {per_step * 1000:.0f} us ({steps * per_step / enc:.0%} of the "
        f"encoder pass; 'cached 1' decodes 1 token)"
    )

    floor, free = step["matmuls"], step["no attention"]
    print(
        f"a step (decoding alone): {step['cached']:.1f} us = {step['cached'] / floor:.2f}x the "
        f"decoder's matmul floor of {floor:.1f} us per step (target <= 1.25x); without its "
        f"attention products {free:.1f} us = {free / floor:.2f}x: the attention costs "
        f"{step['cached'] - free:.1f} us = {(step['cached'] - free) / floor:.0%} of the floor"
    )

    print("\ncached decoding as a share of the encoder pass, by export.quantize:")
    for q in ("fp16", "int8_dynamic"):
        pair = {
            name: export.convert_module(export.inference_module(model, pre, steps, decode), q)
            for name, decode in (("cached", None), ("encoder", no_decode))
        }
        qms = {name: timed(content, inputs, args.repeats) for name, content in pair.items()}
        print(
            f"{q:13} encoder {qms['encoder']:6.2f} ms, decoding "
            f"{qms['cached'] - qms['encoder']:5.2f} ms = "
            f"{(qms['cached'] - qms['encoder']) / qms['encoder']:.0%}"
        )

    quants = ("none", "fp16", "int8_dynamic")
    print(f"\n{'model':8} {'params':>10}" + "".join(f" {q + ' ms':>17} {q + ' MB':>17}" for q in quants))
    for name in args.sizes:
        _, m, p = setup(name, args.frames)
        row = ""
        for q in quants:
            content = export.convert(m, p, q, decode_steps=steps)
            row += f" {timed(content, inputs, args.repeats):>17.2f} {len(content) / 1e6:>17.2f}"
        print(f"{name:8} {m.count_params():>10,}{row}")


if __name__ == "__main__":
    main()
