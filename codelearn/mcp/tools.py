"""The MCP tools as plain library code over one project (no SDK needed to use or test them).

`CodeTools` keeps one read-only view of the index open between calls and reopens it
when an index run has finished since (a git hook, `watch`, the reindex tool) or the
catalog file was replaced (`index --rebuild`). It only reads: SQLite's WAL lets the
indexer write meanwhile, and the indexer's lock stays the only writer.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import posixpath
import sqlite3
import textwrap
import threading
from typing import Any

from codelearn.errors import CodelearnError
from codelearn.index.search import Searcher
from codelearn.project import Project
from codelearn.sources.listing import inside
from codelearn.sources.records import FileEntry, Skip, Source
from codelearn.sources.secrets import secret_file_pattern

log = logging.getLogger(__name__)

MODES = ("hybrid", "keyword", "vector")
MAX_K = 50
MAX_READ_LINES = 400  # one read_code answer; an agent pages on with start_line
MAX_DEFINITIONS = 20
DEFINITION_KINDS = ("function", "method", "class", "header")
MATCHES = ("exact", "suffix", "case-insensitive", "partial")
RUN_GOING = "An index run is in progress; it will pick up these changes when it finishes."

_DEFINITIONS_SQL = f"""
SELECT source, path, start_line, end_line, kind, symbol, language, context, substr(text, 1, 400), is_test
FROM chunks WHERE kind IN ({", ".join(repr(k) for k in DEFINITION_KINDS)}) AND instr(lower(symbol), ?) > 0
"""
# A small class is one chunk holding its methods: those are found by parsing the chunk.
_SMALL_CLASSES_SQL = """
SELECT source, path, start_line, end_line, kind, symbol, language, context, text, is_test
FROM chunks WHERE kind = 'class' AND instr(lower(text), ?) > 0 LIMIT 200
"""

_CLASS_END_SQL = """
SELECT max(end_line) FROM chunks WHERE source=? AND path=? AND (symbol=? OR substr(symbol, 1, ?) = ?)
"""


@dataclasses.dataclass(frozen=True)
class Definition:
    """One definition found by name: a chunk of its own, or a member of a small class's chunk."""

    symbol: str
    kind: str
    path: str
    source: str
    start_line: int
    end_line: int
    language: str
    context: str
    signature: str
    is_test: bool

    def as_json(self, rank: int) -> dict:
        data = {k: v for k, v in vars(self).items() if k != "is_test"}
        return {**data, "match": MATCHES[rank]}


class CodeTools:
    """The tools over one project. search_code, find_symbol and read_code share one SQLite
    connection, which may only be used from the thread that opened it: call them from one
    thread (the server gives them their own); ask, index_status and reindex open their own."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self._searcher: Searcher | None = None
        self._seen: tuple[Any, ...] | None = None
        self._sources: dict[str, Source] | None = None
        self._ask_lock = threading.Lock()  # one answer at a time: the model takes every core

    def close(self) -> None:
        """Close the index view (from the thread that used it)."""
        if self._searcher is not None:
            self._searcher.close()
            self._searcher = None

    # -- the tools --------------------------------------------------------------------
    def search_code(self, query: str, k: int = 10, mode: str = "hybrid") -> list[dict]:
        """What `codelearn search --json` prints: the k best chunks, best first."""
        if mode not in MODES:
            raise CodelearnError(f"Unknown mode {mode!r}.", "Use hybrid, keyword or vector.")
        if not 1 <= k <= MAX_K:
            raise CodelearnError(f"k={k} is out of range.", f"Ask for 1 to {MAX_K} results.")
        return [hit.as_json() for hit in self._index().search(query, k=k, mode=mode)]  # type: ignore[arg-type]

    def find_symbol(self, name: str) -> list[dict]:
        """Definitions named `name` (`Cls.meth` or `meth`), exact matches first, at most 20."""
        wanted = name.strip().replace("::", ".")
        if not wanted:
            raise CodelearnError("find_symbol needs a name.",
                                 "Pass a function, class or method name: `Searcher.search` or `search`.")
        return definitions_named(self._index().catalog.db, wanted)

    def read_code(self, path: str, start_line: int = 1, end_line: int | None = None,
                  source: str = "repo") -> dict:
        """Lines of an indexed file, secrets redacted as in the index, at most 400 at a time."""
        from codelearn.sources import load_file

        src = self._source(source)
        rel = safe_relative_path(src, path)
        self._check_indexed(src.label, rel)
        loaded = load_file(src, FileEntry(rel, 0, 0, None), max_bytes=self.project.settings.max_file_bytes)
        if isinstance(loaded, Skip):
            raise CodelearnError(f"{rel} cannot be read now ({loaded.reason}: {loaded.detail}).",
                                 "Run the reindex tool, then search again.")
        return {"path": rel, "source": src.label, "redactions": len(loaded.redactions),
                **line_slice(loaded.text, rel, start_line, end_line)}

    def ask(self, question: str, deep: bool = False) -> dict:
        """What `codelearn ask --json` answers, cut to the answer, its citations and model."""
        from codelearn import answer

        if not question.strip():
            raise CodelearnError("ask needs a question.", "Pass a question about the code.")
        with self._ask_lock:
            result = answer(self.project, question, origin="mcp", deep=deep or None).as_json()
        return answer_summary(result)

    def feedback(self, turn: str, verdict: str = "", answer: str = "", source: str = "") -> dict:
        """Record what was wrong (or right) with an earlier answer, in the repo's history."""
        from codelearn.ask.history import History

        if verdict not in ("", "good", "bad"):
            raise CodelearnError(f"verdict {verdict!r} is neither good nor bad.", "Use good or bad.")
        if not (verdict or answer or source):
            raise CodelearnError("feedback needs a verdict, a corrected answer or a source.",
                                 "Pass verdict good/bad, answer, or source path:line.")
        with History(self.project.state) as history:
            good = {"good": True, "bad": False}.get(verdict)
            return history.feedback(turn, good=good, answer=answer, source=source).as_json()

    def index_status(self) -> dict:
        """What `codelearn status --json` prints."""
        from codelearn.index.status import index_status

        return index_status(self.project)

    def reindex(self) -> dict:
        """An incremental index run; `ran` is False when another run is going (it reruns for us)."""
        from codelearn.index.indexer import run_index

        report = run_index(self.project, wait=False).as_dict()
        if not report["ran"]:
            report["message"] = RUN_GOING
        return report

    # -- the index view -------------------------------------------------------------------
    def _index(self) -> Searcher:
        """The open Searcher, reopened when an index run finished or the catalog was replaced.

        The catalog's own mtime is no signal: in WAL mode commits land in `index.db-wal`
        until a checkpoint. Every finished run writes `last_run`, and a rebuild makes a new file.
        """
        try:
            info = os.stat(self.project.catalog_path)
        except FileNotFoundError:
            self.close()
            raise CodelearnError(f"No index at {self.project.state}.",
                                 "Run `codelearn index` first (or call the reindex tool).") from None
        inode = (info.st_dev, info.st_ino)
        old = self._searcher
        if old is not None and self._seen == (inode, old.catalog.get_meta("last_run")):
            return old
        fresh = Searcher(self.project)
        if old is not None:
            fresh._embedder = old._embedder  # the query model is the same: keep it loaded (~0.3 s)
            old.close()
        self._searcher = fresh
        self._seen = (inode, fresh.catalog.get_meta("last_run"))
        log.debug("opened the index (last run %s)", self._seen[1])
        return fresh

    def _source(self, label: str) -> Source:
        if self._sources is None:
            self._sources = {s.label: s for s in self.project.sources()}
        if label not in self._sources:
            raise CodelearnError(f"Unknown source {label!r}.",
                                 f"Use one of: {', '.join(self._sources)} (the `source` of a search hit).")
        return self._sources[label]

    def _check_indexed(self, label: str, rel: str) -> None:
        row = self._index().catalog.db.execute(
            "SELECT status, reason, detail FROM files WHERE source=? AND path=?", (label, rel)).fetchone()
        if row is None:
            raise CodelearnError(f"{rel} is not in the index of {label}.",
                                 "Only indexed files can be read: take paths from search_code or "
                                 "find_symbol, or call reindex if the file is new.")
        if row[0] != "indexed":
            raise CodelearnError(f"{rel} was left out of the index ({row[1]}: {row[2]}).",
                                 "Only indexed files can be read; `codelearn status` lists what was skipped.")


def safe_relative_path(source: Source, path: str) -> str:
    """`path` (relative to the source, or absolute inside it) as the index names it, or refused
    when it climbs out, resolves out through a link, or names a secret file."""
    if not path or "\0" in path:
        raise CodelearnError("read_code needs a file path.", "Pass a path from a search hit, e.g. `app/main.py`.")
    root = os.path.abspath(source.root)
    real_root = os.path.realpath(root)
    rel = _within(path, root, real_root)
    if rel is None:
        raise CodelearnError(f"{path} is outside the indexed sources.",
                             f"Pass a path inside {source.label} ({root}), relative to its root.")
    if not inside(real_root, os.path.realpath(os.path.join(root, rel))):
        raise CodelearnError(f"{rel} resolves outside {source.label} (through a link).",
                             "Only files inside the indexed sources can be read.")
    real_rel = os.path.relpath(os.path.realpath(os.path.join(root, rel)), real_root).replace(os.sep, "/")
    for name in (rel, real_rel):
        if (pattern := secret_file_pattern(name)) is not None:
            raise CodelearnError(f"{rel} is a secret file (matches {pattern}); codelearn never reads it.",
                                 "Ask about the code that uses it instead.")
    return rel


def _within(path: str, root: str, real_root: str) -> str | None:
    """The normalised path relative to the source root, or None when it leaves the root."""
    if os.path.isabs(path):
        absolute = os.path.normpath(path)
        base = next((r for r in (root, real_root) if inside(r, absolute)), None)
        if base is None or absolute == base:
            return None
        path = os.path.relpath(absolute, base)
    rel = posixpath.normpath(path.replace(os.sep, "/"))
    if rel in (".", "..") or rel.startswith("../"):
        return None
    return rel


def line_slice(text: str, rel: str, start_line: int, end_line: int | None) -> dict:
    """Lines start_line..end_line (1-based, inclusive) of text, cut to MAX_READ_LINES."""
    lines = text.splitlines()
    total = len(lines)
    if start_line < 1 or (end_line is not None and end_line < start_line):
        raise CodelearnError(f"Bad line range {start_line}-{end_line}.",
                             "Lines are 1-based and inclusive: start_line >= 1, end_line >= start_line.")
    if start_line > max(total, 1):
        raise CodelearnError(f"start_line {start_line} is past the end of {rel} ({total} lines).",
                             f"Pass a start_line from 1 to {total}.")
    last = min(total, end_line if end_line is not None else total)
    cut = last - start_line + 1 > MAX_READ_LINES
    if cut:
        last = start_line + MAX_READ_LINES - 1
    out = {"start_line": start_line, "end_line": last, "total_lines": total, "truncated": cut,
           "text": "\n".join(lines[start_line - 1:last])}
    if cut:
        out["note"] = (f"Cut at {MAX_READ_LINES} lines; call read_code again with start_line={last + 1} "
                       "for more.")
    return out


def definitions_named(db: sqlite3.Connection, wanted: str) -> list[dict]:
    """Definitions whose qualified name matches `wanted`, best matches first, at most 20."""
    lower = wanted.lower()
    found = [_chunk_definition(row) for row in db.execute(_DEFINITIONS_SQL, (lower,))]
    for row in db.execute(_SMALL_CLASSES_SQL, (lower.rpartition(".")[2],)):
        found += class_members(row)
    ranked = [(rank, d) for d in found if (rank := match_rank(d.symbol, wanted)) is not None]
    ranked.sort(key=lambda rd: (rd[0], rd[1].is_test, len(rd[1].symbol), rd[1].source, rd[1].path,
                                rd[1].start_line))
    out: list[dict] = []
    classes: set[tuple[str, str, str]] = set()
    for rank, found_one in ranked:
        if found_one.kind == "header":  # a big class: one entry for the class, not one per header chunk
            if (key := (found_one.source, found_one.path, found_one.symbol)) in classes:
                continue
            classes.add(key)
            found_one = whole_class(db, found_one)
        out.append(found_one.as_json(rank))
        if len(out) == MAX_DEFINITIONS:
            break
    return out


def whole_class(db: sqlite3.Connection, header: Definition) -> Definition:
    """A big class's first header chunk stretched over its methods' chunks: the whole class."""
    (end,) = db.execute(_CLASS_END_SQL, (header.source, header.path, header.symbol,
                                         len(header.symbol) + 1, header.symbol + ".")).fetchone()
    return dataclasses.replace(header, kind="class", end_line=max(end or 0, header.end_line))


def match_rank(symbol: str, wanted: str) -> int | None:
    """0 the qualified name itself, 1 a qualified tail (`meth` finds `Cls.meth`), 2 either
    ignoring case, 3 the name anywhere in it (an index into MATCHES); None: no match."""
    if symbol == wanted:
        return 0
    if symbol.endswith("." + wanted):
        return 1
    low, want = symbol.lower(), wanted.lower()
    if low == want or low.endswith("." + want):
        return 2
    return 3 if want in low else None


def _chunk_definition(row: tuple) -> Definition:
    source, path, start, end, kind, symbol, language, context, text, is_test = row
    return Definition(symbol, kind, path, source, start, end, language, context, _signature(text),
                      bool(is_test))


def class_members(row: tuple) -> list[Definition]:
    """The methods and nested classes inside one small class's chunk, parsed as the chunker does."""
    from codelearn.index.definitions import collect_definitions
    from codelearn.index.languages import load_grammar
    from codelearn.index.windows import Lines

    source, path, start, _, _, symbol, language, context, text, is_test = row
    grammar = load_grammar(language)
    if grammar is None:
        return []
    text = textwrap.dedent(text)  # a class nested in a big one is indented; rows stay the same
    lines = Lines(text)
    tops = collect_definitions(grammar, grammar.parse(text.encode("utf-8", "surrogatepass")), lines)
    found: list[Definition] = []
    stack = [(child, symbol, [context, lines.rows[top.signature_row].strip()])
             for top in tops for child in top.children]
    while stack:
        member, owner, scopes = stack.pop()
        qualified = f"{owner}.{member.name}"
        found.append(Definition(
            qualified, "class" if member.is_container else "method", path, source,
            start + member.first, start + member.last, language, "\n".join(filter(None, scopes)),
            _signature(lines.text(member.first, member.last)), bool(is_test)))
        inner = [*scopes, lines.rows[member.signature_row].strip()]
        stack += [(child, qualified, inner) for child in member.children]
    return found


_NOT_SIGNATURE = ("@", "#", "//", "/*", "*", "--")  # decorators, attributes, comments


def _signature(text: str) -> str:
    """The first line of a definition past its decorators and comments, cut to 200 characters."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return next((line for line in lines if not line.startswith(_NOT_SIGNATURE)), lines[0] if lines else "")[:200]


def answer_summary(result: dict) -> dict:
    """The parts of `Answer.as_json()` an agent acts on: text, verified citations, model, sources."""
    model = result["model"]
    return {
        "question": result["question"],
        "answer": result["answer"],
        "citations": [{k: c[k] for k in ("path", "start_line", "end_line", "text")}
                      for c in result["citations"] if c["verified"]],
        "unverified_citations": [c["text"] for c in result["citations"] if not c["verified"]],
        "sources": [{k: s[k] for k in ("path", "source", "start_line", "end_line", "used")}
                    for s in result["sources"]],
        "model": {k: model[k] for k in ("name", "kind", "backend", "reason")},
        "seconds": round((result["timings"].get("total_s") or 0.0)
                         + (result["deep"]["seconds"] if result.get("deep") else 0.0), 3),
        "deep": ({k: result["deep"][k] for k in ("read_tokens", "note_tokens", "unread", "seconds")}
                 | {"batches": len(result["deep"]["batches"]), "notes": len(result["deep"]["notes"])}
                 if result.get("deep") else None),
        "turn": result.get("turn"),
    }
