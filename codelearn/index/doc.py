"""Docstrings and calls read off a chunk's text (no parser: the index has parsed it)."""

from __future__ import annotations

import re

_PY_DOC = re.compile(r'^[^\n]*?(?:def|class)\b[^\n]*\n(?:[^\n]*\n)*?\s*[rRuUbB]?("""|\'\'\')(.*?)\1', re.S)
_COMMENT_BLOCK = re.compile(r"^\s*(?:/\*\*?(.*?)\*/|((?:\s*(?://|#)[^\n]*\n)+))", re.S)
_CALL = re.compile(r"(?<![\w.])([A-Za-z_]\w*)\s*\(|\.([A-Za-z_]\w*)\s*\(")
_KEYWORDS = frozenset("if for while return print super isinstance len range str int list dict set tuple "
                      "with assert not and or elif except lambda yield await new catch switch sizeof "
                      "function func fn def class".split())


def docstring(text: str, language: str) -> str:
    """The documentation a chunk carries, first paragraph only, '' when it has none."""
    raw = ""
    if language == "python":
        head = "\n".join(text.split("\n")[:12])
        match = _PY_DOC.match(head + "\n" + "\n".join(text.split("\n")[12:40]))
        raw = match.group(2) if match else ""
    else:
        match = _COMMENT_BLOCK.match(text)
        if match:
            raw = re.sub(r"^\s*(?:\*|//+|#+)\s?", "", match.group(1) or match.group(2) or "", flags=re.M)
    paragraph = raw.strip().split("\n\n")[0]
    return " ".join(paragraph.split())


def first_sentence(paragraph: str) -> str:
    end = re.search(r"[.!?](\s|$)", paragraph)
    return paragraph[: end.start() + 1] if end else paragraph


def without_docstring(text: str, doc_raw_present: bool = True) -> str:
    """The text with its Python docstring removed (so a doc → code task is not a copy)."""
    return re.sub(r'("""|\'\'\')(.*?)\1\s*\n', "", text, count=1, flags=re.S) if doc_raw_present else text


def called_names(text: str) -> list[str]:
    """Names called in the text, in order of first call, without keywords and builtins."""
    seen: list[str] = []
    body = text.split("\n", 1)[1] if "\n" in text else ""
    for match in _CALL.finditer(body):
        name = match.group(1) or match.group(2)
        if name not in _KEYWORDS and name not in seen:
            seen.append(name)
    return seen
