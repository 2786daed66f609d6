"""Deep mode: read more code than one prompt holds, in batches, then answer from notes.

A plain answer sees the best excerpts that fit `max_context`. When a question's answer is
spread over more code than that ("how does a change reach the vector store?"), deep mode:

1. retrieves wider (`WIDTH` times the hits of a plain answer),
2. packs the excerpts, best first, into batches that each fit the window (`batches`),
   stopping at `deep_tokens` read in all,
3. asks the model, batch by batch, for the facts that bear on the question, each ending
   with the `path:line` it came from (`note_messages`),
4. keeps a note only when it can be placed in the batch it was read from (`take_notes`):
   by its own citation when that points into the batch, else by a symbol of the batch it
   names, else by the excerpt it shares most words with (small models paraphrase a
   docstring rather than cite it), so every note carries a checked location,
5. answers from the notes plus the best excerpts that still fit (`prompt.deep_user_message`);
   the answer's citations are checked against every excerpt read.

The cost (batches, tokens read and written, seconds) is reported with the answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

from codelearn.ask.citations import CITATION, find_citations, used_excerpts
from codelearn.ask.context import Excerpt, cut_to_fit

WIDTH = 3  # hits per query in deep mode, as a multiple of `ask_k`
BATCH_TOKENS = 2000  # code per note-taking prompt: a 0.5B model reads ~2k tokens in ~25 s on 2 cores
NOTE_TOKENS = 192  # most tokens of notes per batch
MAX_NOTE_CHARS = 300
SEPARATOR_TOKENS = 2
MIN_SHARED_WORDS = 3  # a note placed by wording shares at least this many words with its excerpt
MIN_SHARED_SHARE = 0.5  # ... and at least this share of its own words
_NOTHING = re.compile(r"^\W*(none|nothing|no relevant|n/a)\b", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z`*])")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{3,}")
_COMMON = frozenset("""this that with from when what which where their there then than they them
these those have each only into also were been being does done will would should could your
about after before other some such more most very just like here used uses using code file
files function class method returns return value values question answer note notes excerpt""".split())
_EMPTY_BRACKETS = re.compile(r"\(\s*\)|\[\s*\]|`\s*`")


@dataclass(frozen=True)
class Note:
    """One fact taken from the code, with the location it was read at."""

    text: str
    path: str
    start_line: int
    end_line: int

    @property
    def location(self) -> str:
        if self.end_line > self.start_line:
            return f"{self.path}:{self.start_line}-{self.end_line}"
        return f"{self.path}:{self.start_line}"

    def render(self) -> str:
        return f"- {self.text} ({self.location})"

    def as_json(self) -> dict:
        return {"text": self.text, "path": self.path, "start_line": self.start_line,
                "end_line": self.end_line}


@dataclass
class BatchReport:
    excerpts: int
    tokens: int  # code tokens in the batch
    prompt_tokens: int
    note_tokens: int  # generated
    notes: int
    dropped: int  # lines the model wrote that had no location in the batch
    seconds: float

    def as_json(self) -> dict:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in vars(self).items()}


@dataclass
class DeepReport:
    """What deep mode read and wrote before the answer, for `--json` and the model line."""

    batches: list[BatchReport] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    unread: int = 0  # retrieved excerpts left out by `deep_tokens`
    notes_shown: int = 0  # notes that fit in the answer's prompt

    @property
    def read_tokens(self) -> int:
        return sum(b.tokens for b in self.batches)

    @property
    def seconds(self) -> float:
        return sum(b.seconds for b in self.batches)

    def as_json(self) -> dict:
        return {"batches": [b.as_json() for b in self.batches], "read_tokens": self.read_tokens,
                "prompt_tokens": sum(b.prompt_tokens for b in self.batches),
                "note_tokens": sum(b.note_tokens for b in self.batches),
                "notes": [n.as_json() for n in self.notes], "notes_shown": self.notes_shown,
                "unread": self.unread, "seconds": round(self.seconds, 3)}


def batches(excerpts: list[Excerpt], budget: int, total: int,
            count: Callable[[str], int]) -> tuple[list[list[Excerpt]], list[int], int]:
    """Best-first excerpts in consecutive batches of at most `budget` tokens, `total` in all.

    An excerpt larger than a batch is cut at a line to fit one. Returns the batches, each
    batch's tokens, and how many excerpts were left unread.
    """
    groups: list[list[Excerpt]] = []
    sizes: list[int] = []
    current: list[Excerpt] = []
    used = read = unread = 0
    for position, excerpt in enumerate(excerpts):
        cost = count(excerpt.render()) + SEPARATOR_TOKENS
        if cost > budget:
            cut = cut_to_fit(excerpt, budget - SEPARATOR_TOKENS, count)
            if cut is None:
                continue
            excerpt, cost = cut, count(cut.render()) + SEPARATOR_TOKENS
        if read + cost > total:
            unread = len(excerpts) - position
            break
        if used + cost > budget:
            groups.append(current)
            sizes.append(used)
            current, used = [], 0
        current.append(excerpt)
        used += cost
        read += cost
    if current:
        groups.append(current)
        sizes.append(used)
    return groups, sizes, unread


def _clean(line: str) -> str:
    text = CITATION.sub("", line)
    text = _EMPTY_BRACKETS.sub("", text)
    text = re.sub(r"\s+", " ", text).strip(" \t-*•:;,—–")
    return text[:MAX_NOTE_CHARS].rstrip()


def _words(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text)} - _COMMON


def _by_wording(line: str, excerpt_words: list[set[str]]) -> int | None:
    """The excerpt sharing the most words with `line`, when it shares enough of them."""
    words = _words(line)
    if len(words) < MIN_SHARED_WORDS:
        return None
    best, best_shared = None, 0
    for index, theirs in enumerate(excerpt_words):
        shared = len(words & theirs)
        if shared > best_shared:
            best, best_shared = index, shared
    if best_shared >= max(MIN_SHARED_WORDS, MIN_SHARED_SHARE * len(words)):
        return best
    return None


def _statements(text: str) -> list[str]:
    """The reply's lines, a paragraph split into its sentences."""
    pieces: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith(("```", "#")):
            continue
        pieces.extend(p.strip() for p in _SENTENCE_END.split(line) if p.strip())
    return pieces


def _place(line: str, excerpts: list[Excerpt], excerpt_words: list[set[str]]) -> tuple[str, int, int] | None:
    cited = [c for c in find_citations(line, excerpts) if c.verified]
    if cited:
        return cited[0].path, cited[0].start_line, cited[0].end_line
    named = sorted(used_excerpts(line, excerpts, []))
    index = named[0] if named else _by_wording(line, excerpt_words)
    if index is None:
        return None
    excerpt = excerpts[index]
    return excerpt.path, excerpt.start_line, excerpt.end_line


def take_notes(text: str, excerpts: list[Excerpt]) -> tuple[list[Note], int]:
    """The notes in a model's reply about `excerpts`, each placed in one of them.

    A statement's location is its first citation inside an excerpt of the batch, else the
    excerpt whose symbol it names, else the excerpt it shares most words with (whole
    ranges). Statements placed nowhere, and "none" lines, are dropped; the second number
    counts the dropped statements.
    """
    notes: list[Note] = []
    dropped = 0
    excerpt_words = [_words("\n".join(excerpt.lines)) for excerpt in excerpts]  # once per batch
    for line in _statements(text):
        if _NOTHING.match(line):
            continue
        text_part = _clean(line)
        if len(text_part) < 3:
            continue
        where = _place(line, excerpts, excerpt_words)
        if where is None:
            dropped += 1
            continue
        note = Note(text_part, *where)
        if note not in notes:
            notes.append(note)
    return notes, dropped


def fit_notes(notes: list[Note], budget: int, count: Callable[[str], int]) -> tuple[list[Note], int]:
    """The first notes whose lines fit `budget` tokens, and the tokens they take."""
    shown: list[Note] = []
    used = 0
    for note in notes:
        cost = count(note.render()) + 1
        if used + cost > budget:
            break
        shown.append(note)
        used += cost
    return shown, used
