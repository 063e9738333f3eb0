"""The README cannot drift from the code: every `python …`, `aslfr-…` and `make …` command in its
code blocks at least composes. train.py and aslfr-prepare get Hydra's `--cfg job` (the overrides
must compose), the other commands `--help` (every option the README uses must be one of theirs),
sweep commands also load their definition and compose their overrides, make targets get a dry run
(`make -n`). And the documentation stays a guide: the README within 25 KB, every relative link in
it and in docs/ resolving (anchors included), nothing pointing outside the repository, and no
account of how the project got where it is."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from aslfr.experiments import sweep

from conftest import CONF, ROOT, compose_cfg, subprocess_env

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


def compose_app(config_name: str, overrides: list[str]) -> None:
    """What `--cfg job` does for a Hydra app, in this process: its config and Hydra's own
    (launcher groups, hydra.* keys) composed with the command's overrides."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        compose(config_name, overrides=overrides, return_hydra_config=True)


def console_script(name: str):
    """The function pyproject.toml installs as the console script `name`."""
    (entry,) = entry_points(group="console_scripts", name=name)
    return entry.load()


@pytest.mark.slow  # every command in the README, Hydra composing and the CLIs' --help in process
@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_composes(command, tmp_path, capsys):
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
        compose_app("config", args[1:])
        return
    # a console script of pyproject.toml, installed in the environment by `make`
    script = Path(sys.executable).parent / Path(program).name
    assert script.exists(), f"{command}: {script.name} is not installed (make test installs it)"
    if script.name == "aslfr-prepare":  # a Hydra app: the overrides must compose
        compose_app("prepare", args)
        return
    with pytest.raises(SystemExit) as exit_:
        console_script(script.name)(["--help"])
    help_text = capsys.readouterr().out
    assert exit_.value.code in (0, None), help_text
    for option in (a.split("=")[0] for a in args if a.startswith("--")):
        assert option in help_text, f"{command}: {option} is not an option of {script.name}"
    if script.name == "aslfr-sweep":  # the definition loads, the overrides for every trial compose
        values = {a for i, a in enumerate(args) if i and args[i - 1].startswith("--")}
        positional = [a for a in args if not a.startswith("--") and a not in values]
        definition = [a for a in positional if a.endswith(".yaml")]
        overrides = [a for a in positional if "=" in a]
        assert definition, command
        sweep.load(ROOT / definition[0])
        compose_cfg(overrides, tmp_path)


README_LIMIT = 25_600  # bytes: a guide a user reads; benchmarks and reasoning live in docs/
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
# Words that tell how the project got here instead of what it is (README, docs/).
HISTORY = re.compile(
    r"\bround \d|\bround's\b|\bissues?\b|\bsessions?\b|\bpreviously\b|\(was\b|\bwas \d"
    r"|\bearlier machines?\b|\blent\b|\btoday's\b",
    re.I,
)


def tracked_text_files() -> list[Path]:
    """The repository's tracked files that are text (git's list; a tree without git: every file
    outside hidden and generated directories)."""
    proc = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True)
    if proc.returncode == 0:
        paths = [ROOT / p for p in proc.stdout.decode().split("\0") if p]
    else:
        skip = {"data", "outputs", "multirun", "sweeps-out", "bench-out", "__pycache__"}
        paths = [
            p
            for p in ROOT.rglob("*")
            if not any(part.startswith(".") or part in skip for part in p.relative_to(ROOT).parts)
        ]
    texts = []
    for path in paths:
        if path.is_file() and b"\0" not in path.read_bytes()[:8192]:
            texts.append(path)
    return texts


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M)
    return {slug(h) for h in re.findall(r"^#+\s+(.+?)\s*$", text, flags=re.M)}


def test_the_readme_is_a_guide_within_25_kb():
    size = len((ROOT / "README.md").read_bytes())
    assert size <= README_LIMIT, (
        f"README.md is {size:,} bytes (at most {README_LIMIT:,}): move detail to docs/"
    )


def test_nothing_points_outside_the_repository():
    outside = "../" + "shared"
    hits = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in tracked_text_files()
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
        if outside in line
    ]
    assert not hits, (
        f"references outside the repository: {hits} (write the fact into docs/ with its public source)"
    )


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_relative_link_resolves(doc):
    text = re.sub(r"^```.*?^```", "", doc.read_text(), flags=re.S | re.M)
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:: not ours to check
            continue
        file, _, anchor = target.partition("#")
        path = (doc.parent / file).resolve() if file else doc
        inside = path.exists() and ROOT.resolve() in path.parents
        if not inside or (anchor and path.suffix == ".md" and anchor not in anchors(path)):
            broken.append(target)
    assert not broken, f"{doc.relative_to(ROOT)}: links that do not resolve: {broken}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_the_documentation_says_what_is_not_how_it_came_to_be(doc):
    hits = [
        f"{n}: {m.group(0)!r}"
        for n, line in enumerate(doc.read_text().splitlines(), 1)
        for m in HISTORY.finditer(line)
    ]
    assert not hits, f"{doc.relative_to(ROOT)}: history words {hits}; say what is and why"
