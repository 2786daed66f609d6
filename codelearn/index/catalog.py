"""The catalog: one SQLite file that is the index's source of truth.

It holds what each file looked like when it was indexed (content hash, size,
mtime), its chunks, the keyword index over them (FTS5), and every embedding
computed so far keyed by a content address (`vec_key`), so a chunk whose text
did not change is never embedded twice, even after a branch switch and back.
The vector store (Chroma) is an approximate-nearest-neighbour index over the
`vectors` table and can always be rebuilt from it without re-embedding.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from codelearn.errors import CodelearnError, SchemaMismatchError
from codelearn.index.chunk import Chunk
from codelearn.index.keywords import expand_identifiers, path_words, split_identifier

if TYPE_CHECKING:
    import numpy as np

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files(
    source TEXT NOT NULL, path TEXT NOT NULL,
    content_hash TEXT, size INTEGER, mtime_ns INTEGER,
    status TEXT NOT NULL, reason TEXT, detail TEXT, language TEXT,
    n_chunks INTEGER NOT NULL DEFAULT 0, redactions TEXT,
    PRIMARY KEY(source, path)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS chunks(
    id INTEGER PRIMARY KEY, source TEXT NOT NULL, path TEXT NOT NULL,
    language TEXT NOT NULL, kind TEXT NOT NULL, symbol TEXT NOT NULL,
    start_line INTEGER NOT NULL, end_line INTEGER NOT NULL,
    context TEXT NOT NULL, text TEXT NOT NULL, is_test INTEGER NOT NULL,
    vec_key TEXT);
CREATE INDEX IF NOT EXISTS chunks_file ON chunks(source, path);
CREATE INDEX IF NOT EXISTS chunks_vec ON chunks(vec_key);
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(
    symbol, path, context, body, tokenize='porter unicode61 remove_diacritics 2');
CREATE TABLE IF NOT EXISTS vectors(
    key TEXT PRIMARY KEY, vec BLOB NOT NULL, in_store INTEGER NOT NULL DEFAULT 0)
    WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS vectors_pending ON vectors(in_store);
"""

# bm25 column weights: symbol, path, context, body. A hit on a symbol name is
# worth far more than the same word somewhere in a body.
FTS_WEIGHTS = (10.0, 3.0, 2.0, 1.0)


@dataclass(frozen=True)
class FileRecord:
    """What the catalog remembers about one file."""

    source: str
    path: str
    content_hash: str | None
    size: int
    mtime_ns: int
    status: str
    reason: str | None = None
    detail: str | None = None


@dataclass(frozen=True)
class StoredChunk:
    """A chunk as stored, with its row id and source label."""

    id: int
    source: str
    chunk: Chunk
    is_test: bool
    vec_key: str | None


@dataclass(frozen=True)
class PendingVector:
    """A chunk text that still needs an embedding."""

    key: str
    chunk: Chunk


class Catalog:
    """The SQLite side of the index. One writer at a time (see `lock`)."""

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = path
        if readonly and not path.exists():
            raise CodelearnError(f"No index at {path.parent}.", "Run `codelearn index` first.")
        self.db = sqlite3.connect(path, timeout=30, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self._check_schema(readonly)

    def _check_schema(self, readonly: bool) -> None:
        has_meta = self.db.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
        ).fetchone()
        if has_meta:
            found = self.get_meta("schema_version")
            if found is not None and int(found) != SCHEMA_VERSION:
                raise SchemaMismatchError("index", found, SCHEMA_VERSION)
        if readonly:
            return
        self.db.executescript(_SCHEMA)
        if self.get_meta("schema_version") is None:
            self.set_meta("schema_version", str(SCHEMA_VERSION))

    def close(self) -> None:
        self.db.close()

    # -- meta -------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)", (key, value))

    def get_json(self, key: str, default: object = None) -> object:
        raw = self.get_meta(key)
        return default if raw is None else json.loads(raw)

    def set_json(self, key: str, value: object) -> None:
        self.set_meta(key, json.dumps(value))

    # -- transactions -----------------------------------------------------
    def begin(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self.db.execute("COMMIT")

    # -- files --------------------------------------------------------------
    def files(self, source: str) -> dict[str, FileRecord]:
        rows = self.db.execute(
            "SELECT source, path, content_hash, size, mtime_ns, status, reason, detail"
            " FROM files WHERE source=?",
            (source,),
        )
        return {row[1]: FileRecord(*row) for row in rows}

    def count_skipped(self, source: str) -> int:
        return self.db.execute("SELECT count(*) FROM files WHERE source=? AND status='skipped'",
                               (source,)).fetchone()[0]

    def sources(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT DISTINCT source FROM files")]

    def touch_file(self, source: str, path: str, size: int, mtime_ns: int) -> None:
        """Record a new stat for a file whose content did not change."""
        self.db.execute(
            "UPDATE files SET size=?, mtime_ns=? WHERE source=? AND path=?",
            (size, mtime_ns, source, path),
        )

    def remove_file(self, source: str, path: str) -> None:
        self._delete_chunks(source, path)
        self.db.execute("DELETE FROM files WHERE source=? AND path=?", (source, path))

    def put_skipped(self, record: FileRecord) -> None:
        self._delete_chunks(record.source, record.path)
        self.db.execute(
            "INSERT OR REPLACE INTO files(source, path, content_hash, size, mtime_ns,"
            " status, reason, detail) VALUES(?,?,?,?,?,?,?,?)",
            (record.source, record.path, record.content_hash, record.size,
             record.mtime_ns, "skipped", record.reason, record.detail),
        )

    def put_file(
        self,
        record: FileRecord,
        chunks: Sequence[Chunk],
        vec_keys: Sequence[str | None],
        is_test: bool,
        redactions: list[dict] | None = None,
    ) -> None:
        """Replace a file's row and chunks (call inside a transaction)."""
        self._delete_chunks(record.source, record.path)
        language = chunks[0].language if chunks else None
        self.db.execute(
            "INSERT OR REPLACE INTO files(source, path, content_hash, size, mtime_ns,"
            " status, language, n_chunks, redactions) VALUES(?,?,?,?,?,?,?,?,?)",
            (record.source, record.path, record.content_hash, record.size, record.mtime_ns,
             "indexed", language, len(chunks), json.dumps(redactions) if redactions else None),
        )
        words = path_words(record.path)
        for chunk, key in zip(chunks, vec_keys):
            cur = self.db.execute(
                "INSERT INTO chunks(source, path, language, kind, symbol, start_line, end_line,"
                " context, text, is_test, vec_key) VALUES(?,?,?,?,?,?,?,?,?,?,?)",
                (record.source, record.path, chunk.language, chunk.kind, chunk.symbol,
                 chunk.start_line, chunk.end_line, chunk.context, chunk.text, int(is_test), key),
            )
            symbol_words = chunk.symbol + " " + " ".join(split_identifier(chunk.symbol))
            self.db.execute(
                "INSERT INTO chunks_fts(rowid, symbol, path, context, body) VALUES(?,?,?,?,?)",
                (cur.lastrowid, symbol_words, words, chunk.context, expand_identifiers(chunk.text)),
            )

    def _delete_chunks(self, source: str, path: str) -> None:
        ids = [r[0] for r in self.db.execute(
            "SELECT id FROM chunks WHERE source=? AND path=?", (source, path))]
        if not ids:
            return
        self.db.executemany("DELETE FROM chunks_fts WHERE rowid=?", ((i,) for i in ids))
        self.db.execute("DELETE FROM chunks WHERE source=? AND path=?", (source, path))

    # -- chunks -------------------------------------------------------------
    def count_chunks(self, source: str, path: str) -> int:
        return self.db.execute(
            "SELECT count(*) FROM chunks WHERE source=? AND path=?", (source, path)).fetchone()[0]

    def chunks_by_id(self, ids: Iterable[int]) -> dict[int, StoredChunk]:
        ids = list(ids)
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self.db.execute(
            "SELECT id, source, path, language, kind, symbol, start_line, end_line, context,"
            f" text, is_test, vec_key FROM chunks WHERE id IN ({marks})", ids)
        return {row[0]: _stored(row) for row in rows}

    def chunk_ids_for_vectors(self, keys: Sequence[str]) -> dict[str, list[int]]:
        if not keys:
            return {}
        marks = ",".join("?" * len(keys))
        out: dict[str, list[int]] = {}
        for key, cid in self.db.execute(
            f"SELECT vec_key, id FROM chunks WHERE vec_key IN ({marks})", list(keys)
        ):
            out.setdefault(key, []).append(cid)
        return out

    def iter_chunks(self) -> Iterator[StoredChunk]:
        yield from (_stored(row) for row in self.db.execute(
            "SELECT id, source, path, language, kind, symbol, start_line, end_line, context,"
            " text, is_test, vec_key FROM chunks ORDER BY source, path, start_line, id"))

    def keyword_search(self, match: str, limit: int) -> list[tuple[int, float]]:
        """(chunk id, bm25 score: lower is better) for an FTS5 MATCH expression."""
        if not match:
            return []
        weights = ", ".join(str(w) for w in FTS_WEIGHTS)
        try:
            return self.db.execute(
                f"SELECT rowid, bm25(chunks_fts, {weights}) AS s FROM chunks_fts"
                " WHERE chunks_fts MATCH ? ORDER BY s LIMIT ?", (match, limit)).fetchall()
        except sqlite3.OperationalError:
            return []

    # -- vectors ------------------------------------------------------------
    # Chunks that want a vector their key does not have yet.
    _UNEMBEDDED = (" FROM chunks c LEFT JOIN vectors v ON v.key = c.vec_key"
                   " WHERE c.vec_key IS NOT NULL AND v.key IS NULL")

    def pending_vectors(self) -> list[PendingVector]:
        """Chunks whose vec_key has no embedding yet (one per key)."""
        rows = self.db.execute(
            "SELECT c.vec_key, c.path, c.language, c.kind, c.symbol, c.start_line, c.end_line,"
            " c.text, c.context" + self._UNEMBEDDED + " GROUP BY c.vec_key")
        return [PendingVector(r[0], Chunk(*r[1:])) for r in rows]

    def count_pending_vectors(self) -> int:
        """How many distinct keys `pending_vectors` would return."""
        return self.db.execute("SELECT count(DISTINCT c.vec_key)" + self._UNEMBEDDED).fetchone()[0]

    def put_vectors(self, keys: Sequence[str], vectors: np.ndarray, in_store: bool) -> None:
        import numpy as np

        self.db.executemany(
            "INSERT OR REPLACE INTO vectors(key, vec, in_store) VALUES(?,?,?)",
            ((k, v.astype(np.float32).tobytes(), int(in_store)) for k, v in zip(keys, vectors)))

    def vectors_not_in_store(self, limit: int | None = None) -> tuple[list[str], np.ndarray]:
        sql = "SELECT key, vec FROM vectors WHERE in_store=0"
        rows = self.db.execute(sql + (f" LIMIT {int(limit)}" if limit else "")).fetchall()
        return _unpack(rows)

    def referenced_vectors(self, at_most: int) -> tuple[list[str], np.ndarray] | None:
        """Every vector a chunk uses, or None when there are more than `at_most`."""
        count = self.db.execute(
            "SELECT COUNT(DISTINCT vec_key) FROM chunks WHERE vec_key IS NOT NULL").fetchone()[0]
        if count > at_most:
            return None
        rows = self.db.execute(
            "SELECT key, vec FROM vectors WHERE key IN "
            "(SELECT vec_key FROM chunks WHERE vec_key IS NOT NULL)").fetchall()
        return _unpack(rows)

    def mark_in_store(self, keys: Sequence[str], in_store: bool = True) -> None:
        self.db.executemany("UPDATE vectors SET in_store=? WHERE key=?",
                            ((int(in_store), k) for k in keys))

    def vector_keys(self, in_store: bool | None = None) -> set[str]:
        sql = "SELECT key FROM vectors"
        if in_store is not None:
            sql += f" WHERE in_store={int(in_store)}"
        return {r[0] for r in self.db.execute(sql)}

    def count_vectors(self) -> int:
        return self.db.execute("SELECT count(*) FROM vectors INDEXED BY vectors_pending").fetchone()[0]

    def count_pending_store(self) -> int:
        return self.db.execute("SELECT count(*) FROM vectors WHERE in_store=0").fetchone()[0]

    def unreferenced_vectors(self) -> list[str]:
        return [r[0] for r in self.db.execute(
            "SELECT v.key FROM vectors v WHERE NOT EXISTS"
            " (SELECT 1 FROM chunks c WHERE c.vec_key = v.key)")]

    def delete_vectors(self, keys: Sequence[str]) -> None:
        self.db.executemany("DELETE FROM vectors WHERE key=?", ((k,) for k in keys))

    # -- stats ----------------------------------------------------------------
    def stats(self) -> dict[str, object]:
        q = self.db.execute
        by_status = dict(q("SELECT status, count(*) FROM files GROUP BY status").fetchall())
        reasons = dict(q("SELECT reason, count(*) FROM files WHERE status='skipped'"
                         " GROUP BY reason").fetchall())
        sources = {s: n for s, n in q("SELECT source, count(*) FROM files"
                                      " WHERE status='indexed' GROUP BY source")}
        languages = dict(q("SELECT language, count(*) FROM chunks GROUP BY language"
                           " ORDER BY count(*) DESC").fetchall())
        redacted = q("SELECT count(*), coalesce(sum(json_array_length(redactions)),0)"
                     " FROM files WHERE redactions IS NOT NULL").fetchone()
        return {
            "files_indexed": by_status.get("indexed", 0),
            "files_skipped": by_status.get("skipped", 0),
            "skipped_by_reason": reasons,
            "files_by_source": sources,
            "chunks": q("SELECT count(*) FROM chunks").fetchone()[0],
            "chunks_by_language": languages,
            "vectors": self.count_vectors(),
            "vectors_pending_store": self.count_pending_store(),
            "vectors_to_embed": self.count_pending_vectors(),
            "files_with_redactions": redacted[0],
            "redactions": redacted[1],
        }

    def skipped(self) -> list[FileRecord]:
        return [FileRecord(*r) for r in self.db.execute(
            "SELECT source, path, content_hash, size, mtime_ns, status, reason, detail"
            " FROM files WHERE status='skipped' ORDER BY source, path")]

    def redactions(self) -> list[tuple[str, str, list[dict]]]:
        return [(s, p, json.loads(r)) for s, p, r in self.db.execute(
            "SELECT source, path, redactions FROM files WHERE redactions IS NOT NULL"
            " ORDER BY source, path")]


def _stored(row: tuple) -> StoredChunk:
    chunk = Chunk(path=row[2], language=row[3], kind=row[4], symbol=row[5],
                  start_line=row[6], end_line=row[7], text=row[9], context=row[8])
    return StoredChunk(id=row[0], source=row[1], chunk=chunk, is_test=bool(row[10]),
                       vec_key=row[11])


def _unpack(rows: list[tuple[str, bytes]]) -> tuple[list[str], np.ndarray]:
    import numpy as np

    if not rows:
        return [], np.zeros((0, 0), dtype=np.float32)
    keys = [r[0] for r in rows]
    return keys, np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), -1)
