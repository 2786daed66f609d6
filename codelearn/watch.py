"""Keep the index fresh while files change: watch the sources, debounce, re-index.

A burst of events (a save, a branch switch, a formatter run) becomes one
`run_index` call, made once nothing has changed for `debounce_ms`. Changes that
arrive while it runs start one more run after it. The indexer's own lock
coalesces with hooks or a manual `codelearn index` running at the same time.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from codelearn.errors import CodelearnError, MissingExtraError
from codelearn.index.indexer import IndexReport, run_index
from codelearn.project import Project

log = logging.getLogger(__name__)

#: Folders whose changes never change the index: git's and codelearn's own
#: state (the indexer writes there: watching it would loop), and caches that
#: tools rewrite constantly.
IGNORED_DIRS = frozenset({
    ".git", ".codelearn", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache",
})
#: Reading a file is not a change (and the indexer reads every file it indexes).
IGNORED_EVENTS = frozenset({"opened", "closed_no_write"})

_POLL_S = 0.25  # how often the loop looks at `stop` while idle


def watch_roots(project: Project) -> list[Path]:
    """The folders to watch: the repo, then each library that lives in a folder."""
    roots = [project.root]
    for source in project.sources():
        # Installed distributions ("python") sit in site-packages; they change
        # only when pip runs, and watching all of it would be costly.
        if source.kind in ("git", "folder") and source.root not in roots:
            roots.append(source.root)
    return roots


def watch(project: Project, *, debounce_ms: int,
          on_run: Callable[[IndexReport], None] | None = None,
          stop: threading.Event | None = None) -> None:
    """Re-index after each burst of changes, until `stop` is set or Ctrl-C."""
    try:
        from watchdog.observers import Observer
    except ImportError:
        raise MissingExtraError("watchdog", "watch") from None

    stop = stop or threading.Event()
    changes = _Changes()
    observer = Observer()
    for root in watch_roots(project):
        observer.schedule(_handler(root, changes), str(root), recursive=True)
        log.info("watching %s", root)
    observer.start()
    try:
        while changes.wait_quiet(debounce_ms / 1000, stop):
            _index(project, on_run)
    except KeyboardInterrupt:
        log.info("interrupted")
    finally:
        observer.stop()
        observer.join()
        log.info("stopped watching")


def _index(project: Project, on_run: Callable[[IndexReport], None] | None) -> None:
    log.info("files changed; indexing")
    try:
        report = run_index(project)
    except CodelearnError as exc:
        # A watcher outlives one bad run: say why and wait for the next change.
        log.error("indexing failed: %s", exc)
        return
    if report.ran:
        log.info("indexed: %d changed, %d removed", report.files_changed, report.files_removed)
    else:
        log.info("another index run was in progress; it will pick up these changes")
    if on_run is not None:
        on_run(report)


class _Changes:
    """The time of the latest relevant event, shared by watchdog's thread and ours."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: float | None = None
        self._pending = threading.Event()

    def note(self) -> None:
        with self._lock:
            self._last = time.monotonic()
            self._pending.set()

    def wait_quiet(self, delay: float, stop: threading.Event) -> bool:
        """Block until changes have been quiet for `delay`; False once `stop` is set."""
        while not stop.is_set():
            if not self._pending.wait(_POLL_S):
                continue
            with self._lock:
                remaining = self._last + delay - time.monotonic()
                if remaining <= 0:
                    self._pending.clear()
                    return True
            stop.wait(min(remaining, _POLL_S))
        return False


def _handler(root: Path, changes: _Changes):
    from watchdog.events import FileSystemEventHandler

    class _Handler(FileSystemEventHandler):
        def on_any_event(self, event) -> None:
            if event.event_type in IGNORED_EVENTS:
                return
            if event.is_directory and event.event_type == "modified":
                return  # what was added or removed inside has an event of its own
            paths = [event.src_path, getattr(event, "dest_path", "")]
            if any(p and _counts(root, os.fsdecode(p)) for p in paths):
                log.debug("%s %s", event.event_type, event.src_path)
                changes.note()

    return _Handler()


def _counts(root: Path, path: str) -> bool:
    """True when a change at `path` may change what gets indexed."""
    try:
        parts = Path(path).relative_to(root).parts
    except ValueError:
        return True
    return not any(part in IGNORED_DIRS for part in parts)
