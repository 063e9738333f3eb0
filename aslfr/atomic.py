"""Files written whole or not at all: write to a temporary sibling, then rename over the target,
so a reader (or a later run) never sees a half-written file."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replacing(path: Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary sibling of `path` to write; it replaces `path` if the block succeeds
    and is removed if it fails. `suffix` ends the temporary name (for writers that insist on
    an extension)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, doc, **dump_kw) -> Path:
    """`doc` as JSON at `path`, flushed to disk before the rename."""
    with replacing(path) as tmp, open(tmp, "w") as f:
        json.dump(doc, f, indent=1, **dump_kw)
        f.flush()
        os.fsync(f.fileno())
    return Path(path)
