"""XLA (`trainer.jit=true`) against the default graph execution, training the default model with
its auxiliary CTC loss, side by side in one run.

  default         trainer.jit=false: CTC from TensorFlow's C++ kernel (sparse labels)
  dense CTC       trainer.jit=false, but CTC from dense labels (the ops XLA needs): the cost of
                  the CTC path alone
  XLA             trainer.jit=true (dense-label CTC, the whole train step compiled by XLA)

Same weights at the start, same batches (the project's pipeline over Kaggle-like lengths, held in
memory), rounds alternating so machine noise hits all rows alike.

    python bench/xla.py [--model small] [--batch 64] [--frames 64] [--steps 10] [--rounds 3]
"""

from __future__ import annotations

import argparse
import dataclasses

from aslfr.data.features import FeatureSpec
from aslfr.data.layout import CHARACTERS
from aslfr.data.vocab import Vocab
from aslfr.model import model as aslfr_model
from aslfr.model.config import model_config
from aslfr.train.loop import compile_model

from _common import compose
from train_throughput import batches, time_steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="small")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--frames", type=int, default=64, help="data.max_frames (synthetic: 64)")
    ap.add_argument("--steps", type=int, default=10, help="steps per configuration per round")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    import keras

    rows = {"default": ("false", False), "dense CTC": ("false", True), "XLA": ("true", True)}
    models, bs = {}, None
    for name, (jit, dense) in rows.items():
        cfg = compose(
            [
                f"model={args.model}",
                f"trainer.batch_size={args.batch}",
                f"data.max_frames={args.frames}",
                f"trainer.jit={jit}",
            ]
        )
        spec = FeatureSpec.from_config(cfg.data.features)
        mcfg = dataclasses.replace(
            model_config(cfg.model, cfg.data, cfg.trainer.jit, spec, Vocab(CHARACTERS)), ctc_xla=dense
        )
        bs = bs or batches(spec, mcfg, args.batch, int(cfg.data.length_step), args.steps * args.rounds)
        keras.utils.set_random_seed(0)
        models[name] = compile_model(aslfr_model.build(mcfg), cfg, 100, 10)
    for model in models.values():  # trace every batch shape, compile, warm up
        for shape in {b["frames"].shape[1]: b for b in bs}.values():
            model.train_on_batch(shape, shape["tokens"])
    seconds = dict.fromkeys(models, 0.0)
    for r in range(args.rounds):
        for name, model in models.items():
            seconds[name] += time_steps(model, bs, args.steps, r * args.steps)
    n = args.rounds * args.steps * args.batch
    print(
        f"model={args.model} (ctc_weight {mcfg.ctc_weight}), batch {args.batch}, "
        f"max_frames {args.frames}, {args.rounds} x {args.steps} steps per row"
    )
    print(f"{'':12} {'samples/s':>10} {'vs default':>11}")
    for name in models:
        print(f"{name:12} {n / seconds[name]:>10.1f} {seconds['default'] / seconds[name]:>10.2f}x")


if __name__ == "__main__":
    main()
