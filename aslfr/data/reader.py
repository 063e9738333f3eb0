"""Reader for the Kaggle ASLFR layout (train.csv, supplemental_metadata.csv,
character_to_prediction_index.json, landmark parquet files).

Only the columns the features need are read (pyarrow column projection), each parquet file once,
streamed in record batches so a file never sits in memory whole: a sequence is turned into features
as soon as its last row has been read.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from aslfr.data import layout
from aslfr.data.features import FeatureSpec, extract
from aslfr.errors import DataError


def read_index(root: Path, use_supplemental: bool) -> pd.DataFrame:
    """The sequences to read: train.csv (+ supplemental_metadata.csv), with `csv` and `line`
    (the file and 1-based line number of each row, for messages)."""
    names = [layout.TRAIN_CSV] + ([layout.SUPPLEMENTAL_CSV] if use_supplemental else [])
    frames = []
    for name in names:
        path = root / name
        if not path.is_file():
            raise DataError(
                f"{path}: file not found; data.root must be a directory in the Kaggle "
                f"ASLFR layout ({layout.TRAIN_CSV}, {layout.TRAIN_DIR}/, ...)"
            )
        try:
            df = pd.read_csv(path, dtype={"path": str, "phrase": str}, keep_default_na=False, na_filter=False)
        except (ValueError, OSError, pd.errors.ParserError) as e:
            raise DataError(f"{path}: cannot parse the CSV ({e})") from None
        missing = [c for c in layout.CSV_COLUMNS if c not in df.columns]
        if missing:
            raise DataError(
                f"{path}: missing required column(s) {', '.join(missing)}; expected "
                f"the columns {','.join(layout.CSV_COLUMNS)}"
            )
        df = df[list(layout.CSV_COLUMNS)].copy()
        for col in ("file_id", "sequence_id", "participant_id"):
            as_int = pd.to_numeric(df[col], errors="coerce")
            bad = np.flatnonzero(as_int.isna().to_numpy() | (as_int % 1 != 0).to_numpy())
            if len(bad):
                raise DataError(
                    f"{path} line {bad[0] + 2}: column {col} must be an integer, got {df[col].iloc[bad[0]]!r}"
                )
            df[col] = as_int.astype(np.int64)
        df["csv"] = name
        df["line"] = np.arange(2, len(df) + 2)  # line 1 is the header
        frames.append(df)
    index = pd.concat(frames, ignore_index=True)
    dup = index["sequence_id"].duplicated(keep="first").to_numpy()
    if dup.any():
        row = index.iloc[int(np.flatnonzero(dup)[0])]
        raise DataError(
            f"{root / row.csv} line {row.line}: sequence_id {row.sequence_id} appears "
            "more than once; each sequence must be listed once"
        )
    return index


def check_files(root: Path, index: pd.DataFrame) -> None:
    """Every row must point at an existing parquet file (checked before any reading)."""
    for path, rows in index.groupby("path", sort=False):
        if not (root / path).is_file():
            row = rows.iloc[0]
            raise DataError(
                f"{root / row.csv} line {row.line} (sequence_id {row.sequence_id}): "
                f"landmark file {path} does not exist under {root}; download it, or "
                f"remove the {len(rows)} row(s) that point at it"
            )


@dataclass(frozen=True)
class SequenceResult:
    position: int  # row of the index
    n_raw_frames: int
    status: str = "ok"  # ok | no_hands (never visible) | missing_in_parquet
    n_frames: int = 0  # feature frames written to the sink
    dominant_left: bool = False


class _NotContiguous(Exception):
    pass


def _batch_matrix(batch: pa.RecordBatch, columns: list[str]) -> np.ndarray:
    out = np.empty((batch.num_rows, len(columns)), np.float32)
    for j, name in enumerate(columns):
        out[:, j] = batch.column(name).to_numpy(zero_copy_only=False)
    return out


def _sequences(batches, columns: list[str]) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(sequence_id, frame numbers, raw [frames, columns]) for each run of rows of one sequence."""
    pending_id, pending, done = None, [], set()

    def finish():
        frame = np.concatenate([f for f, _ in pending])
        raw = pending[0][1] if len(pending) == 1 else np.concatenate([r for _, r in pending])
        return pending_id, frame, raw

    for batch in batches:
        ids = batch.column(layout.INDEX_COLUMN).to_numpy(zero_copy_only=False)
        frame = batch.column(layout.FRAME_COLUMN).to_numpy(zero_copy_only=False)
        raw = _batch_matrix(batch, columns)
        cuts = np.flatnonzero(ids[1:] != ids[:-1]) + 1
        for lo, hi in zip([0, *cuts], [*cuts, len(ids)]):
            sid = int(ids[lo])
            if sid == pending_id:
                pending.append((frame[lo:hi], raw[lo:hi]))
                continue
            if pending:
                yield finish()
                done.add(pending_id)
            if sid in done:
                raise _NotContiguous
            pending_id, pending = sid, [(frame[lo:hi], raw[lo:hi])]
    if pending:
        yield finish()


def open_parquet(path: Path, columns: list[str], what: str, fix: str) -> pq.ParquetFile:
    """`path` opened for streaming (column chunks through a small buffer rather than loaded
    whole), after checking it has `columns`: else a DataError naming the file, the first missing
    columns (`what` they are) and `fix`."""
    pf = pq.ParquetFile(path, buffer_size=1 << 20, pre_buffer=False)
    names = set(pf.schema_arrow.names)
    missing = [c for c in columns if c not in names]
    if missing:
        shown = ", ".join(missing[:5]) + (f", ... ({len(missing)} in all)" if len(missing) > 5 else "")
        raise DataError(f"{path}: lacks the {what} {shown}; {fix}")
    return pf


def read_file(
    root: Path,
    rel_path: str,
    csv_name: str,
    spec: FeatureSpec,
    wanted: dict[int, int],
    sink: BinaryIO,
    batch_rows: int = 8192,
) -> list[SequenceResult]:
    """Features of the `wanted` sequences ({sequence_id: index row}) of one parquet file.

    Each kept sequence's frames [n_frames, points, axes] float32 are written to `sink` as soon as
    its last row has been read, in the order of the file; the results come in that order too,
    followed by the wanted sequences the file lacks.
    """
    path = root / rel_path
    columns = spec.columns
    read = [layout.INDEX_COLUMN, layout.FRAME_COLUMN, *columns]
    start = sink.tell()
    results: list[SequenceResult] = []

    def consume(batches):
        for sid, frame, raw in _sequences(batches, columns):
            if sid not in wanted:
                continue
            if len(frame) > 1 and np.any(np.diff(frame) < 0):
                raw = raw[np.argsort(frame, kind="stable")]
            got = extract(raw, spec)
            if got is None:
                results.append(SequenceResult(wanted[sid], len(raw), "no_hands"))
            else:
                sink.write(got.frames.tobytes())
                results.append(
                    SequenceResult(wanted[sid], len(raw), "ok", len(got.frames), got.dominant_left)
                )

    try:
        pf = open_parquet(
            path,
            read,
            "column(s) the features need",
            "check the file (it should have all 1,630 columns of the competition files) or choose "
            "data.features this file has",
        )
        try:
            consume(pf.iter_batches(batch_size=batch_rows, columns=read, use_threads=False))
        except _NotContiguous:  # rows of a sequence are scattered: sort the (projected) file
            results.clear()
            sink.seek(start)
            sink.truncate()
            table = pq.read_table(path, columns=read).sort_by(
                [(layout.INDEX_COLUMN, "ascending"), (layout.FRAME_COLUMN, "ascending")]
            )
            consume(table.to_batches(max_chunksize=batch_rows))
    except (pa.ArrowException, OSError) as e:
        raise DataError(
            f"{path}: cannot read this parquet file ({type(e).__name__}: {e}); it is "
            f"truncated or corrupt: download it again, or remove its rows from "
            f"{csv_name}"
        ) from None
    found = {r.position for r in results}
    results += [SequenceResult(pos, 0, "missing_in_parquet") for pos in wanted.values() if pos not in found]
    return results
