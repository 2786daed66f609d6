"""Score probes with a model through llama.cpp, on the GGUF that is served.

Per-probe results are appended to a cache file as soon as each is scored,
keyed by the model's identity and the probe's exact tokens, so an interrupted
evaluation resumes where it stopped and a model scored last night on the same
probes is not scored again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

from codelearn.corpus.formats import Vocab
from codelearn.evaluate.metrics import Tally, line_tally
from codelearn.evaluate.probes import Probe
from codelearn.models.bases import ModelRef

class Scores(dict):
    """(group, condition) -> Tally over its probes; `per_key` keeps each probed target's own
    tally, for comparisons paired by target."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.per_key: dict[tuple[str, str], dict[str, Tally]] = {}

    def add(self, group: str, condition: str, key: str, tally: Tally) -> None:
        self.setdefault((group, condition), Tally()).add(tally)
        self.per_key.setdefault((group, condition), {}).setdefault(key, Tally()).add(tally)

    def extend(self, other: Scores) -> None:
        """Add `other`'s probes (scored in a later pass over other probes)."""
        for (group, condition), per in other.per_key.items():
            for key, tally in per.items():
                self.add(group, condition, key, tally)


# -- what the gate and eval read off scores --------------------------------------------

def loss(scores: Scores, group: str, condition: str = "none") -> float | None:
    tally = scores.get((group, condition))
    return tally.loss if tally else None


def served_condition(scores: Scores) -> str:
    """The context `ask` serves: what search finds when it was scored, else the oracle neighbours."""
    return "retrieved" if ("repo", "retrieved") in scores.per_key else "relevant"


def context_gain(scores: Scores, condition: str = "relevant") -> float | None:
    """How much the neighbours of `condition` lower the repo loss (positive: context helps)."""
    none, shown = loss(scores, "repo"), loss(scores, "repo", condition)
    return None if none is None or shown is None else none - shown


def random_penalty(scores: Scores) -> float | None:
    """How much random neighbours raise the repo loss (positive: they distract)."""
    none, noise = loss(scores, "repo"), loss(scores, "repo", "random")
    return None if none is None or noise is None else noise - none


class ScoreCache:
    """Append-only JSON lines: {"key": ..., "tally": {...}}."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.known: dict[str, Tally] = {}
        self._torn = False  # the last line was cut short: start the next one on a new line
        if path and path.is_file():
            text = path.read_text()
            self._torn = bool(text) and not text.endswith("\n")
            for line in text.splitlines():
                try:
                    row = json.loads(line)
                    self.known[row["key"]] = _tally_from_row(row["tally"])
                except (ValueError, KeyError):
                    continue  # a line cut short by a kill: ignore it

    def get(self, key: str) -> Tally | None:
        return self.known.get(key)

    def put(self, key: str, tally: Tally) -> None:
        self.known[key] = tally
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as fh:
            fh.write(("\n" if self._torn else "") + json.dumps({"key": key, "tally": vars(tally)}) + "\n")
            self._torn = False
            fh.flush()
            os.fsync(fh.fileno())


def _tally_from_row(row: dict) -> Tally:
    return Tally(**row)


class LineEnds:
    """Which token ids contain a newline (memoised per id)."""

    def __init__(self, vocab) -> None:
        self.vocab = vocab
        self.memo: dict[int, bool] = {}

    def __call__(self, token: int) -> bool:
        if token not in self.memo:
            self.memo[token] = b"\n" in self.vocab.detokenize([token])
        return self.memo[token]


def score_probes(model: ModelRef, probes: list[Probe], vocab: Vocab, *, cache: ScoreCache,
                 threads: int = 0, n_ctx: int = 2048,
                 progress: Callable[[int, int], None] | None = None) -> Scores:
    """Tallies per (group, condition) for `model` over `probes`.

    Probes are evaluated in the order of their tokens, so that those which begin alike (the
    same header, the same distractors) follow each other and the scorer evaluates a shared
    prefix once; the tallies are added in the probes' own order."""
    from codelearn.llm.native_engine import score_tag

    ends = LineEnds(vocab)
    tallies: dict[int, Tally] = {}
    scorer = None
    engine = score_tag()  # scores from another llama.cpp build differ by rounding: never mixed
    try:
        order = sorted(range(len(probes)), key=lambda i: probes[i].encoded.ids)
        for done, index in enumerate(order, 1):
            probe = probes[index]
            key = f"{model.identity}{engine}:{probe.digest}"
            tally = cache.get(key)
            if tally is None:
                if scorer is None:
                    from codelearn.llm.llama_backend import LlamaScorer

                    scorer = LlamaScorer(model.path, n_ctx=n_ctx, threads=threads, lora_path=model.lora)
                tally = _score_one(scorer, probe, ends)
                cache.put(key, tally)
            tallies[index] = tally
            if progress:
                progress(done, len(probes))
    finally:
        if scorer is not None:
            scorer.close()
    scores = Scores()
    for index, probe in enumerate(probes):
        scores.add(probe.group, probe.condition, probe.key, tallies[index])
    return scores


def _score_one(scorer, probe: Probe, ends: LineEnds) -> Tally:
    ids, train = probe.encoded.ids, probe.encoded.train
    nll, hits = scorer.score(ids, train)
    scored = [ids[i] for i in range(1, len(ids)) if train[i]]
    return line_tally(nll.tolist(), hits.tolist(), [ends(t) for t in scored])


def scores_json(scores: Scores) -> dict:
    """{group: {condition: tally}} for reports."""
    out: dict = {}
    for (group, condition), tally in sorted(scores.items()):
        out.setdefault(group, {})[condition] = tally.as_json()
    return out
