"""`ask` and `chat`: real index, real llama.cpp on a tiny quantized GGUF, the prompt it was sent."""

from __future__ import annotations

import json
import sqlite3

import pytest
from typer.testing import CliRunner

from codelearn.ask.citations import find_citations, used_excerpts
from codelearn.ask.context import Excerpt, merge_hits, pack
from codelearn.ask.engine import ModelLoader
from codelearn.ask.pipeline import AskOptions, Conversation
from codelearn.ask.prompt import SYSTEM, parse_queries
from codelearn.cli import app
from codelearn.index.indexer import run_index
from codelearn.index.search import Hit
from codelearn.project import open_project
from conftest import make_repo
from test_index import BILLING, FILES

runner = CliRunner()
QUESTION = "How is the total with tax computed for invoice lines?"


@pytest.fixture
def repo(tmp_path):
    return make_repo(tmp_path / "shop", FILES)


@pytest.fixture
def indexed(repo):
    run_index(open_project(repo))
    return repo


def conversation(repo, model_path, **settings) -> tuple[Conversation, ModelLoader]:
    project = open_project(repo, {"model": str(model_path), "temperature": 0.0, **settings})
    options = AskOptions.from_settings(project.settings, answer_tokens=24)
    loader = ModelLoader(project)
    return Conversation(project, options, loader), loader


def ask_json(*args: str) -> dict:
    result = runner.invoke(app, ["ask", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


# -- the prompt actually sent ----------------------------------------------------------

def test_prompt_holds_the_retrieved_code_within_the_budget(indexed, tiny_model):
    chat, loader = conversation(indexed, tiny_model, max_context=400)
    try:
        prepared = chat.prepare(QUESTION)
        model = chat.model
        user = prepared.messages[-1]["content"]
        assert prepared.messages[0] == {"role": "system", "content": SYSTEM}
        assert "def compute_total_with_tax(lines):" in user and user.endswith(f"Question: {QUESTION}")
        first = prepared.packed.excerpts[0]
        assert first.path == "app/billing.py" and f"### {first.label}" in user
        # The budget is counted with the model's own tokenizer, and respected.
        shown = sum(model.count_tokens(e.render()) for e in prepared.packed.excerpts)
        assert shown <= prepared.packed.tokens <= 400
        ids = model.llm.tokenize(model.prompt_text(prepared.messages).encode(), add_bos=False, special=True)
        assert prepared.prompt_tokens == len(ids)
        answer = chat.finish(prepared, "".join(chat.stream(prepared)))
        assert answer.stats["prompt_tokens"] == len(ids) and 0 < answer.stats["generated_tokens"] <= 24
    finally:
        chat.close()
        loader.close()


def test_a_small_budget_cuts_an_excerpt_at_a_line_and_says_so(indexed, tiny_model):
    chat, loader = conversation(indexed, tiny_model, max_context=90)
    try:
        packed = chat.prepare(QUESTION).packed
        assert packed.tokens <= 90
        assert packed.excerpts and packed.excerpts[-1].truncated
        cut = packed.excerpts[-1]
        assert cut.end_line - cut.start_line + 1 == len(cut.lines)
        source = (indexed / cut.path).read_text().splitlines()
        assert cut.lines == source[cut.start_line - 1:cut.end_line]  # real lines, real numbers
    finally:
        chat.close()
        loader.close()


def test_show_context_json_is_the_chat_template_rendering(indexed, tiny_model):
    data = ask_json(QUESTION, "--model", str(tiny_model), "--show-context", "--repo", str(indexed))
    prompt = data["prompt"]
    assert prompt.startswith(f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n")
    assert prompt.endswith("<|im_start|>assistant\n")
    for source in data["sources"]:
        assert f"### {source['path']}:{source['start_line']}-{source['end_line']}" in prompt


def test_ask_json_schema(indexed, tiny_model):
    data = ask_json(QUESTION, "--model", str(tiny_model), "-k", "3", "--max-context", "300",
                    "--repo", str(indexed))
    assert set(data) == {"question", "answer", "model", "queries", "sources", "citations",
                         "context", "timings", "deep", "turn"}
    assert data["deep"] is None  # deep mode is asked for
    assert isinstance(data["turn"], int)  # its id in the repo's history
    assert data["question"] == QUESTION and isinstance(data["answer"], str)
    assert data["model"]["name"] == tiny_model.name and data["model"]["reason"] == "--model"
    assert data["model"]["backend"] == "llama.cpp"
    assert data["sources"][0]["path"] == "app/billing.py" and data["sources"][0]["rank"] == 1
    for source in data["sources"]:
        assert {"path", "start_line", "end_line", "symbols", "used", "truncated"} <= set(source)
    assert data["context"]["tokens"] <= data["context"]["budget"] <= 300
    for key in ("retrieve_s", "pack_s", "ttft_s", "prompt_tokens", "generated_tokens", "gen_tok_s"):
        assert key in data["timings"]
    assert data["queries"] == [QUESTION]


def test_ask_without_an_index_builds_it_first(repo, tiny_model):
    result = runner.invoke(app, ["ask", QUESTION, "--model", str(tiny_model), "--no-stream",
                                 "--repo", str(repo)])
    assert result.exit_code == 0, result.output
    assert "building it first" in result.output
    assert "app/billing.py:" in result.output and "answered by" in result.output


def test_a_model_without_a_template_gets_chatml_from_its_tokens(indexed, tiny_model_no_template):
    data = ask_json(QUESTION, "--model", str(tiny_model_no_template), "--show-context",
                    "--repo", str(indexed))
    assert data["prompt"].startswith("<|im_start|>system\n")


def test_streamed_text_reaches_stdout_as_it_comes(indexed, tiny_model):
    result = runner.invoke(app, ["ask", QUESTION, "--model", str(tiny_model), "--repo", str(indexed)])
    assert result.exit_code == 0, result.output
    assert "Sources" in result.output and "app/billing.py:" in result.output


def test_chat_keeps_turns_and_reset_forgets(indexed, tiny_model):
    chat, loader = conversation(indexed, tiny_model)
    try:
        first = chat.ask(QUESTION)
        follow = chat.prepare("and the HTTP connection?")
        assert follow.messages[1] == {"role": "user", "content": QUESTION}
        assert follow.messages[2] == {"role": "assistant", "content": first.text}
        assert len(follow.queries) == 2 and QUESTION in follow.queries[1]
        chat.reset()
        assert len(chat.prepare("HTTP connection").messages) == 2
    finally:
        chat.close()
        loader.close()


def test_chat_command_answers_each_turn(indexed, tiny_model):
    result = runner.invoke(app, ["chat", "--model", str(tiny_model), "--repo", str(indexed)],
                           input=f"{QUESTION}\n/reset\nretry with backoff\n/exit\n")
    assert result.exit_code == 0, result.output
    assert result.output.count("Sources") == 2 and "Forgot the conversation." in result.output
    assert result.output.startswith("Ask about the code.")


def test_multi_query_adds_model_written_queries(indexed, tiny_model):
    chat, loader = conversation(indexed, tiny_model, multi_query="on")
    try:
        prepared = chat.prepare(QUESTION)
        assert prepared.queries[0] == QUESTION
        assert prepared.packed.excerpts[0].path == "app/billing.py"
    finally:
        chat.close()
        loader.close()


def test_library_api_answers_without_a_terminal(indexed, tiny_model):
    import codelearn

    answer = codelearn.answer(codelearn.open_project(indexed), QUESTION, model=str(tiny_model),
                           answer_tokens=8, max_context=300)
    data = answer.as_json()
    assert data["sources"][0]["path"] == "app/billing.py" and data["context"]["tokens"] <= 300
    assert data["model"]["reason"] == "--model"


# -- one-line errors ---------------------------------------------------------------------

def one_line_error(result, *needles: str) -> None:
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    for needle in needles:
        assert needle in lines[0]


def test_corrupt_model_is_one_line(indexed, tmp_path, tiny_model):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(tiny_model.read_bytes()[:5000])
    result = runner.invoke(app, ["ask", QUESTION, "--model", str(bad), "--repo", str(indexed)])
    one_line_error(result, "not a usable GGUF", "fetch it again")


def test_context_too_small_is_one_line(indexed, tiny_model, monkeypatch):
    monkeypatch.setenv("CODELEARN_CONTEXT_SIZE", "256")
    monkeypatch.setenv("CODELEARN_ANSWER_TOKENS", "200")
    result = runner.invoke(app, ["ask", QUESTION, "--model", str(tiny_model), "--repo", str(indexed)])
    one_line_error(result, "window (256 tokens)", "context_size")


def test_index_schema_mismatch_is_one_line(indexed, tiny_model):
    with sqlite3.connect(open_project(indexed).catalog_path) as db:
        db.execute("UPDATE meta SET value='999' WHERE key='schema_version'")
    result = runner.invoke(app, ["ask", QUESTION, "--model", str(tiny_model), "--repo", str(indexed)])
    one_line_error(result, "schema 999", "codelearn index --rebuild")


def test_missing_model_file_is_one_line(indexed, tmp_path):
    result = runner.invoke(app, ["ask", QUESTION, "--model", str(tmp_path / "nope.gguf"),
                                 "--repo", str(indexed)])
    one_line_error(result, "does not exist")


# -- loading safely ----------------------------------------------------------------------

def test_amx_builds_load_without_extra_buffer_types(tiny_model, monkeypatch):
    """On a build with AMX, the weights must not go to the AMX/repack buffers (FACTS: segfault)."""
    import llama_cpp

    from codelearn.llm import llama_backend
    from codelearn.llm.base import SamplingOptions

    seen = []
    original = llama_cpp.llama_cpp.llama_model_default_params

    def spy():
        value = original()
        seen.append(value)
        return value

    monkeypatch.setattr(llama_cpp.llama_cpp, "llama_model_default_params", spy)
    monkeypatch.setattr(llama_backend, "build_has_amx", lambda _: True)
    model = llama_backend.LlamaModel(tiny_model, context_size=256, threads=1)
    try:
        assert seen and seen[-1].use_extra_bufts is False
        assert llama_cpp.llama_cpp.llama_model_default_params is spy  # restored after the load
        text = "".join(model.stream([{"role": "user", "content": "hi"}], SamplingOptions(8, 0.0, 1.0)))
        assert model.last_stats.generated_tokens > 0 and isinstance(text, str)
    finally:
        model.close()


def test_warming_the_fixed_prompt_start_changes_nothing_but_the_work(indexed, tiny_model):
    """The loader evaluates system rules + template ahead; answers must be identical."""
    from codelearn.ask.prompt import prompt_head
    from codelearn.llm.base import SamplingOptions
    from codelearn.llm.llama_backend import LlamaModel

    chat, loader = conversation(indexed, tiny_model)
    try:
        messages = chat.prepare(QUESTION).messages
    finally:
        chat.close()
        loader.close()
    options = SamplingOptions(16, 0.0, 1.0)
    cold = LlamaModel(tiny_model, context_size=2048, threads=1)
    warm = LlamaModel(tiny_model, context_size=2048, threads=1)
    try:
        warmed = warm.warm(*prompt_head())
        assert warmed > 50  # the system rules at least
        assert "".join(warm.stream(messages, options)) == "".join(cold.stream(messages, options))
        assert warm.last_stats.prompt_tokens == cold.last_stats.prompt_tokens
        assert cold.last_stats.cached_prompt_tokens == 0
        assert warm.last_stats.cached_prompt_tokens == warmed
    finally:
        warm.close()
        cold.close()


# -- pieces ------------------------------------------------------------------------------

def hit(path, start, end, text=None, symbol="", score=1.0, chunk_id=0):
    text = text if text is not None else "\n".join(f"line {n}" for n in range(start, end + 1))
    return Hit(path, "repo", start, end, symbol, "function", "python", score, text, "", 1, None, chunk_id)


def test_merge_joins_touching_and_overlapping_hits_and_keeps_the_best_score():
    merged = merge_hits([hit("a.py", 1, 5, symbol="A", score=0.5, chunk_id=1),
                         hit("a.py", 4, 9, symbol="B", score=0.9, chunk_id=2),
                         hit("a.py", 10, 12, symbol="C", score=0.1, chunk_id=3),
                         hit("a.py", 30, 31, score=0.95, chunk_id=4),
                         hit("b.py", 1, 2, score=0.2, chunk_id=5)])
    assert [(e.path, e.start_line, e.end_line) for e in merged] == [
        ("a.py", 30, 31), ("a.py", 1, 12), ("b.py", 1, 2)]
    joined = merged[1]
    assert joined.lines == [f"line {n}" for n in range(1, 13)] and joined.symbols == ["A", "B", "C"]
    assert joined.score == 0.9


def test_pack_counts_renderings_and_never_exceeds_the_budget():
    excerpts = merge_hits([hit("a.py", 1, 40, score=0.9), hit("b.py", 1, 3, score=0.5)])
    count = len  # one "token" per character keeps the arithmetic visible
    packed = pack(excerpts, 200, count)
    assert packed.tokens <= 200
    assert [e.path for e in packed.excerpts] == ["a.py", "b.py"] or packed.excerpts[0].truncated


def excerpts():
    return [Excerpt("Lib/textwrap.py", "repo", "python", 419, 467, ["def dedent(text):"], ["dedent"]),
            Excerpt("Lib/os.py", "repo", "python", 200, 230, ["def makedirs(name):"], ["makedirs"])]


def test_citations_map_to_shown_ranges_and_flag_the_rest():
    answer = ("`dedent` strips margins (textwrap.py:420). See Lib/os.py:205-210 and "
              "Lib/os.py:500, also shutil.py:12.")
    found = {c.text: c for c in find_citations(answer, excerpts())}
    assert found["textwrap.py:420"].verified and found["textwrap.py:420"].path == "Lib/textwrap.py"
    assert found["Lib/os.py:205-210"].verified and found["Lib/os.py:205-210"].end_line == 210
    assert not found["Lib/os.py:500"].verified  # a real file, but a line the model never saw
    assert not found["shutil.py:12"].verified  # a file the model never saw
    assert used_excerpts(answer, excerpts(), list(found.values())) == {0, 1}


def test_no_citation_means_nothing_is_claimed():
    assert find_citations("It removes the common indentation.", excerpts()) == []
    assert used_excerpts("It calls makedirs for parents.", excerpts(), []) == {1}


def test_a_model_with_no_known_chat_format_is_refused_with_the_setting_to_use():
    from codelearn.errors import CodelearnError
    from codelearn.llm.templates import choose_format

    with pytest.raises(CodelearnError) as caught:
        choose_format(None, "", (), "", "")
    assert "chat_format" in caught.value.fix
    assert choose_format(None, "", (), "", "", override="llama3").name == "llama3"


def test_parse_queries_strips_bullets_and_duplicates():
    assert parse_queries("1. dedent margin\n- `textwrap dedent`\n\n1. dedent margin\nx") == [
        "dedent margin", "textwrap dedent"]


def test_options_reject_an_unknown_multi_query_mode(repo):
    from codelearn.errors import CodelearnError

    with pytest.raises(CodelearnError, match="multi_query"):
        AskOptions.from_settings(open_project(repo).settings, multi_query="maybe")


def test_billing_fixture_is_what_the_tests_assume():
    assert "def compute_total_with_tax(lines):" in BILLING
