"""Units: the index's chunks (already secret-redacted) as material to learn from.

Nothing here re-parses source files: chunk boundaries, symbols, scope context
and redaction all come from the index. What is filtered out is what a model
should not learn from: vendored copies, minified or near-empty chunks and
near-duplicates (the same text twice teaches nothing new and overweights it).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from codelearn.index.chunk import Chunk
from codelearn.index.catalog import Catalog, StoredChunk

VENDORED = re.compile(
    r"(^|/)(vendor|vendored|third_party|third-party|node_modules|site-packages|bower_components)/")
MIN_CHARS = 24
MAX_MEAN_LINE = 200  # characters; minified code has very long lines


def unit_key(source: str, path: str, start_line: int) -> str:
    """The key of the unit (or index chunk, or search hit) that starts at this line of this file."""
    return f"{source}:{path}:{start_line}"


@dataclass(frozen=True)
class Unit:
    """One chunk of code with its place: the atom of every sample and probe."""

    id: int
    source: str
    path: str
    language: str
    kind: str
    symbol: str
    start_line: int
    end_line: int
    text: str
    context: str
    is_test: bool
    vec_key: str | None

    @property
    def label(self) -> str:
        return f"{self.path}:{self.start_line}-{self.end_line}"

    @property
    def key(self) -> str:
        """Stable across index runs (row ids are not)."""
        return unit_key(self.source, self.path, self.start_line)

    @property
    def lines(self) -> range:
        return range(self.start_line, self.end_line + 1)

    def as_chunk(self, text: str | None = None) -> Chunk:
        """The chunk it came from (with `text` instead of its own, if given)."""
        return Chunk(self.path, self.language, self.kind, self.symbol, self.start_line, self.end_line,
                     self.text if text is None else text, self.context)

    def text_hash(self) -> str:
        return hashlib.sha1(self.text.encode("utf-8", "replace")).hexdigest()


def _unit(stored: StoredChunk) -> Unit:
    c = stored.chunk
    return Unit(stored.id, stored.source, c.path, c.language, c.kind, c.symbol, c.start_line,
                c.end_line, c.text, c.context, stored.is_test, stored.vec_key)


def _normalised(text: str) -> str:
    return " ".join(text.split())


def fingerprint(text: str) -> str:
    """The same for two texts that differ only in whitespace."""
    return hashlib.sha1(_normalised(text).encode("utf-8", "replace")).hexdigest()


def overlapping(units: list[Unit], others: list[Unit]) -> set[int]:
    """Indexes of `units` that hold (or are) the text of one of `others`, whitespace aside.

    Each needle is looked up by its first line, so the cost grows with the lines, not with
    units x others."""
    needles: dict[str, list[str]] = {}
    for other in others:
        first = next((line.strip() for line in other.text.splitlines() if line.strip()), "")
        needles.setdefault(first, []).append(_normalised(other.text))
    found = set()
    for index, unit in enumerate(units):
        candidates = [n for line in {line.strip() for line in unit.text.splitlines()}
                      for n in needles.get(line, ())]
        if candidates:
            text = _normalised(unit.text)
            if any(needle in text for needle in candidates):
                found.add(index)
    return found


def keep(unit: Unit) -> bool:
    """False for vendored, near-empty and minified chunks."""
    if VENDORED.search(unit.path) or len(unit.text.strip()) < MIN_CHARS:
        return False
    lines = unit.text.count("\n") + 1
    return len(unit.text) / lines <= MAX_MEAN_LINE


def load_units(catalog_path: Path) -> list[Unit]:
    """Every learnable chunk of the index, in file order, near-duplicates dropped."""
    catalog = Catalog(catalog_path, readonly=True)
    try:
        stored = list(catalog.iter_chunks())
    finally:
        catalog.close()
    seen: set[str] = set()
    units = []
    for unit in map(_unit, stored):
        digest = fingerprint(unit.text)
        if not keep(unit) or digest in seen:
            continue
        seen.add(digest)
        units.append(unit)
    return units


def by_file(units: list[Unit]) -> dict[tuple[str, str], list[Unit]]:
    """Units grouped per (source, path), in line order."""
    files: dict[tuple[str, str], list[Unit]] = {}
    for unit in units:
        files.setdefault((unit.source, unit.path), []).append(unit)
    for group in files.values():
        group.sort(key=lambda u: u.start_line)
    return files
