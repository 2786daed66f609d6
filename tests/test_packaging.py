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
