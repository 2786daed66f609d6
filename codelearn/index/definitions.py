"""Definitions found by a grammar's query, arranged into a tree of scopes.

A definition's rows include what belongs to it in front: a wrapper such as a Python
decorator list or a JavaScript `export`, and the comments or attributes directly above
it. Only containers (classes, modules, impls...) keep child definitions; anything
defined inside a function stays part of that function's chunk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from codelearn.index.languages import Grammar
from codelearn.index.windows import Lines

CONTAINER_CAPTURES = ("class", "module")
# Nodes that wrap a definition and belong to its chunk.
WRAPPERS = frozenset(
    {"decorated_definition", "export_statement", "template_declaration", "ambient_declaration"}
)
# Siblings directly above a definition that belong to its chunk (besides comments).
PREFIXES = frozenset({"decorator", "attribute_item", "attribute", "annotation"})


@dataclass
class Definition:
    """One definition: its capture kind, name, node and rows (0-based, inclusive)."""

    capture: str  # "function", "method", "class" or "module"
    node: Any  # the definition's node; after `_finish`, with its wrapper (decorators...)
    name_node: Any
    receiver_node: Any = None  # the type of a method declared outside it (Go)
    children: list[Definition] = field(default_factory=list)
    name: str = ""  # the rest is filled in by `_finish`, for the definitions kept
    first: int = 0  # first row, leading comments and decorators included
    last: int = 0
    signature_row: int = 0  # the row holding the name: its line becomes child context

    @property
    def is_container(self) -> bool:
        """Whether this definition can hold methods or nested definitions."""
        return self.capture in CONTAINER_CAPTURES


def collect_definitions(grammar: Grammar, root: Any, lines: Lines) -> list[Definition]:
    """The top-level definitions of a parsed file, containers holding their children."""
    found = []
    seen = set()
    for _, captures in grammar.definitions(root):
        definition = _from_match(captures)
        if definition is not None and definition.node.id not in seen:
            seen.add(definition.node.id)
            found.append(definition)
    found.sort(key=lambda d: (d.node.start_byte, -d.node.end_byte))
    top = _nest(found)
    _finish(top, lines)
    return top


def _from_match(captures: dict[str, list[Any]]) -> Definition | None:
    """Build a Definition from one query match, or None if it lacks a definition capture."""
    names = captures.get("name")
    if not names:
        return None
    for key, nodes in captures.items():
        if key.startswith("definition."):
            receiver = captures.get("receiver")
            return Definition(
                capture=key[11:],
                node=nodes[0],
                name_node=names[0],
                receiver_node=receiver[0] if receiver else None,
            )
    return None


def _finish(definitions: list[Definition], lines: Lines) -> None:
    """Fill in names and rows of the kept definitions, recursively."""
    for definition in definitions:
        name = normalize_name(definition.name_node.text.decode("utf-8", "replace"))
        if definition.receiver_node is not None:
            receiver = definition.receiver_node.text.decode("utf-8", "replace")
            name = f"{normalize_name(receiver)}.{name}"
        definition.name = name
        definition.node = _outermost(definition.node)
        definition.first = _first_row(definition.node, lines)
        definition.last = last_row(definition.node)
        definition.signature_row = definition.name_node.start_point.row
        _finish(definition.children, lines)


def normalize_name(text: str) -> str:
    """A name as a symbol part: `a::B<T>` -> `a.B`, `"mod"` -> `mod`."""
    text = text.split("<", 1)[0].strip().strip("\"'`")
    return text.replace("::", ".").replace("\\", ".").strip(".")


def _outermost(node: Any) -> Any:
    """The node with its wrappers (decorators, export, template) around it."""
    parent = node.parent
    while parent is not None and parent.type in WRAPPERS:
        node, parent = parent, parent.parent
    return node


def last_row(node: Any) -> int:
    """The last row a node covers (a node ending at column 0 ends on the row before)."""
    end = node.end_point
    if end.column == 0 and end.row > node.start_point.row:
        return end.row - 1
    return end.row


def _first_row(node: Any, lines: Lines) -> int:
    """The node's first row, moved up over comments and attributes directly above it."""
    first = node.start_point.row
    prev = node.prev_sibling
    while prev is None and node.parent is not None and node.parent.start_byte == node.start_byte:
        node = node.parent  # first in a body node: comments may sit just outside the body
        prev = node.prev_sibling
    while prev is not None and (prev.type in PREFIXES or "comment" in prev.type):
        start = prev.start_point
        if last_row(prev) < first - 1 or lines.rows[start.row][: start.column].strip():
            break  # separated by a blank line, or a trailing comment of other code
        first = start.row
        prev = prev.prev_sibling
    return first


def _nest(found: list[Definition]) -> list[Definition]:
    """Arrange definitions sorted by start into a tree; drop those inside functions."""
    top: list[Definition] = []
    stack: list[Definition] = []
    for definition in found:
        while stack and definition.node.start_byte >= stack[-1].node.end_byte:
            stack.pop()
        if not stack:
            top.append(definition)
        elif not stack[-1].is_container or _same_span(stack[-1], definition):
            continue  # part of a function body, or a duplicate (`typedef struct {..} T;`)
        else:
            stack[-1].children.append(definition)
        stack.append(definition)
    return top


def _same_span(outer: Definition, inner: Definition) -> bool:
    """Whether `inner` is the same definition seen again (same first and last row)."""
    return (inner.node.start_point.row == outer.node.start_point.row
            and last_row(inner.node) == last_row(outer.node))
