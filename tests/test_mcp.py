"""`codelearn mcp`: real MCP client sessions (stdio, streamable HTTP) against a real index."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from anyio.from_thread import start_blocking_portal
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from typer.testing import CliRunner

from codelearn.cli import app
from codelearn.errors import CodelearnError
from codelearn.index.indexer import run_index
from codelearn.mcp.server import http_address
from codelearn.mcp.tools import MAX_READ_LINES, CodeTools
from codelearn.project import open_project
from conftest import GIT_ENV, git, make_repo, write_files
from test_index import FILES

AWS_KEY = "AKIAZ7QK3NB4XW5TY2PV"
TOOLS = {"search_code", "find_symbol", "read_code", "ask", "index_status", "reindex", "feedback"}
REPO_FILES = {
    **FILES,
    "app/settings.py": f'AWS_ACCESS_KEY_ID = "{AWS_KEY}"\nREGION = "eu-west-1"\n',
    ".env": f"AWS_ACCESS_KEY_ID={AWS_KEY}\n",
    "app/long.py": "".join(f"VALUE_{n} = {n}\n" for n in range(1, 521)),
    "app/big.py": "class BigThing:\n    \"\"\"Too big to stay one chunk.\"\"\"\n" + "".join(
        f"\n    def step_{n}(self, value):\n        return value + {n}\n" for n in range(30)),
    ".codelearn.toml": '[codelearn]\nlibraries = ["acme=../sdk"]\n',
}
# Small settings keep `ask` on the tiny model to about a second.
SETTINGS = {"EMBEDDER": "none", "ANSWER_TOKENS": "24", "MAX_CONTEXT": "300", "ASK_K": "3",
            "MULTI_QUERY": "off", "THREADS": "1"}


class Session:
    """A real MCP client session, driven from synchronous tests through an anyio portal."""

    def __init__(self, portal, client: Client) -> None:
        self.portal = portal
        self.client = client

    def call(self, tool: str, **arguments):
        return self.portal.call(self.client.call_tool, tool, arguments)

    def json(self, tool: str, **arguments):
        result = self.call(tool, **arguments)
        assert not result.is_error, result.content[0].text
        return json.loads(result.content[0].text)

    def error(self, tool: str, **arguments) -> str:
        result = self.call(tool, **arguments)
        assert result.is_error, result.content
        (block,) = result.content
        assert "Traceback" not in block.text and "Error executing tool" not in block.text
        return block.text

    def tools(self):
        return self.portal.call(self.client.list_tools).tools


@contextmanager
def session(transport) -> Iterator[Session]:
    with start_blocking_portal() as portal, portal.wrap_async_context_manager(Client(transport)) as client:
        yield Session(portal, client)


def server_env(home: Path, **settings: str) -> dict[str, str]:
    """The environment of a server process: isolated user dirs and only these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODELEARN_")}
    env.update(GIT_ENV, HOME=str(home), CODELEARN_HOME=str(home),
               CODELEARN_CONFIG=str(home / "config.toml"))
    env.update({f"CODELEARN_{k}": v for k, v in settings.items()})
    return env


def build_repo(base: Path) -> tuple[Path, Path]:
    """The repo (with a library beside it), links out of it, and a file outside it."""
    outside = base / "outside"
    write_files(outside, {"secret.py": f'TOKEN = "{AWS_KEY}"\nPLAIN = "outside text"\n'})
    write_files(base / "sdk", {"acme.py": "def acme_client():\n    return 'acme'\n"})
    repo = make_repo(base / "repo", REPO_FILES)
    os.symlink(outside / "secret.py", repo / "app" / "linked.py")
    os.symlink(outside, repo / "vendor")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "links")
    return repo, outside


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_model):
    """One indexed repo and one stdio server on it for the module (spawning costs a second)."""
    base = tmp_path_factory.mktemp("mcp")
    env = server_env(base / "home", MODEL=str(tiny_model), **SETTINGS)
    (base / "home").mkdir()
    with pytest.MonkeyPatch.context() as patch:  # the autouse fixture is not in force here
        for key in [k for k in os.environ if k.startswith("CODELEARN_")]:
            patch.delenv(key)
        for key, value in env.items():
            patch.setenv(key, value)
        repo, outside = build_repo(base)
        run_index(open_project(repo))
    log = (base / "server.log").open("w")
    params = StdioServerParameters(command=sys.executable, args=["-m", "codelearn", "mcp", "-C", str(repo)],
                                   env=env)
    with session(stdio_client(params, errlog=log)) as live:
        yield live, repo, outside
    log.close()


def test_tools_are_listed_with_schemas_an_agent_can_act_on(served):
    live, _, _ = served
    tools = {t.name: t for t in live.tools()}
    assert set(tools) == TOOLS
    for tool in tools.values():
        assert len(tool.description) > 80 and tool.input_schema["type"] == "object"
    search = tools["search_code"].input_schema
    assert search["required"] == ["query"]
    assert search["properties"]["mode"]["enum"] == ["hybrid", "keyword", "vector"]
    assert search["properties"]["k"]["default"] == 10 and search["properties"]["k"]["minimum"] == 1
    read = tools["read_code"].input_schema
    assert read["required"] == ["path"] and read["properties"]["source"]["default"] == "repo"
    assert {"start_line", "end_line"} <= set(read["properties"])
    assert tools["find_symbol"].input_schema["required"] == ["name"]
    assert tools["ask"].input_schema["required"] == ["question"]
    assert tools["ask"].input_schema["properties"]["deep"]["default"] is False
    assert tools["search_code"].annotations.read_only_hint
    assert not tools["reindex"].annotations.read_only_hint


def test_search_code_is_codelearn_search_json(served, monkeypatch):
    live, repo, _ = served
    hits = live.json("search_code", query="compute_total_with_tax", k=3)
    assert hits[0]["path"] == "app/billing.py" and hits[0]["symbol"] == "compute_total_with_tax"
    monkeypatch.setenv("CODELEARN_EMBEDDER", "none")
    printed = CliRunner().invoke(app, ["search", "compute_total_with_tax", "--json", "-k", "3",
                                       "--repo", str(repo)])
    assert hits == json.loads(printed.stdout)
    assert live.json("search_code", query="HTTPConnection", mode="keyword")[0]["path"] == "app/network.py"


def test_find_symbol_by_qualified_or_bare_name(served):
    live, _, _ = served
    (exact,) = live.json("find_symbol", name="InvoiceRepository.find_overdue")
    assert exact["match"] == "exact" and exact["kind"] == "method" and exact["path"] == "app/billing.py"
    assert exact["context"] == "class InvoiceRepository:" and exact["signature"].startswith("def find_overdue")
    lines = REPO_FILES["app/billing.py"].splitlines()
    assert lines[exact["start_line"] - 1].strip().startswith("def find_overdue")
    bare = live.json("find_symbol", name="find_overdue")
    assert [(d["symbol"], d["match"]) for d in bare] == [("InvoiceRepository.find_overdue", "suffix")]
    partial = live.json("find_symbol", name="invoice")
    assert partial[0]["symbol"] == "InvoiceRepository" and partial[0]["match"] == "partial"
    assert live.json("find_symbol", name="no_such_thing_anywhere") == []
    big = live.json("find_symbol", name="BigThing")  # a big class: header chunks plus one per method
    assert (big[0]["symbol"], big[0]["kind"], big[0]["start_line"], big[0]["end_line"]) == \
        ("BigThing", "class", 1, len(REPO_FILES["app/big.py"].splitlines()))
    assert [d["symbol"] for d in big if d["kind"] == "class"] == ["BigThing"]
    (step,) = live.json("find_symbol", name="BigThing.step_7")
    assert step["kind"] == "method" and step["signature"] == "def step_7(self, value):"


def test_read_code_pages_through_a_file(served):
    live, repo, _ = served
    result = live.call("read_code", path="app/billing.py", start_line=6, end_line=8)
    meta, text = json.loads(result.content[0].text), result.content[1].text
    assert meta == {"path": "app/billing.py", "source": "repo", "redactions": 0, "start_line": 6,
                    "end_line": 8, "total_lines": 20, "truncated": False}
    assert text.split("\n") == REPO_FILES["app/billing.py"].splitlines()[5:8]
    first = live.call("read_code", path=str(repo / "app" / "long.py"))  # absolute, inside the repo
    meta = json.loads(first.content[0].text)
    assert meta["truncated"] and meta["end_line"] == MAX_READ_LINES and "start_line=401" in meta["note"]
    assert first.content[1].text.splitlines()[-1] == f"VALUE_{MAX_READ_LINES} = {MAX_READ_LINES}"
    rest = live.call("read_code", path="app/long.py", start_line=401)
    assert json.loads(rest.content[0].text)["end_line"] == 520
    library = live.call("read_code", path="acme.py", source="lib:acme")
    assert library.content[1].text.startswith("def acme_client():")


def test_paths_outside_the_sources_are_refused(served):
    live, repo, outside = served
    for path in ("../sdk/acme.py", "app/../../outside/secret.py", str(outside / "secret.py")):
        assert "is outside the indexed sources" in live.error("read_code", path=path)
    for path in ("app/linked.py", "vendor/secret.py"):  # links that leave the repo
        assert "resolves outside repo (through a link)" in live.error("read_code", path=path)
    assert "is not in the index" in live.error("read_code", path=".git/config")
    assert "acme.py is not in the index of repo" in live.error("read_code", path="acme.py")


def test_secrets_never_come_back_in_clear(served):
    live, _, _ = served
    assert live.error("read_code", path=".env").startswith(".env is a secret file (matches .env)")
    result = live.call("read_code", path="app/settings.py")
    assert json.loads(result.content[0].text)["redactions"] == 1
    assert result.content[1].text.startswith('AWS_ACCESS_KEY_ID = "«redacted:aws-access-key»"')
    outputs = [live.call("search_code", query=q, mode="keyword") for q in (AWS_KEY, "AWS_ACCESS_KEY_ID")]
    outputs += [live.call("find_symbol", name="AWS"), live.call("index_status")]
    for output in outputs:
        assert all(AWS_KEY not in block.text for block in output.content)
    status = json.loads(outputs[-1].content[0].text)
    assert {"source": "repo", "path": "app/settings.py", "lines": [1], "kinds": ["aws-access-key"]} \
        in status["redacted"]


def test_ask_answers_with_the_repo_model(served, tiny_model):
    live, _, _ = served
    answer = live.json("ask", question="How is the total with tax computed?")
    assert set(answer) == {"question", "answer", "citations", "unverified_citations", "sources", "model",
                           "seconds", "deep", "turn"}
    assert isinstance(answer["answer"], str) and answer["sources"] and answer["deep"] is None
    assert answer["model"]["name"] == tiny_model.name
    assert all(set(c) == {"path", "start_line", "end_line", "text"} for c in answer["citations"])
    assert AWS_KEY not in json.dumps(answer)
    # kept in the repo's history as asked over MCP, and an agent can say it was wrong
    turn = live.json("feedback", turn=str(answer["turn"]), verdict="bad", source="app/billing.py:3")
    assert turn["origin"] == "mcp" and turn["question"] == "How is the total with tax computed?"
    assert turn["feedback"] == "bad" and turn["correct_source"] == "app/billing.py:3"
    deep = live.json("ask", question="How is the total with tax computed?", deep=True)
    assert deep["deep"]["batches"] >= 1 and deep["deep"]["read_tokens"] > 0
    assert deep["seconds"] >= deep["deep"]["seconds"] > 0


def test_new_index_runs_are_seen_without_a_restart(served, monkeypatch):
    live, repo, _ = served
    assert live.json("find_symbol", name="freshly_added_helper") == []
    write_files(repo, {"app/late.py": "def freshly_added_helper():\n    return 42\n"})
    report = live.json("reindex")
    assert report["ran"] and report["files_changed"] == 1
    (found,) = live.json("find_symbol", name="freshly_added_helper")
    assert found["path"] == "app/late.py"
    # A run the server did not start (a git hook, `watch`) is seen too.
    write_files(repo, {"app/hooked.py": "def added_by_a_hook_run():\n    return 7\n"})
    monkeypatch.setenv("CODELEARN_EMBEDDER", "none")
    assert run_index(open_project(repo)).files_changed == 1
    assert live.json("search_code", query="added_by_a_hook_run")[0]["path"] == "app/hooked.py"
    status = live.json("index_status")
    assert status["last_run"]["files_changed"] == 1 and status["files_by_source"]["repo"] >= 9


def test_errors_come_back_as_tool_errors_with_the_fix(served):
    live, _, _ = served
    message = live.error("read_code", path="acme.py", source="lib:nope")
    assert message == ("Unknown source 'lib:nope'. Use one of: repo, lib:acme (the `source` of a "
                       "search hit).")
    assert live.error("read_code", path="app/billing.py", start_line=99).endswith("Pass a start_line from 1 to 20.")
    assert live.error("find_symbol", name="  ") == str(CodelearnError(
        "find_symbol needs a name.", "Pass a function, class or method name: `Searcher.search` or `search`."))


def test_a_repo_without_an_index_says_how_to_build_one(tmp_path):
    tools = CodeTools(open_project(make_repo(tmp_path / "bare", {"a.py": "x = 1\n"})))
    with pytest.raises(CodelearnError, match=r"No index at .*Run `codelearn index` first"):
        tools.search_code("x")


def test_the_index_view_follows_runs_with_vectors(tmp_path):
    """Vectors are cached by the open view: a new run must be searched with its new vectors."""
    repo = make_repo(tmp_path / "vec", {"app/billing.py": FILES["app/billing.py"]})
    project = open_project(repo)
    run_index(project)
    tools = CodeTools(project)
    assert tools.search_code("open a socket to a web server", mode="vector")[0]["path"] == "app/billing.py"
    write_files(repo, {"app/network.py": FILES["app/network.py"]})
    run_index(project)
    assert tools.search_code("open a socket to a web server", mode="vector")[0]["path"] == "app/network.py"
    run_index(project, rebuild=True)  # a new catalog file: the old connection would read the deleted one
    assert tools.search_code("HTTPConnection", k=1)[0]["path"] == "app/network.py"
    tools.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"the server did not listen on {port}: {log.read_text()}")


def test_streamable_http_needs_the_token(served, tmp_path):
    _, repo, _ = served
    port, token = _free_port(), "s3cret-token"
    log = tmp_path / "http.log"
    env = server_env(tmp_path / "home", EMBEDDER="none", MCP_TOKEN=token)
    with log.open("w") as out:
        process = subprocess.Popen([sys.executable, "-m", "codelearn", "mcp", "--http", f"127.0.0.1:{port}",
                                    "-C", str(repo)], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_for_port(port, process, log)
        url = f"http://127.0.0.1:{port}/mcp"
        request = urllib.request.Request(url, data=b"{}", method="POST",
                                         headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 401 and "bearer" in refused.value.read().decode().lower()
        http = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
        with session(streamable_http_client(url, http_client=http)) as live:
            assert {t.name for t in live.tools()} == TOOLS
            assert live.json("search_code", query="retry_with_backoff")[0]["path"] == "app/network.py"
            live.portal.call(http.aclose)
    finally:
        process.terminate()
        process.wait(timeout=20)
    assert "bearer token required" in log.read_text()


def test_serving_beyond_this_machine_needs_a_token(tmp_path):
    repo = make_repo(tmp_path / "r", {"a.py": "x = 1\n"})
    result = CliRunner().invoke(app, ["mcp", "--http", "0.0.0.0:8765", "-C", str(repo)])
    assert result.exit_code == 1
    assert "without a token" in result.output and "CODELEARN_MCP_TOKEN" in result.output
    assert http_address("8765", None) == ("127.0.0.1", 8765)
    assert http_address("[::1]:9000", None) == ("::1", 9000)
    assert http_address("0.0.0.0:8765", "t") == ("0.0.0.0", 8765)
    with pytest.raises(CodelearnError, match="Bad --http address"):
        http_address("localhost:http", None)
