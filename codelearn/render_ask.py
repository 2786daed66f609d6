"""Terminal rendering of answers: streamed Markdown, sources, the model line.

Re-rendering Markdown for every token would compete with generation for the
same cores, so the live view refreshes at a fixed low rate; when stdout is not
a terminal the text is written through as it arrives.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Callable, Iterable, Iterator

from rich.live import Live
from rich.markdown import Markdown
from rich.panel import Panel
from rich.text import Text

from codelearn.console import err, out

REFRESH_PER_SECOND = 4


def _after_wait(pieces: Iterable[str], waiting: str) -> Iterator[str]:
    """`pieces`, with a spinner on stderr (terminals only) until the first one arrives.

    On a CPU the model reads the prompt for seconds before it writes anything.
    """
    iterator = iter(pieces)
    if waiting and err.is_terminal:
        with err.status(waiting, refresh_per_second=4):
            first = next(iterator, None)
    else:
        first = next(iterator, None)
    if first is not None:
        yield first
        yield from iterator


def stream_answer(pieces: Iterable[str], live: bool, waiting: str = "") -> str:
    """Show the answer while it is generated; return the whole text."""
    pieces = _after_wait(pieces, waiting)
    parts: list[str] = []
    if live and out.is_terminal:
        with Live(Markdown(""), console=out, refresh_per_second=REFRESH_PER_SECOND,
                  vertical_overflow="visible") as view:
            for piece in pieces:
                parts.append(piece)
                view.update(Markdown("".join(parts)))
        return "".join(parts)
    if live:
        for piece in pieces:
            parts.append(piece)
            sys.stdout.write(piece)
            sys.stdout.flush()
        sys.stdout.write("\n")
        return "".join(parts)
    text = "".join(pieces)
    if out.is_terminal:
        out.print(Markdown(text))
    else:
        sys.stdout.write(text + "\n")
    return text


@contextlib.contextmanager
def deep_progress() -> Iterator[Callable[[int, int, int], None]]:
    """A spinner on stderr (terminals only) naming the batch deep mode is reading."""
    if not err.is_terminal:
        yield lambda number, total, tokens: None
        return
    with err.status("retrieving…", refresh_per_second=4) as status:
        yield lambda number, total, tokens: status.update(
            f"deep: reading batch {number} of {total} ({tokens:,} tokens of code) and taking notes…")


def show_context(prompt_text: str) -> None:
    """Exactly the text the model was given (its chat template applied)."""
    out.print(Panel(Text(prompt_text), title="what the model sees", title_align="left"))


def render_sources(answer) -> None:
    """Sources under the answer, unverified citations, and which model answered."""
    data = answer.as_json()
    if data["sources"]:
        out.print("\n[bold]Sources[/]")
        for source in data["sources"]:
            mark = "[green]✓[/]" if source["used"] else " "
            symbols = ", ".join(source["symbols"][:3])
            cut = " (cut)" if source["truncated"] else ""
            where = "" if source["source"] == "repo" else f"  [{source['source']}]"
            out.print(f" {mark} {source['path']}:{source['start_line']}-{source['end_line']}"
                      f"  [dim]{symbols}{cut}{where}[/]", soft_wrap=True, highlight=False)
    else:
        out.print("\n[dim]No code matched; the answer is not grounded in the repo.[/]")
    render_notes(data.get("deep"))
    wrong = [c for c in data["citations"] if not c["verified"]]
    if wrong:
        listed = ", ".join(c["text"] for c in wrong)
        out.print(f"[yellow]Not in the retrieved code (unverified):[/] {listed}", soft_wrap=True)
    err.print(model_line(data), soft_wrap=True, highlight=False)


def render_notes(deep: dict | None, most: int = 12) -> None:
    """Deep mode's notes, each with the place it was read (they back the answer)."""
    if not deep or not deep["notes"]:
        return
    out.print(f"\n[bold]Notes[/] [dim](deep: read {len(deep['batches'])} batches)[/]")
    for note in deep["notes"][:most]:
        end = f"-{note['end_line']}" if note["end_line"] > note["start_line"] else ""
        # Text, not markup: a note is model text and may hold brackets
        out.print(Text.assemble(" - ", note["text"], "  ", (f"{note['path']}:{note['start_line']}{end}", "dim")),
                  soft_wrap=True)
    if len(deep["notes"]) > most:
        out.print(f" [dim]... {len(deep['notes']) - most} more in --json[/]")


def model_line(data: dict) -> str:
    model, timings, context = data["model"], data["timings"], data["context"]
    rate = f" · {timings['gen_tok_s']:.1f} tok/s" if timings.get("gen_tok_s") else ""
    ttft = f" · first token {timings['ttft_s']:.1f}s" if timings.get("ttft_s") else ""
    deep = data.get("deep")
    if deep:
        seconds = deep["seconds"] + (timings.get("total_s") or 0.0)
        batches = len(deep["batches"])
        return (f"[dim]answered by {model['name']} ({model['reason']}, {model['backend']}) · deep: read "
                f"{deep['read_tokens']:,} tokens of code in {batches} batch{'es' if batches != 1 else ''}, "
                f"{len(deep['notes'])} notes, then a {context['prompt_tokens']}-token prompt · "
                f"{deep['prompt_tokens'] + context['prompt_tokens']:,} tokens read, "
                f"{deep['note_tokens'] + (timings.get('generated_tokens') or 0):,} written, {seconds:.0f} s[/]")
    return (f"[dim]answered by {model['name']} ({model['reason']}, {model['backend']}) · "
            f"{context['prompt_tokens']}-token prompt, {context['excerpts']} excerpts{ttft}{rate}[/]")
