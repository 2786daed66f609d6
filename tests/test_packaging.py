"""Packaging promises the code makes: every extra an error names exists, package data is there."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _extras() -> set[str]:
    return set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])


def test_every_extra_named_in_the_code_exists():
    named = set()
    for path in (ROOT / "codelearn").rglob("*.py"):
        text = path.read_text()
        named |= set(re.findall(r"MissingExtraError\([^)]*?,\s*\"([a-z-]+)\"\)", text))
        named |= set(re.findall(r"codelearn\[([a-z,-]+)\]", text))
    flat = {extra for group in named for extra in group.split(",")}
    assert flat, "the pattern found nothing: the test would pass vacuously"
    assert flat <= _extras(), f"extras named in code but missing from pyproject: {flat - _extras()}"


def test_declared_package_data_exists():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    for pattern in data["codelearn"]:
        assert list((ROOT / "codelearn").glob(pattern)), pattern


def test_a_built_wheel_installs_and_runs(tmp_path):
    """What `pipx install codelearn-*.whl` gets: the console script, `python -m codelearn`, the
    package data (tree-sitter queries) and the version, from the wheel, not this checkout."""
    import os
    import subprocess
    import sys

    import setuptools

    # offline with the setuptools at hand when it is new enough; else pip fetches one to build with
    flags = ["--no-build-isolation"] if int(setuptools.__version__.split(".")[0]) >= 68 else []
    # from a clean copy: an editable install's egg-info would hand the build files pyproject omits
    import shutil

    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", ".codelearn", "__pycache__", "tests", "benchmarks"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *flags, "-w",
                            str(tmp_path / "dist"), str(source)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    wheel = next((tmp_path / "dist").glob("codelearn-*.whl"))
    target = tmp_path / "site"
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target",
                                str(target), str(wheel)], capture_output=True, text=True)
    assert installed.returncode == 0, installed.stderr
    env = dict(os.environ, PYTHONPATH=str(target))
    from codelearn import __version__

    script = subprocess.run([str(target / "bin" / "codelearn"), "--version"], capture_output=True, text=True, env=env)
    assert script.returncode == 0 and script.stdout.strip() == f"codelearn {__version__}", script.stderr
    probe = ("import codelearn; from codelearn.index.chunker import chunk_file; "
             "print(codelearn.__file__); print([c.kind + ':' + c.symbol for c in chunk_file('a.py', 'def f(): pass')][0])")
    ran = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    where, chunk = ran.stdout.split()
    assert where.startswith(str(target)) and chunk == "function:f", ran.stderr  # a syntax chunk: queries shipped
