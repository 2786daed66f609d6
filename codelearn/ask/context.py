"""From search hits to the code a model sees: dedupe, merge, pack by tokens.

Hits from one file that overlap or touch are merged into one excerpt (a class
header and its first method become one range); excerpts keep the rank of
their best hit. Packing walks excerpts best-first, counting tokens with the
model's own tokenizer, and cuts the last one at a line boundary rather than
dropping it, so the budget is used and never exceeded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

from codelearn.index.search import Hit

MERGE_GAP = 1  # lines between two hits of a file that still merge them
MIN_EXCERPT_TOKENS = 48  # a cut excerpt smaller than this is not worth its header


@dataclass
class Excerpt:
    """A contiguous range of one file, as indexed."""

    path: str
    source: str
    language: str
    start_line: int
    end_line: int
    lines: list[str]
    symbols: list[str] = field(default_factory=list)
    score: float = 0.0
    truncated: bool = False

    @property
    def label(self) -> str:
        return f"{self.path}:{self.start_line}-{self.end_line}"

    def render(self) -> str:
        symbols = f" ({', '.join(self.symbols)})" if self.symbols else ""
        more = "\n# ... (cut to fit)" if self.truncated else ""
        body = "\n".join(self.lines)
        return f"### {self.label}{symbols}\n```{self.language}\n{body}{more}\n```"

    def as_json(self) -> dict:
        return {"path": self.path, "source": self.source, "start_line": self.start_line,
                "end_line": self.end_line, "symbols": self.symbols, "score": round(self.score, 6),
                "truncated": self.truncated}


def _excerpt(hit: Hit) -> Excerpt:
    lines = hit.text.split("\n")
    end = hit.start_line + len(lines) - 1
    return Excerpt(hit.path, hit.source, hit.language, hit.start_line, max(end, hit.end_line),
                   lines[: hit.end_line - hit.start_line + 1] if hit.end_line >= hit.start_line else lines,
                   [hit.symbol] if hit.symbol else [], hit.score)


def _join(a: Excerpt, b: Excerpt) -> Excerpt:
    """Merge b into a (same file, b starts no later than a's end + gap + 1)."""
    first, second = (a, b) if a.start_line <= b.start_line else (b, a)
    lines = list(first.lines)
    if second.end_line > first.end_line:
        skip = first.end_line - second.start_line + 1  # lines of `second` already present
        if skip < 0:  # a gap of up to MERGE_GAP lines the index did not chunk
            lines.extend([""] * (-skip))
            skip = 0
        lines.extend(second.lines[skip:])
    symbols = first.symbols + [s for s in second.symbols if s not in first.symbols]
    return Excerpt(first.path, first.source, first.language, first.start_line,
                   max(first.end_line, second.end_line), lines, symbols, max(a.score, b.score))


def merge_hits(hits: Iterable[Hit]) -> list[Excerpt]:
    """Deduplicate and merge hits into excerpts, best first."""
    by_file: dict[tuple[str, str], list[Excerpt]] = {}
    for hit in hits:
        by_file.setdefault((hit.source, hit.path), []).append(_excerpt(hit))
    merged: list[Excerpt] = []
    for pieces in by_file.values():
        pieces.sort(key=lambda e: (e.start_line, -e.end_line))
        current = pieces[0]
        for piece in pieces[1:]:
            if piece.start_line <= current.end_line + MERGE_GAP + 1:
                current = _join(current, piece)
            else:
                merged.append(current)
                current = piece
        merged.append(current)
    merged.sort(key=lambda e: (-e.score, e.path, e.start_line))
    return merged


def cut_to_fit(excerpt: Excerpt, budget: int, count: Callable[[str], int]) -> Excerpt | None:
    """The longest prefix of `excerpt` (whole lines) whose rendering fits `budget` tokens."""
    low, high = 1, len(excerpt.lines) - 1
    best = None
    while low <= high:
        middle = (low + high) // 2
        trial = Excerpt(excerpt.path, excerpt.source, excerpt.language, excerpt.start_line,
                        excerpt.start_line + middle - 1, excerpt.lines[:middle], excerpt.symbols,
                        excerpt.score, truncated=True)
        if count(trial.render()) <= budget:
            best, low = trial, middle + 1
        else:
            high = middle - 1
    return best


@dataclass(frozen=True)
class Packed:
    """The excerpts that fit, and what they cost."""

    excerpts: list[Excerpt]
    tokens: int
    budget: int
    dropped: int


def pack(excerpts: list[Excerpt], budget: int, count: Callable[[str], int],
         separator_tokens: int = 2) -> Packed:
    """Best-first excerpts whose renderings (plus separators) fit `budget` tokens."""
    chosen: list[Excerpt] = []
    used = 0
    dropped = 0
    for excerpt in excerpts:
        cost = count(excerpt.render()) + separator_tokens
        if used + cost <= budget:
            chosen.append(excerpt)
            used += cost
            continue
        room = budget - used - separator_tokens
        if room >= MIN_EXCERPT_TOKENS and len(excerpt.lines) > 1:
            cut = cut_to_fit(excerpt, room, count)
            if cut is not None:
                chosen.append(cut)
                used += count(cut.render()) + separator_tokens
                continue
        dropped += 1
    return Packed(chosen, used, budget, dropped)
