"""A small gitignore-syntax matcher for `.codelearnignore`.

Supports comments, blank lines, `\\#`/`\\!` escapes, `!` negation, `*`, `?`, `[...]`,
`**` (leading, trailing and in the middle), a leading `/` (anchored to the root), and a
trailing `/` (directories only). As in git, a file cannot be re-included when one of its
parent directories is excluded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class _Rule:
    regex: re.Pattern[str]
    negated: bool
    dir_only: bool
    anchored: bool  # matched against the whole relative path, else against the basename


class IgnoreRules:
    """Compiled gitignore-style rules, matched against posix paths relative to the root."""

    def __init__(self, lines: list[str]) -> None:
        self._rules = [rule for line in lines if (rule := _parse(line)) is not None]
        self._dirs: dict[str, bool] = {}

    @classmethod
    def from_file(cls, path: Path) -> IgnoreRules:
        """Rules from a file; no rules when it does not exist."""
        try:
            return cls(path.read_text(encoding="utf-8", errors="replace").splitlines())
        except (FileNotFoundError, NotADirectoryError):
            return cls([])

    def __bool__(self) -> bool:
        return bool(self._rules)

    def ignores(self, path: str, *, is_dir: bool = False) -> bool:
        """Whether path (a file, or a directory when is_dir) is ignored."""
        if not self._rules:
            return False
        parent, _, _ = path.rpartition("/")
        if parent and self._dir_ignored(parent):
            return True
        return self._match(path, is_dir)

    def _dir_ignored(self, path: str) -> bool:
        cached = self._dirs.get(path)
        if cached is None:
            parent, _, _ = path.rpartition("/")
            cached = bool(parent and self._dir_ignored(parent)) or self._match(path, True)
            self._dirs[path] = cached
        return cached

    def _match(self, path: str, is_dir: bool) -> bool:
        basename = path.rpartition("/")[2]
        ignored = False
        for rule in self._rules:
            if rule.dir_only and not is_dir:
                continue
            if ignored == (not rule.negated):
                continue  # this rule could not change the outcome
            if rule.regex.fullmatch(path if rule.anchored else basename):
                ignored = not rule.negated
        return ignored


def _parse(line: str) -> _Rule | None:
    line = line.rstrip("\n\r")
    if not line or line.startswith("#"):
        return None
    line = _strip_trailing_spaces(line)
    negated = line.startswith("!")
    if negated:
        line = line[1:]
    elif line.startswith(("\\!", "\\#")):
        line = line[1:]
    dir_only = line.endswith("/")
    line = line.rstrip("/")
    if not line:
        return None
    anchored = "/" in line
    line = line.lstrip("/")
    return _Rule(re.compile(_translate(line)), negated, dir_only, anchored)


def _strip_trailing_spaces(line: str) -> str:
    stripped = line.rstrip(" ")
    if stripped.endswith("\\") and len(stripped) < len(line):
        return stripped + " "  # "foo\ " keeps one escaped space
    return stripped


def _translate(pattern: str) -> str:
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        at_segment_start = i == 0 or pattern[i - 1] == "/"
        if at_segment_start and pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif at_segment_start and pattern.startswith("**", i) and i + 2 == n:
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[":
            end = _class_end(pattern, i)
            if end < 0:
                out.append(re.escape("["))
                i += 1
            else:
                body = pattern[i + 1 : end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = end + 1
        elif pattern[i] == "\\" and i + 1 < n:
            out.append(re.escape(pattern[i + 1]))
            i += 2
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return "".join(out)


def _class_end(pattern: str, start: int) -> int:
    i = start + 1
    if i < len(pattern) and pattern[i] in "!^":
        i += 1
    if i < len(pattern) and pattern[i] == "]":
        i += 1  # a leading "]" is literal
    end = pattern.find("]", i)
    return end
