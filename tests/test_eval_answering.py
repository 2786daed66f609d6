"""The answering section of `codelearn eval`: real index, real llama.cpp on the tiny GGUF."""

from __future__ import annotations

from dataclasses import replace

import pytest

from codelearn.ask.pipeline import Conversation
from codelearn.corpus.units import Unit, load_units
from codelearn.evaluate.answering import (answering_section, askable, bare_name, names_symbol,
                                          pick_units, share, target_in_sources, where_correct)
from codelearn.index.indexer import run_index
from codelearn.project import open_project
from conftest import make_repo

FILES = {
    "shop/billing.py": '''\
"""Billing."""


def compute_total_with_tax(lines):
    """Sum the lines and add tax."""
    return sum(line.price for line in lines) * 1.2


class Invoice:
    """An invoice with lines."""

    def add_line(self, line):
        self.lines.append(line)

    def close(self):
        self.closed = True
''',
    "shop/network.py": '''\
"""Network."""


def retry_with_backoff(call, attempts=3):
    """Call `call` until it succeeds, waiting longer each time."""
    for attempt in range(attempts):
        try:
            return call()
        except OSError:
            continue


class Connection:
    """An HTTP connection."""

    def close(self):
        self.open = False
''',
}


def unit(path: str = "shop/billing.py", symbol: str = "Invoice.add_line", kind: str = "method",
         source: str = "repo") -> Unit:
    return Unit(1, source, path, "python", kind, symbol, 12, 13, "def add_line(self, line): ...", "",
                False, None)


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.setenv("CODELEARN_EMBEDDER", "none")
    root = make_repo(tmp_path / "shop", FILES)
    run_index(open_project(root), wait=True)
    return open_project(root)


# -- judging, on hand-written answers ------------------------------------------------------

@pytest.mark.parametrize("text, right", [
    ("It is defined in shop/billing.py, line 12.", True),
    ("See `shop/billing.py:12-13`.", True),
    ("In ./shop/billing.py.", True),
    ("In the file billing.py.", True),  # the file name alone
    ("It lives in lib/billing.py.", False),  # right file name, other folder: another file
    ("It is in shop/network.py.", False),
    ("It is defined in the billing module.", False),
    ("", False),
])
def test_where_correct(text, right):
    assert where_correct(text, unit()) is right


@pytest.mark.parametrize("text, named", [
    ("`add_line` appends a line.", True),
    ("Invoice.add_line appends a line.", True),
    ("add_line() appends.", True),
    ("add_lines appends several.", False),  # another identifier
    ("It appends a line to the invoice.", False),
])
def test_names_symbol(text, named):
    assert names_symbol(text, unit()) is named


def test_a_qualified_symbol_is_asked_and_judged_by_its_bare_name():
    assert bare_name("Invoice.add_line") == "add_line" and bare_name("compute") == "compute"


def test_target_in_sources_matches_path_and_source():
    shown = {"sources": [{"path": "shop/network.py", "source": "repo"},
                         {"path": "shop/billing.py", "source": "repo"}]}
    assert target_in_sources(shown, unit())
    assert not target_in_sources(shown, unit(path="shop/other.py"))
    assert not target_in_sources(shown, unit(source="docs"))
    assert not target_in_sources({"sources": []}, unit())


def test_share_rounds_and_is_none_without_a_denominator():
    assert share(1, 3) == 0.3333 and share(0, 0) is None and share(2, 2) == 1.0


# -- choosing what to ask about -------------------------------------------------------------

def test_definitions_from_the_index_are_askable(project):
    units = load_units(project.catalog_path)
    # Module chunks have no symbol; these small classes are one chunk each, methods included.
    names = {bare_name(u.symbol) for u in askable(units)}
    assert names == {"compute_total_with_tax", "Invoice", "retry_with_backoff", "Connection"}


def test_ambiguous_short_and_non_definition_names_are_skipped():
    units = [unit("a.py", "Reader.close"), unit("b.py", "Writer.close"),  # no single right `where`
             unit("c.py", "load", "function"), replace(unit("c.py", "load", "function"), start_line=40),
             unit("d.py", "id", "function"), unit("e.py", "Config", "header")]
    picked = askable(units)
    assert [(u.path, u.symbol, u.start_line) for u in picked] == [("c.py", "load", 12)]


def test_selection_is_seeded_and_limited(project):
    units = load_units(project.catalog_path)
    first = pick_units(units, 3, seed=7)
    assert len(first) == 3 and len({u.symbol for u in first}) == 3
    assert first == pick_units(list(reversed(units)), 3, seed=7)  # input order does not matter
    assert {u.symbol for u in pick_units(units, 99, seed=1)} == {u.symbol for u in askable(units)}
    assert pick_units(units, 0, seed=0) == []


def test_no_units_asks_nothing(project):
    assert answering_section(project, [], model="unused") == {
        "questions": 0, "notes": ["no held-out code with symbols to ask about"]}
    module_only = [u for u in load_units(project.catalog_path) if not u.symbol]
    assert answering_section(project, module_only, model="unused")["questions"] == 0


# -- the real pipeline (4 questions in all) --------------------------------------------------

def test_section_schema_and_ranges(project, tiny_model, monkeypatch):
    units = load_units(project.catalog_path)
    calls, prompts = [], []
    prepare = Conversation.prepare
    # Spy on the real pipeline: each question must be asked without earlier turns.
    monkeypatch.setattr(Conversation, "prepare",
                        lambda self, q: prompts.append(prepare(self, q)) or prompts[-1])
    section = answering_section(project, units, model=str(tiny_model), limit=2, seed=3, max_tokens=16,
                                progress=lambda done, total: calls.append((done, total)))
    assert section["questions"] == 4 and calls == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert [len(p.messages) for p in prompts] == [2, 2, 2, 2]  # system + this question only
    assert section["model"]["name"] == tiny_model.name and section["model"]["reason"] == "--model"
    for key in ("where_correct", "names_symbol", "target_in_sources"):
        assert 0.0 <= section[key] <= 1.0
    citations = section["citations"]
    assert set(citations) == {"total", "verified", "share_verified"}
    assert 0 <= citations["verified"] <= citations["total"]
    if citations["total"]:
        assert 0 <= citations["share_verified"] <= 1
    else:
        assert citations["share_verified"] is None
    assert section["seconds_per_answer"] > 0
    picked = {u.path for u in pick_units(units, 2, seed=3)}
    assert 1 <= len(section["examples"]) <= 4
    for example in section["examples"]:
        assert example["expected_path"] in picked and len(example["answer"]) <= 300
        assert {"question", "target_in_sources"} <= set(example)
        assert ("where_correct" in example) != ("names_symbol" in example)
    assert any("not judged" in note for note in section["notes"])
    # Retrieval finds the asked-about file by its name even with keyword search alone.
    assert section["target_in_sources"] > 0
