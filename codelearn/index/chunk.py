"""The chunk record: one syntax-aware piece of a source file."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Chunk:
    """A piece of a file with its place in the code.

    Lines are 1-based and inclusive. `symbol` is the qualified name
    (`JSONDecoder.raw_decode`), empty when the chunk has none. `context` holds
    the signatures of the enclosing scopes (`class JSONDecoder(object):`), one
    per line, outermost first, so a method chunk still says where it lives.
    """

    path: str
    language: str
    kind: str
    symbol: str
    start_line: int
    end_line: int
    text: str
    context: str = ""


# Kinds a chunker may emit. Later stages (training data, eval) key on these.
KINDS = (
    "function",  # a top-level function
    "method",  # a function inside a class/impl/interface
    "class",  # a whole small class, struct, enum, trait, interface, impl
    "header",  # the head of a big class: signature, docstring, fields, no method bodies
    "module",  # grouped top-level statements (imports, constants, small code)
    "section",  # a Markdown section
    "text",  # a window of a non-code text file
)
