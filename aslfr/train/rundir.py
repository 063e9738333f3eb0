"""The run directory: a unique name, the run's own record of its configuration, the check that a
resume continues the same run, and a status that tells running, finished, failed and interrupted
runs apart.

    outputs/2026-11-25/22-43-07.412-4kq9zt/     hydra.run.dir (multirun: multirun/DATE/STAMP/N)
        .hydra/config.yaml, hydra.yaml, overrides.yaml
                                                the run's configuration, written by the run itself
        status.json                             running | finished | failed | interrupted |
                                                preempted, host, pid
        .lock                                   held (an OS lock) while a process works here

Why the run writes `.hydra/` itself (`hydra.output_subdir: null`): Hydra rewrites it with the new
command's config before the task starts, so a refused resume would already have overwritten the
record it is refused against.

Names are unique when many runs start in the same second (aslfr.config's `stamp` resolver).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import filelock
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from aslfr import names
from aslfr.atomic import replacing, write_json
from aslfr.errors import (
    PREEMPTION_SIGNALS,
    HarnessError,
    Interrupted,
    Preempted,
    raise_interrupted,
    raise_preempted,
)

log = logging.getLogger(__name__)
RECORD = (names.RECORD_DIR, names.CONFIG_FILE)
STATUS = names.STATUS_FILE
LOCK = ".lock"
ABSENT = "(absent)"


class ResumeRefused(HarnessError):
    """A run directory holds another configuration (or another process is using it)."""

    exit_code = 2


def flatten(tree: Mapping, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists and empty mappings stay values."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def differences(saved: Mapping, current: Mapping, may_change: list[str]) -> list[tuple]:
    """(key, saved value, current value) for every key that differs and is not allowed to.
    Compared before interpolation, so `${...}` expressions are compared as written (paths that
    depend on the environment are in `resume.may_change`)."""
    a, b = flatten(saved), flatten(current)

    def allowed(key: str) -> bool:
        return any(key == p or key.startswith(p + ".") for p in ["resume", *may_change])

    return [
        (k, a.get(k, ABSENT), b.get(k, ABSENT))
        for k in sorted(set(a) | set(b))
        if not allowed(k) and a.get(k, ABSENT) != b.get(k, ABSENT)
    ]


def _owner() -> dict:
    return {"host": socket.gethostname(), "pid": os.getpid()}


class RunDir:
    """One run directory as train.py uses it (see the module docstring)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.record = self.path.joinpath(*RECORD)

    def status(self) -> dict:
        """status.json, with a run whose process is gone ("running", lock free) reported as
        interrupted."""
        try:
            doc = json.loads((self.path / STATUS).read_text())
        except (FileNotFoundError, ValueError):
            return {"status": "unknown"}
        if doc.get("status") == "running" and not self.in_use():
            doc["status"] = "interrupted"
        return doc

    def in_use(self) -> bool:
        lock = filelock.FileLock(self.path / LOCK, timeout=0)
        try:
            with lock:
                return False
        except filelock.Timeout:
            return True

    def check_resume(self, cfg: DictConfig) -> bool:
        """True if the directory holds a run of this configuration (a resume), False if it holds
        none; raises ResumeRefused, touching nothing, if it holds another."""
        if not self.record.exists():
            return False
        saved = OmegaConf.to_container(OmegaConf.load(self.record), resolve=False)
        current = OmegaConf.to_container(cfg, resolve=False)
        may_change = list(cfg.resume.may_change)
        diff = differences(saved, current, may_change)
        if diff:
            raise ResumeRefused(self._refusal(diff, may_change))
        return True

    def _refusal(self, diff: list[tuple], may_change: list[str]) -> str:
        lines = [
            f"{self.path} holds a run with another configuration, so it was not resumed "
            "(nothing in it was changed):"
        ]
        lines += [f"  {k}: {_show(old)} in the run, {_show(new)} now" for k, old, new in diff]
        overrides = self.path / names.RECORD_DIR / "overrides.yaml"
        original = " ".join(OmegaConf.to_container(OmegaConf.load(overrides))) if overrides.exists() else ""
        lines += [
            "Either start a new run: leave out hydra.run.dir (each run gets its own "
            "directory) or give a new one;",
            f"or resume this run with its own overrides: python {_program()} "
            f"{original} hydra.run.dir={self.path}".replace("  ", " "),
            f"(keys that may change on resume: {', '.join(may_change)}; see resume.may_change)",
        ]
        return "\n".join(lines)

    def save_record(self, cfg: DictConfig) -> None:
        """.hydra/config.yaml, hydra.yaml and overrides.yaml, as Hydra writes them."""
        files = {names.CONFIG_FILE: cfg}
        if HydraConfig.initialized():
            hydra_cfg = HydraConfig.instance().cfg
            files["hydra.yaml"] = OmegaConf.create({"hydra": hydra_cfg.hydra})
            files["overrides.yaml"] = hydra_cfg.hydra.overrides.task
        for name, node in files.items():
            with replacing(self.record.with_name(name)) as tmp:
                tmp.write_text(OmegaConf.to_yaml(node))

    def set_status(self, status: str, **extra) -> None:
        doc = {"status": status, **_owner(), "time": datetime.now().isoformat(timespec="seconds"), **extra}
        write_json(self.path / STATUS, doc)

    @contextmanager
    def claim(self, cfg: DictConfig) -> Iterator[bool]:
        """Hold the directory for this process: refuse another configuration or a live owner,
        write the record, mark the status, and on the way out mark how the run ended. Yields
        whether this is a resume. Meanwhile SIGUSR1/SIGUSR2 unwind as Preempted, and SIGTERM as
        Interrupted (unless a handler of the caller's is in place); the handlers found before
        are put back on the way out."""
        self.path.mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(self.path / LOCK, timeout=0)
        try:
            lock.acquire()
        except filelock.Timeout:
            owner = self.status()
            raise ResumeRefused(
                f"{self.path} is in use by another process ({owner.get('host')}, pid "
                f"{owner.get('pid')}, since {owner.get('time')}): wait for it to end, or start a "
                "new run (leave out hydra.run.dir)"
            ) from None
        try:
            resumed = self.check_resume(cfg)
            self.save_record(cfg)
            self.set_status("running", command=[_program(), *sys.argv[1:]], resumed=resumed)
            log.info("run directory: %s%s", self.path, " (resuming)" if resumed else "")
            main = threading.current_thread() is threading.main_thread()  # signals: main only
            handlers = dict.fromkeys(PREEMPTION_SIGNALS, raise_preempted)
            # SIGTERM: unless the process that runs this one handles it (submitit ignores it
            # and waits for its preemption signal)
            if main and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
                handlers[signal.SIGTERM] = raise_interrupted
            previous = {s: signal.signal(s, h) for s, h in handlers.items()} if main else {}
            outcome, extra = "failed", {}
            try:
                yield resumed
                outcome = "finished"
            except Preempted:
                outcome = "preempted"
                raise
            except (KeyboardInterrupt, Interrupted):
                outcome = "interrupted"
                raise
            except BaseException as e:
                extra["error"] = str(e).splitlines()[0] if str(e) else type(e).__name__
                raise
            finally:
                for signum, handler in previous.items():
                    signal.signal(signum, handler)
                self.set_status(outcome, **extra)
                log.info("run directory: %s (%s)", self.path, outcome)
        finally:
            lock.release()


def _program() -> str:
    return Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "train.py"


def _show(value) -> str:
    return ABSENT if value is ABSENT else json.dumps(value, default=str)
