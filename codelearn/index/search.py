"""Hybrid search: keyword (FTS5 bm25) and vector results fused by score.

Each keyword hit scores its bm25 relative to the best hit (1.0 for the best),
each vector hit a value that decays with its rank, and the two are mixed with
the keyword side weighted up: on the stdlib dev sets this beat reciprocal-rank
fusion, which let chunks found by both sides at middling ranks push a clear
keyword winner (an exact identifier, a rare word) out of the top results.
Chunks whose symbol is named in the query get a bonus; test code is only
keyword-indexed by default and ranks slightly below the code it tests.
benchmarks/retrieval.py measures all of this.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np

from codelearn.index.catalog import Catalog, StoredChunk
from codelearn.index.embedder import NO_EMBEDDER
from codelearn.index import ranking
from codelearn.index.keywords import fts_query
from codelearn.project import Project

log = logging.getLogger(__name__)

Mode = Literal["hybrid", "keyword", "vector"]
CANDIDATES = 60
KEYWORD_WEIGHT = 0.7  # share of the keyword side; the vector side gets the rest
VECTOR_DECAY = 0.1  # vector hit at rank r scores 1 / (1 + VECTOR_DECAY * (r - 1))
# Up to this many vectors, search exactly over the catalog's copy instead of
# opening Chroma: reading 23k vectors from SQLite takes ~0.35 s where importing
# and opening Chroma takes ~1.2 s, which a one-shot `ask` or `search` pays.
EXACT_SEARCH_MAX = 40_000


@dataclass(frozen=True)
class Hit:
    """One search result. `as_json` is the stable `--json` schema."""

    path: str
    source: str
    start_line: int
    end_line: int
    symbol: str
    kind: str
    language: str
    score: float
    text: str
    context: str
    keyword_rank: int | None
    vector_rank: int | None
    chunk_id: int

    def as_json(self) -> dict:
        return {
            "path": self.path, "source": self.source, "start_line": self.start_line,
            "end_line": self.end_line, "symbol": self.symbol, "kind": self.kind,
            "language": self.language, "score": round(self.score, 6),
            "keyword_rank": self.keyword_rank, "vector_rank": self.vector_rank,
            "context": self.context, "text": self.text,
        }


class Searcher:
    """Answers queries against one project's index; cheap to call repeatedly."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.catalog = Catalog(project.catalog_path, readonly=True)
        self._embedder = None
        self._store = None
        self._pending: tuple[list[str], np.ndarray] | None = None
        self._exact: tuple[list[str], np.ndarray] | None = None  # all vectors, when searched exactly
        self._exact_decided = False

    def close(self) -> None:
        self.catalog.close()

    def search(self, query: str, k: int = 10, mode: Mode = "hybrid") -> list[Hit]:
        """The k best chunks for a query."""
        if self.project.settings.embedder == NO_EMBEDDER:
            mode = "keyword" if mode == "hybrid" else mode
        keyword = self.keyword_scores(query) if mode != "vector" else []
        vector = self.vector_ranking(query) if mode != "keyword" else []
        weight = {"keyword": 1.0, "vector": 0.0}.get(mode, KEYWORD_WEIGHT)
        fused = _fuse(keyword, vector, weight)
        chunks = self.catalog.chunks_by_id(fused)
        scored = ranking.adjust(fused, chunks, ranking.Query.parse(query))
        best = ranking.top(scored, chunks, k)
        kw_rank = {cid: r for r, (cid, _) in enumerate(keyword, 1)}
        vec_rank = {cid: r for r, cid in enumerate(vector, 1)}
        return [_hit(chunks[cid], score, kw_rank.get(cid), vec_rank.get(cid))
                for cid, score in best]

    def keyword_scores(self, query: str) -> list[tuple[int, float]]:
        """(chunk id, bm25 relative to the best hit: 1.0 for the best), best first."""
        hits = self.catalog.keyword_search(fts_query(query), CANDIDATES)
        if not hits:
            return []
        best = hits[0][1] or -1e-9  # FTS5's bm25 is negative: lower is better
        return [(cid, score / best) for cid, score in hits]

    def vector_ranking(self, query: str) -> list[int]:
        vec = self.embedder.embed_query(query)
        if not self._exact_decided:
            self._exact_decided = True
            if not self.project.settings.chroma_url:
                self._exact = self.catalog.referenced_vectors(EXACT_SEARCH_MAX)
        if self._exact is not None:
            scored = _nearest(*self._exact, vec)
        else:
            scored = self._store_hits(vec) + self._pending_hits(vec)
        scored.sort(key=lambda kv: -kv[1])
        ids_by_key = self.catalog.chunk_ids_for_vectors([k for k, _ in scored])
        ranking: list[int] = []
        for key, _ in scored:
            ranking.extend(sorted(ids_by_key.get(key, ())))  # unreferenced keys drop out
        return ranking[:CANDIDATES]

    @property
    def embedder(self):
        if self._embedder is None:
            from codelearn.index.embedder import project_embedder

            # One thread: a query is one short text (~20 ms), and a thread pool
            # would compete with the answer model loading beside it.
            self._embedder = project_embedder(self.project, threads=1)
        return self._embedder

    def _store_hits(self, vec: np.ndarray) -> list[tuple[str, float]]:
        if self._store is None:
            if not self.project.settings.chroma_url and not self.project.store_path.exists():
                return []
            from codelearn.index.indexer import open_store

            self._store = open_store(self.project, self.embedder.name)
        return self._store.query(vec, CANDIDATES)

    def _pending_hits(self, vec: np.ndarray) -> list[tuple[str, float]]:
        if self._pending is None:
            self._pending = self.catalog.vectors_not_in_store()
        return _nearest(*self._pending, vec)


def _nearest(keys: list[str], matrix: np.ndarray, vec: np.ndarray) -> list[tuple[str, float]]:
    """Exact cosine neighbours (vectors are normalised), best first."""
    if not keys:
        return []
    sims = matrix @ vec
    top = np.argsort(-sims)[:CANDIDATES]
    return [(keys[i], float(sims[i])) for i in top]


def _fuse(keyword: list[tuple[int, float]], vector: list[int], kw_weight: float) -> dict[int, float]:
    fused: dict[int, float] = {}
    for cid, relative in keyword:
        fused[cid] = fused.get(cid, 0.0) + kw_weight * relative
    for rank, cid in enumerate(vector, 1):
        fused[cid] = fused.get(cid, 0.0) + (1.0 - kw_weight) / (1 + VECTOR_DECAY * (rank - 1))
    return fused


def _hit(stored: StoredChunk, score: float, kw: int | None, vec: int | None) -> Hit:
    c = stored.chunk
    return Hit(path=c.path, source=stored.source, start_line=c.start_line, end_line=c.end_line,
               symbol=c.symbol, kind=c.kind, language=c.language, score=score, text=c.text,
               context=c.context, keyword_rank=kw, vector_rank=vec, chunk_id=stored.id)
