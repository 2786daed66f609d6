"""The repo's question history: kept whole or not at all, searchable, corrected, really cleared;
written by `ask`, `chat` and the library on a real index with llama.cpp on the tiny model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
from typer.testing import CliRunner

from codelearn.ask.history import History
from codelearn.cli import app
from codelearn.errors import CodelearnError
from codelearn.index.indexer import run_index
from codelearn.project import open_project
from conftest import make_repo
from test_index import FILES

runner = CliRunner()
QUESTION = "How is the total with tax computed for invoice lines?"
AWS_KEY = "AKIAIOSFODNN7REALKEY"  # shaped like an access key id (not the documented example)


def _answer(question: str, text: str = "It multiplies.", sources: int = 1) -> dict:
    return {"question": question, "answer": text, "model": {"name": "tiny"},
            "sources": [{"path": "app/billing.py", "source": "repo", "start_line": 1, "end_line": 9,
                         "used": True, "rank": 1, "text": "the excerpt is not kept"}] * sources}


def test_turns_round_trip_newest_first_and_searchable(tmp_path):
    kept = History(tmp_path)
    first = kept.record(_answer("Where is the tax rate?"), "ask")
    second = kept.record(_answer("How are invoices stored?", "By InvoiceRepository."), "chat")
    turns = kept.turns()
    assert [t.id for t in turns] == [second, first]
    assert turns[0].origin == "chat" and turns[0].model == "tiny"
    assert turns[1].sources == [{"path": "app/billing.py", "source": "repo", "start_line": 1, "end_line": 9,
                                 "used": True}]
    assert [t.id for t in kept.turns(search="invoicerepository")] == [second]  # answers too, any case
    assert kept.get("LAST").id == second and kept.get("last~1").id == first and kept.get(str(first)).id == first
    with pytest.raises(CodelearnError, match="No turn"):
        kept.get("LAST~5")
    with pytest.raises(CodelearnError, match="names no turn"):
        kept.get("yesterday")


def test_feedback_marks_and_corrects_a_turn(tmp_path):
    kept = History(tmp_path)
    turn = kept.record(_answer("Where is the tax rate?"), "ask")
    assert kept.feedback("LAST", good=True).feedback == "good"
    corrected = kept.feedback(str(turn), answer="TAX_RATE in app/settings.py", source="app/settings.py:3")
    assert (corrected.feedback, corrected.correction, corrected.correct_source) == \
        ("bad", "TAX_RATE in app/settings.py", "app/settings.py:3")
    with pytest.raises(CodelearnError, match="not a location"):
        kept.feedback(str(turn), source="settings.py line 3")


def test_secrets_never_reach_the_history_file(tmp_path):
    kept = History(tmp_path)
    kept.record(_answer(f"Why does login fail with {AWS_KEY}?", f"The key {AWS_KEY} is revoked."), "ask")
    kept.feedback("LAST", answer=f"rotate {AWS_KEY}")
    kept.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("history.db"))
    assert AWS_KEY.encode() not in raw and b"redacted" in raw


def test_clear_really_deletes(tmp_path):
    kept = History(tmp_path)
    kept.record(_answer("Where is the tax rate?"), "ask")
    assert kept.clear() == 1
    assert not any(p.name.startswith("history.db") for p in tmp_path.iterdir())
    assert History(tmp_path).turns() == []


def test_a_turn_killed_while_being_written_is_not_kept_and_the_rest_survives(tmp_path):
    """kill -9 in the middle of writing a turn: the file opens, the earlier turn is whole, the
    half-written one is gone."""
    child = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from codelearn.ask.history import History
        kept = History(Path({str(tmp_path)!r}))
        kept.record({_answer("Where is the tax rate?")!r}, "ask")
        db = kept._open()
        db.execute("BEGIN")
        db.execute("INSERT INTO turns (time, origin, question, answer, model, sources) "
                   "VALUES (0, 'ask', 'half', 'written', 'm', '[]')")
        print("writing", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    turns = History(tmp_path).turns()
    assert [t.question for t in turns] == ["Where is the tax rate?"]


# -- through the commands -----------------------------------------------------------------------

@pytest.fixture
def indexed(tmp_path):
    repo = make_repo(tmp_path / "shop", FILES)
    run_index(open_project(repo))
    return repo


def test_ask_keeps_the_turn_and_feedback_corrects_it(indexed, tiny_model):
    result = runner.invoke(app, ["ask", QUESTION, "--model", str(tiny_model), "--json", "--repo", str(indexed)])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    listed = json.loads(runner.invoke(app, ["history", "--json", "--repo", str(indexed)]).stdout)
    assert [t["id"] for t in listed] == [answer["turn"]]
    assert listed[0]["origin"] == "ask" and listed[0]["question"] == QUESTION
    assert listed[0]["answer"] == answer["answer"] and listed[0]["model"] == tiny_model.name
    assert [s["path"] for s in listed[0]["sources"]] == [s["path"] for s in answer["sources"]]
    marked = runner.invoke(app, ["feedback", "LAST", "--source", "app/billing.py:4", "--json",
                                 "--repo", str(indexed)])
    assert marked.exit_code == 0, marked.output
    assert json.loads(marked.stdout)["feedback"] == "bad"
    table = runner.invoke(app, ["history", "--repo", str(indexed)]).stdout
    assert "bad (corrected)" in table and "ask" in table
    cleared = runner.invoke(app, ["history", "clear", "--yes", "--repo", str(indexed)])
    assert cleared.exit_code == 0 and "1 turns" in cleared.output
    assert json.loads(runner.invoke(app, ["history", "--json", "--repo", str(indexed)]).stdout) == []


def test_no_history_and_the_setting_keep_nothing(indexed, tiny_model):
    ask = ["ask", QUESTION, "--model", str(tiny_model), "--json", "--repo", str(indexed)]
    assert json.loads(runner.invoke(app, [*ask, "--no-history"]).stdout)["turn"] is None
    (indexed / ".codelearn.toml").write_text("history = false\n")
    assert json.loads(runner.invoke(app, ask).stdout)["turn"] is None
    assert not (indexed / ".codelearn" / "history.db").exists()


def test_chat_marks_the_last_answer_with_one_key(indexed, tiny_model):
    result = runner.invoke(app, ["chat", "--model", str(tiny_model), "--repo", str(indexed)],
                           input=f"+\n{QUESTION}\n-\n/exit\n")
    assert result.exit_code == 0, result.output
    assert "Nothing to mark yet." in result.output and "Marked turn 1 bad" in result.output
    (turn,) = History(indexed / ".codelearn").turns()
    assert (turn.origin, turn.feedback) == ("chat", "bad")


def test_feedback_needs_a_verdict(indexed):
    result = runner.invoke(app, ["feedback", "LAST", "--repo", str(indexed)])
    assert result.exit_code == 1 and "--good, --bad" in result.output


def test_an_unwritable_history_costs_a_warning_not_the_answer(indexed, tiny_model, caplog):
    (indexed / ".codelearn" / "history.db").mkdir()  # sqlite cannot open a folder: as a full disk would fail
    result = runner.invoke(app, ["ask", QUESTION, "--model", str(tiny_model), "--json", "--repo", str(indexed)])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["turn"] is None and answer["answer"] is not None
    assert any("not kept in the history" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)
