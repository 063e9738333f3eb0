"""The README cannot drift from the code: every `python …`, `aslfr-…` and `make …` command in its
code blocks at least composes. train.py and aslfr-prepare get Hydra's `--cfg job` (the overrides
must compose), the other commands `--help` (every option the README uses must be one of theirs),
sweep commands also load their definition and compose their overrides, make targets get a dry run
(`make -n`)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from aslfr.experiments import sweep

from conftest import ROOT, compose_cfg, subprocess_env

pytestmark = pytest.mark.slow  # each command in a subprocess

PROGRAM = re.compile(r"^(\.venv/bin/python|python|make|(\.venv/bin/)?aslfr-[a-z]+)\s")


def readme_commands() -> list[str]:
    """Lines of the README's fenced code blocks that run python or make (comments stripped)."""
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```", text, flags=re.S | re.M)
    commands = []
    for block in blocks:
        for line in block.splitlines():
            line = re.split(r"\s+#\s", line.strip(), maxsplit=1)[0].strip()
            if PROGRAM.match(line):
                commands.append(line)
    return list(dict.fromkeys(commands))


COMMANDS = readme_commands()


def test_the_readme_shows_commands():
    assert any(c.startswith("make train") for c in COMMANDS)
    assert sum("train.py" in c for c in COMMANDS) >= 5


def run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True, timeout=240)


def first_job(override: str) -> str:
    """key=a,b,c (a Hydra sweep) -> key=a."""
    key, _, value = override.partition("=")
    return f"{key}={value.split(',')[0]}" if value and value[0] not in "[{" else override


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_composes(command, tmp_path):
    words = shlex.split(command)
    program, args = words[0], words[1:]
    if program == "make":
        proc = run(["make", "-n", *args])
        assert proc.returncode == 0, proc.stderr
        return
    if program.endswith("python"):
        assert args[0] == "train.py", f"{command}: the README runs commands by their own names"
        if {"-m", "--multirun"} & set(args[1:]):  # a multirun composes as its first job
            args = [args[0], *(first_job(a) for a in args[1:] if a not in ("-m", "--multirun"))]
        proc = run([sys.executable, *args, "--cfg", "job"])
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        return
    # a console script of pyproject.toml, installed in the environment by `make`
    script = Path(sys.executable).parent / Path(program).name
    assert script.exists(), f"{command}: {script.name} is not installed (make test installs it)"
    if script.name == "aslfr-prepare":  # a Hydra app: the overrides must compose
        proc = run([str(script), *args, "--cfg", "job"])
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        return
    proc = run([str(script), "--help"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    for option in (a.split("=")[0] for a in args if a.startswith("--")):
        assert option in proc.stdout, f"{command}: {option} is not an option of {script.name}"
    if script.name == "aslfr-sweep":  # the definition loads, the overrides for every trial compose
        values = {a for i, a in enumerate(args) if i and args[i - 1].startswith("--")}
        positional = [a for a in args if not a.startswith("--") and a not in values]
        definition = [a for a in positional if a.endswith(".yaml")]
        overrides = [a for a in positional if "=" in a]
        assert definition, command
        sweep.load(ROOT / definition[0])
        compose_cfg(overrides, tmp_path)
