"""What the team's own questions teach: training samples and gate cases from the repo's history.

A turn the user marked good teaches its answer; a turn they corrected teaches the correction
(`--answer`), or where the answer lives (`--source`). Each becomes a chat sample in exactly the
prompt `ask` served: the same system rules, the question, the excerpts it was shown (read again
from today's files, secrets redacted as in the index), plus the code at the corrected location.
A seeded share of the corrections is held out instead: the gate and `eval` score the corrected
answer's loss on them, so learning from use is measured on corrections the model never saw.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from codelearn.ask.context import Excerpt
from codelearn.ask.history import FILE, History, Turn, parse_location
from codelearn.ask.prompt import SYSTEM, user_message
from codelearn.corpus.formats import Piece, Vocab, chat_pieces
from codelearn.corpus.split import stable_fraction
from codelearn.index.chunker import language_for
from codelearn.sources.secrets import redact_secrets

USE_WEIGHT = 3  # each case is trained this many times: one correction outweighs a synthetic sample
HOLDOUT_SHARE = 0.2  # of the corrections, held out as gate and eval cases
LOCATED_LINES = 30  # code shown around a corrected `path:line`
LESSON_SOURCES = 8  # a deep answer lists every excerpt it read; a lesson shows at most this many


@dataclass(frozen=True)
class UseCase:
    """One turn as a lesson: the question, what `ask` showed, and the answer to learn."""

    turn: int
    question: str
    excerpts: tuple[Excerpt, ...]
    target: str
    kind: str  # "good" or "corrected"

    @property
    def key(self) -> str:
        return f"use:{self.turn}"


def _excerpt(root: Path, path: str, start: int, end: int) -> Excerpt | None:
    """Lines `start..end` of a repo file as they are today (secrets redacted), or None if gone."""
    file = (root / path).resolve()
    if not file.is_relative_to(root.resolve()) or not file.is_file():
        return None
    try:
        lines = file.read_text(errors="replace").split("\n")
    except OSError:
        return None
    if start > len(lines):
        return None
    text = redact_secrets("\n".join(lines[start - 1:end]), path)[0]
    return Excerpt(path, "repo", language_for(path) or "text", start, min(end, len(lines)), text.split("\n"))


def _located(root: Path, where: str) -> Excerpt | None:
    path, start, end = parse_location(where)
    return _excerpt(root, path, max(1, start), end or start + LOCATED_LINES - 1)


def lesson_sources(sources: list[dict], most: int = LESSON_SOURCES) -> list[dict]:
    """The repo sources a lesson shows, in their order: all of a plain answer's; of a deep answer's
    many (every excerpt it read), the ones it used first, then the best ranked, `most` in all."""
    repo = [s for s in sources if s.get("source") == "repo"]
    if len(repo) <= most:
        return repo
    keep = {id(s) for s in [s for s in repo if s.get("used")][:most]}
    for source in repo:
        if len(keep) >= most:
            break
        keep.add(id(source))
    return [s for s in repo if id(s) in keep]


def case_for(root: Path, turn: Turn) -> UseCase | None:
    """The lesson in `turn`, if its feedback gives one (a bare "bad" teaches nothing to copy)."""
    if turn.feedback == "good":
        target, kind = turn.answer, "good"
    elif turn.correction:
        target, kind = turn.correction, "corrected"
    elif turn.correct_source:
        target, kind = f"It is in `{turn.correct_source}`.", "corrected"
    else:
        return None
    shown = [_excerpt(root, s["path"], s["start_line"], s["end_line"])
             for s in lesson_sources(turn.sources)]
    if turn.correct_source:
        shown.append(_located(root, turn.correct_source))
    return UseCase(turn.id, turn.question, tuple(e for e in shown if e is not None), target, kind)


def use_cases(root: Path, state: Path) -> list[UseCase]:
    """Every lesson the repo's history holds, oldest first."""
    if not (state / FILE).exists():
        return []
    with History(state) as history:
        turns = history.turns(limit=-1)
    return [case for case in (case_for(root, t) for t in reversed(turns)) if case is not None]


def split_use(cases: list[UseCase], seed: int, share: float = HOLDOUT_SHARE) -> tuple[list, list]:
    """(trained, held out): a seeded share of the corrections is held out; good answers all train."""
    held = [c for c in cases if c.kind == "corrected" and stable_fraction(f"{c.key}:{c.question}", seed) < share]
    return [c for c in cases if c not in held], held


def use_pieces(vocab: Vocab, case: UseCase) -> list[Piece]:
    """The prompt `ask` served for the question (rules, excerpts, question), then the answer to learn."""
    messages = [{"role": "system", "content": SYSTEM},
                {"role": "user", "content": user_message(case.question, list(case.excerpts))}]
    return chat_pieces(vocab, messages, case.target)
