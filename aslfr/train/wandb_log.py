"""W&B's transaction log on disk (`run-*.wandb`, written in offline and online mode alike), read
record by record: the tracker waits on it before each checkpoint (`history_steps`), and
aslfr.experiments.offline assembles whole runs from it.

The file is a 7-byte header (":W&B", magic 0xBEE1, version 0) followed by LevelDB-log framed
records (32 KiB blocks; each record chunk has a CRC-32C, a length and a type: full, first, middle,
last), each record a protobuf `Record` from `wandb.proto.wandb_internal_pb2`. wandb ships no
reader for it any more, so this is one.
"""

from __future__ import annotations

import struct
from pathlib import Path

from wandb.proto import wandb_internal_pb2 as pb

HEADER = b":W&B" + struct.pack("<HB", 0xBEE1, 0)
BLOCK = 32768
CHUNK_HEADER = 7  # crc32c (4), length (2), type (1)
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


class RunFileError(ValueError):
    pass


def records(path: Path):
    """Yield the protobuf Records of one run-*.wandb file (a truncated tail is ignored: the
    writer may have been killed mid-record)."""
    data = Path(path).read_bytes()
    if not data.startswith(HEADER):
        raise RunFileError(f"{path}: not a W&B run file (bad header)")
    pos, pending = len(HEADER), b""
    while pos + CHUNK_HEADER <= len(data):
        room = BLOCK - pos % BLOCK
        if room < CHUNK_HEADER:  # the rest of a block too small for a chunk header is padding
            pos += room
            continue
        _crc, length, kind = struct.unpack_from("<IHB", data, pos)
        start = pos + CHUNK_HEADER
        if kind == 0 and length == 0:  # zero padding up to the end of the block
            pos += room
            continue
        if start + length > len(data):
            break
        chunk = data[start : start + length]
        pos = start + length
        if kind == FULL:
            pending = chunk
        elif kind == FIRST:
            pending = chunk
            continue
        elif kind == MIDDLE:
            pending += chunk
            continue
        elif kind == LAST:
            pending += chunk
        else:
            raise RunFileError(f"{path}: unknown chunk type {kind} at byte {pos}")
        record = pb.Record()
        record.ParseFromString(pending)
        pending = b""
        yield record


def history_steps(path: Path):
    """The step of every history row in a run file, in order (what is on disk so far)."""
    for record in records(path):
        if record.WhichOneof("record_type") == "history":
            yield record.history.step.num
