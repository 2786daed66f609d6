"""The incremental indexer and hybrid search, on real git repos, real Chroma, real embedder."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from codelearn.index.catalog import Catalog
from codelearn.index.indexer import is_test_path, open_store, run_index
from codelearn.index.search import Searcher
from codelearn.project import open_project
from conftest import git, make_repo, write_files

BILLING = '''\
"""Billing: invoices and payments."""

TAX_RATE = 0.2


class InvoiceRepository:
    """Stores invoices in the database."""

    def __init__(self, db):
        self.db = db

    def find_overdue(self, today):
        """Return invoices whose due date has passed and that are unpaid."""
        return [i for i in self.db.invoices if i.due < today and not i.paid]


def compute_total_with_tax(lines):
    """Sum the invoice lines and add value-added tax."""
    subtotal = sum(line.amount for line in lines)
    return subtotal * (1 + TAX_RATE)
'''

NETWORK = '''\
import socket


class HTTPConnection:
    """A tiny HTTP/1.1 client connection over a TCP socket."""

    def __init__(self, host, port=80):
        self.host = host
        self.port = port

    def send_request(self, method, path):
        """Write the request line and headers to the socket."""
        sock = socket.create_connection((self.host, self.port))
        sock.sendall(f"{method} {path} HTTP/1.1\\r\\nHost: {self.host}\\r\\n\\r\\n".encode())
        return sock


def retry_with_backoff(fn, attempts=5):
    """Call fn until it succeeds, sleeping exponentially longer between attempts."""
    import time
    for n in range(attempts):
        try:
            return fn()
        except OSError:
            time.sleep(2 ** n)
    raise RuntimeError("gave up")
'''

UI = '''\
export function debounce(fn, waitMs) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), waitMs);
  };
}

export class ShoppingCart {
  constructor() { this.items = []; }
  addItem(item) { this.items.push(item); }
  totalPrice() { return this.items.reduce((s, i) => s + i.price, 0); }
}
'''

TESTS = '''\
from billing import compute_total_with_tax


def test_compute_total_with_tax():
    assert compute_total_with_tax([]) == 0
'''

FILES = {
    "app/billing.py": BILLING,
    "app/network.py": NETWORK,
    "web/ui.js": UI,
    "tests/test_billing.py": TESTS,
    "README.md": "# Shop\n\nA tiny shop.\n\n## Billing\n\nInvoices are stored by InvoiceRepository.\n",
}


def snapshot(project) -> list[tuple]:
    """Everything a clean build determines, in a stable order."""
    catalog = Catalog(project.catalog_path)
    try:
        return [(c.source, c.chunk.path, c.chunk.kind, c.chunk.symbol, c.chunk.start_line,
                 c.chunk.end_line, c.chunk.text, c.vec_key) for c in catalog.iter_chunks()]
    finally:
        catalog.close()


def top(project, query: str, k: int = 3, mode: str = "hybrid") -> list[str]:
    searcher = Searcher(project)
    try:
        return [h.symbol for h in searcher.search(query, k=k, mode=mode)]
    finally:
        searcher.close()


@pytest.fixture
def repo(tmp_path) -> Path:
    return make_repo(tmp_path / "shop", FILES)


def test_cold_index_and_search(repo):
    project = open_project(repo)
    report = run_index(project)
    assert report.ran and report.files_changed == 5
    assert report.vectors_embedded > 0
    assert top(project, "HTTPConnection", 1) == ["HTTPConnection"]
    assert top(project, "compute_total_with_tax", 1) == ["compute_total_with_tax"]
    # a small class is one chunk, so the method is found inside it
    assert "InvoiceRepository" in top(project, "which invoices are unpaid past their due date")
    assert "retry_with_backoff" in top(project, "sleep longer and longer between attempts", mode="vector")
    assert "ShoppingCart" in top(project, "total price of the items in the cart")


def test_state_folder_is_invisible_to_git(repo):
    run_index(open_project(repo))
    assert (repo / ".codelearn" / "index.db").exists()
    assert git(repo, "status", "--porcelain") == ""


def test_noop_reindex_does_nothing(repo):
    project = open_project(repo)
    run_index(project)
    before = snapshot(project)
    report = run_index(project)
    assert (report.files_changed, report.files_removed, report.vectors_embedded) == (0, 0, 0)
    assert snapshot(project) == before


def test_one_changed_function_reembeds_only_that_chunk(repo):
    project = open_project(repo)
    run_index(project)
    text = (repo / "app/billing.py").read_text().replace(
        "Sum the invoice lines and add value-added tax.", "Sum the lines, then add sales tax.")
    (repo / "app/billing.py").write_text(text)
    report = run_index(project)
    assert report.files_changed == 1
    assert report.vectors_embedded == 1


def test_branch_switch_and_back_costs_no_embedding(repo):
    project = open_project(repo)
    run_index(project)
    clean = snapshot(project)
    git(repo, "checkout", "-q", "-b", "feature")
    write_files(repo, {"app/billing.py": BILLING.replace("TAX_RATE = 0.2", "TAX_RATE = 0.25"),
                       "app/shipping.py": "def shipping_cost(weight):\n    return 5 + weight\n"})
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "feature")
    on_feature = run_index(project)
    assert on_feature.files_changed == 2
    assert "shipping_cost" in top(project, "shipping_cost", 1)
    git(repo, "checkout", "-q", "main")
    back = run_index(project)
    assert back.vectors_embedded == 0
    assert back.files_removed == 1
    assert snapshot(project) == clean
    assert "shipping_cost" not in top(project, "shipping_cost", 5)


def test_rename_and_delete_leave_no_stale_chunks(repo):
    project = open_project(repo)
    run_index(project)
    git(repo, "mv", "app/network.py", "app/net.py")
    git(repo, "rm", "-q", "web/ui.js")
    git(repo, "commit", "-q", "-m", "move")
    run_index(project)
    paths = {row[1] for row in snapshot(project)}
    assert "app/net.py" in paths
    assert "app/network.py" not in paths and "web/ui.js" not in paths
    searcher = Searcher(project)
    hits = searcher.search("HTTPConnection", k=5)
    searcher.close()
    assert hits[0].path == "app/net.py"
    assert all(h.path != "app/network.py" for h in hits)


def test_untracked_files_are_indexed_and_ignored_ones_are_not(repo):
    write_files(repo, {"app/draft.py": "def brand_new_helper():\n    return 42\n",
                       "build/gen.py": "def generated_thing():\n    pass\n",
                       ".gitignore": "build/\n",
                       ".codelearnignore": "app/draft_*.py\nweb/\n"})
    project = open_project(repo)
    run_index(project)
    paths = {row[1] for row in snapshot(project)}
    assert "app/draft.py" in paths
    assert "build/gen.py" not in paths
    assert "web/ui.js" not in paths


def test_test_files_are_keyword_indexed_but_not_embedded(repo):
    project = open_project(repo)
    run_index(project)
    rows = {(r[1], r[7] is None) for r in snapshot(project)}
    assert ("tests/test_billing.py", True) in rows
    assert ("app/billing.py", False) in rows
    assert is_test_path("pkg/tests/x.py") and is_test_path("src/foo_test.go")
    assert is_test_path("ui/cart.spec.ts") and not is_test_path("src/contest.py")
    # the implementation outranks its test for the function's own name
    searcher = Searcher(project)
    hits = searcher.search("compute_total_with_tax", k=2)
    searcher.close()
    assert hits[0].path == "app/billing.py"


def test_plain_folder_without_git(tmp_path):
    root = tmp_path / "plain"
    write_files(root, {"lib/util.py": "def slugify(title):\n    return title.lower()\n"})
    project = open_project(root)
    run_index(project)
    assert top(project, "slugify", 1) == ["slugify"]
    (root / "lib/util.py").write_text("def slugify(title):\n    return title.lower().strip()\n")
    assert run_index(project).files_changed == 1
    assert run_index(project).files_changed == 0


def test_internal_library_folder_and_python_distribution(repo, tmp_path):
    sdk = tmp_path / "sdk"
    write_files(sdk, {"acme_sdk/client.py":
                      "class AcmeClient:\n    def fetch_widgets(self):\n        return []\n"})
    (repo / ".codelearn.toml").write_text(
        f'[codelearn]\nlibraries = ["acme={sdk}", "python:platformdirs"]\n')
    project = open_project(repo)
    run_index(project)
    searcher = Searcher(project)
    hits = searcher.search("fetch_widgets", k=1)
    lib_hits = searcher.search("user_cache_dir", k=3)
    searcher.close()
    assert (hits[0].source, hits[0].path) == ("lib:acme", "acme_sdk/client.py")
    assert any(h.source == "lib:platformdirs" for h in lib_hits)
    # dropping the library from the config drops its chunks
    (repo / ".codelearn.toml").write_text("[codelearn]\nlibraries = []\n")
    run_index(open_project(repo))
    assert {r[0] for r in snapshot(project)} == {"repo"}


def test_secrets_never_reach_the_store(repo):
    key = "AKIAIOSFODNN7EXAMPLQ"
    token = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
    write_files(repo, {
        "app/settings.py": f'AWS_ACCESS_KEY_ID = "{key}"\nGITHUB_TOKEN = "{token}"\n'
                           "def load_settings():\n    return {}\n",
        ".env": "DATABASE_PASSWORD=hunter2hunter2hunter2\n",
        "deploy/id_rsa": "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk\n"
                         "-----END OPENSSH PRIVATE KEY-----\n",
    })
    project = open_project(repo)
    project.settings.store_flush_min  # the store is written on a cold build anyway
    run_index(project)
    assert "load_settings" in top(project, "load_settings", 1)
    needles = [key.encode(), token.encode(), b"hunter2hunter2", b"b3BlbnNzaC1rZXk"]
    for path in (repo / ".codelearn").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert not any(n in data for n in needles), path
    from codelearn.index.status import index_status

    info = index_status(project)
    assert info["redactions"] >= 2
    reasons = {(s["path"], s["reason"]) for s in info["skipped"]}
    assert (".env", "ignored-secret-file") in reasons
    assert ("deploy/id_rsa", "ignored-secret-file") in reasons


def test_vectors_reach_chroma_and_stay_consistent(repo, monkeypatch):
    monkeypatch.setenv("CODELEARN_STORE_FLUSH_MIN", "0")
    project = open_project(repo)
    run_index(project)
    catalog = Catalog(project.catalog_path)
    keys = catalog.vector_keys()
    assert catalog.count_pending_store() == 0
    catalog.close()
    store = open_store(project, Catalog(project.catalog_path).get_meta("embedder"))
    assert store.keys() == keys


def test_schema_mismatch_says_rebuild(repo):
    project = open_project(repo)
    run_index(project)
    db = sqlite3.connect(project.catalog_path)
    db.execute("UPDATE meta SET value='999' WHERE key='schema_version'")
    db.commit()
    db.close()
    from codelearn.errors import SchemaMismatchError

    with pytest.raises(SchemaMismatchError, match="codelearn index --rebuild"):
        run_index(project)
    report = run_index(project, rebuild=True)
    assert report.files_changed == 5


def test_changing_the_embedding_policy_reembeds_without_rechunking(repo, monkeypatch):
    project = open_project(repo)
    run_index(project)
    monkeypatch.setenv("CODELEARN_EMBED_TESTS", "true")
    report = run_index(open_project(repo))
    assert report.files_changed == 0
    assert report.vectors_embedded >= 1  # the test file's chunk is embedded now
    rows = {(r[1], r[7] is None) for r in snapshot(project)}
    assert ("tests/test_billing.py", False) in rows


def test_keyword_only_mode_embeds_nothing(repo, monkeypatch):
    monkeypatch.setenv("CODELEARN_EMBEDDER", "none")
    project = open_project(repo)
    report = run_index(project)
    assert report.vectors_embedded == 0
    assert top(project, "compute_total_with_tax", 1) == ["compute_total_with_tax"]
    from codelearn.errors import CodelearnError

    with pytest.raises(CodelearnError, match="keyword"):
        top(project, "anything", mode="vector")


def test_grouped_module_statements_are_keyword_only(repo):
    project = open_project(repo)
    run_index(project)
    kinds = {(r[2], r[7] is None) for r in snapshot(project) if r[1] == "app/network.py"}
    assert ("module", True) in kinds and ("class", False) in kinds
    assert "network" in Path(top_path(project, "import socket")).name


def top_path(project, query: str) -> str:
    searcher = Searcher(project)
    try:
        return searcher.search(query, k=1)[0].path
    finally:
        searcher.close()


def test_exact_search_and_the_vector_store_agree(repo, monkeypatch):
    """Small stores are searched exactly from the catalog; big ones through Chroma."""
    from codelearn.index import search as search_module

    project = open_project(repo, {"store_flush_min": 1})  # every vector goes to Chroma
    run_index(project)
    queries = ["sum invoice lines with tax", "open a TCP connection", "sleep longer between attempts"]
    exact = [top(project, q, k=5, mode="vector") for q in queries]
    monkeypatch.setattr(search_module, "EXACT_SEARCH_MAX", 0)
    searcher = Searcher(project)
    try:
        through_store = [[h.symbol for h in searcher.search(q, k=5, mode="vector")] for q in queries]
        assert searcher._store is not None  # the Chroma path really ran
    finally:
        searcher.close()
    assert through_store == exact and all(exact)


def test_a_run_that_meets_a_momentary_lock_holder_still_runs(tmp_path):
    """`status` takes the writer lock for an instant; a hook's run arriving then must not be lost."""
    import threading

    from codelearn.index.indexer import run_index
    from codelearn.index.lock import WriterLock
    from codelearn.project import open_project

    repo = make_repo(tmp_path / "r", {"a.py": "def a():\n    return 1\n"})
    project = open_project(repo)
    probe = WriterLock(project.ensure_state())
    assert probe.acquire()
    threading.Timer(0.01, probe.release).start()
    report = run_index(project, progress=lambda *a: None)
    assert report.ran and report.files_changed == 1


def test_embedding_cut_short_is_visible_in_status_and_finished_by_the_next_run(repo, monkeypatch):
    from codelearn.index import indexer
    from codelearn.index.embedder import LazyEmbedder
    from codelearn.index.status import index_status

    monkeypatch.setattr(indexer, "EMBED_BATCH", 2)
    real, calls = LazyEmbedder.embed_documents, []

    def dies_on_the_second_batch(self, texts):
        calls.append(len(texts))
        if len(calls) == 2:
            raise KeyboardInterrupt  # as a kill would, after the first batch was committed
        return real(self, texts)

    monkeypatch.setattr(LazyEmbedder, "embed_documents", dies_on_the_second_batch)
    project = open_project(repo)
    with pytest.raises(KeyboardInterrupt):
        run_index(project)
    info = index_status(project)
    assert info["interrupted"] and info["vectors"] == 2 and info["vectors_to_embed"] > 0
    catalog = Catalog(project.catalog_path)
    done, chunks = catalog.vector_keys(), [c for c in catalog.iter_chunks() if c.vec_key]
    catalog.close()
    first = {indexer.embed_priority(c.chunk) for c in chunks if c.vec_key in done}
    assert first == {(0, 0)} and any(indexer.embed_priority(c.chunk) != (0, 0) for c in chunks)
    hits = Searcher(project).search("compute_total_with_tax", k=3, mode="keyword")
    assert hits and hits[0].symbol == "compute_total_with_tax"  # keyword search works meanwhile

    monkeypatch.setattr(LazyEmbedder, "embed_documents", real)
    report = run_index(project)
    info = index_status(project)
    assert report.vectors_embedded == info["vectors"] - 2 and info["vectors_to_embed"] == 0
    assert not info["interrupted"]


def test_an_index_made_by_an_older_chunker_is_rechunked_once_without_re_embedding(repo):
    project = open_project(repo)
    first = run_index(project)
    catalog = Catalog(project.catalog_path)
    catalog.set_meta("chunker_version", "1")
    catalog.close()
    again = run_index(project)
    assert again.files_changed == first.files_changed > 0 and again.vectors_embedded == 0
    assert run_index(project).files_changed == 0
