"""Scoring probes through llama.cpp: a shared prefix is evaluated once, with the same scores."""

from __future__ import annotations

import random

import numpy as np
import pytest

from llama_cpp import Llama

from codelearn.llm.llama_backend import LlamaScorer, LlamaVocab

common_prefix = Llama.longest_token_prefix


@pytest.fixture
def scorer(tiny_model):
    scorer = LlamaScorer(tiny_model, n_ctx=512, threads=1)
    yield scorer
    scorer.close()


def _ids(rng: random.Random, n: int) -> list[int]:
    return [rng.randrange(10, 250) for _ in range(n)]


@pytest.mark.parametrize("first_scored", [230, 120], ids=["after the shared part", "inside it"])
def test_a_probe_that_begins_like_the_last_scores_the_same_and_evaluates_only_what_differs(
        tiny_model, scorer, first_scored):
    rng = random.Random(7)
    shared = _ids(rng, 200)
    a, b = shared + _ids(rng, 60), shared + _ids(rng, 60)
    scored = [i >= first_scored for i in range(len(b))]

    alone = LlamaScorer(tiny_model, n_ctx=512, threads=1)
    try:
        nll_alone, hit_alone = alone.score(b, scored)
    finally:
        alone.close()
    scorer.score(a, scored)
    before = scorer.evaluated
    nll, hit = scorer.score(b, scored)

    np.testing.assert_allclose(nll, nll_alone, atol=1e-4)
    assert (hit == hit_alone).all()
    # the cache holds a's keys and values up to where b differs or its first logits are needed
    assert scorer.evaluated - before == len(b) - min(200, first_scored - 1)


def test_a_probe_unlike_the_last_is_evaluated_from_the_start(scorer):
    rng = random.Random(3)
    a, b = _ids(rng, 100), _ids(rng, 100)
    scored = [i >= 50 for i in range(100)]
    scorer.score(a, scored)
    before = scorer.evaluated
    first = scorer.score(b, scored)[0]
    assert scorer.evaluated - before == 100  # nothing in common with a: every token evaluated
    before = scorer.evaluated
    again = scorer.score(b, scored)[0]  # the same probe twice: all but the needed logits reused
    assert scorer.evaluated - before == 100 - 49
    np.testing.assert_allclose(again, first, atol=1e-4)
    assert common_prefix(a, b) == 0 and common_prefix(b, b[:10]) == 10


def test_random_condition_probes_share_their_distractors_so_they_begin_alike(tiny_model):
    from codelearn.corpus.formats import TextFormat
    from codelearn.corpus.neighbours import Neighbours
    from codelearn.corpus.units import Unit
    from codelearn.evaluate.probes import ProbeOptions, repo_probes

    def unit(i: int, path: str) -> Unit:
        text = f"def helper_{i}(x):\n    return x * {i} + {i * 7}\n"
        return Unit(i, "repo", path, "python", "function", f"helper_{i}", 1, 2, text, "", False, None)

    pool = [unit(i, f"pkg/mod{i % 9}.py") for i in range(40)]
    targets = [unit(100 + i, f"new/t{i}.py") for i in range(4)]
    vocab = LlamaVocab(tiny_model)
    try:
        fmt = TextFormat.for_vocab(vocab)
        probes = repo_probes(targets, vocab=vocab, fmt=fmt, repo="demo", finder=Neighbours(pool, seed=0),
                             options=ProbeOptions(targets=4, neighbours=3, seed=5))
        header = len(vocab.tokenize("".join(p.text for p in fmt.repo_header("demo")), special=True))
    finally:
        vocab.close()
    randoms = [p.encoded.ids for p in probes if p.condition == "random"]
    relevant = [p.encoded.ids for p in probes if p.condition == "relevant"]
    assert len(randoms) == 4
    for ids in randoms[1:]:
        # header and three distractors in common: all but the target is shared
        assert common_prefix(randoms[0], ids) > header + 3 * 10
    # the oracle's neighbours are each target's own, so those probes differ early
    assert min(common_prefix(relevant[0], ids) for ids in relevant[1:]) < common_prefix(randoms[0], randoms[1])
