"""Line arithmetic for chunking: a file's lines, range sizes, and cutting ranges into windows.

Rows are 0-based here (tree-sitter's convention); `Chunk` lines are 1-based. Every cut
falls on a line boundary, so a chunk's text is always exactly its lines of the file.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from itertools import accumulate


class Lines:
    """A file's lines, with prefix sums so the size of any row range is O(1)."""

    def __init__(self, text: str) -> None:
        self.rows = text.split("\n")  # not splitlines(): rows must match tree-sitter's
        # offsets[i] = characters before row i, newlines included
        self.offsets = list(accumulate(map((1).__add__, map(len, self.rows)), initial=0))

    def __len__(self) -> int:
        return len(self.rows)

    def size(self, first: int, last: int) -> int:
        """Characters in rows first..last inclusive, newlines counted."""
        return self.offsets[last + 1] - self.offsets[first]

    def text(self, first: int, last: int) -> str:
        """The text of rows first..last inclusive."""
        return "\n".join(self.rows[first : last + 1])

    def is_blank(self, row: int) -> bool:
        """Whether a row holds only whitespace."""
        return not self.rows[row].strip()

    def trim(self, first: int, last: int) -> tuple[int, int] | None:
        """The range without blank rows at either end, or None if all are blank."""
        while first <= last and self.is_blank(first):
            first += 1
        while last >= first and self.is_blank(last):
            last -= 1
        return (first, last) if first <= last else None

    def last_row_fitting(self, first: int, budget: float) -> int:
        """The largest row r such that rows first..r-1 fit in `budget` characters."""
        return bisect_right(self.offsets, self.offsets[first] + budget) - 1


def split_rows(
    lines: Lines, first: int, last: int, window: int, breaks: dict[int, int] | None = None
) -> list[tuple[int, int]]:
    """Cut rows first..last into near-equal ranges of at most ~`window` chars, trimmed.

    Each cut aims at an equal share of what is left and may move to any row between
    60% and 125% of that share: to the shallowest row in `breaks` (row -> depth, where a
    new range may start), then the one nearest the aim. A row longer than the window
    stays whole.
    """
    breaks = breaks or {}
    pieces = []
    cur = first
    while cur < last and (remaining := lines.size(cur, last)) > window:
        share = remaining / math.ceil(remaining / window)
        aim = _fit(lines, cur, share, last)
        lo, hi = _fit(lines, cur, share * 0.6, last), _fit(lines, cur, share * 1.25, last)
        cut = _best_break(breaks, lo, hi, aim)
        pieces.append((cur, cut - 1))
        cur = cut
    pieces.append((cur, last))
    return [t for t in (lines.trim(a, b) for a, b in pieces) if t is not None]


def _fit(lines: Lines, first: int, budget: float, last: int) -> int:
    """The row to start the next range at so that rows first.. fit in `budget`."""
    return min(max(lines.last_row_fitting(first, budget), first + 1), last)


def _best_break(breaks: dict[int, int], lo: int, hi: int, aim: int) -> int:
    """The row in lo..hi to cut before: the shallowest break, then the nearest to `aim`."""
    best, best_key = aim, None
    for row in range(lo, hi + 1):
        depth = breaks.get(row)
        if depth is not None:
            key = (depth, abs(row - aim))
            if best_key is None or key < best_key:
                best, best_key = row, key
    return best


def blank_line_breaks(lines: Lines, first: int, last: int) -> dict[int, int]:
    """Break rows for plain text: every row that follows a blank row."""
    return {
        row: 0
        for row in range(first + 1, last + 1)
        if lines.is_blank(row - 1) and not lines.is_blank(row)
    }
