"""The README cannot drift from the code: every `python …` / `make …` command in its code blocks
at least composes. train.py and prepare get Hydra's `--cfg job` (the overrides must compose),
modules get `--help` (every option the README uses must be one of theirs), sweep commands also
load their definition and compose their overrides, make targets get a dry run (`make -n`)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys

import pytest

from aslfr import sweep

from conftest import ROOT, compose_cfg, subprocess_env

PROGRAM = re.compile(r"^(\.venv/bin/python|python|make)\s")


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
    return subprocess.run(args, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True,
                          timeout=240)


def first_job(override: str) -> str:
    """key=a,b,c (a Hydra sweep) -> key=a."""
    key, _, value = override.partition("=")
    return f"{key}={value.split(',')[0]}" if value and value[0] not in "[{" else override


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_composes(command, tmp_path):
    words = shlex.split(command)
    if words[0] == "make":
        proc = run(["make", "-n", *words[1:]])
        assert proc.returncode == 0, proc.stderr
        return
    args = words[1:]
    if args[0] == "train.py" or args[:2] == ["-m", "aslfr.prepare"]:
        if {"-m", "--multirun"} & set(args[1:]):  # a multirun composes as its first job
            args = [args[0], *(first_job(a) for a in args[1:] if a not in ("-m", "--multirun"))]
        proc = run([sys.executable, *args, "--cfg", "job"])
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
        return
    assert args[0] == "-m", command
    proc = run([sys.executable, *args[:2], "--help"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    for option in (a.split("=")[0] for a in args[2:] if a.startswith("--")):
        assert option in proc.stdout, f"{command}: {option} is not an option of {args[1]}"
    if args[1] == "aslfr.sweep":  # the definition loads, the overrides for every trial compose
        positional = [a for a in args[2:] if not a.startswith("--")]
        values = {a for i, a in enumerate(args[2:], 2) if args[i - 1].startswith("--")}
        definition = [a for a in positional if a.endswith(".yaml") and a not in values]
        overrides = [a for a in positional if "=" in a and a not in values]
        assert definition, command
        sweep.load(ROOT / definition[0])
        compose_cfg(overrides, tmp_path)
