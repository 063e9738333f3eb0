"""The README's W&B workflows on a machine with no `python` on the PATH: `wandb agent`'s own
command for a trial of each sweep file, `make sweep|agent`, one W&B directory per sweep and per
multirun that W&B's local viewer reads, and `aslfr-sync`."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

import sweeps
from aslfr.experiments import sync
from aslfr.experiments.offline import read_runs
from aslfr.train.checkpoints import Checkpoints

from conftest import CTC_ONLY, DEBUG, ROOT, TINY, agent_command, agent_env, subprocess_env

VENV_BIN = Path(sys.executable).parent  # the environment the README's set-up makes (.venv/bin)
SWEEP_FILES = sorted((ROOT / "sweeps").glob("*.yaml"))


def plain_path(tmp_path: Path) -> str:
    """A plain PATH without any Python, as on Debian: links to /usr/bin's and /bin's programs,
    python* left out."""
    bin_dir = tmp_path / "plain-bin"
    if not bin_dir.exists():
        bin_dir.mkdir()
        for top in (Path("/usr/bin"), Path("/bin")):
            for prog in sorted(top.iterdir()):
                link = bin_dir / prog.name
                if not prog.name.startswith("python") and not os.path.lexists(link):
                    link.symlink_to(prog)
    return str(bin_dir)


def documented_env(tmp_path: Path, **extra: str) -> dict:
    """The environment the README documents for W&B's CLI (`. .venv/bin/activate` or `make
    sweep|agent|sync`): .venv/bin first on a PATH that has no other Python."""
    return {**subprocess_env(**extra), "PATH": f"{VENV_BIN}:{plain_path(tmp_path)}"}


def fast(tmp_path: Path) -> list[str]:
    return [*DEBUG, *TINY, "trainer.epochs=1", f"paths.data_dir={tmp_path / 'data'}"]


def dotted(tree: dict, key: str):
    for part in key.split("."):
        tree = tree[part]
    return tree


@pytest.mark.slow
@pytest.mark.parametrize("sweep_file", SWEEP_FILES, ids=lambda p: p.stem)
def test_a_trial_of_each_sweep_runs_by_wandbs_own_command_without_python_on_the_path(tmp_path, sweep_file):
    """W&B's own sweep logic (the `sweeps` package) proposes a trial; the command `wandb agent`
    builds for it (`${env}` = /usr/bin/env, `${interpreter}` = python, the key=value arguments),
    plus fast overrides, runs in the documented environment on a PATH with no other Python and
    composes the proposed values. One of them (depth_width, the sweep with the most keys) also
    trains and links its W&B run into sweeps-out/<sweep id>/wandb; for the others Hydra prints
    the job's config (`--cfg job`): training is the same code whatever the values. The run that
    trains carries the agent's run id (its W&B run, summary.json, its checkpoint) and logs the
    proposed values in its nested config."""
    bare = subprocess.run(
        ["/usr/bin/env", "python", "-V"], env={"PATH": plain_path(tmp_path)}, capture_output=True
    )
    assert bare.returncode != 0  # without the environment, the agent's command finds no python
    definition = yaml.safe_load(sweep_file.read_text())
    # the `sweeps` package draws with numpy: a fixed seed gives the same proposal every time, and
    # this one a small model of depth_width.yaml (both heads, joint decoding) that trains fast
    np.random.seed(89)
    proposed = sweeps.next_run(definition, []).config.items()
    params = {k: v["value"].item() if hasattr(v["value"], "item") else v["value"] for k, v in proposed}
    cmd = agent_command(definition["command"], params, definition["program"])
    assert cmd[:3] == ["/usr/bin/env", "python", "train.py"]
    run_dir, sweeps_dir = tmp_path / "run", tmp_path / "sweeps-out"
    cmd += [*fast(tmp_path), f"paths.sweeps_dir={sweeps_dir}", f"hydra.run.dir={run_dir}"]
    cmd.append("fallback.min_hand_frames=0")  # no sweep searches it: no fallback search
    env = {
        **agent_env(tmp_path, params, "trial0", sweep_id="sw33p"),
        "PATH": documented_env(tmp_path)["PATH"],
    }
    trains = sweep_file.stem == "depth_width"
    if not trains:
        cmd += ["--cfg", "job"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stderr[-3000:]
    job = run_dir / ".hydra" / "config.yaml"
    recorded = yaml.safe_load(job.read_text() if trains else proc.stdout)
    for key, value in params.items():
        got = dotted(recorded, key)
        got = got["name"] if isinstance(got, dict) else got  # a config group: model=small
        assert str(got) == str(value), key
    if trains:
        assert json.loads((run_dir / "summary.json").read_text())["wandb/id"] == "trial0"
        assert Checkpoints(run_dir / "checkpoints").latest_state()["wandb_id"] == "trial0"
        (link,) = (sweeps_dir / "sw33p" / "wandb").glob("offline-run-*")
        assert link.resolve().parent == (run_dir / "wandb").resolve()
        (run,) = read_runs(run_dir)
        assert run.id == "trial0"
        for key, value in params.items():
            logged = dotted(run.config, key)
            logged = logged["name"] if isinstance(logged, dict) else logged
            assert str(logged) == str(value), key


def test_make_runs_wandb_with_the_environment_first_on_the_path(tmp_path):
    """`make sweep|agent` run W&B's CLI with .venv/bin first on the PATH, so the agent's
    `/usr/bin/env python` is the project's (W&B's CLI swapped for a script that prints its
    arguments and the python it would find)."""
    probe = tmp_path / "which-python"
    probe.write_text('#!/bin/sh\necho "$@"\ncommand -v python\n')
    probe.chmod(0o755)
    venv = VENV_BIN.parent
    env = {**subprocess_env(), "PATH": plain_path(tmp_path)}
    for target, arg, said in (
        ("agent", "ID=me/aslfr/abc123", "agent me/aslfr/abc123"),
        ("sweep", "SWEEP=sweeps/decode.yaml", "sweep sweeps/decode.yaml"),
    ):
        out = subprocess.run(
            # ARGS= : `make test ARGS=...` running this test would pass its ARGS down (MAKEFLAGS)
            [
                "make",
                "-s",
                "-o",
                f"{venv}/.installed",
                target,
                arg,
                f"VENV={venv}",
                f"WANDB={probe}",
                "ARGS=",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines() == [said, f"{VENV_BIN}/python"], target


def leet_listing(wandb_dir: Path, until: str, timeout: float = 60.0) -> str:
    """What `wandb leet WANDB_DIR` (W&B's terminal viewer) shows, read from a pseudo-terminal
    until the screen shows `until` (the viewer finds runs one after another: "No runs found",
    then "[1 items]", ...); escape sequences removed."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: W&B's CLI from this environment (its viewer is a child of it)
        os.execv(str(VENV_BIN / "wandb"), ["wandb", "leet", str(wandb_dir)])
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    screen, deadline = b"", time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and until not in _plain(screen):
            ready, _, _ = select.select([fd], [], [], 1.0)
            if ready:
                try:
                    screen += os.read(fd, 65536)
                except OSError:
                    break
        time.sleep(1.0)  # the rest of the frame
        while select.select([fd], [], [], 0.2)[0]:
            try:
                screen += os.read(fd, 65536)
            except OSError:
                break
    finally:
        # pty.fork made the child a session (and process group) leader: end the viewer it
        # started too, not only the CLI
        os.killpg(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(fd)
    return _plain(screen)


def _plain(screen: bytes) -> str:
    """A terminal's output without its escape sequences."""
    return re.sub(
        r"\x1b\[[0-9;?<>=$]*[a-zA-Z~]|\x1b[\]P][^\x07\x1b]*(\x07|\x1b\\)?",
        "",
        screen.decode(errors="replace"),
    )


@pytest.mark.slow
def test_a_multirun_gathers_its_runs_for_wandbs_viewer_and_syncs_in_one_command(tmp_path, capsys):
    """`train.py -m` with two jobs: MULTIRUN_DIR/wandb links both jobs' W&B runs; W&B's own
    viewer lists both there and `wandb leet inspect` reads each; `aslfr-sync` finds each run once
    whether pointed at the multirun, its wandb/ or the tree above."""
    sweep_dir = tmp_path / "multi"
    cmd = [
        sys.executable,
        "train.py",
        "-m",
        *fast(tmp_path),
        *CTC_ONLY,
        "trainer.seed=0,1",
        f"hydra.sweep.dir={sweep_dir}",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stderr[-3000:]
    links = sorted((sweep_dir / "wandb").glob("offline-run-*"))
    assert len(links) == 2 and all(link.is_symlink() for link in links)
    assert {link.resolve().parent.parent.name for link in links} == {"0", "1"}
    ids = {link.name.rsplit("-", 1)[1] for link in links}

    env = documented_env(tmp_path)
    for link in links:
        out = subprocess.run(
            ["wandb", "leet", "inspect", "--summary", "--json", str(link)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        assert link.name.rsplit("-", 1)[1] in out.stdout
    screen = leet_listing(sweep_dir / "wandb", until="Runs [2 items]")
    assert "Runs [2 items]" in screen, screen[-2000:]
    assert all(link.name in screen for link in links), screen[-2000:]

    for where in ([sweep_dir], [sweep_dir / "wandb"], [tmp_path]):
        found = sync.run_folders(where)
        assert {f.name.rsplit("-", 1)[1] for f in found} == ids and len(found) == 2, where
    sync.main(["--dry-run", str(tmp_path)])
    assert "2 offline W&B run(s) to sync" in capsys.readouterr().out
    # what `aslfr-sync` (and `make sync`) runs: W&B's own CLI from this interpreter
    out = subprocess.run(
        [str(VENV_BIN / "aslfr-sync"), "--dry-run", str(sweep_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0 and "2 offline W&B run(s)" in out.stdout, out.stderr


def test_sync_skips_runs_wandb_has_synced_and_refuses_a_missing_directory(tmp_path, capsys):
    for n, synced in ((1, False), (2, True)):
        folder = tmp_path / "out" / str(n) / "wandb" / f"offline-run-20261126_000000-run{n}"
        folder.mkdir(parents=True)
        (folder / f"run-run{n}.wandb").write_bytes(b"x")
        if synced:
            (folder / f"run-run{n}.wandb.synced").write_bytes(b"")
    (tmp_path / "out" / "3" / "wandb" / "offline-run-20261126_000000-empty").mkdir(parents=True)
    assert [f.name for f in sync.run_folders([tmp_path / "out"])] == ["offline-run-20261126_000000-run1"]
    assert len(sync.run_folders([tmp_path / "out"], include_synced=True)) == 2
    with pytest.raises(SystemExit, match="no such directory"):
        sync.main([str(tmp_path / "nowhere")])
