"""The promotion gate: is the candidate better where `ask` uses it, by more than noise,
without having drifted from the original base or stopped using its context?

Both models are scored on the same probes (held-out repo code alone, after what
`ask`'s search finds and after random code; chat questions about held-out code,
unseen general code and the base model's own chat answers) through llama.cpp on
the files that would be served; the original base is scored on the general probes
(cached), so that forgetting is bounded in total, not per promotion. The cheap
probes that decide most refusals are scored first; a check failed there ends the
gate (`staged_decision`). Rules:

- repo code must get better both without context and with what `ask`'s own search finds
  for a question about it (the served condition; the oracle neighbours when no search is
  given): the loss falls by at least `min_gain` and a paired bootstrap
  over the probed targets puts the whole confidence interval below zero;
- general code and chat may drift at most `tolerance` from the *base*, whatever
  earlier promotions did;
- context must still help (the served condition's loss below the loss alone) and random
  code may hurt no more than it did the serving model;
- corrections the team gave in the question history and that were held out from training
  must get likelier (lower loss of the corrected answer), when there are any;
- a check with nothing to score is "not checked", never "passed": a required one
  (repo, served repo, forgetting) blocks promotion.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from codelearn.evaluate.metrics import Tally
from codelearn.evaluate.scoring import Scores, context_gain, loss, random_penalty, served_condition

PASSED, FAILED, NOT_CHECKED = "passed", "failed", "not checked"
FORGETTING = frozenset({"forgetting_code", "forgetting_chat"})


@dataclass(frozen=True)
class Rules:
    """The gate's thresholds (settings `forget_tolerance`, `gate_min_gain`, `gate_confidence`)."""

    tolerance: float = 0.02
    min_gain: float = 0.01
    confidence: float = 0.95
    resamples: int = 2000
    seed: int = 0


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    serving: float | None
    candidate: float | None
    rule: str
    required: bool = True
    base: float | None = None
    change: float | None = None  # relative, candidate against what the rule compares to
    interval: tuple[float, float] | None = None  # of `change`, from the paired bootstrap

    @property
    def passed(self) -> bool:
        return self.status == PASSED

    @property
    def blocks(self) -> bool:
        return self.status == FAILED or (self.status == NOT_CHECKED and self.required)

    def as_json(self) -> dict:
        return {"name": self.name, "passed": self.passed, "status": self.status, "required": self.required,
                "rule": self.rule, "serving": _r(self.serving), "candidate": _r(self.candidate),
                "base": _r(self.base), "change": _r(self.change),
                "interval": [_r(x) for x in self.interval] if self.interval else None}


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 5)


@dataclass
class GateResult:
    checks: list[Check] = field(default_factory=list)
    stopped_early: bool = False  # a check failed on the first probes: the rest were not scored

    @property
    def promote(self) -> bool:
        return bool(self.checks) and not any(c.blocks for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.blocks]

    @property
    def failures(self) -> list[Check]:
        """The checks that were scored and failed (not those left unscored)."""
        return [c for c in self.checks if c.status == FAILED]

    @property
    def forgot_only(self) -> bool:
        """Refused for forgetting alone: every failed check is a forgetting check, and nothing else
        blocks but the checks a failure there left unscored. A smaller step toward the candidate
        (`nightly`'s forget_scales) may then keep most of its gain and drift less."""
        failed = {c.name for c in self.failures}
        unscored = {c.name for c in self.checks if c.status == NOT_CHECKED and c.required}
        return bool(failed) and failed <= FORGETTING and (self.stopped_early or not unscored)

    def summary(self) -> str:
        if self.promote:
            return "all required checks passed"
        shown = self.failures or self.failed
        text = "; ".join(f"{c.name} {c.status} ({c.rule}: serving {_fmt(c.serving)}, candidate "
                         f"{_fmt(c.candidate)}{_fmt_change(c)})" for c in shown)
        return text + (" (the other checks were not scored: this one decided)" if self.stopped_early else "")

    def as_json(self) -> dict:
        return {"promote": self.promote, "stopped_early": self.stopped_early,
                "checks": [c.as_json() for c in self.checks]}


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _fmt_change(check: Check) -> str:
    if check.change is None:
        return ""
    text = f", change {check.change:+.2%}"
    if check.interval:
        text += f" [{check.interval[0]:+.2%}, {check.interval[1]:+.2%}]"
    return text


FIRST_STAGE = {("repo", "none"), ("general_code", "none"), ("general_chat", "none"), ("use", "none")}


def gate_stages(probes: list) -> list[list]:
    """The probes the gate scores, in two passes: the cheap ones that decide most refusals (repo
    code alone, forgetting; about a fifth of the tokens), then the context conditions and chat
    questions. The oracle condition ("relevant") is eval's upper bound; where search was scored
    the gate judges context on what search finds and leaves the oracle out (a third of the tokens)."""
    searched = any(p.condition == "retrieved" for p in probes)
    kept = [p for p in probes if not (searched and p.condition == "relevant")]
    first = [p for p in kept if (p.group, p.condition) in FIRST_STAGE]
    return [first, [p for p in kept if (p.group, p.condition) not in FIRST_STAGE]]


def paired_change(before: dict[str, Tally], after: dict[str, Tally], rules: Rules
                  ) -> tuple[float, tuple[float, float], int] | None:
    """The relative loss change over the keys both scored, its bootstrap interval (targets
    resampled with replacement, the same draw for both models) and the number of keys."""
    import numpy as np

    keys = sorted(set(before) & set(after))
    if not keys:
        return None
    b = np.array([before[k].nll for k in keys])
    a = np.array([after[k].nll for k in keys])
    if b.sum() <= 0:
        return None
    change = float(a.sum() / b.sum() - 1)
    rng = np.random.default_rng(rules.seed)
    draws = rng.integers(0, len(keys), size=(rules.resamples, len(keys)))
    ratios = a[draws].sum(axis=1) / np.maximum(b[draws].sum(axis=1), 1e-12) - 1
    tail = (1 - rules.confidence) / 2
    low, high = np.quantile(ratios, [tail, 1 - tail])
    return change, (float(low), float(high)), len(keys)


def _repo_check(name: str, condition: str, serving: Scores, candidate: Scores, rules: Rules) -> Check:
    s, c = loss(serving, "repo", condition), loss(candidate, "repo", condition)
    context = {"retrieved": " with what search finds", "relevant": " with similar code before it"}.get(condition, "")
    rule = (f"held-out repo loss{context} must fall by "
            f"≥{rules.min_gain:.0%}, {rules.confidence:.0%} interval below 0")
    paired = paired_change(serving.per_key.get(("repo", condition), {}),
                           candidate.per_key.get(("repo", condition), {}), rules)
    if paired is None:
        return Check(name, NOT_CHECKED, s, c, rule)
    change, interval, _ = paired
    ok = change <= -rules.min_gain and interval[1] < 0
    return Check(name, PASSED if ok else FAILED, s, c, rule, change=change, interval=interval)


def _drift_check(name: str, group: str, serving: Scores, candidate: Scores, base: Scores, rules: Rules) -> Check:
    s, c, b = loss(serving, group), loss(candidate, group), loss(base, group)
    rule = f"may rise at most {rules.tolerance:.0%} above the original base"
    if c is None or b is None:
        return Check(name, NOT_CHECKED, s, c, rule, base=b)
    paired = paired_change(base.per_key.get((group, "none"), {}), candidate.per_key.get((group, "none"), {}), rules)
    change = c / b - 1
    return Check(name, PASSED if change <= rules.tolerance else FAILED, s, c, rule, base=b, change=change,
                 interval=paired[1] if paired else None)


def decide(serving: Scores, candidate: Scores, base: Scores | None = None, rules: Rules = Rules(),
           comparable: str | None = None) -> GateResult:
    """Every check (see the module doc). `base`: the original base's scores on the general
    probes (the serving model's when it is the base). `comparable`: why the two models'
    losses cannot be compared (different tokenizers), which refuses the candidate."""
    result = GateResult()
    if comparable:
        result.checks.append(Check("comparable", FAILED, None, None, comparable))
        return result
    base = serving if base is None else base
    result.checks.append(_repo_check("repo_loss", "none", serving, candidate, rules))
    served = served_condition(serving)
    result.checks.append(_repo_check("repo_loss_served", served, serving, candidate, rules))
    result.checks.append(_drift_check("forgetting_code", "general_code", serving, candidate, base, rules))
    result.checks.append(_drift_check("forgetting_chat", "general_chat", serving, candidate, base, rules))
    s, c = loss(serving, "instruct"), loss(candidate, "instruct")
    rule = f"may rise at most {rules.tolerance:.0%}"
    status = NOT_CHECKED if s is None or c is None else PASSED if c <= s * (1 + rules.tolerance) else FAILED
    result.checks.append(Check("instruct_loss", status, s, c, rule, required=False))
    result.checks.append(_context_check(serving, candidate, served))
    result.checks.append(_use_check(serving, candidate))
    result.checks.append(_random_check(serving, candidate, rules))
    return result


def staged_decision(probes: list, score: Callable[[str, list, str], Scores], rules: Rules = Rules()
                    ) -> tuple[GateResult, dict[str, Scores]]:
    """Score the gate's probes stage by stage (`gate_stages`) and decide; a check failed on the first
    stage refuses the candidate without scoring the rest. `score(label, probes, stage)` scores one
    model ("serving", "candidate"; "base" gets the general probes only)."""
    scores = {"serving": Scores(), "candidate": Scores(), "base": Scores()}
    stages = gate_stages(probes)
    result = GateResult()
    for number, stage in enumerate(stages, 1):
        general = [p for p in stage if p.group in ("general_code", "general_chat")]
        for label, scored in (("serving", stage), ("candidate", stage), ("base", general)):
            if scored:
                scores[label].extend(score(label, scored, f"{number}/{len(stages)}"))
        result = decide(scores["serving"], scores["candidate"], scores["base"], rules)
        if number < len(stages) and result.failures:
            result.stopped_early = True
            break
    return result, scores


def _use_check(serving: Scores, candidate: Scores) -> Check:
    """Corrections the team gave, held out: the candidate must find the corrected answers likelier."""
    s, c = loss(serving, "use"), loss(candidate, "use")
    rule = "held-out corrections from use must get likelier"
    if s is None or c is None:
        return Check("use_corrections", NOT_CHECKED, s, c, rule, required=False)
    return Check("use_corrections", PASSED if c < s else FAILED, s, c, rule, required=False,
                 change=c / s - 1 if s else None)


def _context_check(serving: Scores, candidate: Scores, served: str) -> Check:
    s, c = context_gain(serving, served), context_gain(candidate, served)
    rule = ("what search finds" if served == "retrieved" else "relevant neighbours") + " must still lower the loss"
    if s is None or c is None:
        return Check("context_helps", NOT_CHECKED, s, c, rule, required=False)
    ok = c > 0 or (s <= 0 and c >= s)
    return Check("context_helps", PASSED if ok else FAILED, s, c, rule, required=False)


def _random_check(serving: Scores, candidate: Scores, rules: Rules) -> Check:
    s, c = random_penalty(serving), random_penalty(candidate)
    rule = "random neighbours may hurt no more than before"
    if s is None or c is None:
        return Check("random_context", NOT_CHECKED, s, c, rule, required=False)
    ok = c <= max(s, 0.0) + rules.tolerance * (loss(serving, "repo") or 0.0)
    return Check("random_context", PASSED if ok else FAILED, s, c, rule, required=False)


TOKENIZER_PROBE = "def parse_config(path: str) -> dict:\n    return {'naïve': 1, \"κ\": [0x1F, 3.5e-2]}  # ✓\n"


def tokenizer_mismatch(serving_gguf, vocab) -> str | None:
    """Why losses of the serving model cannot be compared with the candidate's (whose tokenizer
    is `vocab`, the training base's): per-token losses over different tokens mean different
    things. None when the tokenizers agree."""
    from pathlib import Path

    if Path(serving_gguf) == Path(vocab.path):
        return None
    from codelearn.llm.llama_backend import LlamaVocab

    other = LlamaVocab(Path(serving_gguf))
    try:
        same = other.n_vocab == vocab.n_vocab and other.tokenize(TOKENIZER_PROBE) == vocab.tokenize(TOKENIZER_PROBE)
    finally:
        other.close()
    if same:
        return None
    return (f"the serving model ({Path(serving_gguf).name}) and the training base ({Path(vocab.path).name}) "
            "use different tokenizers, so their losses per token are not comparable; serve the base "
            "(clear the `model` setting) or set train_base to the serving model")
