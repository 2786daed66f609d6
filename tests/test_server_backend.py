"""`model_url`: the server backend against a real OpenAI-compatible server running a real model.

llama.cpp's `llama-server` is not installable from PyPI, so the server is
llama-cpp-python's (`python -m llama_cpp.server`, deps in the `test` extra),
serving the tiny quantized GGUF. It differs from llama-server where the client
has to cope: no /props, /tokenize or /apply-template, no usage chunk, and an
overflowing prompt ends the stream empty.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from typer.testing import CliRunner

from codelearn.cli import app
from codelearn.errors import CodelearnError
from codelearn.index.indexer import run_index
from codelearn.llm.base import SamplingOptions
from codelearn.llm.server_backend import FALLBACK_N_CTX, ServerModel
from codelearn.project import open_project
from conftest import make_repo
from test_index import BILLING, FILES

for _module in ("fastapi", "uvicorn", "sse_starlette", "starlette_context", "pydantic_settings"):
    pytest.importorskip(_module, reason="llama-cpp-python's server needs codelearn[test]")

runner = CliRunner()
QUESTION = "How is the total with tax computed for invoice lines?"
SERVER_N_CTX = 2048
START_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server_url(tiny_model, tmp_path_factory):
    """llama-cpp-python's server on the tiny model, on a free local port, for this module."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("llama-server") / "server.log"
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(tiny_model),
               "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(SERVER_N_CTX),
               "--n_threads", "1"]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"llama_cpp.server exited ({process.returncode}):\n"
                            + log_path.read_text(errors="replace")[-3000:])
            try:
                with urllib.request.urlopen(url + "/v1/models", timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama_cpp.server did not answer at {url} in {START_TIMEOUT_S:.0f} s:\n"
                            + log_path.read_text(errors="replace")[-3000:])
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_streams_an_answer_and_fills_the_stats(server_url, tiny_model):
    model = ServerModel(server_url)
    assert model.backend == "llama.cpp server"
    assert model.name == str(tiny_model)  # the id /v1/models lists
    messages = [{"role": "system", "content": "Answer briefly."},
                {"role": "user", "content": "What does compute_total_with_tax return?"}]
    pieces = list(model.stream(messages, SamplingOptions(max_tokens=8, temperature=0.0)))
    assert pieces and all(isinstance(p, str) and p for p in pieces)
    stats = model.last_stats
    # No usage chunk from this server: one streamed chunk is one token, and the
    # prompt is counted with the server's tokenizer.
    assert stats.generated_tokens == len(pieces) and 1 <= len(pieces) <= 8
    assert stats.prompt_tokens == model.prompt_tokens(messages) > 10
    assert 0 < stats.ttft_s <= stats.total_s
    if stats.generated_tokens > 1:
        assert stats.gen_tok_s > 0
    # Same request, same (greedy) text.
    again = list(model.stream(messages, SamplingOptions(max_tokens=8, temperature=0.0)))
    assert "".join(again) == "".join(pieces)


def test_counts_tokens_with_the_servers_tokenizer(server_url, tiny_model):
    import llama_cpp

    model = ServerModel(server_url)
    vocab = llama_cpp.Llama(model_path=str(tiny_model), vocab_only=True, verbose=False)
    try:
        for text in (BILLING, FILES["web/ui.js"], "x = 1\n"):
            local = len(vocab.tokenize(text.encode(), add_bos=False))
            assert model.count_tokens(text) == local
        assert model.count_tokens("") == 0
    finally:
        vocab.close()
    # llama-server's /tokenize is missing here; llama-cpp-python's endpoint answered.
    assert model._tokenizer == ("/extras/tokenize", "input")
    # Not the chars/3.5 estimate (which would be far off for this tokenizer).
    assert model.count_tokens(BILLING) != int(len(BILLING) / 3.5) + 1


def test_window_is_not_assumed_larger_than_the_servers(server_url):
    # This server reports its n_ctx nowhere (no /props, bare /v1/models): the
    # client takes the conservative fallback, or the `context_size` setting.
    assert FALLBACK_N_CTX == 2048
    assert ServerModel(server_url).n_ctx == FALLBACK_N_CTX <= SERVER_N_CTX
    assert ServerModel(server_url, context_size=1024).n_ctx == 1024
    # A prompt past the server's window: this server ends the stream empty; the
    # client says so instead of returning an empty answer.
    model = ServerModel(server_url)
    messages = [{"role": "user", "content": BILLING * 40}]
    assert model.prompt_tokens(messages) > SERVER_N_CTX
    with pytest.raises(CodelearnError, match="context window") as caught:
        list(model.stream(messages, SamplingOptions(max_tokens=8)))
    assert server_url in str(caught.value) and "context_size" in str(caught.value)


def test_ask_through_the_cli_answers_from_the_server(server_url, tmp_path, monkeypatch):
    repo = make_repo(tmp_path / "shop", FILES)
    run_index(open_project(repo))
    monkeypatch.setenv("CODELEARN_MODEL_URL", server_url)
    # A short answer: llama-cpp-python's server re-detokenizes the whole answer
    # for each streamed token, slow on the gibberish (split UTF-8) of this model.
    monkeypatch.setenv("CODELEARN_ANSWER_TOKENS", "32")
    result = runner.invoke(app, ["ask", QUESTION, "--json", "--repo", str(repo)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["model"]["backend"] == "llama.cpp server"
    assert data["model"]["reason"] == "model_url"
    assert isinstance(data["answer"], str) and data["answer"]
    assert any(source["path"] == "app/billing.py" for source in data["sources"]), data["sources"]


def test_unreachable_server_fails_fast_with_one_line(tmp_path, monkeypatch):
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    started = time.perf_counter()
    with pytest.raises(CodelearnError) as caught:
        ServerModel(url)
    assert time.perf_counter() - started < 3
    assert url in caught.value.message and "model_url" in caught.value.fix

    repo = make_repo(tmp_path / "shop", FILES)
    run_index(open_project(repo))
    monkeypatch.setenv("CODELEARN_MODEL_URL", url)
    started = time.perf_counter()
    result = runner.invoke(app, ["ask", QUESTION, "--repo", str(repo)])
    assert time.perf_counter() - started < 10
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert url in lines[0] and "model_url" in lines[0]


def test_a_url_without_scheme_is_a_clear_error():
    with pytest.raises(CodelearnError, match="not an http") as caught:
        ServerModel("localhost:8080")
    assert "http://" in caught.value.fix
