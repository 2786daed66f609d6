"""The promotion gate: is the candidate better than the serving model, without
having forgotten anything or stopped using its context?

Both models are scored on the same probes (held-out repo code in three context
conditions, chat questions about held-out code, unseen general code and the
base model's own chat answers) through llama.cpp on the files that would be
served. Every check is reported, so a refusal says which one failed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from codelearn.evaluate.scoring import Scores


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    serving: float | None
    candidate: float | None
    rule: str

    def as_json(self) -> dict:
        return {"name": self.name, "passed": self.passed, "rule": self.rule,
                "serving": _r(self.serving), "candidate": _r(self.candidate)}


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 5)


@dataclass
class GateResult:
    checks: list[Check] = field(default_factory=list)

    @property
    def promote(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def summary(self) -> str:
        if self.promote:
            return "all checks passed"
        return "; ".join(f"{c.name} ({c.rule}: serving {_fmt(c.serving)}, candidate {_fmt(c.candidate)})"
                         for c in self.failed)

    def as_json(self) -> dict:
        return {"promote": self.promote, "checks": [c.as_json() for c in self.checks]}


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def loss(scores: Scores, group: str, condition: str = "none") -> float | None:
    tally = scores.get((group, condition))
    return tally.loss if tally else None


def context_gain(scores: Scores) -> float | None:
    """How much relevant neighbours lower the repo loss (positive: context helps)."""
    none, relevant = loss(scores, "repo"), loss(scores, "repo", "relevant")
    return None if none is None or relevant is None else none - relevant


def random_penalty(scores: Scores) -> float | None:
    """How much random neighbours raise the repo loss (positive: they distract)."""
    none, noise = loss(scores, "repo"), loss(scores, "repo", "random")
    return None if none is None or noise is None else noise - none


def decide(serving: Scores, candidate: Scores, tolerance: float = 0.02) -> GateResult:
    """Every check the issue asks for; a check without probes on both sides passes as n/a."""
    result = GateResult()
    s_repo, c_repo = loss(serving, "repo"), loss(candidate, "repo")
    result.checks.append(Check("repo_loss", _both(s_repo, c_repo) and c_repo < s_repo, s_repo, c_repo,
                               "held-out repo loss must fall"))
    for group, label in (("general_code", "forgetting_code"), ("general_chat", "forgetting_chat"),
                         ("instruct", "instruct_loss")):
        s, c = loss(serving, group), loss(candidate, group)
        ok = not _both(s, c) or c <= s * (1 + tolerance)
        result.checks.append(Check(label, ok, s, c, f"may rise at most {tolerance:.0%}"))
    s_gain, c_gain = context_gain(serving), context_gain(candidate)
    helps = not _both(s_gain, c_gain) or c_gain > 0 or (s_gain <= 0 and c_gain >= s_gain)
    result.checks.append(Check("context_helps", helps, s_gain, c_gain,
                               "relevant neighbours must still lower the loss"))
    s_pen, c_pen = random_penalty(serving), random_penalty(candidate)
    margin = tolerance * (s_repo or 0.0)
    calm = not _both(s_pen, c_pen) or c_pen <= max(s_pen, 0.0) + margin
    result.checks.append(Check("random_context", calm, s_pen, c_pen,
                               "random neighbours may hurt no more than before"))
    return result


def _both(a: float | None, b: float | None) -> bool:
    return a is not None and b is not None
