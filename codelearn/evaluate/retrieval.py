"""What retrieval buys on this repo: the product's own search, scored on its own documented code.

Each documented definition is a target; its docstring's first sentence is the
query. The indexed chunk holds that very sentence (and its vector embeds it),
so the queries are searched on a *shadow* index: a temporary copy of the
catalog where every target's docstring is gone from its text, its keyword row
and its vector. The real `Searcher` then runs on the copy, so what is measured
is the ranking users get, not a re-implementation of it. The real index is only
read.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import random
import re
import sqlite3
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from codelearn.index.doc import docstring, first_sentence, without_docstring
from codelearn.corpus.units import Unit, load_units
from codelearn.errors import CodelearnError
from codelearn.index import search_model
from codelearn.index.catalog import Catalog
from codelearn.index.chunk import Chunk
from codelearn.index.embedder import NO_EMBEDDER
from codelearn.index.keywords import STOPWORDS, expand_identifiers, path_words, split_identifier
from codelearn.index.search import Hit, Searcher
from codelearn.project import Project

log = logging.getLogger(__name__)

MODES = ("keyword", "vector", "hybrid")
K = 10  # recall@10 and MRR look at this many results
CUTOFFS = (1, 5, 10)
TARGET_KINDS = frozenset({"function", "method", "class"})
MIN_SENTENCE_WORDS = 4
MIN_PARAPHRASE_WORDS = 3
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# A leading comment block (`/** ... */`, `//`, `#` lines): where languages other
# than Python keep a definition's documentation (as `corpus.doc.docstring` reads it).
_LEADING_COMMENT = re.compile(r"\A\s*(?:/\*.*?\*/[ \t]*\n?|(?:[ \t]*(?://|#)[^\n]*(?:\n|\Z))+)", re.S)

Ranks = list[int | None]  # per query, the 1-based rank of the first hit (None: not in the top K)
Results = list[dict[str, list[Hit]]]  # per query, the hits of each mode


class Vocab(Protocol):
    """The tokenizer side of a model (e.g. `LlamaVocab`)."""

    def tokenize(self, text: str, special: bool = False) -> list[int]: ...


@dataclass(frozen=True)
class Target:
    """A documented definition: what a query about it should find."""

    unit: Unit
    sentence: str  # its docstring's first sentence
    stripped: str  # its text without the docstring

    def found_by(self, hit: Hit) -> bool:
        u = self.unit
        return ((hit.source, hit.path) == (u.source, u.path)
                and hit.start_line <= u.end_line and u.start_line <= hit.end_line)


@dataclass(frozen=True)
class Question:
    """One line of a user's questions file."""

    question: str
    path: str
    symbol: str = ""

    def found_by(self, hit: Hit) -> bool:
        if hit.path != self.path:
            return False
        return not self.symbol or hit.symbol == self.symbol or hit.symbol.endswith("." + self.symbol)


# -- targets -----------------------------------------------------------------------


def strip_doc(text: str, language: str) -> str:
    """The chunk text without its documentation (Python docstring, else leading comment block)."""
    if language == "python":
        return without_docstring(text)
    return _LEADING_COMMENT.sub("", text, count=1)


def _target(unit: Unit) -> Target | None:
    if unit.is_test or unit.kind not in TARGET_KINDS:
        return None
    sentence = first_sentence(docstring(unit.text, unit.language))
    if len(sentence.split()) < MIN_SENTENCE_WORDS:
        return None
    stripped = strip_doc(unit.text, unit.language)
    # A docstring the regexes could not cut out cleanly would leave the answer in the text.
    if sentence in " ".join(stripped.split()):
        log.debug("docstring of %s not removable; not a target", unit.label)
        return None
    return Target(unit, sentence, stripped)


def find_targets(units: Sequence[Unit]) -> list[Target]:
    """Non-test functions, methods and classes whose docstring opens with a sentence of 4+ words."""
    return [t for t in map(_target, units) if t is not None]


def sample_targets(targets: list[Target], limit: int, seed: int) -> list[Target]:
    """At most `limit` targets drawn with `seed`, in index order."""
    chosen = random.Random(seed).sample(targets, min(limit, len(targets)))
    return sorted(chosen, key=lambda t: (t.unit.source, t.unit.path, t.unit.start_line))


def paraphrase(sentence: str, code: str, symbol: str) -> str:
    """The sentence without any word that names an identifier of the code or the symbol."""
    names = {n.lower() for n in _NAME.findall(code)}
    names.update(part.lower() for part in re.split(r"[.:]+", symbol) if part)
    names.update(w.lower() for w in split_identifier(symbol.replace(".", "_").replace(":", "_")))
    names -= STOPWORDS  # `in`, `for`, `is`... are keywords, not names; search ignores them anyway
    kept = [w for w in sentence.split() if not any(n.lower() in names for n in _NAME.findall(w))]
    return " ".join(kept)


def _paraphrases(targets: list[Target]) -> list[tuple[str, Target]]:
    out = []
    for target in targets:
        query = paraphrase(target.sentence, target.stripped, target.unit.symbol)
        if sum(any(c.isalnum() for c in w) for w in query.split()) >= MIN_PARAPHRASE_WORDS:
            out.append((query, target))
    return out


# -- the shadow index ----------------------------------------------------------------


@contextlib.contextmanager
def shadow_project(project: Project, targets: Sequence[Target], *, vectors: bool) -> Iterator[Project]:
    """A temporary project whose index is the real one with the targets' docstrings removed.

    `vectors`: also re-embed the stripped targets (when vector search can run).
    """
    with tempfile.TemporaryDirectory(prefix="codelearn-eval-") as tmp:
        # No Chroma here: a configured server would be asked for the real vectors.
        settings = dataclasses.replace(project.settings, chroma_url="")
        shadow = Project(root=Path(tmp), loaded=dataclasses.replace(project.loaded, settings=settings))
        shadow.ensure_state()
        search_model.share(project.state, shadow.state)
        _copy_catalog(project.catalog_path, shadow.catalog_path)
        _strip_targets(shadow, targets, vectors)
        yield shadow


def _copy_catalog(source: Path, dest: Path) -> None:
    # query_only rather than a read-only open: the eval never writes to the user's index,
    # and a read-only connection could not remove the -wal/-shm files it makes.
    src = sqlite3.connect(source, timeout=30)
    src.execute("PRAGMA query_only=1")
    dst = sqlite3.connect(dest)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()


def _strip_targets(shadow: Project, targets: Sequence[Target], vectors: bool) -> None:
    catalog = Catalog(shadow.catalog_path)
    try:
        keys = _embed_stripped(catalog, targets, shadow) if vectors else [t.unit.vec_key for t in targets]
        catalog.begin()
        for target, key in zip(targets, keys):
            _rewrite_chunk(catalog.db, target, key)
        # With nothing in a store, every vector is searched exactly from the catalog.
        catalog.db.execute("UPDATE vectors SET in_store=0")
        catalog.commit()
    finally:
        catalog.close()


def stripped_chunk(target: Target) -> Chunk:
    """The target's chunk without its documentation."""
    return target.unit.as_chunk(target.stripped)


def _embed_stripped(catalog: Catalog, targets: Sequence[Target], shadow: Project) -> list[str | None]:
    """New vectors for the stripped targets, made the way the indexer makes them; their keys."""
    from codelearn.index.embedder import project_embedder
    from codelearn.index.indexer import EMBED_BATCH, embed_text, vec_key

    embedder = project_embedder(shadow, threads=shadow.settings.threads or None)
    texts = [embed_text(stripped_chunk(t)) if t.unit.vec_key else None for t in targets]
    keys = [vec_key(embedder.name, text) if text is not None else None for text in texts]
    todo = {key: text for key, text in zip(keys, texts) if key is not None}
    pending = list(todo.items())
    for start in range(0, len(pending), EMBED_BATCH):
        batch = pending[start:start + EMBED_BATCH]
        catalog.put_vectors([k for k, _ in batch], embedder.embed_documents([t for _, t in batch]),
                            in_store=False)
    return keys


def _rewrite_chunk(db: sqlite3.Connection, target: Target, key: str | None) -> None:
    """The chunk's text, vector key and keyword row, as `Catalog.put_file` writes them."""
    u = target.unit
    db.execute("UPDATE chunks SET text=?, vec_key=? WHERE id=?", (target.stripped, key, u.id))
    db.execute("DELETE FROM chunks_fts WHERE rowid=?", (u.id,))
    symbol_words = u.symbol + " " + " ".join(split_identifier(u.symbol))
    db.execute("INSERT INTO chunks_fts(rowid, symbol, path, context, body) VALUES(?,?,?,?,?)",
               (u.id, symbol_words, path_words(u.path), u.context, expand_identifiers(target.stripped)))


# -- questions file --------------------------------------------------------------------


def _bad_line(path: Path, number: int, what: str) -> CodelearnError:
    return CodelearnError(
        f"{path}, line {number}: {what}.",
        'Each line must be a JSON object like {"question": "...", "path": "a/b.py", "symbol": "Cls.meth"} '
        "(symbol optional).")


def _question(path: Path, number: int, line: str) -> Question:
    try:
        item = json.loads(line)
    except json.JSONDecodeError as exc:
        raise _bad_line(path, number, f"not JSON ({exc.msg})") from None
    if not isinstance(item, dict):
        raise _bad_line(path, number, "not a JSON object")
    question, where, symbol = item.get("question"), item.get("path"), item.get("symbol", "")
    if not isinstance(question, str) or not question.strip():
        raise _bad_line(path, number, 'no "question" text')
    if not isinstance(where, str) or not where.strip():
        raise _bad_line(path, number, 'no "path"')
    if not isinstance(symbol, (str, type(None))):
        raise _bad_line(path, number, '"symbol" is not a string')
    return Question(question.strip(), where.strip().removeprefix("./"), (symbol or "").strip())


def load_questions(path: Path) -> list[Question]:
    """The questions of a JSON-lines file; a malformed line is an error naming it."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise CodelearnError(f"Cannot read the questions file {path}: {exc}.",
                             "Check the path; it must be a UTF-8 JSON-lines file.") from None
    questions = [_question(path, n, line) for n, line in enumerate(lines, 1) if line.strip()]
    if not questions:
        raise CodelearnError(f"The questions file {path} holds no questions.",
                             'Write one JSON object per line: {"question": "...", "path": "a/b.py"}.')
    return questions


# -- scoring ---------------------------------------------------------------------------


def rank_of(hits: Sequence[Hit], found_by: Callable[[Hit], bool]) -> int | None:
    """The 1-based rank of the first hit among the top K that counts, else None."""
    return next((rank for rank, hit in enumerate(hits[:K], 1) if found_by(hit)), None)


def scores(ranks: Ranks) -> dict[str, float]:
    """recall@1/5/10 and MRR over the top K, rounded to 4 decimals."""
    n = len(ranks) or 1
    out = {f"recall@{c}": round(sum(r is not None and r <= c for r in ranks) / n, 4) for c in CUTOFFS}
    out["mrr"] = round(sum(1 / r for r in ranks if r is not None and r <= K) / n, 4)
    return out


def _search_all(searcher: Searcher, queries: Sequence[str], modes: Sequence[str], k: int,
                tick: Callable[[], None]) -> Results:
    results = []
    for query in queries:
        results.append({mode: searcher.search(query, k=k, mode=mode) for mode in modes})
        tick()
    return results


def _set_json(results: Results, finders: Sequence[Callable[[Hit], bool]], modes: Sequence[str]) -> dict:
    if not results:
        return {"queries": 0, "modes": {}}
    return {"queries": len(results), "modes": {
        mode: scores([rank_of(r[mode], f) for r, f in zip(results, finders)]) for mode in modes}}


# -- what reaches the prompt -------------------------------------------------------------


def prompt_share(results: Results, targets: Sequence[Target], mode: str, k: int, budget: int,
                 vocab: Vocab) -> dict:
    """How often `ask`'s packed context (same merge and pack) holds the target file and lines."""
    from codelearn.ask.context import merge_hits, pack

    def count(text: str) -> int:
        return len(vocab.tokenize(text, special=False))

    # The model would see the real chunks, docstrings included: pack those.
    originals = {t.unit.id: t.unit.text for t in targets}
    in_file = in_lines = 0
    for result, target in zip(results, targets):
        hits = [dataclasses.replace(h, text=originals.get(h.chunk_id, h.text)) for h in result[mode][:k]]
        u = target.unit
        shown = [e for e in pack(merge_hits(hits), budget, count).excerpts
                 if (e.source, e.path) == (u.source, u.path)]
        in_file += bool(shown)
        in_lines += any(e.start_line <= u.end_line and u.start_line <= e.end_line for e in shown)
    n = len(targets) or 1
    return {"max_context": budget, "target_file_shown": round(in_file / n, 4),
            "target_shown": round(in_lines / n, 4), "queries": len(targets)}


# -- the section -------------------------------------------------------------------------


def _modes(project: Project) -> tuple[list[str], list[str]]:
    """The modes that can run on this index, and notes on any left out."""
    from codelearn.index.embedder import project_embedder

    if project.settings.embedder == NO_EMBEDDER:
        return ["keyword"], ["vector and hybrid modes omitted: the embedder setting is none (no vectors)"]
    catalog = Catalog(project.catalog_path, readonly=True)
    try:
        indexed = catalog.get_meta("embedder")
    finally:
        catalog.close()
    wanted = project_embedder(project).name
    if indexed != wanted:
        return ["keyword"], [f"vector and hybrid modes omitted: the index holds {indexed or 'no'} vectors but "
                             f"the embedder setting makes {wanted} ones; run `codelearn index`"]
    return list(MODES), []


def _ticker(progress: Callable[[int, int], None] | None, total: int) -> Callable[[], None]:
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    return tick


@dataclass
class _Run:
    """One section's inputs, shared by its query sets."""

    project: Project
    modes: list[str]
    targets: list[Target]
    paraphrases: list[tuple[str, Target]]
    questions: list[Question]
    tick: Callable[[], None]

    @property
    def k(self) -> int:
        return max(K, self.project.settings.ask_k)

    @property
    def ask_mode(self) -> str:
        # `ask` searches hybrid; the Searcher itself falls back to keywords without vectors.
        return "hybrid" if "hybrid" in self.modes else "keyword"


def _shadow_sets(run: _Run, budget: int, vocab: Vocab | None) -> tuple[dict, dict | None]:
    """The docstring and paraphrase sets (and the prompt share), searched on the shadow index."""
    with shadow_project(run.project, run.targets, vectors="vector" in run.modes) as shadow:
        searcher = Searcher(shadow)
        try:
            docs = _search_all(searcher, [t.sentence for t in run.targets], run.modes, run.k, run.tick)
            reworded = _search_all(searcher, [q for q, _ in run.paraphrases], run.modes, run.k, run.tick)
        finally:
            searcher.close()
    sets = {"docstring": _set_json(docs, [t.found_by for t in run.targets], run.modes),
            "paraphrase": _set_json(reworded, [t.found_by for _, t in run.paraphrases], run.modes)}
    prompt = None
    if vocab is not None:
        prompt = prompt_share(docs, run.targets, run.ask_mode, run.project.settings.ask_k, budget, vocab)
    return sets, prompt


def _question_set(run: _Run, questions: Path) -> dict:
    """The user's questions on the real index, the questions file's own lines left out.

    A questions file kept in the repo is indexed like any file, and each
    question's best match is then its own line: it would push the answer down.
    """
    own = _repo_path(run.project, questions)
    searcher = Searcher(run.project)
    try:
        # Room for every chunk of the file, so K others remain once they are left out.
        extra = searcher.catalog.count_chunks("repo", own) if own is not None else 0
        results = _search_all(searcher, [q.question for q in run.questions], run.modes, K + extra, run.tick)
    finally:
        searcher.close()
    if extra:
        results = [{mode: [h for h in hits if (h.source, h.path) != ("repo", own)][:K]
                    for mode, hits in r.items()} for r in results]
    return _set_json(results, [q.found_by for q in run.questions], run.modes)


def _repo_path(project: Project, path: Path) -> str | None:
    """`path` relative to the project's root, or None when it lies outside."""
    try:
        return Path(path).resolve().relative_to(project.root.resolve()).as_posix()
    except ValueError:
        return None


def _notes(run: _Run, found: int, seed: int, questions: Path | None) -> list[str]:
    notes = [f"{len(run.targets)} of {found} documented functions, methods and classes sampled (seed {seed})",
             "docstring: query = the docstring's first sentence, searched on a copy of the index "
             "with every target's docstring removed from its text, keywords and vector",
             f"paraphrase: identifier-free rewording made without a model (the first sentence minus "
             f"every word naming an identifier of the target); {len(run.targets) - len(run.paraphrases)} "
             f"targets skipped (fewer than {MIN_PARAPHRASE_WORDS} words left)",
             f"a hit is a result overlapping the target's lines, within the top {K}"]
    if questions is not None:
        notes.append(f"questions: {len(run.questions)} from {questions}, searched on the real index "
                     "(a hit: same path, and the symbol when given)")
    return notes


def retrieval_section(project: Project, *, limit: int = 200, seed: int = 0, questions: Path | None = None,
                      max_context: int | None = None, vocab: Vocab | None = None,
                      progress: Callable[[int, int], None] | None = None) -> dict:
    """Recall@1/5/10 and MRR of the project's own search per query set and mode (JSON-ready)."""
    asked = load_questions(questions) if questions is not None else []  # fail before the slow part
    found = find_targets(load_units(project.catalog_path))
    tuned = search_model.active(project.state)
    if tuned is not None:  # it learned the other docstrings: only its held-out ones are fair queries
        held = set(tuned.held_out)
        found = [t for t in found if t.unit.key in held]
    targets = sample_targets(found, limit, seed)
    modes, mode_notes = _modes(project)
    if tuned is not None:
        mode_notes.append(f"the search model was tuned on this repo's docstrings: the targets are drawn "
                          f"from the {len(found)} definitions it held out (never trained on)")
    paraphrases = _paraphrases(targets)
    total = len(targets) + len(paraphrases) + len(asked)
    run = _Run(project, modes, targets, paraphrases, asked, _ticker(progress, total))
    budget = max_context or project.settings.max_context
    sets, prompt = {"docstring": _set_json([], [], modes), "paraphrase": _set_json([], [], modes)}, None
    if targets:
        sets, prompt = _shadow_sets(run, budget, vocab)
    elif vocab is not None:
        prompt = prompt_share([], [], run.ask_mode, project.settings.ask_k, budget, vocab)
    if asked:
        sets["questions"] = _question_set(run, questions)
    notes = _notes(run, len(found), seed, questions) + mode_notes
    if prompt is not None:
        notes.append(f"prompt: ask's own merge and packing of the top {project.settings.ask_k} "
                     f"{run.ask_mode} hits for each docstring query (no model-written queries), "
                     f"at {budget} tokens of code")
    return {"targets": len(targets), "sets": sets, "prompt": prompt, "notes": notes}
