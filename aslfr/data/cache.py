"""On-disk cache of prepared features, keyed by the data files and the feature config.

An entry is a directory `<cache_dir>/<key>/`:
  frames.bin   float32 [total frames, points, axes], all sequences back to back (memory-mapped)
  index.npz    offsets [N+1] and per-sequence arrays (sequence_id, participant_id, phrase, ...)
  meta.json    shapes, sizes and CRC-32 checksums of both files, the feature spec, the summary

It is built in a temporary sibling directory and renamed into place only when complete, so an
interrupted preparation is never taken for a complete one; an entry whose files do not match
meta.json is reported, removed and rebuilt.

One build per key, across processes and machines sharing the cache directory: the builder holds
`<key>.lock` next to the entry (`filelock.FileLock`, an OS lock the kernel releases when its
process dies, so a killed builder never blocks the next one) and writes its "host:pid" to
`<key>.owner`, which the processes waiting for it name in their log. Temporary directories are
aslfr.atomic's, named after their owner: `clean_stale` removes those of builds that died
(`atomic.clean_stale_temps`), never while the key's build lock is held.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from filelock import FileLock, Timeout

from aslfr.atomic import clean_stale_temps, owner, publish_dir, replacing, temp_dir, temp_name

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
FRAMES_FILE, INDEX_FILE, META_FILE = "frames.bin", "index.npz", "meta.json"
PER_SEQUENCE = ("sequence_id", "participant_id", "file_id", "phrase", "n_raw_frames", "dominant_left")
LOCK_SUFFIX, OWNER_SUFFIX = ".lock", ".owner"


def make_key(payload: dict) -> str:
    """Digest of everything the cached arrays depend on (JSON-serializable payload)."""
    blob = json.dumps({"format": FORMAT_VERSION, **payload}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


@dataclass
class Prepared:
    """The prepared data set: every kept sequence's features and labels."""

    frames: np.ndarray  # [total frames, points, axes] float32 (memory-mapped)
    offsets: np.ndarray  # [N + 1] int64: sequence i is frames[offsets[i]:offsets[i+1]]
    sequence_id: np.ndarray
    participant_id: np.ndarray
    file_id: np.ndarray
    phrase: np.ndarray  # str
    n_raw_frames: np.ndarray  # frames in the parquet file, before any were dropped
    dominant_left: np.ndarray  # bool: mirrored from a left-dominant signer
    meta: dict
    path: Path

    def __len__(self) -> int:
        return len(self.sequence_id)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def sequence(self, i: int) -> np.ndarray:
        return self.frames[self.offsets[i] : self.offsets[i + 1]]


def _crc32(path: Path, chunk: int = 1 << 24) -> int:
    crc = 0
    with open(path, "rb") as f:
        while block := f.read(chunk):
            crc = zlib.crc32(block, crc)
    return crc


class CorruptEntry(Exception):
    pass


def _open(entry: Path, verify: bool) -> Prepared:
    try:
        meta = json.loads((entry / META_FILE).read_text())
        for name, want in meta["files"].items():
            size = (entry / name).stat().st_size
            if size != want["size"]:
                raise CorruptEntry(f"{name} has {size} bytes, meta.json says {want['size']}")
            if verify and _crc32(entry / name) != want["crc32"]:
                raise CorruptEntry(f"{name} fails its checksum")
        shape = tuple(meta["frames_shape"])
        frames = (
            np.memmap(entry / FRAMES_FILE, np.float32, "r", shape=shape)
            if shape[0]
            else np.zeros(shape, np.float32)
        )
        with np.load(entry / INDEX_FILE, allow_pickle=False) as z:
            arrays = {k: z[k] for k in ("offsets", *PER_SEQUENCE)}
    except CorruptEntry:
        raise
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CorruptEntry(f"{type(e).__name__}: {e}") from None
    if arrays["offsets"][-1] != shape[0]:
        raise CorruptEntry("offsets do not match the frames")
    return Prepared(frames=frames, meta=meta, path=entry, **arrays)


def load(cache_dir: Path, key: str, verify: bool = True) -> Prepared | None:
    """The complete entry for `key`, or None. A corrupt entry is logged, removed and None."""
    entry = Path(cache_dir) / key
    if not entry.is_dir():
        return None
    try:
        return _open(entry, verify)
    except CorruptEntry as e:
        log.warning("cache entry %s is corrupt (%s): removing it and rebuilding", entry, e)
        _remove(entry)
        return None


def _remove(path: Path) -> None:
    trash = path.with_name(temp_name(path.name))
    try:
        os.rename(path, trash)
    except FileNotFoundError:
        return
    shutil.rmtree(trash, ignore_errors=True)


class Writer:
    """Appends sequences to a new entry; `finish` publishes it atomically. Use as a context
    manager: on an exception the temporary directory is removed."""

    def __init__(self, cache_dir: Path, key: str, point_shape: tuple[int, int]):
        self.cache_dir, self.key, self.point_shape = Path(cache_dir), key, tuple(point_shape)
        self.tmp = temp_dir(self.cache_dir / key)
        # open across appends, closed by finish() or __exit__
        self._frames = open(self.tmp / FRAMES_FILE, "wb")  # noqa: SIM115
        self._crc, self._n_frames = 0, 0
        self._lengths: list[int] = []
        self._columns: dict[str, list] = {k: [] for k in PER_SEQUENCE}

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self._frames.closed:
            self._frames.close()
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def shard(self, name: str) -> Path:
        """A scratch file in the entry's temp dir, for a worker to write frames to."""
        return self.tmp / f"shard-{name}.bin"

    def append_shard(self, shard: Path, lengths: list[int], per_sequence: list[dict]) -> None:
        """Append a shard's frames (sequences back to back, `lengths` frames each) and the
        sequences' columns, then delete the shard."""
        frame_bytes = int(np.prod(self.point_shape)) * 4
        assert shard.stat().st_size == sum(lengths) * frame_bytes, shard
        with open(shard, "rb") as f:
            while block := f.read(1 << 24):
                self._frames.write(block)
                self._crc = zlib.crc32(block, self._crc)
        shard.unlink()
        self._n_frames += sum(lengths)
        self._lengths += list(lengths)
        for row in per_sequence:
            for k in PER_SEQUENCE:
                self._columns[k].append(row[k])

    def finish(self, meta: dict) -> Prepared:
        self._frames.flush()
        os.fsync(self._frames.fileno())
        self._frames.close()
        offsets = np.concatenate([[0], np.cumsum(self._lengths, dtype=np.int64)]).astype(np.int64)
        arrays = {
            "offsets": offsets,
            "sequence_id": np.asarray(self._columns["sequence_id"], np.int64),
            "participant_id": np.asarray(self._columns["participant_id"], np.int64),
            "file_id": np.asarray(self._columns["file_id"], np.int64),
            "phrase": np.asarray(self._columns["phrase"], dtype=np.str_),
            "n_raw_frames": np.asarray(self._columns["n_raw_frames"], np.int32),
            "dominant_left": np.asarray(self._columns["dominant_left"], bool),
        }
        with open(self.tmp / INDEX_FILE, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        files = {
            FRAMES_FILE: {"size": (self.tmp / FRAMES_FILE).stat().st_size, "crc32": self._crc},
            INDEX_FILE: {
                "size": (self.tmp / INDEX_FILE).stat().st_size,
                "crc32": _crc32(self.tmp / INDEX_FILE),
            },
        }
        meta = {
            **meta,
            "key": self.key,
            "format": FORMAT_VERSION,
            "files": files,
            "frames_shape": [self._n_frames, *self.point_shape],
        }
        (self.tmp / META_FILE).write_text(json.dumps(meta, indent=1, default=str))
        final = self.cache_dir / self.key
        if not publish_dir(self.tmp, final):  # another process published it first: use theirs
            if (done := load(self.cache_dir, self.key)) is not None:
                return done
            raise FileExistsError(f"{final}: published by another process, but not readable")
        return _open(final, verify=False)


def clean_stale(cache_dir: Path) -> list[Path]:
    """Remove the temporary directories of builds that died (`atomic.clean_stale_temps`), but
    only while their key's build lock is free: a temporary directory exists only while its
    builder holds that lock, so a held lock means a live build (e.g. on another machine that
    reports the same host name)."""

    def busy(key: str) -> bool:
        lock = FileLock(lock_path(cache_dir, key))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            return True
        lock.release()
        return False

    return clean_stale_temps(cache_dir, busy=busy)


def lock_path(cache_dir: Path, key: str) -> Path:
    return Path(cache_dir) / f"{key}{LOCK_SUFFIX}"


def _read_owner(cache_dir: Path, key: str) -> str:
    try:
        return (Path(cache_dir) / f"{key}{OWNER_SUFFIX}").read_text().strip() or "another process"
    except OSError:
        return "another process"


@contextmanager
def build_lock(cache_dir: Path, key: str, log_every_s: float = 60.0) -> Iterator[None]:
    """Hold the build lock of entry `key` for the block: one builder per key at a time.

    While another process holds it, log (every `log_every_s`) whose build this one waits for, from
    the "host:pid" in `<key>.owner`. The lock is an OS lock (flock), so it dies with its process:
    a builder killed by SIGKILL leaves at most a stale `.owner` (overwritten by the next holder)
    and a temp dir (`clean_stale`). The caller re-checks the cache once it holds the lock."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(lock_path(cache_dir, key))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        t0 = time.monotonic()
        while True:
            log.info(
                "feature cache: waiting for %s, which is building %s (%.0f s so far)",
                _read_owner(cache_dir, key),
                cache_dir / key,
                time.monotonic() - t0,
            )
            try:
                lock.acquire(timeout=log_every_s)
                break
            except Timeout:
                continue
    me = owner()
    owner_file = cache_dir / f"{key}{OWNER_SUFFIX}"
    try:
        with replacing(owner_file) as tmp:
            tmp.write_text(me + "\n")
        yield
    finally:
        try:
            if owner_file.read_text().strip() == me:
                owner_file.unlink()
        except OSError:
            pass
        lock.release()
