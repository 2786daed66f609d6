"""codelearn: make a local language model learn your codebase.

The library API; `codelearn.cli` is the only module that talks to a terminal.
"""

from __future__ import annotations

__version__ = "0.2.0"

__all__ = ["__version__", "answer", "open_project", "run_index", "search"]


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


def answer(project, question: str, model: str = "", **options):
    """What `codelearn ask` does, as a function (named `answer`: `codelearn.ask` is the package).

    Answers `question` from the project's index; returns an `Answer` (see `.as_json()`).

    `model` is a catalogue name or a .gguf path (default: what `codelearn ask`
    would use); `options` override `AskOptions` fields (k, max_context,
    answer_tokens, temperature, repeat_penalty, multi_query, deep, deep_tokens).
    """
    from codelearn.ask.pipeline import AskOptions, open_conversation

    with open_conversation(project, AskOptions.from_settings(project.settings, **options), model) as chat:
        return chat.ask(question)
