"""The decodings and the positions of the winners' family, side by side in one run.

1. Inference (LiteRT, 1 thread, the budget's benchmark set: 160-frame sequences, ~96 with the
   hand, 18 characters + EOS decoded, no early stop), one untrained model with both heads:
     encoder    the graph with no decoding at all: the floor of any decoder
     attention  greedy attention decoding with the key/value cache
     ctc        CTC greedy decoding (argmax, collapse, drop blanks): no loop
     joint      the attention search scored with CTC prefix scores
   decoding cost = graph - encoder, and measured alone: graphs of the decoding only, whose input
   is the encoder's output (the encoder's ~2 ms and its noise are not in it); targets, from the
   latter: CTC <= 5% of the encoder pass, joint <= 2x attention.
2. Rotary against learned positions, the same model otherwise: training samples/s (batches from
   the project's pipeline over Kaggle-like lengths, held in memory, rounds alternating) and TFLite
   ms per sequence.
3. With `--against REV`: this tree's joint decoding against the joint decoding of git revision
   REV's aslfr/model/decoding.py, both alone and both whole graphs, interleaved in one run: the
   cost of a change to the decoding (e.g. its rule for clips too short for CTC), as a ratio, and
   the exported size.

    python bench/decoding.py [--model conformer_small] [--frames 128] [--repeats 3] [--against REV]
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

import keras
from export_latency import decoding_alone, encoder_outputs, no_decode

from aslfr.data.layout import CHARACTERS
from aslfr.data.vocab import Vocab
from aslfr.export import budget
from aslfr.export import convert as export
from aslfr.model.config import model_config
from aslfr.model.decoding import transcribe
from aslfr.model.model import build
from aslfr.train.loop import compile_model

from _common import compose
from train_throughput import batches, time_steps


def untrained(name: str, frames: int, *overrides: str):
    cfg = compose([f"model={name}", f"data.max_frames={frames}", *overrides])
    keras.utils.set_random_seed(0)
    return cfg, *budget.untrained(cfg)


def decoding_at(revision: str):
    """aslfr/model/decoding.py as git revision `revision` has it, imported as a module of its own
    (beside this tree's, against the same model code)."""
    root = Path(__file__).resolve().parents[1]
    source = subprocess.run(
        ["git", "show", f"{revision}:aslfr/model/decoding.py"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "decoding_at_revision.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("decoding_at_revision", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def against(revision: str, model, pre, inputs, steps: int, repeats: int) -> None:
    """This tree's joint decoding against `revision`'s: alone and whole, interleaved."""
    module = decoding_at(revision)  # whichever name the revision gives the function
    theirs = functools.partial(getattr(module, "transcribe", None) or module.decode, how="joint")
    ours = functools.partial(transcribe, how="joint")
    alone = {name: decoding_alone(model, steps, fn) for name, fn in (("this tree", ours), (revision, theirs))}
    cost = best_of(alone, encoder_outputs(model, pre, inputs), 5 * repeats)
    whole = {
        name: export.convert_module(export.inference_module(model, pre, steps, fn))
        for name, fn in (("this tree", ours), (revision, theirs))
    }
    ms = best_of(whole, inputs, repeats)
    print(f"\njoint decoding, this tree against {revision} (LiteRT, 1 thread, interleaved):")
    print(f"{'':12} {'alone ms':>9} {'whole ms':>9} {'MB':>7}")
    for name in alone:
        print(f"{name:12} {cost[name]:>9.3f} {ms[name]:>9.2f} {len(whole[name]) / 2**20:>7.2f}")
    print(
        f"this tree / {revision}: decoding alone {cost['this tree'] / cost[revision]:.3f}x, whole graph "
        f"{ms['this tree'] / ms[revision]:.3f}x, size {len(whole['this tree']) / len(whole[revision]):.3f}x"
    )


def best_of(graphs: dict, inputs, repeats: int) -> dict:
    """ms per sequence of each graph, best of `repeats` interleaved passes."""
    ms = dict.fromkeys(graphs, float("inf"))
    for _ in range(repeats):
        for name, content in graphs.items():
            ms[name] = min(ms[name], budget.latency_ms(content, inputs))
    return ms


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="conformer_small")
    ap.add_argument("--frames", type=int, default=128, help="data.max_frames")
    ap.add_argument("--repeats", type=int, default=3, help="best of N passes over the set")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=6, help="training steps per model per round")
    ap.add_argument("--against", metavar="REV", help="also time joint decoding against git revision REV's")
    ap.add_argument("--only-against", action="store_true", help="with --against: only that comparison")
    args = ap.parse_args()

    cfg, model, pre = untrained(args.model, args.frames)
    bench = cfg.budget.benchmark
    steps = int(bench.characters) + 1
    inputs = budget.benchmark_inputs(pre.spec, bench)
    if args.against:
        against(args.against, model, pre, inputs, steps, args.repeats)
        if args.only_against:
            return
    graphs = {"encoder": export.convert_module(export.inference_module(model, pre, steps, no_decode))}
    for how in ("attention", "ctc", "joint"):
        module = export.inference_module(model, pre, steps, functools.partial(transcribe, how=how))
        graphs[how] = export.convert_module(module)
    ms = best_of(graphs, inputs, args.repeats)
    enc = ms["encoder"]
    difference = {how: ms[how] - enc for how in ("attention", "ctc", "joint")}
    alone = {how: decoding_alone(model, steps, functools.partial(transcribe, how=how)) for how in difference}
    cost = best_of(alone, encoder_outputs(model, pre, inputs), 5 * args.repeats)  # ~0.3 ms a pass
    print(
        f"model={args.model} ({model.count_params():,} parameters), max_frames {args.frames}; "
        f"{len(inputs)} sequences of {bench.frames} frames, {steps} tokens decoded; LiteRT, "
        f"1 thread, best of {args.repeats}"
    )
    print(f"{'':10} {'ms/sequence':>12} {'difference':>11} {'alone':>7} {'of encoder':>11}")
    for name, t in ms.items():
        extra = ""
        if name in cost:
            extra = f" {difference[name]:>11.2f} {cost[name]:>7.3f} {cost[name] / enc:>11.1%}"
        print(f"{name:10} {t:>12.2f}{extra}")
    print(
        f"CTC decoding = {cost['ctc'] / enc:.1%} of the encoder pass (target <= 5%); joint = "
        f"{cost['joint'] / cost['attention']:.2f}x attention decoding (target <= 2x)"
    )
    print(f"CTC decodes {cost['attention'] / cost['ctc']:.0f}x faster than attention (CTC head included)")

    print("\nrotary against learned positions (the same model otherwise):")
    rows = {}
    for positions in ("learned", "rope"):
        pcfg, pmodel, ppre = untrained(args.model, args.frames, f"model.encoder.positions={positions}")
        lite = export.convert(pmodel, ppre, decode_steps=steps)
        mcfg = model_config(pcfg.model, pcfg.data, pcfg.trainer.jit, ppre.spec, Vocab(CHARACTERS))
        keras.utils.set_random_seed(0)
        trainable = compile_model(build(mcfg), pcfg, 100, 10)
        rows[positions] = {"model": trainable, "tflite_ms": best_of({"x": lite}, inputs, args.repeats)["x"]}
    data = batches(ppre.spec, mcfg, args.batch, int(pcfg.data.length_step), 2 * args.steps)
    for row in rows.values():  # trace every batch shape, warm up
        for shape in {b["frames"].shape[1]: b for b in data}.values():
            row["model"].train_on_batch(shape, shape["tokens"])
        row["seconds"] = 0.0
    for r in range(2):
        for row in rows.values():
            row["seconds"] += time_steps(row["model"], data, args.steps, r * args.steps)
    n = 2 * args.steps * args.batch
    print(f"{'':10} {'train samples/s':>16} {'TFLite ms':>10}")
    for positions, row in rows.items():
        print(f"{positions:10} {n / row['seconds']:>16.1f} {row['tflite_ms']:>10.2f}")
    print(
        f"rope / learned: training {rows['learned']['seconds'] / rows['rope']['seconds']:.2f}x the "
        f"speed, TFLite {rows['rope']['tflite_ms'] / rows['learned']['tflite_ms']:.2f}x the time"
    )


if __name__ == "__main__":
    main()
