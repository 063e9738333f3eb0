"""Raw parquet -> features -> on-disk cache, participant-grouped folds and normalization statistics.

    aslfr-prepare                              # the synthetic default
    aslfr-prepare data=kaggle data.root=DIR    # the competition's files

takes the same Hydra config as train.py (conf/prepare.yaml), builds (or reuses) the feature cache,
prints a summary and writes its log, `folds.csv` and `features.json` to `<paths.data_dir>/prepare/`
(replaced each time; `hydra.run.dir=DIR` puts them elsewhere), not to a new directory in outputs/.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import hydra
import numpy as np
from omegaconf import DictConfig
from tqdm.auto import tqdm

from aslfr import names
from aslfr.atomic import write_json
from aslfr.config import Config, Data, DataSource, OnBadSequence, register, typed
from aslfr.data import cache, folds, layout, reader, synthetic
from aslfr.data.features import FeatureSpec, NormStats, compute_stats
from aslfr.data.vocab import Vocab
from aslfr.errors import DataError, exit_on_error
from aslfr.runtime import import_tensorflow

log = logging.getLogger(__name__)

SKIP_REASONS = {
    "unknown_characters": "phrase has characters outside character_to_prediction_index.json",
    "phrase_too_long": "phrase longer than the model can emit (data.max_phrase_length)",
    "missing_in_parquet": "sequence_id absent from its parquet file",
    "no_hands": "hands never visible",
}


def resolve_root(data: Data, data_dir: Path, progress: bool = True) -> Path:
    """The directory in the Kaggle layout: data.root, or the synthetic set (generated once)."""
    if data.source == DataSource.synthetic:
        spec = synthetic.SyntheticSpec(
            n_sequences=data.n_sequences,
            n_signers=data.n_signers,
            seed=data.synthetic.seed,
            sequences_per_file=data.synthetic.sequences_per_file,
            face=data.synthetic.face,
            n_supplemental=data.synthetic.n_supplemental,
        )
        return synthetic.ensure(spec, Path(data_dir).resolve(), progress=progress)
    root = Path(data.root).expanduser().resolve()
    if not root.is_dir():
        raise DataError(f"data.root={root} is not a directory")
    return root


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _ordered_map(fn: Callable, items: Iterable, workers: int) -> Iterator:
    """fn over items on `workers` threads, results in order, at most workers+1 in flight."""
    items = iter(items)
    with ThreadPoolExecutor(max(1, workers)) as pool:
        pending = deque(pool.submit(fn, x) for x in itertools.islice(items, workers + 1))
        try:
            while pending:
                result = pending.popleft().result()
                pending.extend(pool.submit(fn, x) for x in itertools.islice(items, 1))
                yield result
        finally:
            for f in pending:
                f.cancel()


def _bad_sequence(reason: str, row, root: Path, detail: str) -> DataError:
    return DataError(
        f"{root / row.csv} line {row.line} (sequence_id {row.sequence_id}): "
        f"{SKIP_REASONS[reason]}{detail}; fix or remove the row, or set "
        "data.on_bad_sequence=skip to skip such sequences"
    )


def prepare(data: Data, cache_dir: Path, data_dir: Path, progress: bool = True) -> cache.Prepared:
    """The prepared data set for this config: from the cache, or read, extracted and cached.

    The cache key holds everything that changes what an entry contains (the files, the feature
    spec, data.max_phrase_length). data.on_bad_sequence is not in it -- a strict build that
    succeeds writes exactly what a skipping build writes -- but is checked against the entry:
    with `error`, an entry that recorded skips stops with the message a fresh build would give
    (its first skip, named by file and line). One process builds a key at a time
    (`cache.build_lock`); the others wait, then reuse its entry."""
    strict = data.on_bad_sequence == OnBadSequence.error
    root = resolve_root(data, data_dir, progress)
    spec = FeatureSpec.from_config(data.features)
    index = reader.read_index(root, data.use_supplemental)
    vocab = Vocab.from_json(root / layout.CHARACTER_MAP_JSON)
    max_len = data.max_phrase_length
    reader.check_files(root, index)
    files = list(dict.fromkeys(index["path"]))  # first-appearance order
    key = cache.make_key(
        {
            "features": spec.to_dict(),
            "max_phrase_length": max_len,
            "csv": {n: _sha256(root / n) for n in sorted(set(index["csv"]))},
            "character_map": _sha256(root / layout.CHARACTER_MAP_JSON),
            "parquet": [(f, (root / f).stat().st_size, (root / f).stat().st_mtime_ns) for f in files],
        }
    )
    cache_dir = Path(cache_dir)
    verify = data.cache.verify
    if cache_dir.is_dir():
        cache.clean_stale(cache_dir)

    def reuse() -> cache.Prepared | None:
        """The entry, if there is one this config may use; with `error`, an entry that skipped
        sequences raises the error a fresh build raises."""
        hit = cache.load(cache_dir, key, verify)
        if hit is None:
            return None
        if strict and hit.meta["skipped"]:
            first = hit.meta.get("first_skip") or {}
            # the CSVs are in the key: the row is the one the entry's build skipped first
            row = index[index.sequence_id == first.get("sequence_id")]
            if row.empty:  # an entry from before first_skip was recorded: a build finds it
                log.info(
                    "feature cache: %s skipped sequences; rebuilding to report the first "
                    "one (data.on_bad_sequence=error)",
                    hit.path,
                )
                return None
            raise _bad_sequence(first["reason"], next(row.itertuples(index=False)), root, first["detail"])
        log.info("feature cache: reusing %s", hit.path)
        hit.meta.update(cache_hit=True, root=str(root), source=data.source)
        return hit

    if (hit := reuse()) is not None:
        return hit
    with cache.build_lock(cache_dir, key):
        if (hit := reuse()) is not None:  # built by the process this one waited for
            return hit
        prepared = _build(data, root, spec, index, vocab, max_len, files, cache_dir, key, strict, progress)
    log.info(
        "feature cache: built %s (%d sequences kept of %d, %.1f s)",
        prepared.path,
        len(prepared),
        prepared.meta["n_listed"],
        prepared.meta["seconds"],
    )
    prepared.meta["cache_hit"] = False
    return prepared


def _build(
    data: Data,
    root: Path,
    spec: FeatureSpec,
    index,
    vocab: Vocab,
    max_len: int,
    files: list[str],
    cache_dir: Path,
    key: str,
    strict: bool,
    progress: bool,
) -> cache.Prepared:
    """Read the listed sequences, extract their features and publish the cache entry `key`
    (the caller holds its build lock). Bad sequences raise (strict) or are skipped and counted;
    the first skip is recorded in meta.json so that a later strict run reports it."""
    skipped: Counter = Counter()
    examples: dict[str, list[int]] = {}
    first_skip: dict | None = None

    def skip(reason: str, row, detail: str = "") -> None:
        nonlocal first_skip
        if strict:
            raise _bad_sequence(reason, row, root, detail)
        if first_skip is None:
            first_skip = {"reason": reason, "sequence_id": int(row.sequence_id), "detail": detail}
        skipped[reason] += 1
        examples.setdefault(reason, [])
        if len(examples[reason]) < 5:
            examples[reason].append(int(row.sequence_id))

    rows = list(index.itertuples(index=False))
    readable = np.ones(len(rows), bool)
    for pos, row in enumerate(rows):
        if unknown := vocab.unknown(row.phrase):
            skip("unknown_characters", row, f": {unknown!r}")
            readable[pos] = False
        elif len(row.phrase) > max_len:
            skip("phrase_too_long", row, f": {len(row.phrase)} > {max_len} characters")
            readable[pos] = False

    wanted: dict[str, dict[int, int]] = {f: {} for f in files}
    for pos in np.flatnonzero(readable):
        wanted[rows[pos].path][int(rows[pos].sequence_id)] = int(pos)
    jobs = [f for f in files if wanted[f]]

    t0 = time.perf_counter()
    # disable=None: a bar only on a terminal (a log file would get every redraw)
    bar = tqdm(
        total=len(jobs), desc="reading landmark files", unit="file", disable=None if progress else True
    )
    with cache.Writer(cache_dir, key, (spec.n_points, len(spec.axes))) as writer, bar:

        def read(job: tuple[int, str]):
            k, rel = job
            with open(writer.shard(str(k)), "wb") as sink:
                return k, reader.read_file(
                    root, rel, rows[next(iter(wanted[rel].values()))].csv, spec, wanted[rel], sink
                )

        for k, results in _ordered_map(read, enumerate(jobs), data.num_workers):
            kept = []
            for r in results:
                row = rows[r.position]
                if r.status == "missing_in_parquet":
                    skip(r.status, row, f" ({row.path})")
                elif r.status == "no_hands":
                    skip(r.status, row, f" in {r.n_raw_frames} frames")
                else:
                    kept.append(r)
            writer.append_shard(
                writer.shard(str(k)),
                [r.n_frames for r in kept],
                [
                    {
                        "sequence_id": rows[r.position].sequence_id,
                        "participant_id": rows[r.position].participant_id,
                        "file_id": rows[r.position].file_id,
                        "phrase": rows[r.position].phrase,
                        "n_raw_frames": r.n_raw_frames,
                        "dominant_left": r.dominant_left,
                    }
                    for r in kept
                ],
            )
            bar.update()
        meta = {
            "root": str(root),
            "source": data.source,
            "features": spec.to_dict(),
            "characters": vocab.chars,
            "max_phrase_length": max_len,
            "n_listed": len(rows),
            "n_files": len(jobs),
            "skipped": dict(skipped),
            "skipped_examples": examples,
            "first_skip": first_skip,
            "built_by": cache.owner(),
            "seconds": round(time.perf_counter() - t0, 3),
        }
        return writer.finish(meta)


@dataclass
class DataSplit:
    prepared: cache.Prepared
    spec: FeatureSpec
    vocab: Vocab
    fold: np.ndarray  # fold of every sequence
    train: np.ndarray  # sequence indices
    val: np.ndarray
    stats: NormStats


def setup(data: Data, cache_dir: Path, data_dir: Path, run_dir: Path, progress: bool = True) -> DataSplit:
    """prepare + folds + normalization statistics; writes folds.csv and features.json to run_dir."""
    prepared = prepare(data, cache_dir, data_dir, progress)
    if len(prepared) == 0:
        raise DataError(
            f"no usable sequence in {prepared.meta['root']} (all skipped: {prepared.meta['skipped']})"
        )
    # Folds come from the primary listing (every row of train.csv), not from the loaded rows:
    # skips, feature options and supplemental rows never move a signer to another fold.
    listing = reader.read_index(Path(prepared.meta["root"]), use_supplemental=False)
    fold = folds.assign_folds(
        prepared.participant_id, data.n_folds, data.split_seed, listing=listing["participant_id"].to_numpy()
    )
    train, val = folds.split(fold, data.fold, data.n_folds)
    run_dir = Path(run_dir)
    folds.write_folds_csv(run_dir / names.FOLDS_FILE, prepared.sequence_id, prepared.participant_id, fold)
    spec = FeatureSpec.from_config(data.features)
    stats = compute_stats(prepared.frames, prepared.offsets, train, transform=features_fn(spec))
    write_features_json(run_dir / names.FEATURES_FILE, spec, stats, prepared, data)
    return DataSplit(prepared, spec, Vocab(prepared.meta["characters"]), fold, train, val, stats)


def features_fn(spec: FeatureSpec):
    """numpy [n, points, axes] -> [n, features]: the pipeline's own per-frame features."""
    if not spec.hand_relative:
        return None
    tf = import_tensorflow()  # only needed for the features computed by TensorFlow ops

    from aslfr.data.pipeline import frame_features

    return lambda block: frame_features(tf.constant(block), spec).numpy()


def write_features_json(
    path: Path, spec: FeatureSpec, stats: NormStats, prepared: cache.Prepared, data: Data
) -> None:
    """What inference needs to preprocess raw frames exactly as training did."""
    doc = {
        "features": spec.to_dict(),
        "stats": stats.to_dict(),
        "max_frames": data.max_frames,
        "characters": prepared.meta["characters"],
        "max_phrase_length": data.max_phrase_length,
        "cache_key": prepared.meta["key"],
        "data_root": prepared.meta["root"],
    }
    write_json(path, doc)


def summary(split: DataSplit, data: Data) -> str:
    """A human-readable account of what was read, kept and skipped, and how the folds look."""
    p, meta = split.prepared, split.prepared.meta
    n_skipped = sum(meta["skipped"].values())
    lines = [
        f"data: {meta['root']} ({meta['source']}), {meta['n_files']} landmark file(s)",
        f"sequences: {meta['n_listed']} read, {len(p)} kept, {n_skipped} skipped",
    ]
    for reason, n in sorted(meta["skipped"].items(), key=lambda kv: -kv[1]):
        ids = ", ".join(map(str, meta["skipped_examples"].get(reason, [])))
        lines.append(f"  skipped {n}: {SKIP_REASONS[reason]} [{reason}] (e.g. sequence_id {ids})")
    raw, kept = p.n_raw_frames, p.lengths
    for name, a in (("raw frames per sequence", raw), ("frames kept per sequence", kept)):
        lines.append(f"{name}: mean {a.mean():.1f}, median {np.median(a):.0f}, min {a.min()}, max {a.max()}")
    over = int((kept > data.max_frames).sum())
    mirrored = "mirrored" if split.spec.mirror else "not mirrored: data.features.mirror=false"
    lines.append(
        f"longer than data.max_frames={data.max_frames} (resampled): {over}; "
        f"left-dominant ({mirrored}): {int(p.dominant_left.sum())}"
    )
    spec, axes = split.spec, len(split.spec.axes)
    relative = (
        f" + {layout.HAND_POINTS - 1} hand points relative to the wrist x {axes}"
        if spec.hand_relative
        else ""
    )
    built = "reused" if meta.get("cache_hit") else f"built in {meta['seconds']:.1f} s"
    lines.append(
        f"features: {spec.n_points} points x {axes} axes{relative} = {spec.n_features} "
        f"per frame, from {len(spec.columns)} columns; cache {built}: {p.path}"
    )
    lines.append("fold  signers  sequences")
    for k in range(data.n_folds):
        sel = split.fold == k
        lines.append(f"{k:>4}  {len(np.unique(p.participant_id[sel])):>7}  {int(sel.sum()):>9}")
    k = data.fold
    lines.append(
        f"data.fold={k}: {len(split.train)} training / {len(split.val)} validation "
        f"sequences ({len(np.unique(p.participant_id[split.train]))} / "
        f"{len(np.unique(p.participant_id[split.val]))} signers)"
    )
    return "\n".join(lines)


def setup_from_config(cfg: Config, progress: bool = True) -> DataSplit:
    """`setup` with the `data` group, in the directories of `paths`."""
    return setup(cfg.data, cfg.paths.cache_dir, cfg.paths.data_dir, cfg.paths.output_dir, progress)


# conf/ of the repository, by absolute path: a relative one would be looked up as a Python
# package when the console script (aslfr-prepare) runs this module
CONF = str(Path(__file__).resolve().parents[2] / "conf")


@hydra.main(version_base="1.3", config_path=CONF, config_name="prepare")
@exit_on_error
def main(cfg: DictConfig) -> None:
    config = typed(cfg)
    split = setup_from_config(config)  # (the config itself: aslfr-prepare --cfg job)
    log.info("\n%s", summary(split, config.data))


def cli() -> None:
    """`aslfr-prepare` / `python -m aslfr.data.prepare`."""
    register()  # the same config as train.py: ${stamp:} in hydra.sweep.dir
    main()


if __name__ == "__main__":
    cli()
