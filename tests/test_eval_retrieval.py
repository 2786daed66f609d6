"""The retrieval section of `codelearn eval`: real repos, the real indexer, the real Searcher."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest
from conftest import make_repo

from codelearn.corpus.units import load_units
from codelearn.errors import CodelearnError
from codelearn.evaluate.retrieval import (
    find_targets,
    paraphrase,
    rank_of,
    retrieval_section,
    scores,
    shadow_project,
    strip_doc,
)
from codelearn.index.indexer import run_index
from codelearn.index.search import Hit, Searcher
from codelearn.project import Project, open_project

# Three documented functions with known keyword ranks once their docstrings are
# gone: the first two share words with their own code (rank 1), the third's
# docstring words appear nowhere else (not found).
BILLING = '''"""Billing helpers."""


def tally_invoices(invoices):
    """Tally the invoices into one ledger total."""
    ledger_total = 0
    for invoice in invoices:
        ledger_total += invoice.amount
    return ledger_total


def refund_payment(payment, reason):
    """Refund a payment and record the refund reason."""
    payment.refunded = True
    payment.refund_reason = reason
    return payment


def zorblax(n):
    """Compute the quintessential frobnication of wibbles."""
    return n * 2


def undocumented(x):
    return x
'''

CART = '''/**
 * Sum the basket prices into a grand total.
 */
export function basketTotal(items) {
  return items.reduce((sum, item) => sum + item.price, 0);
}
'''

ALL_METRICS = {"recall@1", "recall@5", "recall@10", "mrr"}


def _indexed(root: Path, files: dict[str, str]) -> Project:
    make_repo(root, files)
    project = open_project(root)
    run_index(project, wait=True)
    return project


@pytest.fixture
def billing(tmp_path, monkeypatch) -> Project:
    """The billing repo indexed for keywords only (no embedding: fast)."""
    monkeypatch.setenv("CODELEARN_EMBEDDER", "none")
    return _indexed(tmp_path / "repo", {"billing.py": BILLING})


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _in_range(metrics: dict) -> bool:
    return set(metrics) == ALL_METRICS and all(0.0 <= v <= 1.0 for v in metrics.values())


def test_schema_value_ranges_and_progress(billing):
    calls = []
    result = retrieval_section(billing, progress=lambda done, total: calls.append((done, total)))
    json.dumps(result)  # JSON-ready
    assert set(result) == {"targets", "sets", "prompt", "notes"}
    assert result["targets"] == 3 and result["prompt"] is None
    assert set(result["sets"]) == {"docstring", "paraphrase"}
    for part in result["sets"].values():
        assert 0 < part["queries"] <= 3
        assert list(part["modes"]) == ["keyword"]  # no vectors with embedder = none
        assert all(_in_range(m) for m in part["modes"].values())
    assert any("embedder setting is none" in note for note in result["notes"])
    assert any("without a model" in note for note in result["notes"])
    total = 3 + result["sets"]["paraphrase"]["queries"]
    assert calls == [(i, total) for i in range(1, total + 1)]


def test_hand_checked_ranks_give_exact_metrics(billing):
    docstring = retrieval_section(billing)["sets"]["docstring"]
    # tally_invoices and refund_payment at rank 1, zorblax not found: 2 of 3 everywhere.
    assert docstring == {"queries": 3, "modes": {"keyword": {
        "recall@1": 0.6667, "recall@5": 0.6667, "recall@10": 0.6667, "mrr": 0.6667}}}


def test_scores_and_ranks_by_hand():
    assert scores([1, 3, None]) == {"recall@1": 0.3333, "recall@5": 0.6667, "recall@10": 0.6667,
                                    "mrr": round((1 + 1 / 3) / 3, 4)}
    assert scores([2, 7, 10, None]) == {"recall@1": 0.0, "recall@5": 0.25, "recall@10": 0.75,
                                        "mrr": round((1 / 2 + 1 / 7 + 1 / 10) / 4, 4)}
    hits = [Hit("a.py", "repo", start, start + 4, "", "function", "python", 1.0, "", "", None, None, i)
            for i, start in enumerate((1, 10, 20))]
    assert rank_of(hits, lambda h: h.start_line == 20) == 3
    assert rank_of(hits, lambda h: False) is None


def test_the_shadow_index_really_lacks_the_docstring(billing):
    targets = find_targets(load_units(billing.catalog_path))
    assert [t.unit.symbol for t in targets] == ["tally_invoices", "refund_payment", "zorblax"]
    real = Searcher(billing)
    try:
        assert [h.symbol for h in real.search("frobnication", mode="keyword")] == ["zorblax"]
    finally:
        real.close()
    with shadow_project(billing, targets, vectors=False) as shadow:
        searcher = Searcher(shadow)
        try:
            assert searcher.search("frobnication", mode="keyword") == []
            # Its code is still there and found by its own words.
            assert [h.symbol for h in searcher.search("zorblax", mode="keyword")] == ["zorblax"]
        finally:
            searcher.close()
        root = shadow.root
    assert not root.exists()


def test_the_real_index_is_not_modified(billing, tmp_path):
    before = _file_hash(billing.catalog_path)
    files = sorted(p.name for p in billing.state.iterdir())
    questions = tmp_path / "q.jsonl"
    questions.write_text(json.dumps({"question": "ledger total", "path": "billing.py"}) + "\n")
    retrieval_section(billing, questions=questions)
    assert _file_hash(billing.catalog_path) == before
    assert sorted(p.name for p in billing.state.iterdir()) == files


def test_a_malformed_questions_file_names_the_line(billing, tmp_path):
    bad = tmp_path / "questions.jsonl"
    bad.write_text(json.dumps({"question": "where are refunds?", "path": "billing.py"}) + "\n"
                   "\n" + '{"question": "no path here"}\n')
    with pytest.raises(CodelearnError) as error:
        retrieval_section(billing, questions=bad)
    assert "line 3" in error.value.message and error.value.fix
    bad.write_text("not json\n")
    with pytest.raises(CodelearnError, match="line 1"):
        retrieval_section(billing, questions=bad)


def test_questions_naming_the_right_place_count_as_hits(billing, tmp_path):
    questions = tmp_path / "questions.jsonl"
    lines = [{"question": "how is the ledger total of invoices added up?", "path": "billing.py",
              "symbol": "tally_invoices"},
             {"question": "where is a payment refunded?", "path": "./billing.py"},
             {"question": "where is a payment refunded?", "path": "elsewhere.py"}]
    questions.write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = retrieval_section(billing, questions=questions)
    asked = result["sets"]["questions"]
    assert asked["queries"] == 3
    assert asked["modes"]["keyword"]["recall@10"] == 0.6667
    assert asked["modes"]["keyword"]["recall@1"] == 0.6667


def test_paraphrase_drops_the_words_that_name_code():
    code = "def tally_invoices(invoices):\n    ledger_total = 0\n    return ledger_total\n"
    assert paraphrase("Tally the invoices into one ledger total.", code, "tally_invoices") == \
        "the into one ledger total."
    assert paraphrase("Close `Pool.workers` now.", "x = 1", "Pool.shutdown") == "Close now."


def test_strip_doc_drops_python_docstrings_and_leading_comments():
    assert strip_doc('def f():\n    """Doc here."""\n    return 1\n', "python").split() == \
        ["def", "f():", "return", "1"]
    assert strip_doc("/**\n * Doc here.\n */\nfunction f() {}\n", "javascript") == "function f() {}\n"
    assert strip_doc("// Doc here.\n// More.\nfunc f() {}\n", "go") == "func f() {}\n"


def test_prompt_share_with_a_real_vocabulary(billing, tiny_model):
    from codelearn.llm.llama_backend import LlamaVocab

    vocab = LlamaVocab(tiny_model)
    try:
        prompt = retrieval_section(billing, vocab=vocab, max_context=300)["prompt"]
    finally:
        vocab.close()
    assert set(prompt) == {"max_context", "target_file_shown", "target_shown", "queries"}
    assert prompt["max_context"] == 300 and prompt["queries"] == 3
    assert 0.0 <= prompt["target_shown"] <= prompt["target_file_shown"] <= 1.0


def test_all_modes_with_real_vectors_and_the_shadow_reembeds(tmp_path):
    project = _indexed(tmp_path / "repo", {"billing.py": BILLING, "static/cart.js": CART})
    result = retrieval_section(project)
    assert result["targets"] == 4
    for part in result["sets"].values():
        assert list(part["modes"]) == ["keyword", "vector", "hybrid"]
        assert all(_in_range(m) for m in part["modes"].values())
    targets = find_targets(load_units(project.catalog_path))
    with shadow_project(project, targets, vectors=True) as shadow:
        db = sqlite3.connect(shadow.catalog_path)
        try:
            keys = dict(db.execute("SELECT id, vec_key FROM chunks"))
            assert db.execute("SELECT count(*) FROM vectors WHERE in_store != 0").fetchone()[0] == 0
            stored = {k for (k,) in db.execute("SELECT key FROM vectors")}
        finally:
            db.close()
    for target in targets:
        assert target.unit.vec_key and keys[target.unit.id] != target.unit.vec_key
        assert keys[target.unit.id] in stored


def test_a_questions_file_kept_in_the_repo_does_not_find_itself(tmp_path, monkeypatch):
    # Kept and indexed beside the code, each question's own line is its best keyword match.
    monkeypatch.setenv("CODELEARN_EMBEDDER", "none")
    line = {"question": "how is the ledger total of invoices added up?", "path": "billing.py",
            "symbol": "tally_invoices"}
    project = _indexed(tmp_path / "repo", {"billing.py": BILLING,
                                           "eval/questions.jsonl": json.dumps(line) + "\n"})
    searcher = Searcher(project)
    try:
        assert searcher.search(line["question"], k=1)[0].path == "eval/questions.jsonl"
    finally:
        searcher.close()
    result = retrieval_section(project, questions=project.root / "eval" / "questions.jsonl")
    assert result["sets"]["questions"]["modes"]["keyword"]["recall@1"] == 1.0
