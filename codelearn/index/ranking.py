"""Code-aware adjustments to fused search scores, nearly free at query time.

Applied after keyword and vector scores are fused: a bonus for chunks whose
symbol the query names, or, for top-level code, that assign or `#define` an
identifier the query names (a constant has no chunk of its own), or that hold a
phrase the query quotes (`"...", '...'`, backticks, or the message of a pasted
`SomeError: message` line) word for word, or in good part (a message whose
values were filled in); a penalty for the head of a big class the query does not
name (signature and docstring: the answer is usually in one of its methods);
penalties for code that *uses* or *re-exports* the thing asked about rather than
implementing it (tests, examples, docs, compat shims, `__init__` re-exports); a
bonus when query words name the file or its folders; file coherence (a file with
several good chunks lifts its best one); and a cap on chunks per file among the
results, so one file cannot crowd out the others.
Each weight is a named constant measured in benchmarks/ranking.py (several
query sets and languages at once) and benchmarks/retrieval.py.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

from codelearn.index.catalog import StoredChunk
from codelearn.index.keywords import WORD, query_terms, split_identifier

SYMBOL_BONUS = 0.1
DEFINES_BONUS = 0.6  # top-level code defining a named identifier: constants R@1 0.47 -> 0.93 (0.5: 0.89)
QUOTE_BONUS = 0.5  # phrase found verbatim: quoted errors R@1 0.71 -> 0.96; above the vector share
PARTIAL_QUOTE = 0.5  # share of the bonus, times the share of the phrase's word pairs found (half at least)
HEADER_FACTOR = 0.6  # class heads the query does not name: questions R@1 0.292 -> 0.310
TEST_FACTOR = 0.5  # 0.8 before; 0.5 scored +0.006 / +0.009 recall@5 on the two stdlib sets
AUX_FACTOR = 1.0  # examples, docs, compat shims, `__init__` re-exports
PATH_BONUS = 0.0  # per query word naming the file stem or a parent folder (two at most)
COHERENCE_BONUS = 0.0  # per further candidate chunk of the same file (three at most)
PER_FILE_CAP = 0  # most chunks of one file among the results; 0 = no cap

_AUX_DIR = re.compile(r"(^|/)(examples?|samples?|demos?|docs?|tutorials?|benchmarks?)/")
_COMPAT = re.compile(r"(^|/)(_?compat[^/]*|six|backports?)(/|\.py$)")
# How top-level code defines a name, in the languages codelearn chunks: `NAME = ...`,
# `NAME: int = ...`, `#define NAME`, `const NAME`, `static NAME`, `var NAME`, `typedef ... NAME`.
_DEFINES = (r"(?m)^[ \t]*(?:(?:#[ \t]*define[ \t]+{name}\b)"
            r"|(?:typedef\b[^;\n]*\b{name}[ \t]*;)"
            r"|(?:(?:export[ \t]+|pub[ \t]+)?(?:const|let|var|static)[ \t]+)?"
            r"{name}\b(?:[ \t]*:[^=\n]*)?[ \t]*=(?!=))")
_QUOTED = re.compile(r"\"([^\"]{6,})\"|(?<!\w)'([^']{6,})'(?!\w)|`([^`]{6,})`")
# A pasted traceback line: `ValueError: message`, `json.decoder.JSONDecodeError: message`.
_RAISED = re.compile(r"\b[A-Z]\w*(?:Error|Exception|Warning)\b:[ \t]*([^\n]{6,})")
_IDENTIFIER = re.compile(r"_|[a-z][A-Z]|[A-Z]{2}|\.|::")
_SUFFIX = re.compile(r"(ations?|izers?|isers?|izing|ising|ized|ised|izes|ises|ize|ise|ing|ers?|ed|es|s)$")


@dataclass(frozen=True)
class Query:
    """What the ranking needs from a query, computed once."""

    named_full: frozenset[str]  # dotted names as written
    named: frozenset[str]  # last parts of names
    stems: frozenset[str]  # word stems, for matching paths
    identifiers: frozenset[str] = frozenset()  # terms written like code (`MAX_SIZE`, `os.path`), last parts
    quoted: tuple[str, ...] = ()  # quoted phrases, as `words_of` gives them

    @classmethod
    def parse(cls, text: str) -> Query:
        terms = query_terms(text)
        full = {t.lower().replace("::", ".") for t in terms}
        words = {w.lower() for t in terms for w in split_identifier(t.replace(".", "_")) if len(w) > 2}
        idents = {t.replace("::", ".").split(".")[-1] for t in terms if _IDENTIFIER.search(t[1:])}
        spans = [next(g for g in m.groups() if g) for m in _QUOTED.finditer(text)]
        spans += [m.group(1) for m in _RAISED.finditer(text) if not _QUOTED.search(m.group(1))]
        quoted = (words_of(span) for span in spans)
        return cls(frozenset(full), frozenset(t.split(".")[-1] for t in full),
                   frozenset(stem(w) for w in words), frozenset(i for i in idents if i),
                   tuple(q for q in quoted if q))


def words_of(text: str) -> str:
    """Lower-case words and numbers joined by single spaces, padded: phrases compare as substrings."""
    return " " + " ".join(WORD.findall(text.lower())) + " "


def quote_match(quoted: tuple[str, ...], words: str) -> float:
    """1.0 when `words` (from `words_of`) hold a phrase whole; PARTIAL_QUOTE times the share of its
    word pairs they hold when that is half or more (`invalid port 99999` against `invalid port %d`);
    else 0."""
    if any(q in words for q in quoted):
        return 1.0
    here = words.split()
    pairs_here = set(zip(here, here[1:]))
    best = 0.0
    for phrase in quoted:
        tokens = phrase.split()
        pairs = set(zip(tokens, tokens[1:]))
        if pairs:
            best = max(best, len(pairs & pairs_here) / len(pairs))
    return PARTIAL_QUOTE * best if best >= 0.5 else 0.0


def stem(word: str) -> str:
    """A crude English stem: `serialising`, `serializer`, `serialize` → `serial`."""
    word = word.lower()
    cut = _SUFFIX.sub("", word)
    return cut if len(cut) >= 3 else word


def is_auxiliary(path: str, kind: str) -> bool:
    """Code that shows or forwards rather than implements."""
    if _AUX_DIR.search(path) or _COMPAT.search(path):
        return True
    return path.endswith("__init__.py") and kind == "module"


def defines(text: str, names: frozenset[str]) -> bool:
    """Whether top-level code assigns, declares or `#define`s one of `names` (at a line's start)."""
    return _definition_of(names).search(text) is not None


@lru_cache(maxsize=64)
def _definition_of(names: frozenset[str]) -> re.Pattern[str]:
    """One pattern for all of a query's names, built once per query rather than once per chunk."""
    return re.compile(_DEFINES.format(name="(?:" + "|".join(map(re.escape, sorted(names))) + ")"))


def path_stems(path: str) -> set[str]:
    parts = path.rsplit(".", 1)[0].split("/")
    return {stem(w) for part in parts for w in split_identifier(part) if len(w) > 2}


def adjust(fused: dict[int, float], chunks: dict[int, StoredChunk], query: Query) -> dict[int, float]:
    """Scores after the code-aware rules above (chunks missing from `chunks` drop out)."""
    out: dict[int, float] = {}
    for cid, score in fused.items():
        stored = chunks.get(cid)
        if stored is None:
            continue
        chunk = stored.chunk
        symbol = chunk.symbol.lower().replace("::", ".")
        named = bool(symbol) and (symbol in query.named_full or symbol.split(".")[-1] in query.named)
        if named:
            score += SYMBOL_BONUS
        elif chunk.kind == "module" and query.identifiers and defines(chunk.text, query.identifiers):
            score += DEFINES_BONUS
        if query.quoted:
            score += QUOTE_BONUS * quote_match(query.quoted, words_of(chunk.text))
        if chunk.kind == "header" and not named:  # asked about by name, the class head is the answer
            score *= HEADER_FACTOR
        if PATH_BONUS and query.stems:
            score += PATH_BONUS * min(2, len(query.stems & path_stems(chunk.path)))
        if stored.is_test:
            score *= TEST_FACTOR
        elif AUX_FACTOR != 1.0 and is_auxiliary(chunk.path, chunk.kind):
            score *= AUX_FACTOR
        out[cid] = score
    return _cohere(out, chunks) if COHERENCE_BONUS else out


def _cohere(scores: dict[int, float], chunks: dict[int, StoredChunk]) -> dict[int, float]:
    """Lift each file's best chunk by how many other candidates the file has."""
    per_file = Counter((chunks[c].source, chunks[c].chunk.path) for c in scores)
    best: dict[tuple[str, str], int] = {}
    for cid, score in scores.items():
        key = (chunks[cid].source, chunks[cid].chunk.path)
        if key not in best or score > scores[best[key]]:
            best[key] = cid
    lifted = dict(scores)
    for key, cid in best.items():
        lifted[cid] += COHERENCE_BONUS * min(3, per_file[key] - 1)
    return lifted


def top(scores: dict[int, float], chunks: dict[int, StoredChunk], k: int) -> list[tuple[int, float]]:
    """The k best, at most PER_FILE_CAP per file (the rest only fill leftover places)."""
    ranked = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
    if not PER_FILE_CAP:
        return ranked[:k]
    kept, spill, seen = [], [], Counter()
    for cid, score in ranked:
        key = (chunks[cid].source, chunks[cid].chunk.path)
        (kept if seen[key] < PER_FILE_CAP else spill).append((cid, score))
        seen[key] += 1
    return (kept + spill)[:k]
