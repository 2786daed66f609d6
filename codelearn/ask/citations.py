"""Citations: `path:line` references in an answer, checked against what was retrieved.

A citation is kept only if it points into an excerpt the model was shown;
anything else is reported as unverified, never silently trusted. Models often
shorten paths (`textwrap.py:420` for `Lib/textwrap.py`), so a citation whose
path is a unique suffix of a shown path resolves to it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from codelearn.ask.context import Excerpt

CITATION = re.compile(
    r"(?<![\w/.-])(?P<path>[\w.-]+(?:/[\w.-]+)*\.[A-Za-z0-9_]+)"
    r"(?::|#L|, line |\s+line\s+)(?P<start>\d+)(?:\s*[-–]\s*L?(?P<end>\d+))?")


@dataclass(frozen=True)
class Citation:
    text: str  # as written in the answer
    path: str  # resolved full path when verified, else as written
    start_line: int
    end_line: int
    verified: bool
    excerpt: int | None  # index into the shown excerpts

    def as_json(self) -> dict:
        return {"text": self.text, "path": self.path, "start_line": self.start_line,
                "end_line": self.end_line, "verified": self.verified, "excerpt": self.excerpt}


def _candidates(path: str, excerpts: list[Excerpt]) -> list[int]:
    exact = [i for i, e in enumerate(excerpts) if e.path == path]
    if exact:
        return exact
    suffix = "/" + path.lstrip("./")
    return [i for i, e in enumerate(excerpts) if ("/" + e.path).endswith(suffix)]


def find_citations(answer: str, excerpts: list[Excerpt]) -> list[Citation]:
    """Every `path:line[-line]` in `answer`, each checked against the excerpts."""
    found: list[Citation] = []
    seen: set[tuple[str, int, int]] = set()
    for match in CITATION.finditer(answer):
        start = int(match["start"])
        end = int(match["end"]) if match["end"] else start
        if end < start:
            start, end = end, start
        hit = None
        for index in _candidates(match["path"], excerpts):
            excerpt = excerpts[index]
            if start <= excerpt.end_line and end >= excerpt.start_line:
                hit = index
                break
        path = excerpts[hit].path if hit is not None else match["path"]
        key = (path, start, end)
        if key in seen:
            continue
        seen.add(key)
        found.append(Citation(match.group(0), path, start, end, hit is not None, hit))
    return found


def used_excerpts(answer: str, excerpts: list[Excerpt], citations: list[Citation]) -> set[int]:
    """Excerpts the answer cites, or whose symbols' names it mentions."""
    used = {c.excerpt for c in citations if c.excerpt is not None}
    for index, excerpt in enumerate(excerpts):
        for symbol in excerpt.symbols:
            leaf = symbol.rsplit(".", 1)[-1]
            if len(leaf) > 2 and re.search(rf"\b{re.escape(leaf)}\b", answer):
                used.add(index)
                break
    return used
