"""The reference CPU: one fixed graph timed on every machine, so that a latency measured on any
of them can be stated for one CPU.

The agents of one sweep run on different machines, and machines of the same kind differ by up to
2.6x: measured as they are, the same configuration could be within budget on one agent and over
it on the next. So `budget.latency_ms` is stated for a reference CPU, on which the reference
graph below takes `budget.reference.ms`. Each machine times the graph itself (LiteRT, 1 thread,
the best of many short passes) and scales what it measures by

    cpu_factor = budget.reference.ms / this machine's time for the graph
    latency on the reference CPU = latency measured here x cpu_factor

(a machine twice as fast as the reference has cpu_factor 2). The time is measured once per
machine and boot (a virtual machine can come back on other hardware after a reboot) and cached
in `budget.reference.cache_dir`, keyed also by GRAPH_VERSION and the LiteRT and TensorFlow
versions (the converter builds the graph, the interpreter runs it): a change to any of them
measures again. The first process on a machine measures while the others wait on a file lock,
so agents started together do not slow each other's measurement.

The graph is a miniature of our models, built from fixed seeds and depending on neither the
config nor the model code (so that neither can move the yardstick): two transformer encoder
blocks with a depthwise temporal convolution over 128 frames of 128 features, then 19 steps of a
decoder in a loop (cross-attention over the encoder output, an MLP, argmax, embedding lookup),
with the TFLite ops our exports are made of (FULLY_CONNECTED, BATCH_MATMUL, SOFTMAX,
DEPTHWISE_CONV_2D, WHILE, GATHER, ARG_MAX) and their mix of arithmetic (the encoder) and
per-operation overhead (the decoder's small steps). Changing it changes every machine's time:
bump GRAPH_VERSION and measure `budget.reference.ms` again on the reference CPU
(`python -m aslfr.export.reference --fresh` there).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import importlib.metadata
import json
import logging
import math
import os
import platform
import time
from pathlib import Path

import filelock
import numpy as np
import tensorflow as tf

from aslfr.atomic import host, write_json
from aslfr.config import Reference
from aslfr.export.convert import TFLiteModel, convert_module

log = logging.getLogger(__name__)

GRAPH_VERSION = 1  # bump whenever `graph` changes, and re-measure budget.reference.ms
FRAMES, WIDTH, HEADS, KERNEL = 128, 128, 4, 15  # the encoder: frames, features, heads, conv taps
DECODER_WIDTH, STEPS, VOCAB = 96, 19, 62  # the decoder: width, steps (18 characters + EOS), tokens
# Timing: the best of many short passes. A pass of a few calls is short enough that, on a machine
# where something else is running, some passes run undisturbed; the best is the machine's speed.
CALLS, PASSES = 5, 40
SEED = 0


# -- the graph --------------------------------------------------------------------------------------
def _weights(rng: np.random.Generator, *shape: int) -> tf.Tensor:
    return tf.constant(rng.normal(0.0, 1.0 / math.sqrt(shape[0]), shape).astype(np.float32))


def _layer_norm(x):
    mean, var = tf.nn.moments(x, axes=[-1], keepdims=True)
    return (x - mean) * tf.math.rsqrt(var + 1e-6)


def _attention(q, k, v, heads: int):
    """q [Lq, W], k and v [Lk, W] -> [Lq, W], `heads` heads."""

    def split(x):
        return tf.transpose(tf.reshape(x, [-1, heads, x.shape[-1] // heads]), [1, 0, 2])

    q, k, v = split(q), split(k), split(v)
    scores = tf.matmul(q, k, transpose_b=True) / math.sqrt(q.shape[-1])
    out = tf.matmul(tf.nn.softmax(scores), v)  # [H, Lq, D]
    return tf.reshape(tf.transpose(out, [1, 0, 2]), [-1, heads * v.shape[-1]])


def _module() -> tf.Module:
    rng = np.random.default_rng(SEED)
    w, d = WIDTH, DECODER_WIDTH
    blocks = [
        {
            "qkv": _weights(rng, w, 3 * w),
            "out": _weights(rng, w, w),
            "conv": _weights(rng, KERNEL, w, 1),
            "up": _weights(rng, w, 2 * w),
            "down": _weights(rng, 2 * w, w),
        }
        for _ in range(2)
    ]
    to_memory = _weights(rng, w, 2 * d)  # the decoder's keys and values, projected once
    embed = _weights(rng, VOCAB, d)
    query, cross_out = _weights(rng, d, d), _weights(rng, d, d)
    up, down, logits_w = _weights(rng, d, 2 * d), _weights(rng, 2 * d, d), _weights(rng, d, VOCAB)
    module = tf.Module()

    @tf.function(input_signature=[tf.TensorSpec([FRAMES, WIDTH], tf.float32, name="inputs")])
    def serve(inputs):
        x = inputs
        for b in blocks:
            q, k, v = tf.split(tf.matmul(_layer_norm(x), b["qkv"]), 3, axis=-1)
            x = x + tf.matmul(_attention(q, k, v, HEADS), b["out"])
            conv = tf.nn.depthwise_conv2d(
                _layer_norm(x)[None, :, None, :], b["conv"][:, None], [1, 1, 1, 1], "SAME"
            )
            x = x + tf.reshape(conv, [FRAMES, w])
            x = x + tf.matmul(tf.nn.gelu(tf.matmul(_layer_norm(x), b["up"])), b["down"])
        keys, values = tf.split(tf.matmul(_layer_norm(x), to_memory), 2, axis=-1)

        def step(t, token, out):
            h = tf.gather(embed, token)[None]  # [1, d]
            h = h + tf.matmul(_attention(tf.matmul(_layer_norm(h), query), keys, values, HEADS), cross_out)
            h = h + tf.matmul(tf.nn.gelu(tf.matmul(_layer_norm(h), up)), down)
            token = tf.argmax(tf.matmul(_layer_norm(h), logits_w)[0], output_type=tf.int32)
            return t + 1, token, tf.tensor_scatter_nd_update(out, [[t]], [token])

        _, _, tokens = tf.while_loop(
            lambda t, token, out: t < STEPS,
            step,
            (tf.constant(0), tf.constant(0), tf.zeros([STEPS], tf.int32)),
        )
        return {"outputs": tf.one_hot(tokens, VOCAB)}

    module.serve = serve
    return module


@functools.cache
def graph() -> bytes:
    """The reference graph as a TFLite flatbuffer: signature serving_default, input `inputs`
    [FRAMES, WIDTH], output `outputs` [STEPS, VOCAB], like an export's."""
    return convert_module(_module())


def graph_input() -> np.ndarray:
    return np.random.default_rng(SEED).uniform(-1.0, 1.0, (FRAMES, WIDTH)).astype(np.float32)


def best_pass_ms(call, inputs: list[np.ndarray], passes: int) -> float:
    """Mean ms per call of `call` over `inputs`, the best of `passes` passes over them (the
    others were slowed by something else running)."""
    best = math.inf
    for _ in range(passes):
        t0 = time.perf_counter()
        for x in inputs:
            call(x)
        best = min(best, (time.perf_counter() - t0) * 1000 / len(inputs))
    return best


def time_graph() -> float:
    """ms per call of the reference graph on this machine: LiteRT, 1 thread, after a warm-up."""
    model = TFLiteModel(graph(), threads=1)
    x = graph_input()
    for _ in range(CALLS):
        model(x)
    return best_pass_ms(model, [x] * CALLS, PASSES)


# -- this machine's figure, cached ------------------------------------------------------------------
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def cache_path(cache_dir: Path) -> Path:
    """One file per machine: the host name is not enough (cloned virtual machines share it), so
    the CPU model and the machine id join it."""
    machine = f"{cpu_model()}|{_read('/etc/machine-id')}"
    return Path(cache_dir).expanduser() / (
        f"reference-{host()}-{hashlib.sha256(machine.encode()).hexdigest()[:12]}.json"
    )


def key() -> dict:
    """What the cached time is valid for: a change to any of these measures again."""
    return {
        "graph_version": GRAPH_VERSION,
        "litert": importlib.metadata.version("ai-edge-litert"),
        "tensorflow": tf.__version__,
        "boot_id": _read("/proc/sys/kernel/random/boot_id"),  # empty where there is none
    }


def _cached(path: Path) -> float | None:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or any(doc.get(k) != v for k, v in key().items()):
        return None
    ms = doc.get("ms")
    return float(ms) if isinstance(ms, int | float) and ms > 0 else None


def machine_ms(cache_dir: Path, fresh: bool = False) -> float:
    """This machine's time for the reference graph (ms per call): from the cache, or measured
    (`fresh`: always) and cached."""
    path = cache_path(cache_dir)
    if not fresh and (ms := _cached(path)) is not None:
        return ms
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(f"{path}.lock")
        lock.acquire()
    except OSError as e:  # a read-only cache: measure in every process rather than fail
        log.warning("cannot cache the reference CPU timing in %s (%s): measuring it each time", path, e)
        return time_graph()
    try:
        if not fresh and (ms := _cached(path)) is not None:  # measured while this one waited
            return ms
        ms = time_graph()
        doc = {**key(), "ms": ms, "host": host(), "cpu": cpu_model(), "measured": time.time()}
        try:
            write_json(path, doc, sort_keys=True)
        except OSError as e:
            log.warning("cannot cache the reference CPU timing in %s (%s)", path, e)
        log.info(
            "this CPU runs the reference graph in %.3f ms (measured once per machine and boot: %s)", ms, path
        )
        return ms
    finally:
        lock.release()


def cpu_factor(reference: Reference) -> float:
    """This CPU's speed relative to the reference CPU (`budget.reference`): a latency measured
    here x the factor = the latency on the reference CPU."""
    return reference.ms / machine_ms(Path(reference.cache_dir))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m aslfr.export.reference",
        description="This CPU's time for the reference graph: budget.reference.ms on the reference CPU",
    )
    default = Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")) / "aslfr"  # budget.reference.cache_dir's
    ap.add_argument("--cache-dir", type=Path, default=default)
    ap.add_argument("--fresh", action="store_true", help="measure again and replace the cached figure")
    args = ap.parse_args(argv)
    ms = machine_ms(args.cache_dir, fresh=args.fresh)
    print(
        f"{ms:.4f} ms per call of the reference graph v{GRAPH_VERSION} on {cpu_model()} ({host()}); "
        f"cache file: {cache_path(args.cache_dir)}"
    )


if __name__ == "__main__":
    main()
