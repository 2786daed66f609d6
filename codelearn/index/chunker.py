"""Syntax-aware chunking: cut a source file into definition-sized chunks.

Rules, for every language with a grammar in `languages.LANGUAGES`:

* each function, method and class is a chunk; leading comments, decorators and
  attributes belong to it. `symbol` is the qualified name joined with dots in every
  language (`Outer.Inner.method`, Go `Type.Method`, Rust impl methods `Type.method`,
  C++ `ns::f` -> `ns.f`); `context` holds the signature line of each enclosing scope,
  outermost first.
* a small class is one `class` chunk holding its methods; a big one becomes `header`
  chunks (signature, docstring, fields: everything that is not a method) plus one
  chunk per method or nested class. The first header chunk holds the class signature;
  later ones (fields between methods) name it in `context`, as methods do. A big
  class's closing `}` / `end` joins its last chunk.
* top-level code between definitions (imports, constants, glue) is packed into
  `module` chunks of up to `module_chars`, cut between statements.
* a definition too big for one chunk is cut into windows between statements, each
  keeping the definition's kind, symbol and context.
* Go methods are `method` chunks named `Type.Method` with an empty context (they are
  declared outside their type); a small namespace/module is one `class` chunk.

Every non-blank line of the file lands in at least one chunk. Files without a grammar
go to `fallback` (Markdown sections, or plain line windows).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from codelearn.index.chunk import Chunk
from codelearn.index.definitions import Definition, collect_definitions
from codelearn.index.fallback import MARKDOWN_EXTENSIONS, fallback_chunks, text_chunks
from codelearn.index.languages import load_grammar, spec_for_path, spec_for_text
from codelearn.index.windows import Lines, split_rows


#: Bump when the same file would be cut differently: indexes remake their chunks once.
#: 2: C++ headers named `.h` are parsed as C++.
CHUNKER_VERSION = 2


@dataclass(frozen=True)
class ChunkLimits:
    """Size limits in characters (a token is ~4 characters)."""

    definition_chars: int = 2000  # a function up to this size stays one chunk
    window_chars: int = 1200  # bigger ones are cut into windows of about this size
    class_chars: int = 1500  # a class up to this size (and `class_lines`) stays whole
    class_lines: int = 60
    module_chars: int = 1500  # top-level statements are packed up to this size


DEFAULT_LIMITS = ChunkLimits()
_CLOSER = re.compile(r"^[\s})\];,]*(end)?[\s;]*(//.*|#.*|/\*.*)?$")
_MAX_BREAK_DEPTH = 6  # how deep to look for statements to cut a definition between
_GAP_BREAK_DEPTH = 4  # ... and top-level code


def language_for(path: str) -> str | None:
    """The chunker's language name for `path` (`python`, `markdown`...), or None."""
    spec = spec_for_path(path)
    if spec is not None:
        return spec.name
    return "markdown" if path.lower().endswith(MARKDOWN_EXTENSIONS) else None


def chunk_file(path: str, text: str, limits: ChunkLimits = DEFAULT_LIMITS) -> list[Chunk]:
    """Cut one file's text into chunks, by syntax where a grammar is available."""
    text = text.replace("\r\n", "\n")
    spec = spec_for_text(path, text)
    if spec is None:
        return fallback_chunks(path, text, limits.window_chars)
    grammar = load_grammar(spec.name)
    if grammar is None:
        return text_chunks(path, text, spec.name, limits.window_chars)
    lines = Lines(text)
    root = grammar.parse(text.encode("utf-8", "surrogatepass"))
    definitions = collect_definitions(grammar, root, lines)
    emitter = _Emitter(path, spec.name, lines, limits)
    emitter.scope(root, 0, len(lines) - 1, definitions, parents=[])
    return emitter.chunks


class _Emitter:
    """Walks the definition tree of one file and appends its chunks in file order."""

    def __init__(self, path: str, language: str, lines: Lines, limits: ChunkLimits) -> None:
        self.path = path
        self.language = language
        self.lines = lines
        self.limits = limits
        self.chunks: list[Chunk] = []

    def scope(
        self, node: Any, first: int, last: int, children: list[Definition],
        parents: list[Definition],
    ) -> None:
        """Emit a file or big class: its definitions, and chunks for the rows between."""
        owner = parents[-1] if parents else None
        kind = "header" if owner else "module"
        symbol, context = _qualify(parents[:-1], owner, self.lines) if owner else ("", "")
        # Rows after the first definition no longer show the class signature: say it.
        inner = _qualify(parents, owner, self.lines)[1] if owner else ""
        start = len(self.chunks)
        cursor = first
        for child in children:
            if child.first > cursor:
                self.gap(node, cursor, child.first - 1, kind, symbol,
                         context if cursor == first else inner)
            self.definition(child, parents)
            cursor = max(cursor, child.last + 1)
        if cursor > last:
            return
        if owner and len(self.chunks) > start and self._only_closers(cursor, last):
            self._extend_last(last)
        else:
            self.gap(node, cursor, last, kind, symbol, inner)

    def definition(self, definition: Definition, parents: list[Definition]) -> None:
        """Emit one definition: whole, as windows, or (a big class) as a scope."""
        limits = self.limits
        first, last = definition.first, definition.last
        if definition.is_container:
            big = (self.lines.size(first, last) > limits.class_chars
                   or last - first + 1 > limits.class_lines)
            if big and definition.children:
                self.scope(definition.node, first, last, definition.children,
                           [*parents, definition])
                return
            kind, limit = "class", max(limits.class_chars, limits.definition_chars)
        else:
            in_class = bool(parents) and parents[-1].capture == "class"
            kind = "method" if definition.capture == "method" or in_class else "function"
            limit = limits.definition_chars
        symbol, context = _qualify(parents, definition, self.lines)
        size = self.lines.size(first, last)
        if size <= limit:
            self.emit(kind, symbol, context, first, last)
            return
        breaks = statement_breaks(definition.node, first, last)
        for a, b in split_rows(self.lines, first, last, limits.window_chars, breaks):
            self.emit(kind, symbol, context, a, b)

    def gap(self, node: Any, first: int, last: int, kind: str, symbol: str, context: str) -> None:
        """Pack the rows between definitions into chunks, cut between statements."""
        span = self.lines.trim(first, last)
        if span is None:
            return
        first, last = span
        cap = self.limits.module_chars
        big = self.lines.size(first, last) > cap
        breaks = statement_breaks(node, first, last, _GAP_BREAK_DEPTH) if big else {}
        for a, b in split_rows(self.lines, first, last, cap, breaks):
            self.emit(kind, symbol, context, a, b)

    def emit(self, kind: str, symbol: str, context: str, first: int, last: int) -> None:
        """Append a chunk for rows first..last (0-based) with 1-based line numbers."""
        self.chunks.append(Chunk(
            path=self.path, language=self.language, kind=kind, symbol=symbol,
            start_line=first + 1, end_line=last + 1,
            text=self.lines.text(first, last), context=context,
        ))

    def _only_closers(self, first: int, last: int) -> bool:
        """Whether rows first..last hold only closing brackets, `end` or blanks."""
        return all(_CLOSER.match(self.lines.rows[row]) for row in range(first, last + 1))

    def _extend_last(self, last: int) -> None:
        """Grow the last chunk down to row `last` (a class's closing bracket)."""
        chunk = self.chunks[-1]
        self.chunks[-1] = dataclasses.replace(
            chunk, end_line=last + 1, text=self.lines.text(chunk.start_line - 1, last)
        )


def _qualify(parents: list[Definition], definition: Definition, lines: Lines) -> tuple[str, str]:
    """The dotted symbol of `definition` and the signature lines of its parents."""
    symbol = ".".join([*(p.name for p in parents), definition.name])
    context = "\n".join(lines.rows[p.signature_row].strip() for p in parents)
    return symbol, context


def statement_breaks(
    node: Any, first: int, last: int, max_depth: int = _MAX_BREAK_DEPTH
) -> dict[int, int]:
    """Rows where a statement under `node` starts within first..last, with its depth."""
    breaks: dict[int, int] = {}
    stack = [(node, 0)]
    while stack:
        current, depth = stack.pop()
        for child in current.named_children:
            start, end = child.start_point.row, child.end_point.row
            if end < first or start > last:
                continue
            if start > first and breaks.get(start, max_depth) > depth:
                breaks[start] = depth
            if depth < max_depth and end > start + 1:  # a two-row node holds no better cut
                stack.append((child, depth + 1))
    return breaks
