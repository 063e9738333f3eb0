"""What `pip install .` delivers: every subpackage, the console scripts, and the sweep runner with
its runtime dependencies (the `sweeps` package is one, not a test extra)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile

import pytest

from conftest import ROOT, subprocess_env

pytestmark = pytest.mark.slow  # builds a wheel


def test_a_wheel_holds_every_subpackage_and_runs_the_sweep_runner(tmp_path):
    source = tmp_path / "source"  # a copy: building in the checkout would leave build/ there
    shutil.copytree(ROOT / "aslfr", source / "aslfr", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    wheel_command = ["wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path)]
    build = subprocess.run(
        [sys.executable, "-m", "pip", *wheel_command, str(source)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = tmp_path.glob("aslfr-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        entry_points = next(z.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    for package in ("data", "data/synthetic", "model", "export", "train", "experiments"):
        assert f"aslfr/{package}/__init__.py" in names, package
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert all(f"{name} = {target}" in entry_points for name, target in scripts.items())
    site = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    # from the installed copy, away from the checkout
    env = subprocess_env(PYTHONPATH=str(site))
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            (
                "import sys, aslfr; print(aslfr.__file__); sys.argv = ['aslfr-sweep', '--help']; "
                "from aslfr.experiments.sweep import main; main()"
            ),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith(str(site)) and "--trials" in proc.stdout
