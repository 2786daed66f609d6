"""Training samples from the index: several views of every training unit.

Kinds (see `KINDS`): plain code in the model's repo format, whole-file views,
fill-in-the-middle, contrastive context (neighbours before the target: similar
ones from the index mixed with random ones, the mix varied per sample), chat
instructions answered from the index, replay of general material the base
model already knows, and lessons from use (answers the team marked good or
corrected; `use.py`). Everything is built from seeded random draws, so the same
split, options and seed give the same samples.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

from codelearn.index.doc import called_names, docstring, first_sentence, without_docstring
from codelearn.corpus.formats import Piece, TextFormat, Vocab, chat_pieces
from codelearn.corpus.neighbours import Neighbours
from codelearn.corpus.units import Unit, by_file

KINDS = ("code", "file", "fim", "context", "instruct", "replay", "use")
FILE_VIEW_CHARS = 1600  # ~ 450 tokens of code per whole-file view
INSTRUCT_SYSTEM = ("You are codelearn, a careful assistant for one software repository. Cite code "
                   "as path:line.")


@dataclass(frozen=True)
class Sample:
    """One training (or probe) sequence before tokenisation."""

    kind: str
    pieces: tuple[Piece, ...]
    origin: str  # a unit key (source:path:line), a file view (source:path:view) or a replay label
    detail: str = ""  # context samples: "similar=S random=R copy=C"


def file_of(origin: str) -> str:
    """The file a sample comes from, `source:path`, for the per-file token cap. Sources hold
    colons (`lib:acme`), so the origin's last field is what is cut off."""
    return origin.rsplit(":", 1)[0]


@dataclass(frozen=True)
class Mix:
    """How many views of each kind to draw; shares are per training unit."""

    fim_share: float = 0.2
    context_share: float = 0.3
    instruct_share: float = 0.3
    neighbours: int = 3
    exact_copy_share: float = 0.1  # context samples that hold the target itself
    search_share: float = 0.0  # context samples whose neighbours are what `ask`'s search serves


Retrieve = Callable[[Unit], list[Unit]]  # a unit -> what search shows for a question about it


def code_sample(fmt: TextFormat, repo: str, unit: Unit, kind: str = "code") -> Sample:
    pieces = fmt.repo_header(repo) + fmt.code_block(unit.path, unit.text, train=True, context=unit.context)
    return Sample(kind, tuple(pieces), unit.key)


def file_samples(fmt: TextFormat, repo: str, units: list[Unit]) -> list[Sample]:
    """Consecutive units of each file joined into views of about FILE_VIEW_CHARS."""
    samples = []
    for (source, path), group in by_file(units).items():
        view: list[str] = []
        for unit in group + [None]:
            if unit is not None and sum(map(len, view)) + len(unit.text) <= FILE_VIEW_CHARS:
                view.append(unit.text)
                continue
            if len(view) > 1:
                text = "\n\n".join(view)
                pieces = fmt.repo_header(repo) + fmt.code_block(path, text, train=True)
                samples.append(Sample("file", tuple(pieces), f"{source}:{path}:view"))
            view = [unit.text] if unit is not None else []
    return samples


def fim_sample(fmt: TextFormat, unit: Unit, rng: random.Random) -> Sample | None:
    """A random span of 1-6 whole lines as the middle to fill."""
    lines = unit.text.split("\n")
    if not fmt.fim or len(lines) < 4:
        return None
    start = rng.randrange(1, len(lines) - 1)
    stop = min(len(lines), start + rng.randint(1, 6))
    prefix = "\n".join(lines[:start]) + "\n"
    middle = "\n".join(lines[start:stop]) + ("\n" if stop < len(lines) else "")
    suffix = "\n".join(lines[stop:])
    return Sample("fim", tuple(fmt.fim_sample(unit.path, prefix, middle, suffix)), unit.key)


def context_pieces(fmt: TextFormat, repo: str, target: Unit, neighbours: list[Unit]) -> list[Piece]:
    """Neighbour chunks as earlier files of the repo, then the target (the only trained part)."""
    pieces = fmt.repo_header(repo)
    for other in neighbours:
        pieces += fmt.code_block(other.path, other.text, train=False, context=other.context)
    return pieces + fmt.code_block(target.path, target.text, train=True, context=target.context)


def context_sample(fmt: TextFormat, repo: str, unit: Unit, finder: Neighbours, mix: Mix,
                   rng: random.Random, retrieve: Retrieve | None = None, seed: int = 0) -> Sample:
    """k neighbours, of which a random number (0..k) are similar and the rest random; or, for
    `mix.search_share` of the units (a draw of their own) when `retrieve` is given, what `ask`'s
    search serves for a question about the unit: the served condition's shape (RAFT)."""
    k = mix.neighbours
    similar = rng.randint(0, k)
    near, far = finder.similar(unit, similar), finder.random(unit, k - similar)
    copy = rng.random() < mix.exact_copy_share
    chosen = near + far + ([unit] if copy else [])  # a copy: the answer is in the context
    rng.shuffle(chosen)
    detail = f"similar={len(near)} random={len(far)} copy={int(copy)}"
    own = random.Random(f"{seed}:search:{unit.key}")  # the main stream stays as without search
    if retrieve is not None and own.random() < mix.search_share:
        chosen = retrieve(unit)
        if copy:
            chosen.insert(own.randint(0, len(chosen)), unit)
        detail = f"search={len(chosen) - int(copy)} copy={int(copy)}"
    return Sample("context", tuple(context_pieces(fmt, repo, unit, chosen)), unit.key, detail)


# -- instructions -------------------------------------------------------------

def _name(unit: Unit) -> str:
    return unit.symbol.rsplit(".", 1)[-1]


def _where_answer(unit: Unit) -> str:
    scope = f", inside `{unit.context.splitlines()[-1].strip()}`" if unit.context else ""
    return f"`{unit.symbol}` is defined in `{unit.path}`{scope}, lines {unit.start_line}-{unit.end_line} " \
           f"({unit.path}:{unit.start_line})."


def instruct_pairs(unit: Unit, defined: dict[str, Unit]) -> list[tuple[str, str]]:
    """(question, answer) pairs the index can answer about `unit` without a teacher model."""
    if not unit.symbol or unit.kind not in ("function", "method", "class", "header"):
        return []
    pairs = [(f"Where is `{unit.symbol}` defined?", _where_answer(unit))]
    doc = docstring(unit.text, unit.language)
    if doc:
        pairs.append((f"What does `{unit.symbol}` do?",
                      f"{doc}\n\nSee `{unit.symbol}` at {unit.path}:{unit.start_line}."))
        if unit.kind in ("function", "method"):
            fence = unit.language if unit.language != "text" else ""
            pairs.append((f"Write `{_name(unit)}` for `{unit.path}`: {first_sentence(doc)}",
                          f"```{fence}\n{without_docstring(unit.text)}\n```"))
    calls = [defined[n] for n in called_names(unit.text) if n in defined and defined[n].key != unit.key]
    if calls:
        listed = ", ".join(f"`{c.symbol}` ({c.path}:{c.start_line})" for c in calls[:6])
        pairs.append((f"Which functions of this repository does `{unit.symbol}` call?",
                      f"`{unit.symbol}` calls {listed}."))
    return pairs


def with_excerpt(question: str, unit: Unit) -> str:
    """The question as `ask` poses it: the unit's code shown first."""
    return (f"Code from the repository:\n\n### {unit.label} ({unit.symbol})\n```{unit.language}\n"
            f"{unit.text}\n```\n\nQuestion: {question}")


def instruct_samples(vocab: Vocab, unit: Unit, defined: dict[str, Unit], rng: random.Random) -> list[Sample]:
    """Chat samples in the model's own template; half show the code as `ask` would."""
    samples = []
    for question, answer in instruct_pairs(unit, defined):
        shown = with_excerpt(question, unit) if rng.random() < 0.5 and not answer.startswith("```") else question
        messages = [{"role": "system", "content": INSTRUCT_SYSTEM}, {"role": "user", "content": shown}]
        samples.append(Sample("instruct", tuple(chat_pieces(vocab, messages, answer)), unit.key))
    return samples


def definitions(units: list[Unit]) -> dict[str, Unit]:
    """Bare name → defining unit, for names defined exactly once (ambiguous ones are left out)."""
    found: dict[str, list[Unit]] = {}
    for unit in units:
        if unit.symbol and unit.kind in ("function", "method", "class", "header"):
            found.setdefault(_name(unit), []).append(unit)
    return {name: group[0] for name, group in found.items() if len(group) == 1 and len(name) > 2}


def repo_samples(units: list[Unit], *, vocab: Vocab, fmt: TextFormat, repo: str, finder: Neighbours,
                 mix: Mix, seed: int, retrieve: Retrieve | None = None) -> list[Sample]:
    """Every view of the training units (replay is added separately). `retrieve`: the product's
    search over these units only, for the context samples `mix.search_share` asks for."""
    rng = random.Random(seed)
    defined = definitions(units)
    samples = [code_sample(fmt, repo, unit) for unit in units]
    samples += file_samples(fmt, repo, units)
    for unit in units:
        if rng.random() < mix.fim_share and (fim := fim_sample(fmt, unit, rng)):
            samples.append(fim)
        if rng.random() < mix.context_share and len(finder.pool) > 1:
            samples.append(context_sample(fmt, repo, unit, finder, mix, rng, retrieve, seed))
        if rng.random() < mix.instruct_share:
            samples += instruct_samples(vocab, unit, defined, rng)
    return samples
