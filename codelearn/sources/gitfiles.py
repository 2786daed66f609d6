"""The one place that runs the `git` CLI: work-tree discovery and file listing.

Two commands run concurrently: `git ls-files -s` for the staged blob of every tracked
file, and `git status --porcelain=v2` for working-tree edits and untracked files.
`status` (not `diff-files`) because it re-checks files whose stat data is stale (after a
copy or a `touch`) instead of reporting them all as modified; `--no-optional-locks` so
that it never writes the user's index and races their own git commands.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from codelearn.errors import CodelearnError

log = logging.getLogger(__name__)

_SUBMODULE_MODE = "160000"
_SYMLINK_MODE = "120000"
_SHA1_HEX_LEN = 40


@dataclass
class GitFiles:
    """What git says about the files under one directory (paths relative to it)."""

    clean: dict[str, str] = field(default_factory=dict)  # path -> staged blob sha1
    dirty: set[str] = field(default_factory=set)  # tracked, but edited, conflicted or a symlink
    untracked: list[str] = field(default_factory=list)  # not ignored
    submodules: set[str] = field(default_factory=set)


def work_tree_top(path: Path) -> Path | None:
    """The top of the git work tree that contains path, or None (not a repo, or no git)."""
    if shutil.which("git") is None:
        log.debug("git is not installed; %s is read as a plain folder", path)
        return None
    proc = subprocess.run(
        ["git", "-C", str(path), "rev-parse", "--show-toplevel"],
        capture_output=True,
        text=True,
    )
    if "dubious ownership" in proc.stderr:
        raise CodelearnError(
            f"git refuses to read {path}: the repository belongs to another user.",
            f"If you trust it, run: git config --global --add safe.directory {path}",
        )
    if proc.returncode != 0 or not proc.stdout.strip():
        return None
    return Path(proc.stdout.strip()).resolve()


def list_git_files(root: Path) -> GitFiles:
    """List tracked and untracked (not ignored) files under root, which is in a work tree."""
    staged = _start(root, "ls-files", "--stage", "-z")
    status = _start(
        root,
        "--no-optional-locks",
        "status",
        "--porcelain=v2",
        "-z",
        "--untracked-files=all",
        "--ignore-submodules=all",
        "--",
        ".",
    )
    prefix = _show_prefix(root)
    staged_out = _finish(staged)
    status_out = _finish(status)

    files = GitFiles()
    _read_stage(staged_out, files)
    _read_status(status_out, prefix, files)
    return files


def _start(root: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["git", "-C", str(root), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _finish(proc: subprocess.Popen[bytes]) -> bytes:
    out, err = proc.communicate()
    if proc.returncode != 0:
        root, cmd = proc.args[2], " ".join(proc.args[3:])  # type: ignore[index]
        raise CodelearnError(
            f"git {cmd} failed in {root}: {err.decode(errors='replace').strip()}",
            f"Check that `git status` works in {root}.",
        )
    return out


def _show_prefix(root: Path) -> str:
    # `status` prints paths relative to the top; `ls-files` relative to root.
    proc = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "--show-prefix"], capture_output=True
    )
    return proc.stdout.decode("utf-8", "surrogateescape").strip()


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _read_stage(out: bytes, files: GitFiles) -> None:
    for record in out.split(b"\0"):
        if not record:
            continue
        meta, _, raw_path = record.partition(b"\t")
        mode, sha, stage = meta.decode("ascii").split(" ")
        path = _decode(raw_path)
        if mode == _SUBMODULE_MODE:
            files.submodules.add(path)
        elif stage != "0" or mode == _SYMLINK_MODE or len(sha) != _SHA1_HEX_LEN:
            # Conflicts have several stages; a symlink's blob is its target's name, not
            # the content read through it; a sha256 repo's ids are not our hash.
            files.clean.pop(path, None)
            files.dirty.add(path)
        elif path not in files.dirty:
            files.clean[path] = sha


def _read_status(out: bytes, prefix: str, files: GitFiles) -> None:
    fields = out.split(b"\0")
    i = 0
    while i < len(fields):
        record = fields[i]
        i += 1
        if not record:
            continue
        kind = record[:1]
        if kind == b"?":
            path = _relative(_decode(record[2:]), prefix)
            if path is not None and not path.endswith("/"):  # "dir/" is a nested repo
                files.untracked.append(path)
            continue
        if kind == b"2":
            i += 1  # a rename/copy record is followed by the original path
        if kind in (b"1", b"2", b"u"):
            parts = record.split(b" ", {b"1": 8, b"2": 9, b"u": 10}[kind])
            worktree_state = parts[1][1:2]
            path = _relative(_decode(parts[-1]), prefix)
            if path is None:
                continue
            if kind == b"u" or worktree_state != b".":
                files.clean.pop(path, None)
                files.dirty.add(path)


def _relative(path: str, prefix: str) -> str | None:
    if not prefix:
        return path
    return path[len(prefix) :] if path.startswith(prefix) else None
