"""The promotion gate's rules, each on scores built to break the old gate (per-target tallies as
llama.cpp scoring produces them), and the tokenizer check on two real GGUF files."""

from __future__ import annotations

import random

from codelearn.evaluate.metrics import Tally
from codelearn.evaluate.scoring import Scores
from codelearn.train.gate import NOT_CHECKED, Rules, decide, gate_stages, staged_decision, tokenizer_mismatch

TARGETS = 24


def _scores(repo: float, served: float | None = None, random_ctx: float | None = None, general: float = 2.0,
            chat: float = 1.5, noise: float = 0.02, seed: int = 0, targets: int = TARGETS,
            searched: float | None = None) -> Scores:
    """Per-target losses around the given means (100 tokens each), as a scored probe set gives."""
    rng = random.Random(seed)
    scores = Scores()
    conditions = {"none": repo, "relevant": repo * 0.9 if served is None else served,
                  "random": repo * 1.01 if random_ctx is None else random_ctx}
    if searched is not None:
        conditions["retrieved"] = searched
    for condition, mean in conditions.items():
        for i in range(targets):
            loss = mean * (1 + rng.uniform(-noise, noise))
            scores.add("repo", condition, f"t{i}", Tally(nll=loss * 100, tokens=100, probes=1))
    for group, mean in (("general_code", general), ("general_chat", chat)):
        for i in range(12):
            scores.add(group, "none", f"{group}{i}", Tally(nll=mean * 100, tokens=100, probes=1))
    for i in range(targets):
        scores.add("instruct", "none", f"t{i}", Tally(nll=120, tokens=100, probes=1))
    return scores


def _check(result, name):
    return next(c for c in result.checks if c.name == name)


def test_a_clear_gain_everywhere_is_promoted():
    result = decide(_scores(2.0), _scores(1.8, seed=1))
    assert result.promote, result.summary()
    check = _check(result, "repo_loss")
    assert check.change < -0.09 and check.interval[1] < 0


def test_better_without_context_but_worse_with_it_is_refused():
    # without a search condition scored, the oracle's neighbours stand for what `ask` serves:
    # 5% better alone, 50% worse with them
    serving, candidate = _scores(2.0, served=1.8), _scores(1.9, served=2.7, seed=1)
    result = decide(serving, candidate)
    assert not result.promote
    assert [c.name for c in result.failed] == ["repo_loss_served", "context_helps"]


def test_the_served_condition_is_what_search_finds_when_it_was_scored():
    # better with the oracle's neighbours, worse with what `ask`'s search really shows
    serving = _scores(2.0, served=1.8, searched=1.9)
    candidate = _scores(1.8, served=1.6, searched=2.1, seed=1)
    result = decide(serving, candidate)
    # and context must help where search is what it gets (the oracle's gain does not count)
    assert [c.name for c in result.failed] == ["repo_loss_served", "context_helps"]
    assert all("what search finds" in c.rule for c in result.failed)
    assert decide(serving, _scores(1.8, served=1.6, searched=1.7, seed=1)).promote


def test_context_must_help_with_what_search_finds():
    # better alone and with search than the serving model, but search no longer helps it at all
    serving = _scores(2.0, served=1.7, searched=1.9)
    candidate = _scores(1.8, served=1.5, searched=1.81, seed=1)
    result = decide(serving, candidate)
    assert _check(result, "repo_loss_served").passed
    assert [c.name for c in result.failed] == ["context_helps"]


def _probe(group: str, condition: str, key: str):
    from codelearn.corpus.formats import Encoded
    from codelearn.evaluate.probes import Probe

    return Probe(group, condition, key, Encoded([1, 2, 3], [False, True, True]))


def _probe_set(searched: bool = True) -> list:
    conditions = ("none", "relevant", "random") + (("retrieved",) if searched else ())
    return ([_probe("repo", c, f"t{i}") for i in range(TARGETS) for c in conditions]
            + [_probe("instruct", "none", f"t{i}") for i in range(TARGETS)]
            + [_probe(g, "none", f"{g}{i}") for g in ("general_code", "general_chat") for i in range(12)])


def test_the_gate_scores_the_cheap_decisive_probes_first_and_leaves_the_oracle_to_eval():
    first, rest = gate_stages(_probe_set())
    assert {(p.group, p.condition) for p in first} == \
        {("repo", "none"), ("general_code", "none"), ("general_chat", "none")}
    assert {(p.group, p.condition) for p in rest} == \
        {("repo", "retrieved"), ("repo", "random"), ("instruct", "none")}
    # without a search condition the oracle stands for what `ask` serves and is kept
    assert ("repo", "relevant") in {(p.group, p.condition) for p in gate_stages(_probe_set(False))[1]}


def _scorer(by_label: dict[str, Scores], asked: list):
    """score(label, probes, stage) answering from prepared per-target scores, as llama.cpp would."""
    def score(label, probes, stage):
        asked.append((label, stage, len(probes)))
        out = Scores()
        for p in probes:
            out.add(p.group, p.condition, p.key, by_label[label].per_key[(p.group, p.condition)][p.key])
        return out
    return score


def test_a_candidate_that_fails_on_the_first_probes_is_refused_without_scoring_the_rest():
    base = _scores(2.0, searched=1.9)
    forgetful = _scores(1.7, searched=1.6, general=2.3, seed=1)  # 15% worse at general code
    asked: list = []
    result, scores = staged_decision(_probe_set(), _scorer({"serving": base, "candidate": forgetful,
                                                            "base": base}, asked))
    assert not result.promote and result.stopped_early
    assert {stage for _, stage, _ in asked} == {"1/2"}
    assert [c.name for c in result.checks if c.status == "failed"] == ["forgetting_code"]
    assert "were not scored" in result.summary() and "repo_loss_served" not in result.summary()
    assert ("repo", "retrieved") not in scores["candidate"]
    # a good candidate goes through both stages and is promoted on all of them
    asked.clear()
    good = _scores(1.7, searched=1.6, seed=1)
    result, scores = staged_decision(_probe_set(), _scorer({"serving": base, "candidate": good,
                                                            "base": base}, asked))
    assert result.promote and not result.stopped_early
    assert ("candidate", "2/2", 3 * TARGETS) in asked and ("base", "2/2", 0) not in asked
    assert _check(result, "repo_loss_served").passed and ("repo", "relevant") not in scores["candidate"]


def test_only_a_refusal_for_forgetting_alone_may_be_tried_at_a_smaller_step():
    base = _scores(2.0, searched=1.9)
    forgetful = _scores(1.7, searched=1.6, chat=1.7, seed=1)  # repo better, chat 13% worse
    result, _ = staged_decision(_probe_set(), _scorer({"serving": base, "candidate": forgetful, "base": base}, []))
    assert result.stopped_early and result.forgot_only  # the served check was never scored
    assert decide(base, forgetful).forgot_only  # scored in full: only forgetting failed
    assert not decide(base, _scores(1.7, searched=1.6, seed=1)).forgot_only  # promoted
    # worse at the repo too: a smaller step toward it cannot help
    assert not decide(base, _scores(2.2, searched=2.1, chat=1.7, seed=1)).forgot_only
    # nothing scored for the served condition without a failure to explain it: not forgetting alone
    unserved = _scores(1.7, chat=1.7, seed=1)
    unserved.pop(("repo", "relevant")), unserved.per_key.pop(("repo", "relevant"))
    assert not decide(_scores(2.0), unserved).forgot_only


def test_a_gain_within_noise_is_refused():
    serving = _scores(2.0, noise=0.05)
    candidate = _scores(2.0 * (1 - 0.0001), noise=0.05, seed=1)  # 0.01% "better"
    result = decide(serving, candidate)
    assert not result.promote
    assert _check(result, "repo_loss").status == "failed"
    # a real gain with noisy targets: promoted only when the interval clears zero
    small = decide(serving, _scores(2.0 * 0.985, noise=0.3, seed=1), rules=Rules(min_gain=0.01))
    check = _check(small, "repo_loss")
    assert check.interval[0] < check.change < check.interval[1]
    assert small.promote == (check.change <= -0.01 and check.interval[1] < 0)


def test_forgetting_is_bounded_from_the_original_base_not_from_the_serving_model():
    base = _scores(2.0, general=2.00, chat=1.50)
    serving = _scores(2.0, general=2.03, chat=1.52)  # an earlier promotion drifted 1.5%
    candidate = _scores(1.7, general=2.06, chat=1.54, seed=1)  # +1.5% more: 3% from the base
    assert not decide(serving, candidate, base).promote
    drift = _check(decide(serving, candidate, base), "forgetting_code")
    assert drift.status == "failed" and abs(drift.change - 0.03) < 1e-9 and drift.base == 2.0
    assert decide(serving, _scores(1.7, general=2.03, chat=1.50, seed=1), base).promote


def test_nothing_to_check_is_not_a_pass():
    empty = Scores()
    result = decide(empty, empty)
    assert not result.promote
    statuses = {c.name: c.status for c in result.checks}
    assert statuses["repo_loss"] == statuses["repo_loss_served"] == NOT_CHECKED
    assert statuses["forgetting_code"] == statuses["forgetting_chat"] == NOT_CHECKED
    saved = result.as_json()["checks"]
    assert all(c["passed"] is False for c in saved if c["status"] == NOT_CHECKED)
    # repo probes but no general ones: still no promotion
    repo_only = Scores()
    for key, tally in _scores(2.0).per_key[("repo", "none")].items():
        repo_only.add("repo", "none", key, tally)
    assert not decide(repo_only, repo_only).promote


def test_models_with_different_tokenizers_are_not_compared(tiny_model, tiny_hf, real_converter):
    from codelearn.llm.llama_backend import LlamaVocab
    from codelearn.models.bases import hf_base

    other = hf_base(tiny_hf, str(real_converter)).gguf
    vocab = LlamaVocab(other)
    try:
        assert tokenizer_mismatch(other, vocab) is None
        why = tokenizer_mismatch(tiny_model, vocab)
    finally:
        vocab.close()
    assert why and "different tokenizers" in why
    result = decide(_scores(2.0), _scores(1.5), comparable=why)
    assert not result.promote and result.failed[0].name == "comparable"


def test_tomorrows_gate_probes_mostly_the_same_targets():
    from codelearn.corpus.split import Split
    from codelearn.corpus.units import Unit
    from codelearn.evaluate.probes import pick_targets

    def unit(i: int, shift: int = 0) -> Unit:
        return Unit(i, "repo", f"m{i % 5}.py", "python", "function", f"f{i}", 10 * i + shift, 10 * i + shift + 5,
                    f"def f{i}(): pass", "", False, None)

    today = pick_targets(Split([], [unit(i) for i in range(60)], [], None), 24, seed=0)
    # after a commit: 10 more new functions, and every old one moved down by 3 lines
    tomorrow = pick_targets(Split([], [unit(i, 3) for i in range(70)], [], None), 24, seed=0)
    kept = {u.symbol for u in today} & {u.symbol for u in tomorrow}
    assert len(today) == len(tomorrow) == 24 and len(kept) >= 18


def test_a_probes_random_neighbours_do_not_depend_on_what_training_drew_before(tiny_model):
    """Training samples draw random neighbours from the same finder before the probes are built;
    had the probes followed its draws, every change in the mix (any new commit) would give the
    random condition new contexts, and the serving model's cached scores would miss each night."""
    from codelearn.corpus.formats import TextFormat
    from codelearn.corpus.neighbours import Neighbours
    from codelearn.corpus.units import Unit
    from codelearn.evaluate.probes import ProbeOptions, repo_probes
    from codelearn.llm.llama_backend import LlamaVocab

    pool = [Unit(i, "repo", f"m{i % 8}.py", "python", "function", f"f{i}", 1, 2,
                 f"def f{i}(x):\n    return x * {i}\n", "", False, None) for i in range(40)]
    vocab = LlamaVocab(tiny_model)

    def random_contexts(drawn_before: int) -> list[list[int]]:
        finder = Neighbours(pool, seed=0)
        for _ in range(drawn_before):
            finder.random(pool[0], 3)
        probes = repo_probes(pool[:4], vocab=vocab, fmt=TextFormat.for_vocab(vocab), repo="r", finder=finder,
                             options=ProbeOptions())
        return [p.encoded.ids for p in probes if p.condition == "random"]

    assert len(random_contexts(0)) == 4 and random_contexts(0) == random_contexts(9)
    assert len({tuple(ids) for ids in random_contexts(0)}) == 4
