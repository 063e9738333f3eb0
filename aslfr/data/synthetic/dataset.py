"""The data set: what to generate (`SyntheticSpec`), its plan, and writing it (`generate`, `ensure`).

The plan (`_plan`) draws the signers, the file and sequence ids, the phrases and who signs what for
train.csv and supplemental_metadata.csv; each decision draws from its own random stream, so the
sequences do not depend on how they are grouped into files. The landmark files are written in
parallel (spawned processes, `_write_job`) into a temporary directory that is renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from aslfr.atomic import building_dir, clean_stale_temps
from aslfr.data import layout
from aslfr.data.synthetic.face import LIP_POINTS, _face_template
from aslfr.data.synthetic.phrases import _cover_all_characters, make_phrase
from aslfr.data.synthetic.sequence import _sequence
from aslfr.data.synthetic.signers import _draw_signer, _Signer

FORMAT_VERSION = 3  # bump whenever the generator's output changes: it is part of spec_digest()


@dataclass(frozen=True)
class SyntheticSpec:
    """What to generate. Every field takes part in `spec_digest`."""

    n_sequences: int = 3000
    n_signers: int = 30
    seed: int = 0
    sequences_per_file: int = 1000
    face: str = "lips"  # "lips": the 40 lip points of the face mesh; "full": all 468 points (1,630 columns)
    n_supplemental: int = 0  # sequences in supplemental_metadata.csv + supplemental_landmarks/

    def __post_init__(self):
        if self.n_sequences < 1 or self.n_supplemental < 0:
            raise ValueError("n_sequences must be >= 1 and n_supplemental >= 0")
        if not 1 <= self.n_signers <= 255:
            raise ValueError("n_signers must be in 1..255 (participant ids are 0..254)")
        if self.sequences_per_file < 1:
            raise ValueError("sequences_per_file must be >= 1")
        if self.face not in ("lips", "full"):
            raise ValueError(f"face must be 'lips' or 'full', not {self.face!r}")


def spec_digest(spec: SyntheticSpec) -> str:
    """A short stable hex digest of the spec and the generator's format version."""
    text = json.dumps({"format_version": FORMAT_VERSION, **asdict(spec)}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def face_points(face: str) -> list[int]:
    """The face-mesh landmarks written for `SyntheticSpec.face` ("lips": the 40 lip points)."""
    return sorted(LIP_POINTS) if face == "lips" else list(range(layout.PART_POINTS["face"]))


def written_points(face: str) -> dict[str, list[int]]:
    """Landmarks per part in the written files (`layout.landmark_columns` of this are the columns)."""
    return {
        "face": face_points(face),
        "left_hand": list(range(21)),
        "pose": list(range(33)),
        "right_hand": list(range(21)),
    }


@dataclass(frozen=True)
class _FileJob:
    """One landmark file to write: which sequences, by whom, saying what."""

    path: Path
    face: str
    seed: int
    sequence_ids: tuple[int, ...]
    signer_numbers: tuple[int, ...]
    phrases: tuple[str, ...]
    stream_numbers: tuple[int, ...]  # sequence k draws from the stream (seed, 2, stream_numbers[k])
    signers: tuple[_Signer, ...]


def _seed(seed: int, *key: int) -> np.random.SeedSequence:
    return np.random.SeedSequence(seed, spawn_key=key)


def _unique_ints(rng: np.random.Generator, n: int, low: int, high: int, exclude=()) -> np.ndarray:
    """n distinct random integers in [low, high) and not in `exclude`, in draw order."""
    values = np.empty(0, dtype=np.int64)
    while values.size < n:
        more = rng.integers(low, high, 2 * n + 8, dtype=np.int64)
        merged = np.concatenate([values, more[~np.isin(more, exclude)]])
        _, first = np.unique(merged, return_index=True)
        values = merged[np.sort(first)]
    return values[:n]


def _assign_phrases(rng: np.random.Generator, n: int, n_distinct: int, cover: bool) -> list[str]:
    """n phrases from a pool of n_distinct: each pool phrase once, the rest repeats, shuffled."""
    if n == 0:
        return []
    pool = [make_phrase(rng) for _ in range(n_distinct)]
    if cover:
        pool = _cover_all_characters(pool, rng)
    picks = np.concatenate([np.arange(n_distinct), rng.integers(0, n_distinct, n - n_distinct)])
    return [pool[i] for i in rng.permutation(picks)]


def _assign_signers(rng: np.random.Generator, n: int, n_signers: int) -> np.ndarray:
    """A signer per sequence; signers sign unequal shares and every signer signs something."""
    if n == 0:
        return np.zeros(0, dtype=int)
    weights = rng.dirichlet(np.full(n_signers, 3.0))
    who = rng.choice(n_signers, size=n, p=weights)
    who[: min(n, n_signers)] = rng.permutation(n_signers)[: min(n, n_signers)]
    return rng.permutation(who)


_ID_RANGE = (1_000_000, 2_147_483_647)  # file and sequence ids: 7-10 digits, like the real ones


def _plan(spec: SyntheticSpec) -> tuple[pd.DataFrame, pd.DataFrame, list[_FileJob]]:
    """train.csv, supplemental_metadata.csv and the files to write.

    Each decision draws from its own stream, so the sequences (ids, phrases, signers, landmarks) do
    not depend on how they are grouped into files: only the files' ids and contents do.
    """
    streams = [np.random.default_rng(_seed(spec.seed, 0, k)) for k in range(8)]
    participants = streams[0].choice(255, size=spec.n_signers, replace=False)
    left_handed = set(
        streams[0].choice(spec.n_signers, size=round(0.2 * spec.n_signers), replace=False).tolist()
    )
    signers = tuple(
        _draw_signer(_seed(spec.seed, 1, k), int(participants[k]), k in left_handed)
        for k in range(spec.n_signers)
    )
    n, m = spec.n_sequences, spec.n_supplemental
    n_files = -(-n // spec.sequences_per_file), -(-m // spec.sequences_per_file)
    file_ids = _unique_ints(streams[1], sum(n_files), *_ID_RANGE)
    train_ids = _unique_ints(streams[2], n, *_ID_RANGE)
    supplemental_ids = _unique_ints(streams[3], m, *_ID_RANGE, exclude=train_ids)
    # most training phrases are signed once, some a few times; the supplemental set (as the real one)
    # repeats a few hundred phrases many times
    train = _Split(
        layout.TRAIN_DIR,
        file_ids[: n_files[0]],
        train_ids,
        first=0,
        phrases=_assign_phrases(streams[4], n, max(1, round(0.72 * n)), cover=True),
        signers=_assign_signers(streams[5], n, spec.n_signers),
    )
    supplemental = _Split(
        layout.SUPPLEMENTAL_DIR,
        file_ids[n_files[0] :],
        supplemental_ids,
        first=n,
        phrases=_assign_phrases(streams[6], m, min(m, max(10, m // 100), 500), cover=False),
        signers=_assign_signers(streams[7], m, spec.n_signers),
    )
    tables, jobs = [], []
    for split in (train, supplemental):
        table, split_jobs = _split_files(spec, split, signers)
        tables.append(table)
        jobs += split_jobs
    return tables[0], tables[1], jobs


@dataclass(frozen=True, eq=False)
class _Split:
    """The sequences of train.csv or of supplemental_metadata.csv."""

    folder: str
    file_ids: np.ndarray
    sequence_ids: np.ndarray
    first: int  # number of the first sequence's random stream
    phrases: list[str]
    signers: np.ndarray  # signer number per sequence


def _split_files(
    spec: SyntheticSpec, split: _Split, signers: tuple[_Signer, ...]
) -> tuple[pd.DataFrame, list[_FileJob]]:
    """The CSV rows of a split and its files, `spec.sequences_per_file` consecutive sequences each."""
    rows, jobs = [], []
    per_file = spec.sequences_per_file
    for f, file_id in enumerate(split.file_ids):
        part = range(f * per_file, min(len(split.sequence_ids), (f + 1) * per_file))
        path = f"{split.folder}/{int(file_id)}.parquet"
        jobs.append(
            _FileJob(
                path=Path(path),
                face=spec.face,
                seed=spec.seed,
                sequence_ids=tuple(int(split.sequence_ids[k]) for k in part),
                signer_numbers=tuple(int(split.signers[k]) for k in part),
                phrases=tuple(split.phrases[k] for k in part),
                stream_numbers=tuple(split.first + k for k in part),
                signers=signers,
            )
        )
        rows += [
            (
                path,
                int(file_id),
                int(split.sequence_ids[k]),
                signers[split.signers[k]].participant_id,
                split.phrases[k],
            )
            for k in part
        ]
    return pd.DataFrame(rows, columns=list(layout.CSV_COLUMNS)), jobs


_SEQUENCES_PER_ROW_GROUP = {"lips": 500, "full": 100}  # keeps a row group near 100-300 MB in memory


def _write_file(job: _FileJob, root: Path) -> int:
    """Synthesise one file's sequences and write them as the competition's parquet; returns rows.

    Written as pandas writes parquet by default (snappy), like the competition's files, so reading
    them costs what reading the real ones costs.
    """
    face = _face_template(job.face)
    columns = layout.landmark_columns(written_points(job.face))
    writer = None
    rows = 0
    step = _SEQUENCES_PER_ROW_GROUP[job.face]
    try:
        for lo in range(0, len(job.sequence_ids), step):
            blocks, ids = [], []
            for k in range(lo, min(lo + step, len(job.sequence_ids))):
                rng = np.random.default_rng(_seed(job.seed, 2, job.stream_numbers[k]))
                block = _sequence(job.signers[job.signer_numbers[k]], job.phrases[k], rng, face)
                blocks.append(block)
                ids.append(np.full(len(block), job.sequence_ids[k], dtype=np.int64))
            data = np.concatenate(blocks)
            frames = np.concatenate([np.arange(len(b), dtype=np.int16) for b in blocks])
            index = pd.Index(np.concatenate(ids), name=layout.INDEX_COLUMN)
            df = pd.DataFrame(data, columns=columns, index=index)
            df.insert(0, layout.FRAME_COLUMN, frames)
            table = pa.Table.from_pandas(df, preserve_index=True)
            if writer is None:
                writer = pq.ParquetWriter(root / job.path, table.schema, compression="snappy")
            writer.write_table(table)
            rows += len(df)
    finally:
        if writer is not None:
            writer.close()
    return rows


def _write_job(args: tuple[_FileJob, Path]) -> int:
    return _write_file(*args)


def generate(spec: SyntheticSpec, root: Path, *, progress: bool = True) -> Path:
    """Write the whole data set into `root` (which must not exist) and return `root`.

    The files are built in a sibling temporary directory that is renamed to `root` at the end, so a
    directory named `root` is always complete.
    """
    root = Path(root)
    if root.exists():
        raise FileExistsError(root)
    train, supplemental, jobs = _plan(spec)
    with building_dir(root) as temp:  # FileExistsError if another process finished it first
        (temp / layout.TRAIN_DIR).mkdir()
        train.to_csv(temp / layout.TRAIN_CSV, index=False, lineterminator="\n")
        if spec.n_supplemental:
            (temp / layout.SUPPLEMENTAL_DIR).mkdir()
            supplemental.to_csv(temp / layout.SUPPLEMENTAL_CSV, index=False, lineterminator="\n")
        index = {c: i for i, c in enumerate(layout.CHARACTERS)}
        (temp / layout.CHARACTER_MAP_JSON).write_text(json.dumps(index))
        _write_files(jobs, temp, progress)
    return root


def _write_files(jobs: list[_FileJob], temp: Path, progress: bool) -> None:
    """Write the landmark files, in parallel over files when there are several and CPUs to spare."""
    from tqdm import tqdm

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    workers = min(len(jobs), cpus)
    # disable=None: a bar only on a terminal (a log file would get every redraw)
    with tqdm(
        total=len(jobs), desc="synthetic files", unit="file", disable=None if progress else True
    ) as bar:
        if workers <= 1:
            for job in jobs:
                _write_file(job, temp)
                bar.update()
            return
        # spawn, not fork: the caller may hold threads (a training framework, tqdm's monitor)
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            for _ in pool.map(_write_job, [(job, temp) for job in jobs]):
                bar.update()


def ensure(spec: SyntheticSpec, data_dir: Path, *, progress: bool = True) -> Path:
    """The data set of `spec` under `data_dir`, generated if missing: ``data_dir/synthetic-<digest>``.

    The directory exists only once complete (see `generate`); temporary directories of interrupted runs
    are never taken for it, and those of dead processes on this host are removed.
    """
    root = Path(data_dir) / f"synthetic-{spec_digest(spec)}"
    if root.is_dir():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(root.parent, root.name)  # interrupted generations' leftovers
    try:
        return generate(spec, root, progress=progress)
    except FileExistsError:
        if root.is_dir():  # another process finished first
            return root
        raise
