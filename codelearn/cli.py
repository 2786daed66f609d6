"""The `codelearn` command: parse options, call one library function, render."""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Optional

import typer

from codelearn import console
from codelearn.errors import CodelearnError

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    help="Make a local language model learn your codebase.",
)
hooks_app = typer.Typer(no_args_is_help=True, help="Git hooks that keep the index current.")
app.add_typer(hooks_app, name="hooks")

RepoOption = typer.Option(None, "--repo", "-C", help="Repo to work on (default: the current folder).")
JsonOption = typer.Option(False, "--json", help="Print machine-readable JSON on stdout.")


class _State:
    debug = False


def _expected_errors(fn):
    """Print a CodelearnError as one line and exit 1 (with --debug: the traceback)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except CodelearnError as exc:
            if _State.debug:
                raise
            console.error(str(exc))
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            console.error("interrupted.")
            raise typer.Exit(130) from None

    return wrapper


def _project(repo: Optional[Path], **overrides):
    from codelearn.project import open_project

    return open_project(repo, overrides)


@app.callback()
def main(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Explain decisions on stderr."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
) -> None:
    """Make a local language model learn your codebase."""
    _State.debug = debug or bool(os.environ.get("CODELEARN_DEBUG"))
    level = logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


@app.command()
@_expected_errors
def init(repo: Optional[Path] = RepoOption,
         hooks: bool = typer.Option(True, help="Install the git hooks too.")) -> None:
    """Set a repo up: a config file with every setting, the state folder, git hooks."""
    from codelearn.setup import init_repo

    result = init_repo(_project(repo), hooks=hooks)
    for line in result:
        console.info(line)


@app.command()
@_expected_errors
def index(
    repo: Optional[Path] = RepoOption,
    rebuild: bool = typer.Option(False, "--rebuild", help="Throw the index away and build it anew."),
    wait: bool = typer.Option(False, "--wait", help="Wait for a running index instead of queueing."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress or summary."),
    as_json: bool = JsonOption,
) -> None:
    """Index the repo and its internal libraries (incremental)."""
    from codelearn.index.indexer import run_index

    project = _project(repo)
    with console.progress_bar(enabled=not quiet and not as_json) as progress:
        report = run_index(project, rebuild=rebuild, wait=wait, progress=progress)
    if as_json:
        console.print_json(report.as_dict())
    elif not quiet:
        console.info(_index_summary(report))


def _index_summary(report) -> str:
    if not report.ran:
        return "An index run is in progress; it will pick up these changes when it finishes."
    took = sum(report.seconds.values())
    return (f"Indexed {report.files_seen} files in {took:.1f}s: {report.files_changed} changed, "
            f"{report.files_removed} removed, {report.files_skipped} skipped; "
            f"{report.chunks_written} chunks written, {report.vectors_embedded} embedded."
            + (" Repaired an interrupted run." if report.recovered else ""))


@app.command()
@_expected_errors
def search(
    query: str = typer.Argument(..., help="A question or an identifier."),
    k: Optional[int] = typer.Option(None, "-k", help="How many results (default: setting search_k)."),
    mode: str = typer.Option("hybrid", help="hybrid, keyword or vector."),
    repo: Optional[Path] = RepoOption,
    as_json: bool = JsonOption,
) -> None:
    """Search the index: ranked chunks with path, lines, symbol and score."""
    from codelearn.index.search import Searcher

    if mode not in ("hybrid", "keyword", "vector"):
        raise CodelearnError(f"Unknown mode {mode!r}.", "Use hybrid, keyword or vector.")
    project = _project(repo)
    searcher = Searcher(project)
    try:
        hits = searcher.search(query, k=k or project.settings.search_k, mode=mode)
    finally:
        searcher.close()
    if as_json:
        console.print_json([h.as_json() for h in hits])
        return
    if not hits:
        console.info("No results.")
    for rank, hit in enumerate(hits, 1):
        label = "" if hit.source == "repo" else f"  [{hit.source}]"
        symbol = hit.symbol or hit.kind
        console.out.print(f"{rank:>2}. {hit.path}:{hit.start_line}-{hit.end_line}  "
                          f"[bold]{symbol}[/]  {hit.score:.4f}{label}", soft_wrap=True)


@app.command()
@_expected_errors
def status(repo: Optional[Path] = RepoOption, as_json: bool = JsonOption) -> None:
    """What is indexed, when, how big, and what was skipped and why."""
    from codelearn.index.status import index_status
    from codelearn.render import render_status

    info = index_status(_project(repo))
    if as_json:
        console.print_json(info)
    else:
        render_status(info)


@app.command()
@_expected_errors
def config(repo: Optional[Path] = RepoOption, as_json: bool = JsonOption) -> None:
    """Show every setting's effective value and where it came from."""
    from codelearn.render import render_config

    project = _project(repo)
    values = project.settings.as_dict()
    if as_json:
        console.print_json({k: {"value": v, "origin": project.loaded.origins[k]}
                            for k, v in values.items()})
    else:
        render_config(values, project.loaded.origins)


@app.command()
@_expected_errors
def watch(repo: Optional[Path] = RepoOption) -> None:
    """Re-index whenever files change (Ctrl-C stops)."""
    from codelearn.watch import watch as run_watch

    from codelearn.index.indexer import run_index

    project = _project(repo)
    with console.progress_bar() as progress:
        console.info(_index_summary(run_index(project, wait=True, progress=progress)))
    console.info(f"Watching {project.root} (Ctrl-C to stop)")
    run_watch(project, debounce_ms=project.settings.watch_debounce_ms,
              on_run=lambda report: console.info(_index_summary(report)))


@hooks_app.command("install")
@_expected_errors
def hooks_install(repo: Optional[Path] = RepoOption) -> None:
    """Install post-commit, post-merge, post-checkout and post-rewrite hooks."""
    from codelearn.hooks import install_hooks

    for state in install_hooks(_project(repo).root):
        console.info(f"{state.name}: {state.state} ({state.path})")


@hooks_app.command("uninstall")
@_expected_errors
def hooks_uninstall(repo: Optional[Path] = RepoOption) -> None:
    """Remove codelearn's hooks, restoring any hooks they chained."""
    from codelearn.hooks import uninstall_hooks

    for state in uninstall_hooks(_project(repo).root):
        console.info(f"{state.name}: {state.state}")


@hooks_app.command("status")
@_expected_errors
def hooks_status(repo: Optional[Path] = RepoOption, as_json: bool = JsonOption) -> None:
    """Show which hooks are installed."""
    from codelearn.hooks import hook_status

    states = hook_status(_project(repo).root)
    if as_json:
        console.print_json([{"name": s.name, "path": str(s.path), "state": s.state} for s in states])
        return
    for state in states:
        console.out.print(f"{state.name}: {state.state}")


def run() -> None:
    """Entry point for the console script and `python -m codelearn`."""
    app()
