"""The vector store adapter: the only module that imports chromadb.

Chroma holds one collection per repo and embedder, with content-addressed ids
(`vec_key`) and no documents or metadata: the catalog has those, and keeping
Chroma lean roughly halves its write cost. Collections are created with
`embedding_function=None` because Chroma's default embedder downloads a model.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from codelearn.errors import CodelearnError, MissingExtraError

log = logging.getLogger(__name__)

MAX_BATCH = 5000  # Chroma rejects adds above 5461 records
# Smaller graphs build twice as fast; recall stays high at a code index's size.
HNSW = {"hnsw:space": "cosine", "hnsw:construction_ef": 64, "hnsw:M": 16}


def collection_name(repo_key: str, embedder_name: str) -> str:
    """A valid Chroma name, unique per repo and embedder."""
    digest = hashlib.sha1(f"{repo_key}\0{embedder_name}".encode()).hexdigest()[:16]
    return f"codelearn-{digest}"


def _chromadb():
    try:
        import chromadb
    except ImportError:  # pragma: no cover - chromadb is a core dependency
        raise MissingExtraError("chromadb") from None
    return chromadb


class VectorStore:
    """Nearest-neighbour search over embeddings, on disk or on a Chroma server."""

    def __init__(self, name: str, path: Path | None = None, url: str = "") -> None:
        chromadb = _chromadb()
        settings = chromadb.Settings(anonymized_telemetry=False, allow_reset=False)
        self.path = path
        try:
            if url:
                host, port, ssl = _parse_url(url)
                self.client = chromadb.HttpClient(host=host, port=port, ssl=ssl, settings=settings)
            else:
                assert path is not None
                path.mkdir(parents=True, exist_ok=True)
                self.client = chromadb.PersistentClient(path=str(path), settings=settings)
            self.collection = self.client.get_or_create_collection(
                name, embedding_function=None, metadata=HNSW)
        except CodelearnError:
            raise
        except Exception as exc:  # chromadb raises many types; all mean "unusable"
            where = url or str(path)
            raise CodelearnError(
                f"Cannot open the vector store at {where}: {exc}.",
                "Check the Chroma server URL (setting chroma_url)" if url
                else "Run `codelearn index --rebuild`.",
            ) from exc

    def upsert(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        for start in range(0, len(keys), MAX_BATCH):
            self.collection.upsert(ids=list(keys[start:start + MAX_BATCH]),
                                   embeddings=vectors[start:start + MAX_BATCH])

    def delete(self, keys: Sequence[str]) -> None:
        for start in range(0, len(keys), MAX_BATCH):
            self.collection.delete(ids=list(keys[start:start + MAX_BATCH]))

    def keys(self) -> set[str]:
        return set(self.collection.get(include=[])["ids"])

    def count(self) -> int:
        return self.collection.count()

    def query(self, vector: np.ndarray, n: int) -> list[tuple[str, float]]:
        """(key, cosine similarity), best first."""
        if n <= 0 or self.count() == 0:
            return []
        res = self.collection.query(query_embeddings=[vector], n_results=n,
                                    include=["distances"])
        return [(k, 1.0 - float(d)) for k, d in zip(res["ids"][0], res["distances"][0])]


def destroy_local(path: Path) -> None:
    """Delete an on-disk store, forgetting Chroma's per-process cache of it."""
    try:
        from chromadb.api.client import SharedSystemClient

        SharedSystemClient.clear_system_cache()
    except Exception:  # pragma: no cover - only matters inside one process
        log.debug("could not clear chroma's system cache", exc_info=True)
    shutil.rmtree(path, ignore_errors=True)


def _parse_url(url: str) -> tuple[str, int, bool]:
    from urllib.parse import urlparse

    parsed = urlparse(url if "://" in url else f"http://{url}")
    if not parsed.hostname:
        raise CodelearnError(f"Bad Chroma URL {url!r}.", "Use the form http://host:8000.")
    ssl = parsed.scheme == "https"
    return parsed.hostname, parsed.port or (443 if ssl else 8000), ssl
