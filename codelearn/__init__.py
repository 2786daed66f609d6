"""codelearn: make a local language model learn your codebase.

The library API; `codelearn.cli` is the only module that talks to a terminal.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "open_project", "run_index", "search"]


def open_project(start=None, overrides=None):
    """Find the repo around `start` (default: the current folder) and load its settings."""
    from codelearn.project import open_project as _open

    return _open(start, overrides)


def run_index(project, **kwargs):
    """Bring the project's index up to date; see `codelearn.index.indexer.run_index`."""
    from codelearn.index.indexer import run_index as _run

    return _run(project, **kwargs)


def search(project, query: str, k: int = 10, mode: str = "hybrid"):
    """Hybrid search over the project's index; returns a list of `Hit`."""
    from codelearn.index.search import Searcher

    searcher = Searcher(project)
    try:
        return searcher.search(query, k=k, mode=mode)
    finally:
        searcher.close()
