"""Fact questions about held-out code: read from the code with ast, judged by string match, asked
through the real `ask` pipeline (tiny model, real index)."""

from __future__ import annotations

from codelearn.corpus.units import Unit
from codelearn.evaluate.facts import Fact, build_facts, facts_for, holds

CODE = {
    "fetch": '''def fetch(url, retries=3, *, timeout=2.5):
    """Fetch a page, retrying on timeouts."""
    if not url:
        raise MissingURL("no url")
    return _normalise(url)
''',
    "_normalise": '''def _normalise(url):
    return url.strip()
''',
    "prefix": '''def prefix():
    return "v1/api"
''',
}


def _unit(symbol: str, text: str, kind: str = "function", path: str = "pkg/net.py", line: int = 1) -> Unit:
    return Unit(0, "repo", path, "python", kind, symbol, line, line + text.count("\n"), text, "", False, None)


def test_facts_are_what_the_code_states():
    fetch = _unit("fetch", CODE["fetch"])
    everything = [fetch, _unit("_normalise", CODE["_normalise"], line=20)]
    facts = facts_for(fetch, {"fetch", "_normalise"})
    assert [(f.kind, f.answer) for f in facts] == [("raises", "MissingURL"), ("default", "3")]
    assert facts[0].question == "Which exception does `fetch` raise?"
    kinds = {f.kind: f.answer for f in facts_for(_unit("prefix", CODE["prefix"]), set())}
    assert kinds == {"returns": "v1/api", "file": "net.py"}
    method = _unit("Client.close", "def close(self):\n    pass\n", kind="method")
    assert [(f.kind, f.answer) for f in facts_for(method, set())] == [("class", "Client"), ("file", "net.py")]
    # the first fact of every definition comes before anyone's second
    built = build_facts([fetch, _unit("prefix", CODE["prefix"], line=30)], everything, limit=3)
    assert [f.kind for f in built] == ["raises", "returns", "default"]


def test_a_name_the_repo_defines_twice_is_never_asked_about():
    # one `__call__` is held out, but another class defines one too: "which class defines
    # `__call__`?" would have two right answers, so it is not a question
    held_out = [_unit("wait_exponential.__call__", "def __call__(self, state):\n    raise ValueError()\n",
                      kind="method", path="pkg/wait.py", line=40), _unit("prefix", CODE["prefix"], line=30)]
    elsewhere = _unit("wait_fixed.__call__", "def __call__(self, state):\n    return 1\n", kind="method",
                      path="pkg/wait.py", line=10)
    everything = [*held_out, elsewhere]
    assert [f.key for f in build_facts(held_out, everything, limit=4)] == [held_out[1].key] * 2
    assert len(build_facts(held_out, held_out, limit=4)) == 4  # alone in the repo, it is asked


def test_an_answer_holds_a_fact_only_when_it_states_it():
    raises = Fact("raises", "q", "MissingURL", "k", "p.py")
    assert holds("It raises `MissingURL` when the url is empty.", raises)
    assert not holds("It raises MissingURLError.", raises) and not holds("errors.MissingURLs", raises)
    default = Fact("default", "q", "'utf-8'", "k", "p.py")
    assert holds("The default is utf-8.", default) and not holds("The default is ascii.", default)
    assert holds("`_normalise` does it", Fact("calls", "q", "_normalise", "k", "p.py"))
    assert not holds("normalise does it", Fact("calls", "q", "_normalise", "k", "p.py"))


def test_every_right_answer_counts_when_the_code_states_several():
    helpers = {"_is_stale", "_parse", "_read"}
    code = """def load(path, strict=True):
    if not path:
        raise MissingPath(path)
    if strict and _is_stale(path):
        raise StaleFile(path)
    return _parse(_read(path))
"""
    raises, calls = facts_for(_unit("load", code), helpers)  # two facts per definition, as before
    assert raises.answers == ("MissingPath", "StaleFile") and set(calls.answers) == helpers
    assert holds("It raises `StaleFile` when the file is stale.", raises)
    assert not holds("It raises FileNotFoundError.", raises)
    assert holds("It calls `_read` to get the text.", calls) and not holds("It calls `read`.", calls)


def test_an_answer_that_also_names_a_wrong_one_states_no_fact():
    helpers = {"_is_stale", "_parse", "_read", "_write_back", "flush"}
    code = """def load(path):
    if not path:
        raise typer.Exit(2)
    return _parse(_read(path))
"""
    raises, calls = facts_for(_unit("load", code), helpers)
    assert raises.answers == ("Exit",) and set(calls.answers) == {"_parse", "_read"}
    assert calls.rivals == {"_is_stale", "_write_back", "flush"}  # never itself, never a right one
    # listing every helper in sight is not knowing which one it calls
    assert not holds("`load` calls `_read`, `_parse` and `_write_back`.", calls)
    assert not holds("It calls _read, then flush() to finish.", calls)
    assert holds("`load` calls `_read` and then `_parse` on the text (pkg/_write_back.py:3).", calls)
    assert holds("It calls `_read`; the word flush alone is English, not a name.", calls)
    assert "rivals" not in calls.as_json()
    # an exception may be written qualified; a second, wrong one makes the answer wrong
    assert holds("It raises `typer.Exit` with code 2.", raises)
    assert not holds("It raises `typer.Exit` or `ValueError` when the path is empty.", raises)
    assert not holds("It raises click.exceptions.Abort.", raises)
    # the right exception's base class, named as such, is no second answer
    assert holds("It raises `typer.Exit`, a subclass of `RuntimeError`, when the path is empty.", raises)
    assert holds("`Exit` (which inherits from RuntimeError) is raised.", raises)
    assert not holds("It raises `Exit`; a subclass of it, `UsageError`, is raised too.", raises)


def test_fact_questions_go_through_ask_for_every_model(train_repo, tiny_model):
    from codelearn.corpus.units import load_units
    from codelearn.evaluate.facts import ask_facts
    from codelearn.index.indexer import run_index
    from codelearn.project import open_project

    project = open_project(train_repo)
    run_index(project, wait=True)
    units = load_units(project.catalog_path)
    widgets = [u for u in units if u.path == "lib/widgets.py"]
    facts = build_facts(widgets, units, limit=4)
    assert {(f.kind, f.answer) for f in facts} >= {("file", "widgets.py")}
    model = str(tiny_model)
    result = ask_facts(project, facts, {"one": model, "same": model}, max_tokens=16)
    assert result["questions"] == len(facts) and set(result["right"]) == {"one", "same"}
    assert result["right"]["one"] == result["right"]["same"]  # greedy: the same model answers alike
    item = result["items"][0]
    assert item["question"] == facts[0].question and set(item["answers"]) == {"one", "same"}
