"""`codelearn eval` end to end: real repo with history, real index, the tiny model trained for real
(a good and a deliberately bad candidate), llama.cpp scoring, the report, its plot and the trend."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from codelearn.cli import app
from codelearn.evaluate.run import EvalOptions, run_eval
from codelearn.index.indexer import run_index
from codelearn.models.registry import Registry
from codelearn.project import open_project
from codelearn.train.nightly import RunOptions, run_training

PNG = b"\x89PNG\r\n\x1a\n"
LEARNING_ONLY = EvalOptions(retrieval=False, answering=False)


def _eval_json(repo: Path, *args: str) -> dict:
    result = CliRunner().invoke(app, ["eval", "-C", str(repo), "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_json_schema_and_plot_before_any_training(train_repo):
    run_index(open_project(train_repo), wait=True)
    report = _eval_json(train_repo, "--no-answering")
    assert report["schema"] == 1 and report["models"]["adapted"] is None
    assert set(report) >= {"repo", "time", "quick", "models", "retrieval", "learning", "notes", "seconds", "files"}
    conditions = report["learning"]["conditions"]
    assert set(conditions) == {"base", "base+retrieval", "base+search"}
    assert report["machine"]["cpu"] and report["machine"]["cores"] >= 1
    for row in conditions.values():
        assert row["loss"] > 0 and 0 <= row["next_line_exact"] <= 1 and row["tokens"] > 0
    assert any("no trained model" in note for note in report["notes"])
    plot = Path(report["files"]["plot"])
    assert plot.read_bytes()[:8] == PNG
    saved = json.loads(Path(report["files"]["report"]).read_text())
    assert saved["learning"]["conditions"] == conditions


def test_learning_numbers_move_the_right_way_for_a_good_candidate(train_repo, monkeypatch):
    monkeypatch.setenv("CODELEARN_RANDOM_HOLDOUT_SHARE", "0.3")  # a random slice of the 7 files
    good = run_training(open_project(train_repo), RunOptions())
    trained_split = good.dataset["split"]
    assert trained_split["heldout_random"] > 0 and good.dataset["recipe"]["random_files"]
    # settings changed after training must not move the hold-out eval measures the model on
    monkeypatch.setenv("CODELEARN_RANDOM_HOLDOUT_SHARE", "0.9")
    monkeypatch.setenv("CODELEARN_TRAIN_SEED", "7")
    report = run_eval(open_project(train_repo), LEARNING_ONLY)
    assert report["learning"]["split"]["heldout_random"] == trained_split["heldout_random"]
    assert report["learning"]["split"]["train_chunks"] == trained_split["train_chunks"]
    conditions = report["learning"]["conditions"]
    assert set(conditions) == {"base", "base+retrieval", "base+search", "adapted", "adapted+retrieval",
                               "adapted+search"}
    assert conditions["adapted"]["loss"] < conditions["base"]["loss"]
    assert conditions["adapted+retrieval"]["loss"] < conditions["base+retrieval"]["loss"]
    # the eval holds out exactly what the candidate never saw: its own cut
    entry = Registry().get(good.candidate)
    assert report["learning"]["split"]["cut"]["commit"] == entry.metrics["cut"]["commit"]
    assert set(report["learning"]["forgetting"]) == {"general_code", "general_chat"}
    assert report["learning"]["repo_knowledge"]["repo_specific"] is not None


def test_learning_numbers_move_the_wrong_way_for_a_bad_candidate(junk_repo):
    bad = run_training(open_project(junk_repo), RunOptions(since="HEAD~1"))  # trained on junk
    assert bad.status == "rejected"
    report = run_eval(open_project(junk_repo), LEARNING_ONLY)
    assert report["models"]["adapted"] == bad.candidate  # not serving: the newest candidate
    conditions = report["learning"]["conditions"]
    assert conditions["adapted"]["loss"] > conditions["base"]["loss"]
    assert report["learning"]["forgetting"]["general_code"]["change"] > 0
    # forgetting general code is never counted as knowledge of the repo
    knowledge = report["learning"]["repo_knowledge"]
    assert knowledge["general_code_change"] > 0 and knowledge["repo_specific"] is None


def test_an_interrupted_or_repeated_eval_reuses_every_finished_score(train_repo):
    run_index(open_project(train_repo), wait=True)
    first = run_eval(open_project(train_repo), LEARNING_ONLY)
    cache = train_repo / ".codelearn" / "eval" / "scores.jsonl"
    lines = cache.read_text().count("\n")
    with cache.open("a") as fh:
        fh.write('{"key": "cut short by a ki')  # what a kill mid-write leaves
    again = run_eval(open_project(train_repo), LEARNING_ONLY)
    assert again["learning"]["conditions"] == first["learning"]["conditions"]
    assert cache.read_text().count("\n") == lines  # nothing re-scored; the torn line ignored
    from codelearn.evaluate.scoring import ScoreCache
    from codelearn.evaluate.metrics import Tally

    ScoreCache(cache).put("later", Tally(1.0, 1))  # a line written after a torn one still reads back
    assert ScoreCache(cache).get("later") == Tally(1.0, 1)


def test_quick_is_subsampled_and_says_so(train_repo):
    run_index(open_project(train_repo), wait=True)
    full = run_eval(open_project(train_repo), LEARNING_ONLY)
    quick = run_eval(open_project(train_repo), EvalOptions(quick=True, retrieval=False, answering=False))
    assert quick["quick"] and any("quick" in note for note in quick["notes"])
    assert quick["learning"]["conditions"]["base"]["probes"] < full["learning"]["conditions"]["base"]["probes"]
    assert quick["learning"]["conditions"]["base"]["probes"] <= 3


def test_history_lists_runs_and_draws_the_trend(train_repo):
    run_index(open_project(train_repo), wait=True)
    for _ in range(2):
        run_eval(open_project(train_repo), EvalOptions(quick=True, retrieval=False, answering=False))
    rows = _eval_json(train_repo, "--history")
    assert len(rows) == 2 and all(r["loss_base"] for r in rows)
    result = CliRunner().invoke(app, ["eval", "-C", str(train_repo), "--history"])
    assert result.exit_code == 0
    assert (train_repo / ".codelearn" / "eval" / "runs" / "history.png").read_bytes()[:8] == PNG


def test_eval_without_an_index_builds_it_first_as_ask_does(tmp_path, tiny_model, monkeypatch):
    from conftest import make_repo

    monkeypatch.setenv("CODELEARN_MODEL", str(tiny_model))  # CI installs no bundled model
    repo = make_repo(tmp_path / "empty", {"a.py": "x = 1\n"})
    result = CliRunner().invoke(app, ["eval", "-C", str(repo), "--quick", "--no-answering"])
    assert result.exit_code == 0, result.output
    assert "building it first" in result.output and (repo / ".codelearn" / "index.db").is_file()


def test_the_search_condition_asks_as_a_user_would_and_never_shows_the_target(train_repo):
    from codelearn.corpus.units import load_units
    from codelearn.evaluate.served import SearchNeighbours, question_for
    from codelearn.llm.llama_backend import LlamaVocab
    from codelearn.models.bases import serving_model

    project = open_project(train_repo)
    run_index(project, wait=True)
    target = next(u for u in load_units(project.catalog_path) if u.symbol == "frobnicate_widget")
    assert question_for(target) == "Turn the widget's knob `times` times and report where it stopped."
    vocab = LlamaVocab(serving_model(project, Registry()).path)
    search = SearchNeighbours(project, vocab)
    try:
        shown = search(target, 300)
    finally:
        search.close()
    assert shown, "the search found nothing"
    # the other widget function is found (same file, same words), the target itself never
    assert any(u.path == "lib/widgets.py" for u in shown)
    assert not any(u.path == target.path and u.start_line <= target.end_line and target.start_line <= u.end_line
                   for u in shown)
    assert sum(len(vocab.tokenize(u.text)) for u in shown) <= 300
