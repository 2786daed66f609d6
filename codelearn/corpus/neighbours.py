"""Neighbours of a unit: similar code from the index, or random code.

Contrastive-context samples and the context probes both put neighbour chunks
before a target. Similar ones come from the index's own vectors (cosine) when
both sides have one, else from shared identifiers weighted by rarity; random
ones from a seeded draw. The pool is training material only, and a unit is
never its own neighbour, so held-out code cannot leak in as "context".
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from pathlib import Path

import numpy as np

from codelearn.corpus.units import Unit

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{2,}")
QUERY_TERMS = 12


def _terms(text: str) -> Counter:
    return Counter(word.lower() for word in _WORD.findall(text))


class Neighbours:
    """Finds similar and random neighbours for any unit among a pool."""

    def __init__(self, pool: list[Unit], vectors: dict[str, np.ndarray] | None = None,
                 seed: int = 0) -> None:
        self.pool = pool
        self.rng = random.Random(seed)
        self._postings: dict[str, list[int]] = {}
        for index, unit in enumerate(pool):
            for term in _terms(unit.symbol + " " + unit.text):
                self._postings.setdefault(term, []).append(index)
        self._idf = {t: math.log(len(pool) / len(p)) for t, p in self._postings.items()}
        self._vectors = vectors or {}
        with_vec = [i for i, u in enumerate(pool) if u.vec_key in self._vectors]
        self._vec_index = np.array(with_vec, dtype=np.int64)
        self._matrix = (np.stack([self._vectors[pool[i].vec_key] for i in with_vec])
                        if with_vec else None)

    def similar(self, unit: Unit, k: int) -> list[Unit]:
        """Up to k pool units most like `unit` (never `unit` itself or an identical text)."""
        if k <= 0 or not self.pool:
            return []
        ranked = self._by_vector(unit) if unit.vec_key in self._vectors else self._by_terms(unit)
        out = []
        for index in ranked:
            other = self.pool[index]
            if other.key == unit.key or other.text == unit.text:
                continue
            out.append(other)
            if len(out) == k:
                break
        return out

    def random(self, unit: Unit, k: int, rng: random.Random | None = None) -> list[Unit]:
        """k pool units drawn at random from other files (with `rng`, else the finder's own)."""
        others = [u for u in (rng or self.rng).sample(self.pool, min(len(self.pool), 4 * k + 4))
                  if u.path != unit.path]
        return others[:k]

    def _by_vector(self, unit: Unit) -> list[int]:
        if self._matrix is None:
            return self._by_terms(unit)
        scores = self._matrix @ self._vectors[unit.vec_key]
        order = np.argsort(-scores)[:64]
        return [int(self._vec_index[i]) for i in order]

    def _by_terms(self, unit: Unit) -> list[int]:
        terms = sorted(_terms(unit.symbol + " " + unit.text), key=lambda t: -self._idf.get(t, 0))
        scores: Counter = Counter()
        for term in terms[:QUERY_TERMS]:
            postings = self._postings.get(term, [])
            if len(postings) > len(self.pool) // 2:
                continue  # too common to say anything
            for index in postings:
                scores[index] += self._idf[term]
        return [index for index, _ in scores.most_common(64)]


def load_vectors(catalog_path: Path, keys: set[str]) -> dict[str, np.ndarray]:
    """The index's vectors for `keys`, L2-normalised (empty when the index has none)."""
    from codelearn.index.catalog import Catalog

    catalog = Catalog(catalog_path, readonly=True)
    try:
        found = catalog.referenced_vectors(at_most=10**7)
    finally:
        catalog.close()
    if not found or not found[0]:
        return {}
    names, matrix = found
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    matrix = matrix / np.maximum(norms, 1e-9)
    return {key: matrix[i] for i, key in enumerate(names) if key in keys}
