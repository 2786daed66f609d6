"""Incremental indexing: bring the catalog and vector store in line with the files.

A file is re-read only when git's blob hash or its size/mtime say it may have
changed, and re-chunked only when its content hash did change. Each chunk's
embedding is addressed by a hash of the text embedded (`vec_key`), so moving,
reverting or switching branches never re-embeds a chunk that was seen before.
New vectors wait in the catalog (searched exactly) until enough accumulate to
be worth a write to Chroma, which keeps a one-file re-index from paying
Chroma's import and write costs.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

from codelearn.index.catalog import Catalog, FileRecord
from codelearn.index.chunk import Chunk
from codelearn.index.embedder import NO_EMBEDDER
from codelearn.project import Project

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int | None], None]

EMBED_BATCH = 256
RETRY_S = 0.05  # a busy lock is tried once more after this
COMMIT_EVERY = 200  # files per catalog transaction

_TEST_DIR = re.compile(r"(^|/)(tests?|testing|__tests__|spec|specs)(/|$)")
_TEST_FILE = re.compile(
    r"(^|/)(test_[^/]*|[^/]*_test\.[a-z]+|[^/]*\.(test|spec)\.[a-z]+|[^/]*Tests?\.(java|cs|kt))$")


def is_test_path(path: str) -> bool:
    """True for files under test folders and test-named files."""
    return bool(_TEST_DIR.search(path) or _TEST_FILE.search(path))


@dataclass
class IndexReport:
    """What one `index` run did."""

    ran: bool = True
    files_seen: int = 0
    files_changed: int = 0
    files_removed: int = 0
    files_skipped: int = 0
    chunks_written: int = 0
    vectors_embedded: int = 0
    vectors_flushed: int = 0
    vectors_collected: int = 0
    recovered: bool = False
    seconds: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def _noop(stage: str, done: int, total: int | None) -> None:
    pass


def run_index(project: Project, *, rebuild: bool = False, wait: bool = False,
              progress: Progress = _noop) -> IndexReport:
    """Index the project's sources; coalesce with a run already in progress."""
    from codelearn.index.lock import WriterLock

    state = project.ensure_state()
    lock = WriterLock(state)
    if not lock.acquire(wait=wait):
        lock.request_rerun()
        # The holder may be a `status` probe (it takes the lock for a moment), or a writer that
        # looked for requests just before ours arrived: try once more, so that no request is
        # ever left with nobody to serve it.
        time.sleep(RETRY_S)
        if not lock.acquire():
            log.info("another index run holds the lock; it will run again for us")
            return IndexReport(ran=False)
        lock.take_rerun_request()
    try:
        report = _index_once(project, rebuild=rebuild, progress=progress)
        while lock.take_rerun_request():
            log.info("changes arrived during the run; indexing again")
            report = _index_once(project, rebuild=False, progress=progress)
        return report
    finally:
        lock.release()


def _index_once(project: Project, *, rebuild: bool, progress: Progress) -> IndexReport:
    if rebuild:
        _wipe(project)
    report = IndexReport()
    clock = _timer(report)
    catalog = Catalog(project.catalog_path)
    try:
        crashed = catalog.get_meta("run_state") == "running"
        catalog.set_meta("run_state", "running")
        embedder = _embedder(project)
        policy = {"embedder": embedder.name, "embed_tests": project.settings.embed_tests}
        rekeyed = catalog.get_json("vector_policy") not in (None, policy)
        if rekeyed:
            with clock("rekey"):
                _rekey(catalog, embedder.name, project.settings.embed_tests)
        catalog.set_json("vector_policy", policy)
        catalog.set_meta("embedder", embedder.name)
        from codelearn.index.chunker import CHUNKER_VERSION

        # Chunks made by an older chunker are remade once (their vectors are reused by content).
        rechunk = catalog.get_meta("chunker_version") != str(CHUNKER_VERSION)
        sync = _FileSync(project, catalog, embedder.name, report, progress, rechunk=rechunk)
        with clock("files"):
            labels = []
            for source in project.sources():
                labels.append(source.label)
                sync.sync_source(source)
            for label in set(catalog.sources()) - set(labels):
                sync.drop_source(label)
        catalog.set_meta("chunker_version", str(CHUNKER_VERSION))
        # Vectors can only be missing or stale if chunks changed now, the policy
        # changed, or an earlier run died: a no-op run skips the table scans.
        changed = bool(report.chunks_written or report.files_removed or rekeyed or crashed)
        if changed:
            with clock("embed"):
                _embed_pending(catalog, embedder, report, progress)
        with clock("store"):
            _maintain_store(project, catalog, embedder.name, report, crashed or rebuild,
                            changed, progress)
        catalog.set_meta("run_state", "clean")
        catalog.set_json("last_run", {"finished": time.time(), **report.as_dict()})
        return report
    finally:
        catalog.close()


def _timer(report: IndexReport):
    """`with clock("stage"):` records the stage's seconds in the report."""

    @contextmanager
    def clock(name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            report.seconds[name] = round(time.perf_counter() - start, 3)

    return clock


def _wipe(project: Project) -> None:
    from codelearn.index.store import destroy_local

    for suffix in ("", "-wal", "-shm"):
        project.catalog_path.with_name(project.catalog_path.name + suffix).unlink(missing_ok=True)
    destroy_local(project.store_path)


def _embedder(project: Project):
    from codelearn.index.embedder import project_embedder

    return project_embedder(project, threads=project.settings.threads or None)


# Grouped imports and constants are found by their identifiers; embedding them
# would cost ~15% more embedding time for chunks that rarely answer a question.
KEYWORD_ONLY_KINDS = frozenset({"module"})


def wants_vector(chunk: Chunk, is_test: bool, embedder_name: str, embed_tests: bool) -> bool:
    """Whether a chunk gets an embedding, or is found by keywords alone."""
    if embedder_name == NO_EMBEDDER or chunk.kind in KEYWORD_ONLY_KINDS:
        return False
    return embed_tests or not is_test


def vec_key(embedder_name: str, text: str) -> str:
    """The content address of one embedding."""
    return hashlib.sha1(f"{embedder_name}\0{text}".encode()).hexdigest()


def embed_text(chunk: Chunk) -> str:
    """The text the embedder sees for a chunk."""
    from codelearn.index.embedder import descriptor

    return descriptor(chunk.kind, chunk.symbol, chunk.context, chunk.text, chunk.path)


class _FileSync:
    """Brings one source's files in the catalog up to date."""

    def __init__(self, project: Project, catalog: Catalog, embedder_name: str,
                 report: IndexReport, progress: Progress, rechunk: bool = False) -> None:
        self.project = project
        self.rechunk = rechunk  # remake every file's chunks, changed or not
        self.catalog = catalog
        self.embedder_name = embedder_name
        self.report = report
        self.progress = progress
        self._writes = 0

    def sync_source(self, source) -> None:
        from codelearn.sources import list_files

        settings = self.project.settings
        listing = list_files(source, max_bytes=settings.max_file_bytes,
                             ignore_file=settings.ignore_file)
        known = self.catalog.files(source.label)
        seen: set[str] = set()
        total = len(listing.entries)
        self.report.files_seen += total
        self.catalog.begin()
        try:
            for skip in listing.skipped:
                seen.add(skip.path)
                old = known.get(skip.path)
                if old is None or old.status != "skipped" or old.reason != skip.reason:
                    self._write(lambda: self.catalog.put_skipped(FileRecord(
                        source.label, skip.path, None, 0, 0, "skipped", skip.reason, skip.detail)))
            for done, entry in enumerate(listing.entries, 1):
                seen.add(entry.path)
                self._sync_file(source, entry, known.get(entry.path))
                if done % 100 == 0 or done == total:
                    self.progress(f"reading {source.label}", done, total)
            for path in set(known) - seen:
                self.report.files_removed += 1
                self._write(lambda path=path: self.catalog.remove_file(source.label, path))
            self.catalog.commit()
        except BaseException:
            self.catalog.db.execute("ROLLBACK")
            raise
        self.report.files_skipped += self.catalog.count_skipped(source.label)

    def drop_source(self, label: str) -> None:
        self.catalog.begin()
        for path in self.catalog.files(label):
            self.catalog.remove_file(label, path)
            self.report.files_removed += 1
        self.catalog.commit()

    def _write(self, action: Callable[[], None]) -> None:
        action()
        self._writes += 1
        if self._writes % COMMIT_EVERY == 0:
            self.catalog.commit()
            self.catalog.begin()

    def _sync_file(self, source, entry, old: FileRecord | None) -> None:
        from codelearn.sources import Skip, load_file

        if self.rechunk:
            old = None
        if old is not None and _same_blob(old, entry):
            if (old.size, old.mtime_ns) != (entry.size, entry.mtime_ns):
                self._write(lambda: self.catalog.touch_file(
                    source.label, entry.path, entry.size, entry.mtime_ns))
            return
        if old is not None and (old.size, old.mtime_ns) == (entry.size, entry.mtime_ns):
            return
        loaded = load_file(source, entry, max_bytes=self.project.settings.max_file_bytes)
        if isinstance(loaded, Skip):
            record = FileRecord(source.label, entry.path, None, entry.size, entry.mtime_ns,
                                "skipped", loaded.reason, loaded.detail)
            self._write(lambda: self.catalog.put_skipped(record))
            return
        if old is not None and old.status == "indexed" and old.content_hash == loaded.content_hash:
            self._write(lambda: self.catalog.touch_file(
                source.label, entry.path, entry.size, entry.mtime_ns))
            return
        self._write(lambda: self._put(source.label, entry, loaded))

    def _put(self, label: str, entry, loaded) -> None:
        from codelearn.index.chunker import chunk_file

        chunks = chunk_file(entry.path, loaded.text)
        testy = is_test_path(entry.path)
        keys = [vec_key(self.embedder_name, embed_text(c))
                if wants_vector(c, testy, self.embedder_name, self.project.settings.embed_tests)
                else None for c in chunks]
        record = FileRecord(label, entry.path, loaded.content_hash, entry.size,
                            entry.mtime_ns, "indexed")
        redactions = [{"line": r.line, "kind": r.kind} for r in loaded.redactions]
        self.catalog.put_file(record, chunks, keys, testy, redactions or None)
        self.report.files_changed += 1
        self.report.chunks_written += len(chunks)


def _same_blob(old: FileRecord, entry) -> bool:
    """Git vouches that the file still has the content we indexed."""
    return entry.blob is not None and old.status == "indexed" and old.content_hash == entry.blob


def _rekey(catalog: Catalog, embedder_name: str, embed_tests: bool) -> None:
    """Give every chunk the vec_key of the current embedder and test policy."""
    updates = [
        (vec_key(embedder_name, embed_text(c.chunk))
         if wants_vector(c.chunk, c.is_test, embedder_name, embed_tests) else None, c.id)
        for c in catalog.iter_chunks()]
    catalog.begin()
    catalog.db.executemany("UPDATE chunks SET vec_key=? WHERE id=?", updates)
    catalog.commit()


def embed_priority(chunk: Chunk) -> tuple[int, int]:
    """Sort key: public, documented definitions first, so a cold index cut short (or still
    running: search reads the vectors committed so far) has its most asked-about code."""
    from codelearn.index.doc import docstring

    name = chunk.symbol.rsplit(".", 1)[-1]
    private = name.startswith("_") and not name.startswith("__")
    return (int(private), int(not docstring(chunk.text, chunk.language)))


def _embed_pending(catalog: Catalog, embedder, report: IndexReport, progress: Progress) -> None:
    pending = sorted(catalog.pending_vectors(), key=lambda p: embed_priority(p.chunk))
    total = len(pending)
    for start in range(0, total, EMBED_BATCH):
        batch = pending[start:start + EMBED_BATCH]
        vectors = embedder.embed_documents([embed_text(p.chunk) for p in batch])
        catalog.begin()
        catalog.put_vectors([p.key for p in batch], vectors, in_store=False)
        catalog.commit()
        report.vectors_embedded += len(batch)
        progress("embedding", min(start + EMBED_BATCH, total), total)


def _maintain_store(project: Project, catalog: Catalog, embedder_name: str,
                    report: IndexReport, full: bool, changed: bool, progress: Progress) -> None:
    """Flush waiting vectors to Chroma, repair it after a crash, collect garbage."""
    waiting = catalog.count_pending_store()
    unreferenced = catalog.unreferenced_vectors() if changed or full else []
    collect = bool(unreferenced) and len(unreferenced) > max(2000, catalog.count_vectors() // 4)
    if not (full or collect or waiting >= project.settings.store_flush_min):
        return
    store = open_store(project, embedder_name, repair=True)
    if full:
        report.recovered = _reconcile(catalog, store)
    if collect:
        _collect(catalog, store, unreferenced, report)
    _flush(catalog, store, report, progress)


def open_store(project: Project, embedder_name: str, repair: bool = False):
    """The project's vector store; a corrupt local one is rebuilt when `repair`."""
    from codelearn.errors import CodelearnError
    from codelearn.index.store import VectorStore, collection_name, destroy_local

    name = collection_name(project.key, embedder_name)
    url = project.settings.chroma_url
    try:
        return VectorStore(name, None if url else project.store_path, url)
    except CodelearnError:
        if url or not repair:
            raise
        log.warning("vector store unreadable; rebuilding it from the catalog")
        destroy_local(project.store_path)
        return VectorStore(name, project.store_path)


def _reconcile(catalog: Catalog, store) -> bool:
    """Make the store hold exactly the catalog's stored vectors."""
    in_store = store.keys()
    known = catalog.vector_keys()
    claimed = catalog.vector_keys(in_store=True)
    extra = sorted(in_store - known)
    missing = sorted(claimed - in_store)
    present = sorted((known - claimed) & in_store)
    catalog.begin()
    catalog.mark_in_store(missing, False)
    catalog.mark_in_store(present, True)
    catalog.commit()
    if extra:
        store.delete(extra)
    changed = bool(extra or missing or present)
    if changed:
        log.info("repaired vector store: %d extra, %d missing", len(extra), len(missing))
    return changed


def _collect(catalog: Catalog, store, keys: list[str], report: IndexReport) -> None:
    store.delete(keys)
    catalog.begin()
    catalog.delete_vectors(keys)
    catalog.commit()
    report.vectors_collected += len(keys)


def _flush(catalog: Catalog, store, report: IndexReport, progress: Progress) -> None:
    total = catalog.count_pending_store()
    done = 0
    while True:
        keys, vectors = catalog.vectors_not_in_store(limit=4096)
        if not keys:
            return
        store.upsert(keys, vectors)
        catalog.begin()
        catalog.mark_in_store(keys)
        catalog.commit()
        done += len(keys)
        report.vectors_flushed += len(keys)
        progress("writing vectors", done, total)
