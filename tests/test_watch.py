"""`watch` on a real repo: real watchdog, real indexer, stopped through its Event."""

from __future__ import annotations

import queue
import sys
import threading
from pathlib import Path

import pytest

from codelearn.errors import MissingExtraError
from codelearn.index.catalog import Catalog
from codelearn.index.indexer import IndexReport
from codelearn.project import open_project
from codelearn.watch import _counts, watch, watch_roots
from conftest import make_repo, write_files

pytest.importorskip("watchdog")


class Watcher:
    """`watch` running in a thread; each report it makes arrives on `reports`."""

    def __init__(self, repo: Path, debounce_ms: int = 100) -> None:
        self.project = open_project(repo)
        self.reports: queue.Queue[IndexReport] = queue.Queue()
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, args=(debounce_ms,), daemon=True)

    def _run(self, debounce_ms: int) -> None:
        try:
            watch(self.project, debounce_ms=debounce_ms, on_run=self.reports.put, stop=self.stop)
        except BaseException as exc:  # surfaced by the test, not lost in the thread
            self.errors.append(exc)

    def __enter__(self) -> Watcher:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "watch() did not return after stop was set"
        assert not self.errors, self.errors

    def next_report(self) -> IndexReport:
        return self.reports.get(timeout=60)


def wait_for_observer() -> None:
    # The observer starts in watch()'s thread; give it a moment to place its watches.
    threading.Event().wait(0.5)


def test_a_burst_of_changes_is_indexed_once(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"app.py": "def main():\n    return 1\n"})
    with Watcher(repo) as watcher:
        wait_for_observer()
        write_files(repo, {"billing.py": "def total(lines):\n    return sum(lines)\n",
                           "pkg/tax.py": "RATE = 0.2\n"})
        report = watcher.next_report()
        assert report.ran
        catalog = Catalog(watcher.project.catalog_path, readonly=True)
        try:
            paths = set(catalog.files("repo"))
        finally:
            catalog.close()
        assert {"billing.py", "pkg/tax.py"} <= paths

        # The index's own writes under .codelearn/ and reads of files do not re-trigger it.
        threading.Event().wait(1.0)
        assert watcher.reports.empty()

        (repo / "billing.py").unlink()
        assert watcher.next_report().files_removed == 1


def test_watches_folder_libraries(tmp_path: Path) -> None:
    lib = tmp_path / "sdk"
    lib.mkdir()
    (lib / "client.py").write_text("def call():\n    return 1\n")
    repo = make_repo(tmp_path / "repo", {"app.py": "X = 1\n",
                                         ".codelearn.toml": f'libraries = ["sdk={lib}"]\n'})
    assert watch_roots(open_project(repo)) == [repo.resolve(), lib.resolve()]
    with Watcher(repo) as watcher:
        wait_for_observer()
        (lib / "server.py").write_text("def serve():\n    return 2\n")
        assert watcher.next_report().ran


def test_ignored_paths(tmp_path: Path) -> None:
    root = tmp_path
    assert _counts(root, str(root / "src" / "a.py"))
    assert not _counts(root, str(root / ".git" / "index.lock"))
    assert not _counts(root, str(root / ".codelearn" / "index.db-wal"))
    assert not _counts(root, str(root / "src" / "__pycache__" / "a.cpython-311.pyc"))


def test_missing_watchdog_names_the_extra(tmp_path: Path, monkeypatch) -> None:
    repo = make_repo(tmp_path / "repo", {"app.py": "X = 1\n"})
    monkeypatch.setitem(sys.modules, "watchdog.observers", None)  # makes the import fail
    with pytest.raises(MissingExtraError) as caught:
        watch(open_project(repo), debounce_ms=10, stop=threading.Event())
    assert "codelearn[watch]" in caught.value.fix
