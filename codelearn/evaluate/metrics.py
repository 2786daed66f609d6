"""Loss and next-line exact match, accumulated over scored tokens.

Next-line exact match is read off the same forward pass as the loss: a line
counts as matched when the model's top prediction was right for every one of
its tokens, which is exactly when greedy decoding would have written the line
(given the same prefix).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class Tally:
    """Sums over scored tokens and lines; `loss` is the mean negative log-likelihood."""

    nll: float = 0.0
    tokens: int = 0
    lines: int = 0
    lines_exact: int = 0
    probes: int = 0

    def add(self, other: Tally) -> None:
        self.nll += other.nll
        self.tokens += other.tokens
        self.lines += other.lines
        self.lines_exact += other.lines_exact
        self.probes += other.probes

    @property
    def loss(self) -> float | None:
        return self.nll / self.tokens if self.tokens else None

    @property
    def exact_match(self) -> float | None:
        return self.lines_exact / self.lines if self.lines else None

    @property
    def perplexity(self) -> float | None:
        return math.exp(self.loss) if self.loss is not None else None

    def as_json(self) -> dict:
        return {"loss": _round(self.loss), "next_line_exact": _round(self.exact_match),
                "tokens": self.tokens, "lines": self.lines, "probes": self.probes}

    @classmethod
    def from_json(cls, data: dict) -> Tally:
        loss = data.get("loss") or 0.0
        tokens = data.get("tokens", 0)
        exact = data.get("next_line_exact") or 0.0
        lines = data.get("lines", 0)
        return cls(loss * tokens, tokens, lines, round(exact * lines), data.get("probes", 0))


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 5)


def line_tally(nll: list[float], hits: list[bool], ends_line: list[bool]) -> Tally:
    """One probe's tally; `ends_line[i]` marks a scored token whose text holds a newline."""
    tally = Tally(nll=float(sum(nll)), tokens=len(nll), probes=1)
    exact, has_content = True, False
    for hit, end in zip(hits, ends_line):
        exact &= bool(hit)
        has_content = True
        if end:
            tally.lines += 1
            tally.lines_exact += int(exact)
            exact, has_content = True, False
    if has_content:
        tally.lines += 1
        tally.lines_exact += int(exact)
    return tally


def relative_change(before: float | None, after: float | None) -> float | None:
    """(after - before) / before; negative is a lower (better) loss."""
    if before in (None, 0) or after is None:
        return None
    return (after - before) / before
