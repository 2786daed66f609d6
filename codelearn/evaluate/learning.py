"""What learning buys, on held-out code the trained model never saw.

Conditions on the same scored tokens: base and adapted, each alone, with
retrieval (the training chunks most similar to the target: an oracle, the
upper bound) and with search (what `ask`'s own search finds for a question
about the target, the target left out: what a user gets). Beside them: forgetting (unseen general code and the
base model's own chat answers, base vs adapted), context use (relevant vs
random vs no neighbours) and how much of the adapted model's gain is repo
knowledge rather than generic code-format adaptation (the repo change minus
the change on general code, which no repo knowledge can explain).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from codelearn.evaluate.metrics import Tally, relative_change
from codelearn.evaluate.scoring import (ModelRef, ScoreCache, Scores, context_gain, loss, random_penalty,
                                        score_probes, scores_json)

CONDITIONS = {"base": ("base", "none"), "base+retrieval": ("base", "relevant"),
              "base+search": ("base", "retrieved"), "adapted": ("adapted", "none"),
              "adapted+retrieval": ("adapted", "relevant"), "adapted+search": ("adapted", "retrieved")}


@dataclass(frozen=True)
class Scored:
    """Each model's scores over one probe set."""

    by_model: dict[str, Scores]

    def tally(self, model: str, group: str, condition: str = "none") -> Tally | None:
        return self.by_model.get(model, {}).get((group, condition))

    def loss(self, model: str, group: str, condition: str = "none") -> float | None:
        tally = self.tally(model, group, condition)
        return tally.loss if tally else None


def score_models(models: list[ModelRef], probes, vocab, *, cache: ScoreCache, threads: int = 0,
                 progress: Callable[[str, int, int], None] | None = None) -> Scored:
    """Score every model on every probe (results cached per probe as they come)."""
    by_model = {}
    for ref in models:
        report = (lambda d, t, label=ref.label: progress(f"scoring {label}", d, t)) if progress else None
        by_model[ref.label] = score_probes(ref, probes, vocab, cache=cache, threads=threads, progress=report)
    return Scored(by_model)


def _condition_rows(scored: Scored) -> dict:
    rows = {}
    for name, (model, condition) in CONDITIONS.items():
        tally = scored.tally(model, "repo", condition)
        if tally:
            rows[name] = tally.as_json()
    base = rows.get("base", {}).get("loss")
    for row in rows.values():
        row["change_vs_base"] = _pct(relative_change(base, row["loss"]))
    return rows


def _pct(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _forgetting(scored: Scored) -> dict:
    out = {}
    for group in ("general_code", "general_chat"):
        before, after = scored.loss("base", group), scored.loss("adapted", group)
        if before is not None:
            out[group] = {"base": _r(before), "adapted": _r(after), "change": _pct(relative_change(before, after))}
    return out


def _context_use(scored: Scored) -> dict:
    out = {}
    for model, scores in scored.by_model.items():
        if loss(scores, "repo") is None:
            continue
        out[model] = {**{c: _r(loss(scores, "repo", c)) for c in ("none", "relevant", "random")},
                      "relevant_gain": _r(context_gain(scores)), "random_penalty": _r(random_penalty(scores))}
    return out


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 5)


def repo_specific_gain(scored: Scored) -> dict | None:
    """The adapted model's repo-loss change beside its change on general code; their difference
    (the part no generic code adaptation explains) only when general code did not get worse:
    forgetting must never read as repo knowledge."""
    repo = relative_change(scored.loss("base", "repo"), scored.loss("adapted", "repo"))
    general = relative_change(scored.loss("base", "general_code"), scored.loss("adapted", "general_code"))
    if repo is None or general is None:
        return None
    return {"repo_change": _pct(repo), "general_code_change": _pct(general),
            "repo_specific": _pct(repo - general) if general <= 0 else None}


def _from_use(scored: Scored) -> dict | None:
    """Loss of the team's held-out corrections (from the question history), base vs adapted."""
    tally = scored.tally("base", "use")
    if tally is None:
        return None
    before, after = tally.loss, scored.loss("adapted", "use")
    return {"cases": tally.probes, "base": _r(before), "adapted": _r(after),
            "change": _pct(relative_change(before, after))}


def learning_json(scored: Scored) -> dict:
    """The learning section of the report."""
    return {"conditions": _condition_rows(scored), "forgetting": _forgetting(scored),
            "context_use": _context_use(scored), "repo_knowledge": repo_specific_gain(scored),
            "from_use": _from_use(scored),
            "scores": {model: scores_json(s) for model, s in scored.by_model.items()}}
