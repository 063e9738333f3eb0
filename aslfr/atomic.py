"""Written whole or not at all: files and directories are built under a temporary sibling name and
renamed into place, so a reader (or a later run) never sees a half-written one.

Temporary names carry their owner, `.<name>.tmp-<random>-<pid>@<host>`, so that processes on
several machines sharing a filesystem never remove each other's work in progress:
`clean_stale_temps` removes this host's whose process is gone and another host's only once they
have been untouched for a day (the processes of another machine cannot be seen from here). The
feature cache, the synthetic data sets, checkpoints and every JSON a run writes use these.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)
TMP = ".tmp-"
FOREIGN_TMP_MAX_AGE_S = 24 * 3600  # another host's temporary untouched this long is abandoned


def host() -> str:
    """This machine's name, as it appears in temporary names and lock owners."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname()) or "localhost"


def owner() -> str:
    """ "host:pid" of this process: who holds a lock or a temporary."""
    return f"{host()}:{os.getpid()}"


def temp_name(target_name: str, pid: int | None = None, host_name: str | None = None) -> str:
    """`.<target_name>.tmp-<random>-<pid>@<host>`: a temporary sibling's name, naming its owner."""
    pid = os.getpid() if pid is None else pid
    return f".{target_name}{TMP}{uuid.uuid4().hex[:8]}-{pid}@{host_name or host()}"


# .<target>.tmp-<random>-<pid>@<host>; and the cache's older .tmp-<key>-<pid>-<random> (no host)
_NAMED = re.compile(r"^\.(?P<target>.+)\.tmp-[0-9a-f]+-(?P<pid>\d+)@(?P<host>.+)$")
_OLDER = re.compile(r"^\.tmp-(?P<target>[^-]+)-\d+-[0-9a-f]+$")


def temp_target(name: str) -> str | None:
    """The target a temporary name is for (the inverse of `temp_name`), or None."""
    match = _NAMED.match(name) or _OLDER.match(name)
    return match["target"] if match else None


def temp_owner(name: str) -> tuple[str | None, int | None]:
    """(host, pid) from a temporary name; (None, None) when it names none (an older name)."""
    match = _NAMED.match(name)
    return (match["host"], int(match["pid"])) if match else (None, None)


@contextmanager
def replacing(path: Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary sibling of `path` to write; it replaces `path` if the block succeeds
    and is removed if it fails. `suffix` ends the temporary name (for writers that insist on
    an extension)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(temp_name(path.name) + suffix)
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


def temp_dir(target: Path) -> Path:
    """A new empty temporary sibling directory of `target` (parents created)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(temp_name(target.name))
    tmp.mkdir()  # unlike tempfile.mkdtemp, keeps the umask's permissions
    return tmp


def publish_dir(tmp: Path, target: Path, replace: bool = False) -> bool:
    """Rename the finished `tmp` to `target`. With `replace`, an existing `target` goes first;
    without, a `target` that another process published meanwhile wins: `tmp` is removed and the
    answer is False."""
    tmp, target = Path(tmp), Path(target)
    if replace and target.exists():
        trash = target.with_name(temp_name(target.name))
        os.rename(target, trash)
        shutil.rmtree(trash, ignore_errors=True)
    try:
        os.rename(tmp, target)
    except OSError:
        if replace or not target.exists():
            raise
        shutil.rmtree(tmp, ignore_errors=True)
        return False
    return True


@contextmanager
def building_dir(target: Path, replace: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling directory to fill; it becomes `target` if the block succeeds
    and is removed if it fails. Without `replace`, a `target` that another process published
    meanwhile raises FileExistsError (theirs stays)."""
    tmp = temp_dir(target)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if not publish_dir(tmp, target, replace):
        raise FileExistsError(target)


def _alive(pid: int) -> bool:
    """Whether a process of this machine with this pid exists."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def _idle_seconds(path: Path) -> float:
    """Seconds since `path` (or a file directly in it) last changed."""
    latest = path.stat().st_mtime
    if path.is_dir():
        with os.scandir(path) as entries:
            for e in entries:
                with contextlib.suppress(FileNotFoundError):  # removed meanwhile: not a change
                    latest = max(latest, e.stat(follow_symlinks=False).st_mtime)
    return time.time() - latest


def clean_stale_temps(
    parent: Path,
    target_name: str | None = None,
    busy: Callable[[str], bool] | None = None,
    foreign_max_age_s: float = FOREIGN_TMP_MAX_AGE_S,
) -> list[Path]:
    """Remove the temporaries in `parent` (of `target_name` only, if given) left by processes that
    died: this host's whose pid is gone, and any other's (another host's, or an older name that
    names none) untouched for `foreign_max_age_s`. `busy(target)` True keeps a target's
    temporaries whatever their names say (e.g. a build lock held). Returns what was removed."""
    me, removed = host(), []
    for tmp in Path(parent).glob(".*"):
        target = temp_target(tmp.name)
        if target is None or (target_name is not None and target != target_name):
            continue
        host_name, pid = temp_owner(tmp.name)
        try:
            if host_name == me:
                if _alive(pid):
                    continue
                why = f"its process {host_name}:{pid} is gone"
            else:
                idle = _idle_seconds(tmp)
                if idle < foreign_max_age_s:
                    continue
                why = f"untouched for {idle / 3600:.0f} h"
        except FileNotFoundError:  # removed meanwhile (published, or cleaned by another process)
            continue
        if busy is not None and busy(target):
            continue
        log.info("removing the temporary %s (%s)", tmp, why)
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed
