"""The temporal split: which lines of the repo were written after a cut commit.

Code added after the cut is new to any model trained on the repo as it was
before it, so it is an honest test of what training taught: it is held out of
training and becomes the evaluation set. The cut is chosen so that about
`share` of all lines ever added lie after it, or named with `since`.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from codelearn.errors import CodelearnError

_HUNK = re.compile(rb"^@@ -\d+(?:,\d+)? \+(\d+)(?:,(\d+))? @@")


@dataclass(frozen=True)
class Cut:
    """A commit that splits the history: what came after it is held out."""

    commit: str
    time: int  # unix seconds of the commit
    commits_after: int
    lines_after: int
    lines_total: int

    def as_json(self) -> dict:
        return {"commit": self.commit, "time": self.time, "commits_after": self.commits_after,
                "lines_after": self.lines_after, "lines_total": self.lines_total}


def _git(root: Path, *args: str) -> bytes:
    proc = subprocess.run(["git", "-c", "core.quotePath=false", *args], cwd=root,
                          capture_output=True, check=False)
    if proc.returncode != 0:
        raise CodelearnError(f"git {args[0]} failed in {root}: "
                             f"{proc.stderr.decode(errors='replace').strip()}",
                             "Check that the repo is a healthy git work tree.")
    return proc.stdout


def is_ancestor(root: Path, older: str, newer: str) -> bool:
    """`older` is `newer` or one of its ancestors (False when either is unknown here)."""
    proc = subprocess.run(["git", "merge-base", "--is-ancestor", older, newer], cwd=root,
                          capture_output=True, check=False)
    return proc.returncode == 0


def is_git_repo(root: Path) -> bool:
    return (root / ".git").exists()


def commit_log(root: Path) -> list[tuple[str, int, int]]:
    """(commit, time, lines added) for every non-merge commit, newest first."""
    out = _git(root, "log", "--no-merges", "--numstat", "--format=@%H %ct", "HEAD")
    commits: list[tuple[str, int, int]] = []
    for line in out.decode("utf-8", "replace").splitlines():
        if line.startswith("@"):
            sha, stamp = line[1:].split()
            commits.append((sha, int(stamp), 0))
        elif line and commits:
            added = line.split("\t", 1)[0]
            if added.isdigit():
                sha, stamp, count = commits[-1]
                commits[-1] = (sha, stamp, count + int(added))
    return commits


def choose_cut(root: Path, share: float = 0.10, since: str = "") -> Cut | None:
    """The cut commit (see the module doc); None when the history is too short to split."""
    if not is_git_repo(root):
        return None
    try:
        commits = commit_log(root)
    except CodelearnError:
        return None  # no commits yet
    total = sum(added for _, _, added in commits)
    if since:
        return _named_cut(root, since, commits, total)
    after = 0
    for index, (_, _, added) in enumerate(commits[:-1]):
        after += added
        if after >= share * total:
            sha, stamp, _ = commits[index + 1]
            return Cut(sha, stamp, index + 1, after, total)
    return None


def _named_cut(root: Path, since: str, commits: list[tuple[str, int, int]], total: int) -> Cut:
    try:
        sha = _git(root, "rev-parse", "--verify", "--quiet", f"{since}^{{commit}}").decode().strip()
    except CodelearnError:
        sha = _git(root, "rev-list", "-1", f"--before={since}", "HEAD").decode().strip()
    if not sha:
        raise CodelearnError(f"No commit matches --since {since!r}.",
                             "Give a commit, a tag or a date such as 2026-10-01.")
    order = [c[0] for c in commits]
    position = order.index(sha) if sha in order else len(order)
    stamp = int(_git(root, "show", "-s", "--format=%ct", sha).decode().strip())
    return Cut(sha, stamp, position, sum(c[2] for c in commits[:position]), total)


_C_ESCAPES = {ord("a"): 7, ord("b"): 8, ord("t"): 9, ord("n"): 10, ord("v"): 11, ord("f"): 12,
              ord("r"): 13, ord('"'): 34, ord("\\"): 92}


def _target_path(raw: bytes) -> str | None:
    """The path of a `+++ ` line: unquoted (git C-quotes unusual names), the tab git adds after a
    name with a space removed, the `b/` prefix dropped; None for a deleted file."""
    if raw.startswith(b'"'):
        raw = _unquote(raw)
    elif raw.endswith(b"\t"):
        raw = raw[:-1]
    if raw == b"/dev/null":
        return None
    return raw[2:].decode("utf-8", "replace") if raw.startswith(b"b/") else raw.decode("utf-8", "replace")


def _unquote(raw: bytes) -> bytes:
    """git's C-style quoted name ("b/a\\tb.py", octal for other bytes) back to its bytes."""
    body = raw[1:raw.rindex(b'"')]
    out, i = bytearray(), 0
    while i < len(body):
        if body[i] == 92 and i + 1 < len(body):
            if 48 <= body[i + 1] <= 55:
                out.append(int(body[i + 1:i + 4], 8))
                i += 4
                continue
            out.append(_C_ESCAPES.get(body[i + 1], body[i + 1]))
            i += 2
            continue
        out.append(body[i])
        i += 1
    return bytes(out)


def lines_added_since(root: Path, commit: str) -> dict[str, set[int]]:
    """Per path (relative to the repo root), the line numbers of the *current* files
    that did not exist at `commit`: changed tracked lines and every untracked file line."""
    added: dict[str, set[int]] = {}
    # Explicit prefixes, no textconv and no external tool: the user's diff settings
    # (diff.noprefix, diff.mnemonicPrefix, ...) must not change what is read here.
    diff = _git(root, "diff", "-U0", "-M", "--no-color", "--no-ext-diff", "--no-textconv", "--no-relative",
                "--src-prefix=a/", "--dst-prefix=b/", commit, "--")
    path = None
    for line in diff.split(b"\n"):
        if line.startswith(b"+++ "):
            path = _target_path(line[4:])
        elif path is not None and (match := _HUNK.match(line)):
            start, count = int(match.group(1)), int(match.group(2) or 1)
            added.setdefault(path, set()).update(range(start, start + count))
    untracked = _git(root, "ls-files", "--others", "--exclude-standard", "-z")
    for raw in filter(None, untracked.split(b"\0")):
        name = raw.decode("utf-8", "replace")
        try:
            count = (root / name).read_bytes().count(b"\n") + 1
        except OSError:
            continue
        added[name] = set(range(1, count + 1))
    return added
