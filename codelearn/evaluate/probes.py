"""Probes: the held-out texts every model is scored on, in each condition.

Groups: `repo` (held-out repo code: new since the cut, or the random slice),
`instruct` (chat questions about held-out code, answered from the index),
`general_code` (stdlib modules never used for replay), `general_chat` (the
base model's own answers to held-out generic prompts) and `use` (corrections from
the repo's question history, held out from training). Repo probes come in
conditions with the *same* scored target: `none` (the file alone), `relevant`
(the training chunks most similar to the target: an oracle's retrieval),
`random` (the same random training chunks before every target) and, where a search is given,
`retrieved` (what `ask`'s own search finds for a question about the target).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Callable

from codelearn.corpus.formats import Encoded, Piece, TextFormat, Vocab, chat_pieces, encode
from codelearn.corpus.neighbours import Neighbours
from codelearn.corpus.selfreplay import chat_messages
from codelearn.corpus.split import Split, stable_fraction
from codelearn.corpus.units import Unit
from codelearn.corpus.samples import INSTRUCT_SYSTEM, context_pieces, instruct_pairs

CONDITIONS = ("none", "relevant", "random", "retrieved")
Retrieve = Callable[[Unit, int], list[Unit]]  # (target, token budget) -> what search would show
GROUPS = ("repo", "instruct", "general_code", "general_chat", "use")


@dataclass(frozen=True)
class ProbeOptions:
    targets: int = 24  # held-out repo chunks probed
    neighbours: int = 3
    target_tokens: int = 256  # the scored part of a repo probe
    max_tokens: int = 1024  # a whole probe, context included
    general: int = 12  # general-code and chat probes each
    seed: int = 0


@dataclass(frozen=True)
class Probe:
    """One scored sequence."""

    group: str
    condition: str
    key: str  # what it probes: a unit key or a prompt
    encoded: Encoded

    @property
    def digest(self) -> str:
        raw = ",".join(map(str, self.encoded.ids)) + "|" + "".join("1" if t else "0" for t in self.encoded.train)
        return hashlib.sha1(raw.encode()).hexdigest()


def clip(vocab: Vocab, text: str, max_tokens: int) -> str:
    """`text` cut at a line boundary to at most `max_tokens` tokens (at least one line)."""
    lines = text.split("\n")
    kept: list[str] = []
    used = 0
    for line in lines:
        cost = len(vocab.tokenize(line + "\n"))
        if kept and used + cost > max_tokens:
            break
        kept.append(line)
        used += cost
    return "\n".join(kept)


def _clipped(unit: Unit, vocab: Vocab, tokens: int) -> Unit:
    from dataclasses import replace

    return replace(unit, text=clip(vocab, unit.text, tokens))


def pick_targets(split: Split, count: int, seed: int) -> list[Unit]:
    """New code first (the honest test), topped up from the random slice. Ranked by a seeded
    hash of each definition's name, not drawn: after another commit the gate probes mostly the
    same targets, and finds the serving model's scores for them in its cache."""
    def ranked(units: list[Unit]) -> list[Unit]:
        return sorted(units, key=lambda u: (stable_fraction(f"{u.source}:{u.path}:{u.symbol}", seed), u.key))

    new = ranked(split.new)[:count]
    return new + ranked(split.random)[:count - len(new)]


def _distractor_rng(seed: int) -> random.Random:
    """The random condition's draw, made afresh for every target: all targets see the same
    distractors (less those from their own file), so their probes begin alike and the scorer
    evaluates that prefix once. Not the finder's rng: training draws from it first, which would
    give every probe new distractors whenever the training mix changed (and the serving model's
    cached scores would miss every night)."""
    return random.Random(f"{seed}:random")


def repo_probes(targets: list[Unit], *, vocab: Vocab, fmt: TextFormat, repo: str, finder: Neighbours,
                options: ProbeOptions, retrieve: Retrieve | None = None) -> list[Probe]:
    """Each target in the three context conditions (four with `retrieve`: what `ask`'s search
    finds for a question about it), the scored tokens identical in all."""
    probes = []
    room = options.max_tokens - options.target_tokens - 32
    per_neighbour = max(32, room // max(1, options.neighbours))
    for unit in targets:
        target = _clipped(unit, vocab, options.target_tokens)
        contexts = {"none": [], "relevant": finder.similar(unit, options.neighbours),
                    "random": finder.random(unit, options.neighbours, _distractor_rng(options.seed))}
        if retrieve is not None:
            contexts["retrieved"] = retrieve(unit, room)
        for condition, neighbours in contexts.items():
            shown = neighbours if condition == "retrieved" else [_clipped(n, vocab, per_neighbour)
                                                                  for n in neighbours]
            pieces = context_pieces(fmt, repo, target, shown)
            probes.append(Probe("repo", condition, unit.key, encode(pieces, vocab, options.max_tokens)))
    return probes


def instruct_probes(targets: list[Unit], *, vocab: Vocab, defined: dict[str, Unit],
                    options: ProbeOptions) -> list[Probe]:
    """Questions about held-out code, answered as training would answer them."""
    probes = []
    for unit in targets:
        for question, answer in instruct_pairs(unit, defined)[:2]:
            messages = [{"role": "system", "content": INSTRUCT_SYSTEM}, {"role": "user", "content": question}]
            pieces = chat_pieces(vocab, messages, clip(vocab, answer, options.target_tokens))
            probes.append(Probe("instruct", "none", unit.key, encode(pieces, vocab, options.max_tokens)))
    return probes


def general_probes(code: list[Unit], answers: dict[str, str], prompts: list[str], *, vocab: Vocab,
                   fmt: TextFormat, options: ProbeOptions) -> list[Probe]:
    """Forgetting probes: unseen stdlib code, and the base model's own chat answers."""
    rng = random.Random(options.seed)
    probes = []
    for unit in rng.sample(code, min(options.general, len(code))):
        target = _clipped(unit, vocab, options.target_tokens)
        pieces = fmt.repo_header("cpython") + fmt.code_block(target.path, target.text, train=True,
                                                             context=target.context)
        probes.append(Probe("general_code", "none", unit.key, encode(pieces, vocab, options.max_tokens)))
    for prompt in prompts[: options.general]:
        if answers.get(prompt):
            pieces: list[Piece] = chat_pieces(vocab, chat_messages(prompt), answers[prompt])
            probes.append(Probe("general_chat", "none", prompt, encode(pieces, vocab, options.max_tokens)))
    return probes


def use_probes(cases: list, vocab: Vocab, options: ProbeOptions) -> list[Probe]:
    """Held-out corrections from the repo's history: the corrected answer after the prompt `ask` served."""
    from codelearn.corpus.use import use_pieces

    return [Probe("use", "none", case.key, encode(use_pieces(vocab, case), vocab, options.max_tokens))
            for case in cases]


def all_probes(split: Split, finder: Neighbours, fmt: TextFormat, vocab: Vocab, repo: str,
               answers: dict[str, str] | None, options: ProbeOptions, retrieve: Retrieve | None = None,
               use_cases: list | None = None) -> list[Probe]:
    """The full probe set for one split: repo (3 or 4 conditions), instruct, general code and chat,
    and the held-out corrections from use when given."""
    from codelearn.corpus.general import general_units, prompt_halves
    from codelearn.corpus.samples import definitions

    targets = pick_targets(split, options.targets, options.seed)
    defined = definitions(split.train + split.heldout)
    probes = repo_probes(targets, vocab=vocab, fmt=fmt, repo=repo, finder=finder, options=options,
                         retrieve=retrieve)
    probes += instruct_probes(targets, vocab=vocab, defined=defined, options=options)
    code = general_units("probe", max(1, options.general), options.seed, exclude=split.train + split.heldout)
    probes += general_probes(code, answers or {}, prompt_halves(options.seed)[1], vocab=vocab, fmt=fmt,
                             options=options)
    return probes + use_probes(use_cases or [], vocab, options)
