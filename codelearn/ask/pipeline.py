"""Question → (model-written queries) → hybrid search → merge → pack → answer.

`Conversation` is the whole pipeline; `ask` is a conversation of one turn and
`chat` keeps earlier turns. Each turn is three calls so a terminal can show
progress between them: `prepare` (retrieve and build the prompt), `stream`
(the model's text as it comes) and `finish` (citations, sources, timings).
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

from codelearn.ask.citations import Citation, find_citations, used_excerpts
from codelearn.ask.context import Excerpt, Packed, merge_hits, pack
from codelearn.ask.deep import (BATCH_TOKENS, NOTE_TOKENS, WIDTH, BatchReport, DeepReport, Note,
                                batches, fit_notes, take_notes)
from codelearn.ask.engine import ModelChoice
from codelearn.ask.history import History
from codelearn.ask.prompt import (CONTEXT_LEAD, DEEP_ANSWER, NOTES_LEAD, QUERY_WRITER, SYSTEM,
                                  deep_user_message, note_messages, parse_queries, user_message)
from codelearn.errors import CodelearnError
from codelearn.index.search import Hit, Searcher
from codelearn.llm.base import ChatModel, Message, SamplingOptions
from codelearn.project import Project

log = logging.getLogger(__name__)

MIN_CONTEXT_TOKENS = 128  # below this, an answer "grounded in the code" is not possible
MULTI_QUERY_MODES = ("auto", "on", "off")


@dataclass(frozen=True)
class AskOptions:
    k: int = 8
    max_context: int = 1000
    answer_tokens: int = 512
    temperature: float = 0.2
    repeat_penalty: float = 1.1
    multi_query: str = "auto"
    history: bool = True  # keep each answered turn in the repo's history (ask/history.py)
    origin: str = "api"  # who asked: ask, chat, mcp or api
    deep: bool = False  # read more code in batches and answer from notes (ask/deep.py)
    deep_tokens: int = 6000  # most tokens of code deep mode reads

    @classmethod
    def from_settings(cls, settings, **overrides) -> "AskOptions":
        values = dict(k=settings.ask_k, max_context=settings.max_context,
                      answer_tokens=settings.answer_tokens, temperature=settings.temperature,
                      repeat_penalty=settings.repeat_penalty, multi_query=settings.multi_query,
                      history=settings.history, deep=settings.deep, deep_tokens=settings.deep_tokens)
        values.update({k: v for k, v in overrides.items() if v is not None})
        if values["multi_query"] not in MULTI_QUERY_MODES:
            raise CodelearnError(f"Unknown multi_query value {values['multi_query']!r}.",
                                 "Use auto, on or off.")
        if values["deep"] and values["deep_tokens"] < MIN_CONTEXT_TOKENS:
            raise CodelearnError(f"deep_tokens {values['deep_tokens']} is too few to read any code.",
                                 f"Set deep_tokens to {MIN_CONTEXT_TOKENS} or more (default 6000).")
        return cls(**values)


@dataclass
class Prepared:
    """Everything decided before the model speaks."""

    question: str
    queries: list[str]
    packed: Packed
    messages: list[Message]
    prompt_tokens: int
    timings: dict[str, float] = field(default_factory=dict)
    deep: DeepReport | None = None  # what deep mode read first, when it ran


@dataclass
class Answer:
    """One finished turn, with the `--json` schema in `as_json`."""

    question: str
    text: str
    prepared: Prepared
    citations: list[Citation]
    used: set[int]
    model: ModelChoice
    stats: dict
    turn: int | None = None  # its id in the repo's history, when kept

    def as_json(self) -> dict:
        sources = []
        for rank, excerpt in enumerate(self.prepared.packed.excerpts, 1):
            sources.append({"rank": rank, **excerpt.as_json(), "used": rank - 1 in self.used})
        packed = self.prepared.packed
        return {
            "question": self.question,
            "answer": self.text,
            "model": self.model.as_json(),
            "queries": self.prepared.queries,
            "sources": sources,
            "citations": [c.as_json() for c in self.citations],
            "context": {"tokens": packed.tokens, "budget": packed.budget,
                        "prompt_tokens": self.prepared.prompt_tokens,
                        "excerpts": len(packed.excerpts), "dropped": packed.dropped},
            "timings": {**{k: round(v, 4) for k, v in self.prepared.timings.items()}, **self.stats},
            "deep": self.prepared.deep.as_json() if self.prepared.deep else None,
            "turn": self.turn,
        }


class Conversation:
    """Retrieval-grounded turns with one model over one project's index."""

    def __init__(self, project: Project, options: AskOptions,
                 load_model: Callable[[], tuple[ChatModel, ModelChoice]]) -> None:
        """`load_model` may still be loading (see `ModelLoader`): retrieval does not wait for it."""
        self.project = project
        self.options = options
        self.history: list[Message] = []
        self.searcher = Searcher(project)
        self._load_model = load_model
        self.kept = History(project.state) if options.history else None

    @property
    def model(self) -> ChatModel:
        return self._load_model()[0]

    @property
    def choice(self) -> ModelChoice:
        return self._load_model()[1]

    @property
    def multi_query(self) -> bool:
        mode = self.options.multi_query
        return mode == "on" or (mode == "auto" and self.choice.multi_query)

    def close(self) -> None:
        self.searcher.close()
        if self.kept is not None:
            self.kept.close()

    def reset(self) -> None:
        self.history.clear()

    # -- retrieval -------------------------------------------------------------
    def retrieve(self, question: str, width: int = 1) -> tuple[list[Hit], list[str]]:
        """Hits for the question (and for model-written queries when enabled), `width` times
        `k` per query.

        The question is searched first: it needs no model, so it overlaps with
        a model still loading; only model-written queries wait for the model.
        """
        queries = [question]
        if self.history:  # a follow-up ("and its errors?") leans on the previous question
            queries.append(f"{self.history[-2]['content']} {question}")
        k = self.options.k * width
        best: dict[int, Hit] = {}
        self._search_into(best, queries, k)
        if self.multi_query:
            written = self._written_queries(question)
            self._search_into(best, written, k)
            queries += written
        ranked = sorted(best.values(), key=lambda h: (-h.score, h.chunk_id))
        return ranked[: k * len(queries)], queries

    def _search_into(self, best: dict[int, Hit], queries: list[str], k: int) -> None:
        for query in queries:
            for hit in self.searcher.search(query, k=k):
                if hit.chunk_id not in best or best[hit.chunk_id].score < hit.score:
                    best[hit.chunk_id] = hit

    def _written_queries(self, question: str) -> list[str]:
        messages = [{"role": "user", "content": QUERY_WRITER.format(question=question)}]
        text = "".join(self.model.stream(messages, SamplingOptions(64, 0.0, 1.1)))
        return [q for q in parse_queries(text) if q != question]

    # -- prompt ------------------------------------------------------------------
    def _room_for_context(self, question: str) -> int:
        """Tokens left for excerpts after rules, history, question and the answer."""
        while True:
            skeleton = self._messages(question, "")
            fixed = self.model.prompt_tokens(skeleton)
            room = self.model.n_ctx - self.options.answer_tokens - fixed
            if room >= MIN_CONTEXT_TOKENS or not self.history:
                break
            del self.history[:2]  # forget the oldest turn before giving up
        if room < MIN_CONTEXT_TOKENS:
            raise CodelearnError(
                f"The model's window ({self.model.n_ctx} tokens) leaves {room} tokens for code after "
                f"the question and {self.options.answer_tokens} for the answer.",
                "Raise the `context_size` setting, or lower `answer_tokens`.")
        return min(room, self.options.max_context)

    def _messages(self, question: str, context_message: str) -> list[Message]:
        current = context_message or user_message(question, [])
        return [{"role": "system", "content": SYSTEM}, *self.history,
                {"role": "user", "content": current}]

    def prepare(self, question: str, on_batch: Callable[[int, int, int], None] | None = None) -> Prepared:
        """Retrieve and build the prompt; in deep mode, take notes batch by batch first
        (`on_batch(number, batches, tokens)` is called before each)."""
        timings: dict[str, float] = {}
        started = time.perf_counter()
        hits, queries = self.retrieve(question, WIDTH if self.options.deep else 1)
        timings["retrieve_s"] = time.perf_counter() - started
        started = time.perf_counter()
        self.model  # noqa: B018 - waits here for a model still loading
        timings["load_wait_s"] = time.perf_counter() - started
        if self.options.deep:
            return self._prepare_deep(question, queries, merge_hits(hits), timings, on_batch)
        started = time.perf_counter()
        budget = self._room_for_context(question)
        packed = pack(merge_hits(hits), budget, self.model.count_tokens)
        messages = self._messages(question, user_message(question, packed.excerpts))
        prompt_tokens = self.model.prompt_tokens(messages)
        timings["pack_s"] = time.perf_counter() - started
        return Prepared(question, queries, packed, messages, prompt_tokens, timings)

    # -- deep mode (ask/deep.py) ---------------------------------------------------
    def _prepare_deep(self, question: str, queries: list[str], excerpts: list[Excerpt],
                      timings: dict[str, float], on_batch) -> Prepared:
        count = self.model.count_tokens
        room = self.model.n_ctx - NOTE_TOKENS - self.model.prompt_tokens(note_messages(question, []))
        if room < MIN_CONTEXT_TOKENS:
            raise CodelearnError(
                f"The model's window ({self.model.n_ctx} tokens) leaves {room} tokens for code "
                "in deep mode's note-taking prompt.", "Raise the `context_size` setting.")
        groups, sizes, unread = batches(excerpts, min(room, BATCH_TOKENS), self.options.deep_tokens, count)
        report = DeepReport(unread=unread)
        for number, (group, size) in enumerate(zip(groups, sizes), 1):
            if on_batch is not None:
                on_batch(number, len(groups), size)
            report.batches.append(self._take_notes(question, group, size, report.notes))
        timings["notes_s"] = report.seconds
        started = time.perf_counter()
        read = [excerpt for group in groups for excerpt in group]
        budget = self._room_for_context(question) - count(NOTES_LEAD + CONTEXT_LEAD + DEEP_ANSWER) - 8
        shown_notes, used = fit_notes(report.notes, budget, count)
        report.notes_shown = len(shown_notes)
        shown = pack(read, budget - used, count).excerpts if budget - used >= MIN_CONTEXT_TOKENS else []
        messages = self._messages(question, deep_user_message(question, shown_notes, shown))
        prompt_tokens = self.model.prompt_tokens(messages)
        timings["pack_s"] = time.perf_counter() - started
        packed = Packed(read, sum(sizes), self.options.deep_tokens, unread)
        return Prepared(question, queries, packed, messages, prompt_tokens, timings, report)

    def _take_notes(self, question: str, group: list[Excerpt], size: int, seen: list[Note]) -> BatchReport:
        """One batch read: its notes join `seen` (new ones only)."""
        started = time.perf_counter()
        sampling = SamplingOptions(NOTE_TOKENS, 0.0, self.options.repeat_penalty)
        text = "".join(self.model.stream(note_messages(question, group), sampling))
        stats = self.model.last_stats
        notes, dropped = take_notes(text, group)
        new = [note for note in notes if note not in seen]
        seen.extend(new)
        return BatchReport(len(group), size, stats.prompt_tokens, stats.generated_tokens, len(new),
                           dropped, time.perf_counter() - started)

    # -- answer ------------------------------------------------------------------
    def stream(self, prepared: Prepared):
        sampling = SamplingOptions(self.options.answer_tokens, self.options.temperature,
                                   self.options.repeat_penalty)
        yield from self.model.stream(prepared.messages, sampling)

    def finish(self, prepared: Prepared, text: str) -> Answer:
        excerpts = prepared.packed.excerpts
        citations = find_citations(text, excerpts)
        used = used_excerpts(text, excerpts, citations)
        # Later turns keep the question and answer, not the excerpts (they are retrieved again).
        self.history += [{"role": "user", "content": prepared.question},
                         {"role": "assistant", "content": text}]
        answer = Answer(prepared.question, text, prepared, citations, used, self.choice,
                        self.model.last_stats.as_json())
        if self.kept is not None:  # stored once whole; a turn killed before this point is not kept
            try:
                answer.turn = self.kept.record(answer.as_json(), self.options.origin)
            except (sqlite3.Error, OSError, CodelearnError) as exc:  # a full disk must not cost the answer
                log.warning("this answer was not kept in the history (%s): %s", self.kept.path, exc)
        return answer

    def ask(self, question: str) -> Answer:
        prepared = self.prepare(question)
        return self.finish(prepared, "".join(self.stream(prepared)))


@contextlib.contextmanager
def open_conversation(project: Project, options: AskOptions, model: str = "") -> Iterator[Conversation]:
    """A conversation whose model loads in the background; both are closed on exit.

    The loader is closed (waited for) before any error leaves: while
    llama-cpp-python loads a model, the process's output goes to /dev/null.
    """
    from codelearn.ask.engine import ModelLoader

    loader = ModelLoader(project, model)
    try:
        conversation = Conversation(project, options, loader)
        try:
            yield conversation
        finally:
            conversation.close()
    finally:
        loader.close()
