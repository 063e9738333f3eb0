"""The inference-time budget: what a model costs to run the way the competition ran it.

The competition ran each model as TFLite on CPU, 5 hours for 48,000 test sequences and at most
40 MB. `measure` converts a model exactly as `aslfr.export` does and runs it in the LiteRT
interpreter on one thread over a fixed benchmark set of realistic sequences (`budget.benchmark`:
160 frames of which ~96 show the signing hand, decoded for 18 characters + EOS, the Kaggle means),
giving the mean latency per sequence, the file size and the hours projected for the test set.
`probe` does this for the untrained model of a config before any data work, so a sweep never
trains a model it could not ship.

The latency is stated for the reference CPU (aslfr/export/reference.py): what this machine
measures, x this CPU's speed relative to it (`cpu_factor`), so that whether a configuration is
within budget does not depend on which machine of a sweep ran it. Both figures are logged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from aslfr import names
from aslfr.config import Benchmark, Budget, Config, Quantize
from aslfr.data import layout
from aslfr.data.features import FeatureSpec, NormStats
from aslfr.data.vocab import Vocab
from aslfr.export import competition, reference
from aslfr.export.convert import Preprocessing, TFLiteModel, convert, write_export
from aslfr.model.config import model_config
from aslfr.model.model import FingerspellingModel, build
from aslfr.runtime import quiet

log = logging.getLogger(__name__)


@dataclass
class Measurement:
    latency_ms: float  # mean per sequence on the reference CPU (latency_ms_raw x cpu_factor): budgeted
    latency_ms_raw: float  # mean per sequence, LiteRT, 1 thread, on this machine
    cpu_factor: float | None  # this CPU's speed relative to the reference CPU; None: not scaled
    model_mb: float  # size of the .tflite file (MB = 10^6 bytes, as Kaggle counted)
    projected_hours: float  # latency_ms x budget.test_sequences
    latency_budget_ms: float
    model_budget_mb: float

    @property
    def ok(self) -> bool:
        return self.latency_ms <= self.latency_budget_ms and self.model_mb <= self.model_budget_mb

    def why(self) -> str:
        if self.cpu_factor is None:
            where = "on this CPU (budget.reference.scale=false)"
        else:
            where = (
                f"on the reference CPU ({self.latency_ms_raw:.2f} ms on this one, which runs the "
                f"reference graph {self.cpu_factor:.2f}x as fast)"
            )
        parts = [
            f"latency {self.latency_ms:.2f} ms per sequence {where} "
            f"({'<=' if self.latency_ms <= self.latency_budget_ms else '>'} "
            f"budget.latency_ms={self.latency_budget_ms:g}; "
            f"{self.projected_hours:.2f} h for the test set)",
            f"model {self.model_mb:.2f} MB ({'<=' if self.model_mb <= self.model_budget_mb else '>'}"
            f" budget.model_mb={self.model_budget_mb:g})",
        ]
        return f"{'within budget' if self.ok else 'OVER BUDGET'}: " + "; ".join(parts)

    def advice(self) -> str:
        """What brings a configuration within budget, for the limits it exceeds (figures in
        docs/benchmarks.md: fp16 halves the file but is not faster on CPU; int8_dynamic quarters it
        and speeds up the decoder's steps; every character re-runs the decoder)."""
        fixes = []
        if self.latency_ms > self.latency_budget_ms:
            fixes.append(
                "for latency: a shallower or narrower decoder (model.decoder.depth/"
                "width: it runs once per character), then encoder, or "
                "export.quantize=int8_dynamic, or raise budget.latency_ms"
            )
        if self.model_mb > self.model_budget_mb:
            fixes.append(
                "for size: export.quantize=fp16 (half the file) or int8_dynamic (a "
                "quarter), fewer or narrower layers, or raise budget.model_mb"
            )
        return "; ".join(fixes)

    def metrics(self) -> dict:
        """The keys every run logs (W&B and summary.json); infer/cpu_factor only when scaled."""
        factor = {} if self.cpu_factor is None else {names.INFER_CPU_FACTOR: self.cpu_factor}
        return {
            names.INFER_LATENCY_MS: self.latency_ms,
            names.INFER_LATENCY_MS_RAW: self.latency_ms_raw,
            **factor,
            names.INFER_MODEL_MB: self.model_mb,
            names.INFER_PROJECTED_HOURS: self.projected_hours,
            names.BUDGET_OK: self.ok,
        }


def benchmark_inputs(spec: FeatureSpec, bench: Benchmark) -> list[np.ndarray]:
    """`bench.sequences` raw sequences [bench.frames, len(spec.columns)]: landmarks in [0.2, 0.8],
    the right (signing) hand visible in a central stretch of `bench.hand_frames` frames, the left
    hand never, face and pose always (as in a typical Kaggle clip)."""
    rng = np.random.default_rng(bench.seed)
    n, visible = bench.frames, bench.hand_frames
    start = (n - visible) // 2
    part = np.array([layout.parse_column(c)[1] for c in spec.columns])
    out = []
    for _ in range(bench.sequences):
        raw = rng.uniform(0.2, 0.8, (n, len(spec.columns))).astype(np.float32)
        raw[:, part == "left_hand"] = np.nan
        hidden = np.ones(n, bool)
        hidden[start : start + visible] = False
        raw[np.ix_(hidden, part == "right_hand")] = np.nan
        out.append(raw)
    return out


def latency_ms(content: bytes, inputs: list[np.ndarray], threads: int = 1, passes: int = 1) -> float:
    """Mean ms per sequence in the LiteRT interpreter on this machine, after one warm-up call;
    with several passes over `inputs`, the best pass (the others were slowed by something else
    running)."""
    model = TFLiteModel(content, threads)
    model(inputs[0])
    return reference.best_pass_ms(model, inputs, passes)


def measure(
    model: FingerspellingModel,
    pre: Preprocessing,
    budget: Budget,
    quantize: Quantize = Quantize.none,
    shipped: bytes | None = None,
) -> Measurement:
    """Latency and size of `model` as exported. The latency graph decodes exactly
    `benchmark.characters` + 1 tokens (no early stop), so trained and untrained models are
    timed alike, and the latency is stated for the reference CPU when `budget.reference.scale`;
    the size is that of `shipped` (the real export) when given."""
    timed = convert(model, pre, quantize, decode_steps=budget.benchmark.characters + 1)
    return measure_graph(timed, pre.spec.columns, budget, shipped)


def measure_graph(
    timed: bytes, columns: Sequence[str], budget: Budget, shipped: bytes | None = None
) -> Measurement:
    """`measure` of a converted latency graph (`benchmark.characters` + 1 decoder steps) whose
    input holds `columns`."""
    inputs = benchmark_inputs(SimpleNamespace(columns=list(columns)), budget.benchmark)
    raw = latency_ms(timed, inputs, budget.threads, budget.benchmark.passes)
    factor = reference.cpu_factor(budget.reference) if budget.reference.scale else None
    ms = raw * factor if factor is not None else raw
    size = len(shipped if shipped is not None else timed) / 1e6
    return Measurement(
        latency_ms=ms,
        latency_ms_raw=raw,
        cpu_factor=factor,
        model_mb=size,
        projected_hours=ms * budget.test_sequences / 3.6e6,
        latency_budget_ms=budget.latency_ms,
        model_budget_mb=budget.model_mb,
    )


def untrained(cfg: Config) -> tuple[FingerspellingModel, Preprocessing]:
    """The untrained model of this config and its preprocessing, with no data: the feature
    layout comes from the config, the vocabulary is the competition's 59 characters, the
    normalization is the identity."""
    spec = FeatureSpec.from_config(cfg.data.features)
    model = build(model_config(cfg.model, cfg.data, cfg.trainer.jit, spec, Vocab(layout.CHARACTERS)))
    return model, Preprocessing(spec, NormStats.identity(spec.n_features), cfg.data.max_frames)


def probe(cfg: Config) -> Measurement:
    """Measure the untrained model of this config."""
    model, pre = untrained(cfg)
    return measure(model, pre, cfg.budget, cfg.export.quantize)


def export_and_measure(
    model: FingerspellingModel,
    pre: Preprocessing,
    run_dir: Path,
    budget: Budget,
    quantize: Quantize = Quantize.none,
    zip_: bool = False,
    data_root: Path | None = None,
    val_ids: Sequence[int] | None = None,
) -> dict:
    """Export `model` to run_dir (model.tflite, inference_args.json[, submission.zip]), measure
    it against the budget and, given the data root and validation sequence ids, score the
    exported file on them by the competition's rules. -> the metrics to log."""
    t0 = time.perf_counter()
    content = convert(model, pre, quantize)
    path = write_export(run_dir, content, pre, zip_)
    t1 = time.perf_counter()
    m = measure(model, pre, budget, quantize, shipped=content)
    report = {**m.metrics(), names.EXPORT_QUANTIZE: quantize}
    log.info(
        "exported %s (%s, %.0f s; measured in %.0f s): %s",
        path,
        quantize,
        t1 - t0,
        time.perf_counter() - t1,
        m.why(),
    )
    if data_root is not None and val_ids is not None and len(val_ids):
        with quiet():  # (competition.py stands alone: its interpreter's start-up line held here)
            result = competition.score(
                path, Path(run_dir) / names.INFERENCE_ARGS_FILE, data_root, list(val_ids)
            )
        report[names.INFER_VAL_SCORE] = result.score
        log.info(
            "the exported file scores %.4f on the %d validation sequences (LiteRT, competition rules)",
            result.score,
            result.n_sequences,
        )
    report[names.EXPORT_SECONDS] = time.perf_counter() - t0
    return report
