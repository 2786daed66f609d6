"""Chunkers for files without a grammar: Markdown by headings, anything else by line windows."""

from __future__ import annotations

import re
from dataclasses import dataclass

from codelearn.index.chunk import Chunk
from codelearn.index.windows import Lines, blank_line_breaks, split_rows

MARKDOWN_EXTENSIONS = (".md", ".markdown", ".mdx")
_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


@dataclass(frozen=True)
class Heading:
    """A Markdown heading: the row it starts on, its level and its title."""

    row: int
    level: int
    title: str


def fallback_chunks(path: str, text: str, window_chars: int = 1200) -> list[Chunk]:
    """Chunk a file no grammar handles: Markdown by sections, the rest by line windows."""
    if path.lower().endswith(MARKDOWN_EXTENSIONS):
        return markdown_chunks(path, text, window_chars)
    return text_chunks(path, text, "text", window_chars)


def text_chunks(path: str, text: str, language: str, window_chars: int = 1200) -> list[Chunk]:
    """Cut text into windows of about `window_chars`, preferring cuts at blank lines."""
    lines = Lines(text.replace("\r\n", "\n"))
    return _windows(path, lines, 0, len(lines) - 1, language, "text", "", "", window_chars)


def markdown_chunks(path: str, text: str, window_chars: int = 1200) -> list[Chunk]:
    """One `section` chunk per heading (symbol `A > B`), big sections cut into windows."""
    lines = Lines(text.replace("\r\n", "\n"))
    headings = find_headings(lines)
    chunks: list[Chunk] = []
    if not headings or headings[0].row > 0:
        end = headings[0].row - 1 if headings else len(lines) - 1
        chunks += _windows(path, lines, 0, end, "markdown", "section", "", "", window_chars)
    path_stack: list[Heading] = []
    start = None
    for i, heading in enumerate(headings):
        while path_stack and path_stack[-1].level >= heading.level:
            path_stack.pop()
        context = "\n".join(lines.rows[h.row].strip() for h in path_stack)
        path_stack.append(heading)
        start = heading.row if start is None else start
        end = headings[i + 1].row - 1 if i + 1 < len(headings) else len(lines) - 1
        if _heading_only(lines, heading, end) and _next_is_deeper(headings, i):
            continue  # "## Install" directly followed by "### From source": one chunk
        symbol = " > ".join(h.title for h in path_stack)
        chunks += _windows(path, lines, start, end, "markdown", "section", symbol, context,
                           window_chars)
        start = None
    return chunks


def find_headings(lines: Lines) -> list[Heading]:
    """The ATX (`## Title`) and setext (underlined) headings outside fenced code."""
    headings = []
    fence = ""
    for row, line in enumerate(lines.rows):
        match = _FENCE.match(line)
        if match:
            marker = match.group(1)
            if not fence:
                fence = marker
            elif marker[0] == fence[0] and len(marker) >= len(fence):
                fence = ""
            continue
        if fence:
            continue
        atx = _ATX.match(line)
        if atx:
            headings.append(Heading(row, len(atx.group(1)), (atx.group(2) or "").strip()))
        elif row > 0 and _SETEXT.match(line) and _is_setext_title(lines, row - 1, headings):
            level = 1 if line.strip().startswith("=") else 2
            headings.append(Heading(row - 1, level, lines.rows[row - 1].strip()))
    return headings


def _is_setext_title(lines: Lines, row: int, headings: list[Heading]) -> bool:
    """Whether `row` can be the text of a setext heading underlined by the next row."""
    text = lines.rows[row]
    if not text.strip() or text.startswith(("    ", "\t")) or _SETEXT.match(text):
        return False
    return not headings or headings[-1].row != row


def _heading_only(lines: Lines, heading: Heading, end: int) -> bool:
    """Whether the section under `heading` holds nothing but the heading itself."""
    body = heading.row + (2 if _SETEXT.match(lines.rows[min(heading.row + 1, end)]) else 1)
    return lines.trim(body, end) is None if body <= end else True


def _next_is_deeper(headings: list[Heading], i: int) -> bool:
    """Whether the heading after `i` is a subsection of it."""
    return i + 1 < len(headings) and headings[i + 1].level > headings[i].level


def _windows(
    path: str, lines: Lines, first: int, last: int, language: str, kind: str, symbol: str,
    context: str, window_chars: int,
) -> list[Chunk]:
    """Chunks for rows first..last: one if small enough, else balanced windows."""
    span = lines.trim(first, last) if first <= last else None
    if span is None:
        return []
    first, last = span
    pieces = split_rows(lines, first, last, window_chars, blank_line_breaks(lines, first, last))
    return [
        Chunk(path=path, language=language, kind=kind, symbol=symbol, start_line=a + 1,
              end_line=b + 1, text=lines.text(a, b), context=context)
        for a, b in pieces
    ]
