"""Several preparations of one cache key at once, on one machine or several sharing the cache
directory: one builds, the others wait and reuse its entry; a killed builder blocks nobody, and
nobody removes another machine's build in progress."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from filelock import FileLock, Timeout
from omegaconf import OmegaConf

from aslfr import atomic
from aslfr.data import cache, prepare

from conftest import ROOT, compose_cfg, subprocess_env, write_sequences

# No hand-relative features: the statistics then need no TensorFlow, so each process starts fast.
KAGGLE = ["data=kaggle", "data.n_folds=2", "data.features.hand_relative=false"]


def tiny_kaggle(tmp_path: Path) -> Path:
    seqs = [
        {
            "sequence_id": 10 + i,
            "participant_id": i % 3,
            "phrase": "abc",
            "hands": [False, True, True, True, False],
        }
        for i in range(9)
    ]
    return write_sequences(tmp_path / "kaggle", seqs)


def wait_for(predicate, what: str, deadline_s: float = 240.0, procs=()) -> None:
    """Poll until `predicate()`; fail (with the processes' output) if a process ends first."""
    end = time.monotonic() + deadline_s
    while not predicate():
        ended = [p for p in procs if p.poll() is not None]
        if ended or time.monotonic() > end:
            pytest.fail(f"gave up waiting for {what}; ended: {[p.args for p in ended]}")
        time.sleep(0.2)


@pytest.mark.slow
def test_concurrent_preparations_build_once(tmp_path):
    root = tiny_kaggle(tmp_path)
    cfg = compose_cfg([*KAGGLE, f"data.root={root}"], tmp_path / "probe")
    key = prepare.prepare(cfg.data, tmp_path / "probe_cache", tmp_path / "data", progress=False).meta[
        "key"
    ]  # the key depends on files and options only
    cache_dir = tmp_path / "cache"
    logs = [tmp_path / f"prepare{i}.log" for i in range(3)]
    procs = []
    try:
        # The test holds the entry's build lock, so the three surely overlap: each must wait.
        with cache.build_lock(cache_dir, key):
            for i, out in enumerate(logs):
                with open(out, "w") as sink:
                    procs.append(
                        subprocess.Popen(
                            [
                                sys.executable,
                                "-m",
                                "aslfr.data.prepare",
                                *KAGGLE,
                                f"data.root={root}",
                                f"paths.data_dir={tmp_path / 'data'}",
                                f"paths.cache_dir={cache_dir}",
                                f"hydra.run.dir={tmp_path / f'run{i}'}",
                            ],
                            stdout=sink,
                            stderr=subprocess.STDOUT,
                            cwd=ROOT,
                            env=subprocess_env(),
                        )
                    )
            me = atomic.owner()
            wait_for(
                lambda: all(f"waiting for {me}, which is building" in p.read_text() for p in logs),
                "all three to wait for the lock",
                procs=procs,
            )
        codes = [p.wait(timeout=240) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    texts = [p.read_text() for p in logs]
    assert codes == [0, 0, 0], texts
    assert sum("feature cache: built" in t for t in texts) == 1, texts
    assert sum("feature cache: reusing" in t for t in texts) == 2, texts
    entries = [p for p in cache_dir.iterdir() if p.is_dir()]
    assert [p.name for p in entries] == [key]
    for i in range(3):
        doc = json.loads((tmp_path / f"run{i}" / "features.json").read_text())
        assert doc["cache_key"] == key
    folds = [pd.read_csv(tmp_path / f"run{i}" / "folds.csv") for i in range(3)]
    pd.testing.assert_frame_equal(folds[0], folds[1])
    pd.testing.assert_frame_equal(folds[0], folds[2])
    assert not (cache_dir / f"{key}{cache.OWNER_SUFFIX}").exists()


HANGS = """
import json, sys, time
from pathlib import Path
from aslfr.data import reader as kaggle
from aslfr.data import prepare
from omegaconf import OmegaConf

def hang(*args, **kwargs):
    print("reading", flush=True)
    time.sleep(3600)

kaggle.read_file = hang
data_cfg, cache_dir, data_dir = json.loads(Path(sys.argv[1]).read_text())
prepare.prepare(OmegaConf.create(data_cfg), Path(cache_dir), Path(data_dir), progress=False)
"""


@pytest.mark.slow
def test_a_killed_builder_does_not_block_the_next(tmp_path):
    root = tiny_kaggle(tmp_path)
    cfg = compose_cfg([*KAGGLE, f"data.root={root}"], tmp_path)
    cache_dir, data_dir = tmp_path / "cache", tmp_path / "data"
    args = tmp_path / "args.json"
    args.write_text(
        json.dumps([OmegaConf.to_container(cfg.data, resolve=True), str(cache_dir), str(data_dir)])
    )
    (tmp_path / "hangs.py").write_text(HANGS)
    out = tmp_path / "hangs.log"
    with open(out, "w") as sink:
        proc = subprocess.Popen(
            [sys.executable, str(tmp_path / "hangs.py"), str(args)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=subprocess_env(),
        )
    try:
        wait_for(lambda: "reading" in out.read_text(), "the builder to start reading", procs=[proc])
        locks = list(cache_dir.glob(f"*{cache.LOCK_SUFFIX}"))
        assert len(locks) == 1
        with pytest.raises(Timeout):  # it holds the build lock...
            FileLock(locks[0]).acquire(timeout=0)
        key = locks[0].name[: -len(cache.LOCK_SUFFIX)]
        owner_file = cache_dir / f"{key}{cache.OWNER_SUFFIX}"
        assert owner_file.read_text().strip() == f"{atomic.host()}:{proc.pid}"
        temps = [p for p in cache_dir.iterdir() if atomic.temp_target(p.name)]
        assert [t.name.endswith(f"-{proc.pid}@{atomic.host()}") for t in temps] == [True]
        os.kill(proc.pid, signal.SIGKILL)  # ...and dies holding it, mid-build
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert owner_file.exists() and temps[0].exists()  # what a killed builder leaves behind
    probe = FileLock(locks[0])
    probe.acquire(timeout=0)  # the kernel released the dead builder's lock: no wait, no timeout
    probe.release()
    prepared = prepare.prepare(cfg.data, cache_dir, data_dir, progress=False)
    assert prepared.meta["cache_hit"] is False and prepared.meta["key"] == key
    assert len(prepared) == 9
    assert not temps[0].exists()  # the dead builder's temp dir is cleaned up
    assert not owner_file.exists()  # the new owner wrote its own and removed it when done


def test_clean_stale_removes_only_what_is_surely_dead(tmp_path):
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()

    def temp(name: str, age_s: float = 0.0) -> Path:
        path = cache_dir / name
        path.mkdir()
        (path / cache.FRAMES_FILE).write_bytes(b"x")
        stamp = time.time() - age_s
        for p in (path / cache.FRAMES_FILE, path):
            os.utime(p, (stamp, stamp))
        return path

    here = atomic.host()
    mine_dead = temp(atomic.temp_name("k1", pid=dead.pid))
    mine_alive = temp(atomic.temp_name("k2", pid=os.getpid()))
    # another machine's build in progress: its pid means nothing here, it must stay
    theirs = temp(atomic.temp_name("k3", pid=dead.pid, host_name=f"other-{here}"))
    theirs_old = temp(atomic.temp_name("k4", pid=dead.pid, host_name=f"other-{here}"), age_s=2 * 24 * 3600)
    legacy = temp(f".tmp-k5-{dead.pid}-abcd1234")  # an older name without its host: unknown
    legacy_old = temp(f".tmp-k6-{dead.pid}-abcd1234", age_s=2 * 24 * 3600)
    # dead by its name, but its key's build lock is held: a live build (say, on a machine with
    # the same host name) -- left alone
    held = temp(atomic.temp_name("k7", pid=dead.pid))
    with cache.build_lock(cache_dir, "k7"):
        cache.clean_stale(cache_dir)
    assert not mine_dead.exists() and mine_alive.exists()
    assert theirs.exists() and not theirs_old.exists()
    assert legacy.exists() and not legacy_old.exists()
    assert held.exists()
    cache.clean_stale(cache_dir)  # once the lock is free, it goes
    assert not held.exists() and theirs.exists() and mine_alive.exists()
