"""`codelearn train --search`: the search model tuned on the repo, for real (torch, ONNX, the index)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from codelearn.cli import app
from codelearn.errors import CodelearnError
from codelearn.index import search_model
from codelearn.index.catalog import Catalog
from codelearn.index.embedder import get_embedder, project_embedder
from codelearn.index.indexer import run_index
from codelearn.index.search import Searcher
from codelearn.index.status import index_status
from codelearn.evaluate.retrieval import retrieval_section
from codelearn.project import open_project

from conftest import make_repo

pytest.importorskip("torch")
from codelearn.train import search_tuning  # noqa: E402  (needs torch to mean anything)

VERBS = ("parse", "render", "merge", "split", "encode", "decode", "validate", "compress", "sort", "hash")
NOUNS = ("invoice", "ledger", "payroll", "shipment", "coupon", "warehouse", "tariff", "refund")


def documented_module(noun: str) -> str:
    """Ten documented functions about one noun; each docstring names what it does in words."""
    parts = []
    for verb in VERBS:
        parts.append(
            f"def {verb}_{noun}(rows, limit=10):\n"
            f'    """{verb.capitalize()} every {noun} row of the batch before it is stored."""\n'
            f"    out = [r for r in rows if r.get('{noun}_{verb}')]\n"
            f"    return out[:limit]\n\n")
    return "".join(parts)


@pytest.fixture
def documented_repo(tmp_path):
    root = make_repo(tmp_path / "repo", {f"app/{noun}.py": documented_module(noun) for noun in NOUNS})
    project = open_project(root)
    run_index(project, wait=True)
    return project


def quick(**changes) -> search_tuning.SearchTuneOptions:
    return search_tuning.SearchTuneOptions(**{"max_steps": 2, "batch": 8, **changes})


def test_the_dequantised_base_embeds_like_the_shipped_model():
    import torch

    from codelearn.index.onnx_embedder import MiniLMInt8Embedder

    texts = ["def load(path): return json.load(open(path))", "Where are refunds validated?"]
    with torch.no_grad():
        ours = search_tuning._Encoder(search_tuning.load_base(dither=False))(texts).numpy()
    shipped = MiniLMInt8Embedder(threads=1, compute="float").embed_documents(texts)
    assert (ours * shipped).sum(axis=1).min() > 0.999


def test_pairs_are_docstring_sentences_against_code_without_them(documented_repo):
    pairs, texts = search_tuning.repo_pairs(documented_repo)
    assert len(pairs) == len(VERBS) * len(NOUNS)
    pair = next(p for p in pairs if p.key == "repo:app/refund.py:1")
    assert pair.query == "Parse every refund row of the batch before it is stored."
    assert "stored" not in pair.text and "refund" in pair.text  # the answer is not in the code's text
    assert len(texts) >= len(pairs)


def test_promoted_model_is_used_by_the_index_and_search_then_rolled_back(documented_repo):
    project = documented_repo
    shipped = get_embedder("default").name
    report = search_tuning.run_search_tuning(project, quick(min_gain=-1.0))
    assert report.promoted and report.exit_code == 0
    assert report.steps == 2 and report.held_out == search_tuning.MIN_HELD
    assert set(report.before) == set(report.after) == {"recall@1", "recall@5", "recall@10", "mrr"}
    tuned = search_model.active(project.state)
    assert tuned is not None and report.model == project_embedder(project).name != shipped
    assert list(search_model.folder(project.state).glob(".candidate-*")) == []
    catalog = Catalog(project.catalog_path, readonly=True)
    try:
        assert catalog.get_meta("embedder") == report.model  # the index was re-embedded
    finally:
        catalog.close()
    hits = Searcher(project).search("merge the coupon rows", k=5, mode="vector")
    assert hits and any(h.path == "app/coupon.py" for h in hits)
    shown = index_status(project)["search_model"]
    assert shown["tuned_on_repo"] and shown["file"] == tuned.file and "mrr" in shown["scores"]["after"]
    # eval may only ask about definitions the model did not learn
    section = retrieval_section(project, limit=200)
    assert section["targets"] == report.held_out == len(tuned.held_out)
    assert any("never trained on" in note for note in section["notes"])

    assert search_model.rollback(project.state) is None
    assert project_embedder(project).name == shipped
    search_tuning.reembed(project)
    catalog = Catalog(project.catalog_path, readonly=True)
    try:
        assert catalog.get_meta("embedder") == shipped
    finally:
        catalog.close()
    with pytest.raises(CodelearnError, match="nothing to roll back"):
        search_model.rollback(project.state)


def test_a_model_that_does_not_rank_better_is_not_promoted(documented_repo):
    report = search_tuning.run_search_tuning(documented_repo, quick(min_gain=1.0))
    assert not report.promoted and report.exit_code == 3
    assert "not better" in report.reason
    assert search_model.active(documented_repo.state) is None
    assert list(search_model.folder(documented_repo.state).glob("*.onnx")) == []  # candidate removed


def test_a_second_run_while_one_trains_is_busy(documented_repo):
    from codelearn.train.lock import TrainLock

    lock = TrainLock(documented_repo.state)
    assert lock.acquire()
    try:
        report = search_tuning.run_search_tuning(documented_repo, quick())
    finally:
        lock.release()
    assert report.busy and report.exit_code == 75 and report.steps == 0


def test_too_few_documented_definitions_leave_search_unchanged(tmp_path):
    root = make_repo(tmp_path / "small", {"app.py": documented_module("coupon")})
    project = open_project(root)
    run_index(project, wait=True)
    report = search_tuning.run_search_tuning(project, quick())
    assert not report.promoted and report.steps == 0
    assert f"at least {search_tuning.MIN_PAIRS}" in report.reason


def test_a_pinned_or_disabled_embedder_is_an_error_with_the_fix(tmp_path):
    root = make_repo(tmp_path / "off", {"app.py": documented_module("coupon"),
                                        ".codelearn.toml": 'embedder = "none"\n'})
    with pytest.raises(CodelearnError, match="vector search is off") as caught:
        search_tuning.run_search_tuning(open_project(root), quick())
    assert 'embedder = "default"' in caught.value.fix


def test_cli_train_search_json_and_rollback(documented_repo):
    runner = CliRunner()
    root = str(documented_repo.root)
    result = runner.invoke(app, ["train", "--search", "--max-steps", "2", "--json", "--repo", root])
    report = json.loads(result.stdout)
    assert result.exit_code == (0 if report["promoted"] else 3), result.output
    assert report["steps"] == 2 and report["pairs"] == len(VERBS) * len(NOUNS)
    if report["promoted"]:
        result = runner.invoke(app, ["models", "rollback", "--search", "--repo", root])
        assert result.exit_code == 0 and "shipped model" in result.output
    result = runner.invoke(app, ["models", "rollback", "--search", "--repo", root])
    assert result.exit_code != 0 and "nothing to roll back" in result.output


def test_held_out_scores_rank_each_sentence_against_the_pool():
    class Letters:  # a deterministic embedder: one axis per first letter
        def embed_documents(self, texts):
            out = np.zeros((len(texts), 26), dtype=np.float32)
            for i, t in enumerate(texts):
                out[i, ord(t[0]) - 97] = 1.0
            return out

        def embed_query(self, text):
            return self.embed_documents([text])[0]

    held = [search_tuning.Pair("apple", "avocado", "repo:a:1"), search_tuning.Pair("berry", "cherry", "repo:b:1")]
    got = search_tuning.held_out_scores(Letters(), held, ["zebra"] * 3)
    assert got["recall@1"] == 0.5  # apple finds avocado first; berry's answer is not above the rest


@pytest.mark.parametrize("dither", [True, False])
def test_what_training_changed_survives_the_int8_build(documented_repo, tmp_path, dither):
    """The shipped weights sit on the int8 grid the tuned model is quantised to again: undithered,
    small updates round back to the shipped values and the int8 model forgets its training."""
    import torch

    from codelearn.index.onnx_embedder import MiniLMInt8Embedder

    pairs, _ = search_tuning.repo_pairs(documented_repo)
    texts = [p.text for p in pairs[:8]] + [p.query for p in pairs[:8]]
    model = search_tuning.load_base(dither=dither)
    search_tuning.tune(model, pairs, quick(max_steps=5, batch=16, lr=1e-4))
    with torch.no_grad():
        trained = search_tuning._Encoder(model)(texts).numpy()
    onnx = tmp_path / "tuned.onnx"
    sha = search_tuning.export(model, onnx)
    served = MiniLMInt8Embedder(threads=1, weights=(onnx, sha, "test"), cache_dir=tmp_path).embed_documents(texts)
    shipped = MiniLMInt8Embedder(threads=1).embed_documents(texts)
    kept = float((served * trained).sum(axis=1).mean())
    moved = 1 - float((served * shipped).sum(axis=1).mean())
    if dither:
        assert kept > 0.98 and moved > 0.01
    else:  # documents the failure the dither prevents
        assert kept < 0.98 and moved < 0.01


def test_hard_negatives_are_the_other_definitions_of_the_same_file(documented_repo):
    pairs, texts = search_tuning.repo_pairs(documented_repo)
    negatives = search_tuning.file_negatives(pairs, texts)
    pair = next(p for p in pairs if p.key == "repo:app/refund.py:1")
    assert pair.text not in negatives[pair.key]
    assert len(negatives[pair.key]) >= len(VERBS) - 1
    assert all("refund" in text and "coupon" not in text for text in negatives[pair.key])
    report = search_tuning.run_search_tuning(documented_repo, quick(min_gain=-1.0, hard_negatives=True))
    assert report.promoted and report.steps == 2


def test_a_definition_alone_in_its_file_gets_another_files_code_never_its_own():
    import random

    pairs = [search_tuning.Pair(f"query {i}", f"code {i}", f"repo:f{i}.py:1") for i in range(3)]
    alone = {p.key: [] for p in pairs}
    rng = random.Random(0)
    for pair in pairs:
        drawn = {search_tuning._negative(pair, alone, pairs, rng) for _ in range(50)}
        assert drawn == {p.text for p in pairs} - {pair.text}


def test_the_held_out_pairs_stay_held_out_as_the_repo_grows_and_lines_move():
    def pairs(n: int, shift: int = 0) -> list:
        return [search_tuning.Pair(f"q{i}", f"c{i}", f"repo:m{i % 7}.py:{10 * i + shift}", f"repo:m{i % 7}.py:f{i}")
                for i in range(n)]

    _, held = search_tuning.split(pairs(300), seed=0)
    # a day later: 20 more definitions, and every line moved down by an edit above them
    _, later = search_tuning.split(pairs(320, shift=3), seed=0)
    before, after = {p.name for p in held}, {p.name for p in later}
    assert 20 <= len(before) <= len(after) <= 300
    assert before <= after  # yesterday's held-out definitions are still held out, none trained on
    _, other_seed = search_tuning.split(pairs(300), seed=1)
    assert {p.name for p in other_seed} != before


def test_train_keeps_the_answer_models_held_out_code_out_of_search_tuning(train_repo, monkeypatch):
    from codelearn.project import open_project
    from codelearn.train import nightly
    from codelearn.train.dataset import DataOptions, heldout_keys

    seen = {}

    def spy(project, options, progress):
        seen["exclude"] = options.exclude
        raise CodelearnError("stop here", "")

    monkeypatch.setenv("CODELEARN_EMBEDDER", "default")
    monkeypatch.setattr(search_tuning, "tune_and_gate", spy)
    project = open_project(train_repo)
    report = nightly.run_training(project, nightly.RunOptions(dry_run=True))
    assert report.status == "dry_run"
    run = nightly._Run(project, nightly.RunOptions(), lambda *a, **k: None)
    run._tune_search()
    expected = heldout_keys(project, DataOptions.from_settings(project.settings))
    assert seen["exclude"] == expected and any(":lib/widgets.py:" in k for k in expected)
