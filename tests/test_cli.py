"""The command line: JSON schemas, settings precedence, one-line errors."""

from __future__ import annotations

import json
import tomllib

import pytest
from typer.testing import CliRunner

from codelearn.cli import app
from codelearn.config import SETTING_NAMES
from conftest import make_repo
from test_index import FILES

runner = CliRunner()


def run(*args: str, ok: bool = True):
    result = runner.invoke(app, list(args))
    if ok:
        assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def indexed(tmp_path):
    repo = make_repo(tmp_path / "shop", FILES)
    run("index", "--quiet", "--repo", str(repo))
    return repo


def test_search_json_schema(indexed):
    hits = json.loads(run("search", "compute_total_with_tax", "--json", "-k", "3",
                          "--repo", str(indexed)).stdout)
    assert 1 <= len(hits) <= 3
    first = hits[0]
    assert first["path"] == "app/billing.py" and first["symbol"] == "compute_total_with_tax"
    types = {"path": str, "source": str, "start_line": int, "end_line": int, "symbol": str,
             "kind": str, "language": str, "score": float, "text": str, "context": str}
    for hit in hits:
        for key, typ in types.items():
            assert isinstance(hit[key], typ), key
        assert hit["start_line"] <= hit["end_line"]
        assert hit["keyword_rank"] is None or isinstance(hit["keyword_rank"], int)
    scores = [h["score"] for h in hits]
    assert scores == sorted(scores, reverse=True)


def test_index_json_and_status_json(indexed):
    report = json.loads(run("index", "--json", "--repo", str(indexed)).stdout)
    assert report["ran"] and report["files_changed"] == 0
    status = json.loads(run("status", "--json", "--repo", str(indexed)).stdout)
    assert status["indexed"] and status["files_indexed"] == 5
    assert status["files_by_source"] == {"repo": 5}
    assert status["chunks"] > 5 and status["last_run"]["files_seen"] == 5


def test_human_output(indexed):
    out = run("search", "HTTPConnection", "--repo", str(indexed)).stdout
    assert out.splitlines()[0].startswith(" 1. app/network.py:")
    assert "chunks" in run("status", "--repo", str(indexed)).stdout


def test_config_shows_origins(tmp_path, monkeypatch):
    repo = make_repo(tmp_path / "r", {"a.py": "x = 1\n"})
    (repo / ".codelearn.toml").write_text("[codelearn]\nsearch_k = 7\nthreads = 1\n")
    monkeypatch.setenv("CODELEARN_THREADS", "2")
    data = json.loads(run("config", "--json", "--repo", str(repo)).stdout)
    assert data["search_k"] == {"value": 7, "origin": f"repo config {repo / '.codelearn.toml'}"}
    assert data["threads"] == {"value": 2, "origin": "environment"}
    assert data["embedder"]["origin"] == "default"
    assert set(data) == set(SETTING_NAMES)


def test_bad_settings_are_one_line_errors(tmp_path, monkeypatch):
    repo = make_repo(tmp_path / "r", {"a.py": "x = 1\n"})
    (repo / ".codelearn.toml").write_text("[codelearn]\nsearch_kk = 7\n")
    result = run("config", "--repo", str(repo), ok=False)
    assert result.exit_code == 1
    assert "Unknown setting 'search_kk'" in result.output and "search_k" in result.output
    assert "Traceback" not in result.output
    (repo / ".codelearn.toml").write_text("[codelearn]\n")
    monkeypatch.setenv("CODELEARN_THREADS", "many")
    result = run("config", "--repo", str(repo), ok=False)
    assert result.exit_code == 1 and "threads" in result.output and "environment" in result.output


def test_search_without_index_says_what_to_do(tmp_path):
    repo = make_repo(tmp_path / "r", {"a.py": "x = 1\n"})
    result = run("search", "x", "--repo", str(repo), ok=False)
    assert result.exit_code == 1
    assert "codelearn index" in result.output and "Traceback" not in result.output


def test_unknown_embedder_lists_choices(tmp_path, monkeypatch):
    repo = make_repo(tmp_path / "r", {"a.py": "x = 1\n"})
    monkeypatch.setenv("CODELEARN_EMBEDDER", "nope")
    result = run("index", "--repo", str(repo), ok=False)
    assert result.exit_code == 1 and "Unknown embedder 'nope'" in result.output
    assert "default" in result.output


def test_init_writes_a_complete_config_and_installs_hooks(tmp_path):
    repo = make_repo(tmp_path / "r", {"a.py": "x = 1\n"})
    run("init", "--repo", str(repo))
    text = (repo / ".codelearn.toml").read_text()
    assert tomllib.loads(text) == {"codelearn": {}}  # every setting present, commented out
    for name in SETTING_NAMES:
        assert f"# {name} = " in text
    uncommented = "\n".join(line[2:] if line.startswith(f"# {n} = ") else line
                            for line in text.splitlines() for n in [line[2:].split(" ")[0]])
    assert set(tomllib.loads(uncommented)["codelearn"]) == set(SETTING_NAMES)
    hooks = json.loads(run("hooks", "status", "--json", "--repo", str(repo)).stdout)
    assert {h["name"]: h["state"] for h in hooks}["post-commit"] == "installed"


def test_a_bad_count_is_an_error_with_the_fix_not_an_empty_result(tmp_path):
    from typer.testing import CliRunner

    from codelearn.cli import app

    for args in (["search", "x", "-k", "-3"], ["search", "x", "-k", "0"], ["ask", "x", "--max-context", "0"],
                 ["train", "--max-steps", "-1"]):
        result = CliRunner().invoke(app, [*args, "-C", str(tmp_path)])
        assert result.exit_code == 2, (args, result.output)
        assert "Invalid value" in result.output


def test_errors_keep_their_brackets(capsys):
    from codelearn import console
    from codelearn.errors import MissingExtraError

    console.error(str(MissingExtraError("torch", "train")))
    console.info("pip install 'codelearn[eval]'")
    err = capsys.readouterr().err
    assert "codelearn[train]" in err and "codelearn[eval]" in err


# -- what users of a CLI expect ----------------------------------------------------------------------

def test_version_everywhere_users_look():
    import subprocess
    import sys
    from importlib.metadata import version

    from codelearn import __version__

    assert __version__ == version("codelearn")  # the installed metadata reads the same attribute
    assert run("--version").stdout.strip() == f"codelearn {__version__}"
    module = subprocess.run([sys.executable, "-m", "codelearn", "--version"], capture_output=True, text=True)
    assert module.returncode == 0 and module.stdout.strip() == f"codelearn {__version__}"


def test_status_names_the_version(indexed):
    from codelearn import __version__

    assert json.loads(run("status", "--json", "--repo", str(indexed)).stdout)["version"] == __version__
    assert __version__ in run("status", "--repo", str(indexed)).stdout


def test_status_names_the_answer_model_and_the_llama_cpp_that_serves_it(indexed, monkeypatch):
    from codelearn.models.catalog import DEFAULT_MODEL

    monkeypatch.setenv("CODELEARN_ENGINE", "portable")
    shown = json.loads(run("status", "--json", "--repo", str(indexed)).stdout)
    assert shown["answer_model"] == {"name": DEFAULT_MODEL, "why": "default", "llama_cpp": "llama.cpp portable wheel"}
    assert shown["training"] == {"last_run": None, "carried": None}  # never trained here
    (indexed / ".codelearn.toml").write_text('[codelearn]\nmodel = "qwen2.5-coder-1.5b"\n')
    shown = " ".join(run("status", "--repo", str(indexed)).stdout.split())
    assert "qwen2.5-coder-1.5b (chosen) on llama.cpp portable wheel" in shown
    assert "no finished run (`codelearn train`)" in shown


def test_shell_completion_is_offered_and_completes():
    import os
    import subprocess
    import sys
    from pathlib import Path

    assert "--install-completion" in run("--help").stdout
    script = str(Path(sys.executable).parent / "codelearn")
    # typer finds the shell by walking up the process tree: run under bash, whoever started pytest
    # (under nohup or cron there is no shell above it, and the lookup fails); `; exit $?` keeps
    # bash from exec-ing the lone command in its own place
    shown = subprocess.run(["bash", "-c", f'"{script}" --show-completion; exit $?'], capture_output=True, text=True)
    assert "_CODELEARN_COMPLETE=complete_bash" in shown.stdout
    env = dict(os.environ, _CODELEARN_COMPLETE="complete_bash", COMP_WORDS="codelearn as", COMP_CWORD="1")
    words = subprocess.run([script], capture_output=True, text=True, env=env).stdout.split()
    assert words == ["ask"]
