"""Terminal output: progress and status on stderr, results on stdout."""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.markup import escape
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

PLAIN_INTERVAL_S = 60.0
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


def error(message: str) -> None:
    """One line, in red, on stderr. The message is text, not markup: `pip install
    'codelearn[train]'` must keep its brackets."""
    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)


def info(message: str) -> None:
    """A status line on stderr (plain text, never markup)."""
    err.print(escape(message), soft_wrap=True)


def print_json(data: object) -> None:
    """Machine-readable output, exactly one JSON document on stdout."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


@contextmanager
def progress_bar(enabled: bool = True) -> Iterator:
    """A `progress(stage, done, total, detail="")` callback: rich bars on a terminal; when stderr
    is not one (cron, CI, a pipe), a plain line per stage and then one a minute."""
    if not enabled:
        yield lambda stage, done, total, detail="": None
        return
    if not err.is_terminal:
        from codelearn.progress import ProgressLog

        import time

        with ProgressLog(lambda line: info(f"{time.strftime('%H:%M:%S')} {line}"),
                         interval=PLAIN_INTERVAL_S) as lines:
            yield lines
        return
    columns = (TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[detail]}"))
    with Progress(*columns, console=err, transient=True) as bar:
        tasks: dict[str, int] = {}

        def update(stage: str, done: int, total: int | None, detail: str = "") -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total, detail=detail)
            bar.update(tasks[stage], completed=done, total=total, detail=detail)

        yield update
