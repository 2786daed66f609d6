"""Deep mode: more code than the window, read in batches, notes with checked locations, then the answer.

Real index, real llama.cpp on the tiny quantized GGUF; every prompt the model is sent is recorded.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from codelearn.ask.context import Excerpt
from codelearn.ask.deep import NOTE_TOKENS, batches, take_notes
from codelearn.ask.engine import ModelLoader
from codelearn.ask.pipeline import AskOptions, Conversation
from codelearn.ask.prompt import DEEP_ANSWER, NOTE_TAKER, NOTES_LEAD, SYSTEM
from codelearn.cli import app
from codelearn.errors import CodelearnError
from codelearn.index.indexer import run_index
from codelearn.project import open_project
from conftest import make_repo

runner = CliRunner()
QUESTION = "How is an invoice total computed, taxed, discounted and stored?"
WINDOW = 1024


def ledger_module(n: int) -> str:
    return f'''"""Ledger step {n}: one part of how an invoice total is computed and stored."""

INVOICE_STEP_{n} = {n}


def invoice_total_step_{n}(invoice, tax_rate=0.{n}):
    """Apply step {n} to the invoice total: tax, discount and rounding of the lines."""
    total = 0
    for line in invoice.lines:
        total += line.price * line.quantity * (1 + tax_rate)
    total = round(total - invoice.discount * {n}, 2)
    invoice.store(total, step={n})
    return total


class InvoiceStore{n}:
    """Stores invoice totals computed at step {n}."""

    def save_invoice_total(self, invoice, total):
        self.rows.append((invoice.number, total, {n}))
        return len(self.rows)
'''


@pytest.fixture
def ledger(tmp_path):
    repo = make_repo(tmp_path / "ledger", {f"ledger/step{n}.py": ledger_module(n) for n in range(1, 13)})
    run_index(open_project(repo))
    return repo


def open_deep(repo, model_path, **options):
    project = open_project(repo, {"model": str(model_path), "temperature": 0.0, "context_size": WINDOW})
    loader = ModelLoader(project)
    values = dict(answer_tokens=16, deep=True, deep_tokens=3000, history=False) | options
    return Conversation(project, AskOptions.from_settings(project.settings, **values), loader), loader


def record_prompts(conversation, replies=None) -> list[list[dict]]:
    """Every message list the model is sent from now on; `replies(messages)` may script a reply."""
    model = conversation.model
    real = model.stream
    sent: list[list[dict]] = []

    def stream(messages, options):
        sent.append(messages)
        scripted = replies(messages) if replies else None
        if scripted is None:
            yield from real(messages, options)
        else:
            yield scripted

    model.stream = stream
    return sent


HEADER = "### "


def shown_labels(message: str) -> list[str]:
    return [line[len(HEADER):].split(" ")[0] for line in message.splitlines() if line.startswith(HEADER)]


def test_deep_reads_more_than_the_window_in_batches_then_answers(ledger, tiny_model):
    chat, loader = open_deep(ledger, tiny_model)
    try:
        sent = record_prompts(chat)
        answer = chat.ask(QUESTION)
        tokens = [chat.model.prompt_tokens(messages) for messages in sent]
    finally:
        chat.close()
        loader.close()
    report = answer.prepared.deep
    # The prompt sequence: one note-taking prompt per batch, then the answer's prompt.
    assert len(report.batches) >= 2 and len(sent) == len(report.batches) + 1
    for messages, size in zip(sent[:-1], tokens):
        assert messages[0] == {"role": "system", "content": NOTE_TAKER}
        assert messages[1]["content"].endswith(f"Question: {QUESTION}\n\nNotes:")
        assert size <= WINDOW - NOTE_TOKENS  # room left for the notes
    final = sent[-1]
    assert final[0] == {"role": "system", "content": SYSTEM}
    assert f"Question: {QUESTION}" in final[-1]["content"]
    assert answer.prepared.prompt_tokens <= WINDOW - 16
    # Batches are disjoint, best first, and together hold more code than the window.
    read = [e.label for e in answer.prepared.packed.excerpts]
    per_batch = [shown_labels(m[1]["content"]) for m in sent[:-1]]
    assert [label for batch in per_batch for label in batch] == read
    assert len(set(read)) == len(read) and len({e.path for e in answer.prepared.packed.excerpts}) >= 8
    assert report.read_tokens > WINDOW
    assert [b.excerpts for b in report.batches] == [len(batch) for batch in per_batch]
    # Its cost is reported with the answer.
    data = answer.as_json()["deep"]
    assert data["read_tokens"] == report.read_tokens and data["seconds"] > 0
    assert data["prompt_tokens"] == sum(tokens[:-1])
    assert 0 < data["note_tokens"] <= NOTE_TOKENS * len(report.batches)


def test_notes_keep_their_sources_into_the_answer(ledger, tiny_model):
    """What the model notes in each batch reaches the answer's prompt with its location, and the
    answer may cite code read in an earlier batch even when it is not in the final prompt."""
    chat, loader = open_deep(ledger, tiny_model, max_context=400)

    def reply(messages):
        if messages[0]["content"] != NOTE_TAKER:
            return None  # the answer itself comes from the real model
        first = shown_labels(messages[1]["content"])[0]
        path, lines = first.split(":")
        start = int(lines.split("-")[0])
        return (f"- the total is rounded to 2 places ({path}:{start})\n"
                "- something the excerpts never said\nNONE")

    try:
        sent = record_prompts(chat, reply)
        prepared = chat.prepare(QUESTION)
        firsts = [shown_labels(m[1]["content"])[0] for m in sent]
        notes = prepared.deep.notes
        assert [n.path for n in notes] == [label.split(":")[0] for label in firsts]
        assert all(b.notes == 1 and b.dropped == 1 for b in prepared.deep.batches)
        answer_prompt = prepared.messages[-1]["content"]
        assert answer_prompt.startswith(NOTES_LEAD) and answer_prompt.endswith(DEEP_ANSWER)
        assert prepared.deep.notes_shown == len(notes)
        for note in notes:
            assert f"- the total is rounded to 2 places ({note.path}:{note.start_line})" in answer_prompt
        # The last batch's first excerpt is not in the answer's prompt, yet citing it is checked true.
        last = notes[-1]
        assert f"### {firsts[-1]}" not in answer_prompt
        answer = chat.finish(prepared, f"It is rounded ({last.path}:{last.start_line}).")
        assert answer.citations[0].verified and answer.citations[0].path == last.path
    finally:
        chat.close()
        loader.close()


def test_ask_deep_json_and_the_model_line_report_the_cost(ledger, tiny_model):
    args = ["ask", QUESTION, "--model", str(tiny_model), "--repo", str(ledger), "--deep", "--no-history"]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["deep"]["batches"] and data["deep"]["read_tokens"] > 0
    plain = runner.invoke(app, ["ask", QUESTION, "--model", str(tiny_model), "--repo", str(ledger), "--json",
                                "--no-history"])
    assert json.loads(plain.stdout)["deep"] is None
    shown = runner.invoke(app, [*args, "--no-stream"])
    assert shown.exit_code == 0, shown.output
    assert "deep: read" in shown.output and "tokens of code in" in shown.output


# -- the pieces ----------------------------------------------------------------------------

def excerpt(path: str, start: int, n: int, symbol: str = "", body: str = "x = 1") -> Excerpt:
    return Excerpt(path, "repo", "python", start, start + n - 1, [body] * n, [symbol] if symbol else [])


def test_batches_are_best_first_within_the_budget_and_the_total():
    def count(text):
        return len(text.split())

    excerpts = [excerpt(f"f{i}.py", 1, 10) for i in range(6)]
    each = count(excerpts[0].render()) + 2
    groups, sizes, unread = batches(excerpts, each * 2, each * 5, count)
    assert [[e.path for e in g] for g in groups] == [["f0.py", "f1.py"], ["f2.py", "f3.py"], ["f4.py"]]
    assert sizes == [each * 2, each * 2, each] and unread == 1
    huge = excerpt("big.py", 1, 200)
    groups, sizes, unread = batches([huge], each * 2, 10_000, count)
    assert groups[0][0].truncated and sizes[0] <= each * 2 and unread == 0


def test_take_notes_places_every_note_in_its_batch_or_drops_it():
    batch = [excerpt("pkg/tax.py", 10, 20, "apply_tax",
                     body="rate = config.vat_rate  # the VAT rate read from configuration"),
             excerpt("pkg/store.py", 1, 30, "Store.save")]
    reply = ("- apply_tax multiplies by the rate (tax.py:12)\n"
             "- save is where rows go (elsewhere/other.py:3)\n"
             "Store.save keeps the rows. The VAT rate comes from configuration read by config.\n"
             "NONE\n- unrelated words entirely here")
    notes, dropped = take_notes(reply, batch)
    assert [(n.path, n.start_line, n.end_line) for n in notes] == [
        ("pkg/tax.py", 12, 12),  # its own citation, a path suffix resolved
        ("pkg/store.py", 1, 30),  # a wrong citation, but it names Store.save's method
        ("pkg/store.py", 1, 30),  # a sentence naming a symbol
        ("pkg/tax.py", 10, 29),  # placed by the words it shares with the excerpt
    ]
    assert notes[0].text == "apply_tax multiplies by the rate" and dropped == 1


def test_too_few_deep_tokens_is_refused_with_the_fix(ledger):
    project = open_project(ledger, {"deep_tokens": 50})
    with pytest.raises(CodelearnError) as caught:
        AskOptions.from_settings(project.settings, deep=True)
    assert "deep_tokens" in caught.value.fix


def test_notes_are_listed_under_the_answer_with_their_places(capsys):
    from codelearn.render_ask import render_notes

    render_notes({"batches": [{}, {}], "notes": [
        {"text": "keeps [red] brackets as written", "path": "pkg/a.py", "start_line": 3, "end_line": 9},
        {"text": "one line", "path": "pkg/b.py", "start_line": 4, "end_line": 4}]})
    shown = capsys.readouterr().out
    assert "Notes (deep: read 2 batches)" in shown
    assert "keeps [red] brackets as written  pkg/a.py:3-9" in shown and "one line  pkg/b.py:4\n" in shown
