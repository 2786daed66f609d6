"""Crashes, concurrent runs and a Chroma server: real processes, real kill -9."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

from codelearn.index.catalog import Catalog
from codelearn.index.indexer import open_store, run_index
from codelearn.index.search import Searcher
from codelearn.project import open_project
from conftest import git, make_repo
from test_index import FILES, snapshot

STDLIB = Path(sysconfig.get_paths()["stdlib"])
PACKAGES = ["json", "email", "http", "logging", "urllib"]


def stdlib_repo(root: Path) -> Path:
    """A git repo of a few stdlib packages: big enough to take seconds to index."""
    for name in PACKAGES:
        shutil.copytree(STDLIB / name, root / name,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return make_repo(root, {})


def cli(repo: Path, *args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "codelearn", *args, "--repo", str(repo)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def consistent_store(project) -> tuple[set, set]:
    catalog = Catalog(project.catalog_path)
    referenced = {c.vec_key for c in catalog.iter_chunks() if c.vec_key}
    stored = catalog.vector_keys(in_store=True)
    embedder = catalog.get_meta("embedder")
    catalog.close()
    assert referenced <= catalog_keys(project)
    return stored, open_store(project, embedder).keys()


def catalog_keys(project) -> set:
    catalog = Catalog(project.catalog_path)
    try:
        return catalog.vector_keys()
    finally:
        catalog.close()


@pytest.fixture(scope="module")
def clean_build(tmp_path_factory):
    """A reference index of the stdlib sample, built in one uninterrupted run."""
    root = stdlib_repo(tmp_path_factory.mktemp("clean") / "repo")
    env = {**os.environ, "CODELEARN_STORE_FLUSH_MIN": "0"}
    proc = cli(root, "index", "--quiet", env=env)
    assert proc.wait(timeout=600) == 0, proc.stderr.read()
    return snapshot(open_project(root))


def _vectors_written(db: Path) -> int:
    import sqlite3

    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.1) as conn:
            return conn.execute("SELECT count(*) FROM vectors").fetchone()[0]
    except sqlite3.Error:  # not created yet, or mid-migration
        return 0


@pytest.mark.parametrize("kill_during", ["files", "embedding"])
def test_kill_9_mid_index_then_rerun_equals_clean_build(tmp_path, clean_build, kill_during,
                                                        monkeypatch):
    monkeypatch.setenv("CODELEARN_STORE_FLUSH_MIN", "0")
    repo = stdlib_repo(tmp_path / "repo")
    proc = cli(repo, "index", "--quiet", env=dict(os.environ))
    db = repo / ".codelearn" / "index.db"
    deadline = time.time() + 60
    while not db.exists() and time.time() < deadline:
        time.sleep(0.05)
    if kill_during == "files":
        time.sleep(1.0)
    else:
        while _vectors_written(db) == 0 and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
    if proc.poll() is not None:
        pytest.fail("index finished before it could be killed; make the sample bigger")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()

    project = open_project(repo)
    report = run_index(project)
    assert report.ran
    assert snapshot(project) == clean_build
    in_catalog, in_store = consistent_store(project)
    assert in_catalog == in_store
    # and the next run has nothing left to do
    again = run_index(project)
    assert (again.files_changed, again.vectors_embedded, again.recovered) == (0, 0, False)


def test_concurrent_runs_coalesce_and_do_not_corrupt(tmp_path, clean_build, monkeypatch):
    monkeypatch.setenv("CODELEARN_STORE_FLUSH_MIN", "0")
    repo = stdlib_repo(tmp_path / "repo")
    procs = [cli(repo, "index", "--json", env=dict(os.environ)) for _ in range(3)]
    reports = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        reports.append(json.loads(out))
    assert sum(1 for r in reports if not r["ran"]) >= 1  # someone found the lock taken
    project = open_project(repo)
    assert snapshot(project) == clean_build
    in_catalog, in_store = consistent_store(project)
    assert in_catalog == in_store
    assert not (repo / ".codelearn" / "pending").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def chroma_server(tmp_path):
    chroma = shutil.which("chroma", path=str(Path(sys.executable).parent)) or shutil.which("chroma")
    if chroma is None:
        pytest.fail("the chroma CLI (part of chromadb) is missing")
    port = _free_port()
    proc = subprocess.Popen([chroma, "run", "--path", str(tmp_path / "server"), "--host",
                             "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("chroma server did not start")
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=30)


def test_vectors_on_a_chroma_server(tmp_path, chroma_server, monkeypatch):
    monkeypatch.setenv("CODELEARN_CHROMA_URL", chroma_server)
    monkeypatch.setenv("CODELEARN_STORE_FLUSH_MIN", "0")
    repo = make_repo(tmp_path / "shop", FILES)
    project = open_project(repo)
    run_index(project)
    assert not (repo / ".codelearn" / "chroma").exists()  # nothing stored locally
    in_catalog, in_store = consistent_store(project)
    assert in_catalog and in_catalog == in_store
    searcher = Searcher(project)
    hits = searcher.search("sleep longer between attempts", k=3, mode="vector")
    searcher.close()
    assert "retry_with_backoff" in [h.symbol for h in hits]


def test_unreachable_chroma_server_fails_fast_with_a_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("CODELEARN_CHROMA_URL", f"http://127.0.0.1:{_free_port()}")
    monkeypatch.setenv("CODELEARN_STORE_FLUSH_MIN", "0")
    repo = make_repo(tmp_path / "shop", FILES)
    proc = cli(repo, "index", "--quiet")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    assert "chroma_url" in err and "Traceback" not in err
    git(repo, "status")  # the repo is untouched


def test_state_files_are_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    """Every state file (registry, reports, active search model, crontab) goes through write_atomic:
    a write that dies before its rename leaves the old file as it was and no stray temp file."""
    from codelearn import paths

    target = tmp_path / "state" / "active.json"
    paths.write_json(target, {"active": "one"})
    os.chmod(target, 0o600)
    paths.write_atomic(target, json.dumps({"active": "two"}), mode=0o600)
    assert json.loads(target.read_text()) == {"active": "two"}
    assert target.stat().st_mode & 0o777 == 0o600

    def dies(*_args):
        raise KeyboardInterrupt  # a Ctrl-C between writing and renaming

    monkeypatch.setattr(paths.os, "replace", dies)
    with pytest.raises(KeyboardInterrupt):
        paths.write_json(target, {"active": "three"})
    assert json.loads(target.read_text()) == {"active": "two"}
    assert sorted(p.name for p in target.parent.iterdir()) == ["active.json"]
