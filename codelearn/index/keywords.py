"""Text for the keyword index, and queries against it.

SQLite FTS5's tokenizer splits `raw_decode` into `raw decode` but keeps
`HTTPConnection` as one token, so identifiers get their camelCase parts added
next to them; queries are turned into an OR of their meaningful terms, since
an AND of every word in a question rarely matches anything.
"""

from __future__ import annotations

import re
from functools import lru_cache

_CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
WORD = re.compile(r"[A-Za-z0-9_]+")  # a word of code: letters, digits and underscores

# Question words that carry no meaning for a code search.
STOPWORDS = frozenset(
    """a an and are as at be by can do does for from how i in into is it its of on or
    the this that to what when where which who why with you your we our there their
    should would could will code codebase function method class implemented implement
    defined define find show me get gets use used using""".split()
)


def split_identifier(name: str) -> list[str]:
    """`HTTPConnection` -> [HTTP, Connection]; `raw_decode` -> [raw, decode]."""
    parts: list[str] = []
    for piece in name.split("_"):
        parts.extend(_CAMEL.findall(piece))
    return [p for p in parts if p]


@lru_cache(maxsize=1 << 16)
def _camel_words(ident: str) -> str:
    """`HTTPConnection` -> `HTTP Connection`; "" when there is nothing to split."""
    if ident.lower() == ident or ident.upper() == ident:
        return ""
    parts = split_identifier(ident)
    return " ".join(parts) if len(parts) > 1 else ""


def expand_identifiers(text: str) -> str:
    """Append camelCase parts after each mixed-case identifier in `text`."""
    extra = [w for w in map(_camel_words, sorted(set(_IDENT.findall(text)))) if w]
    return text if not extra else text + "\n" + " ".join(extra)


def path_words(path: str) -> str:
    """Words of a path: `json/decoder.py` -> `json decoder py`."""
    return " ".join(split_identifier(" ".join(WORD.findall(path))) or WORD.findall(path))


def query_terms(query: str) -> list[str]:
    """The meaningful terms of a query, identifiers kept whole."""
    terms: list[str] = []
    for raw in re.findall(r"[A-Za-z0-9_.:]+", query):
        token = raw.strip(".:")
        if not token or token.lower() in STOPWORDS:
            continue
        terms.append(token)
    return terms


def fts_query(query: str) -> str:
    """An FTS5 MATCH expression: OR of quoted terms (identifiers as phrases)."""
    parts: list[str] = []
    for term in query_terms(query):
        words = WORD.findall(term.replace(".", " ").replace("::", " "))
        if not words:
            continue
        phrase = " ".join(words)
        parts.append(f'"{phrase}"')
        # camelCase identifiers are indexed both whole and split.
        split = split_identifier(term)
        if len(split) > 1 and "_" not in term:
            parts.append('"' + " ".join(split) + '"')
    return " OR ".join(dict.fromkeys(parts))
