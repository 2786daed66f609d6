"""List the files of a source without reading them: git, plain folder or Python distribution."""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from codelearn.sources import filters
from codelearn.sources.gitfiles import list_git_files
from codelearn.sources.ignore import IgnoreRules
from codelearn.sources.records import FileEntry, Listing, Skip, Source
from codelearn.sources.secrets import secret_file_pattern

log = logging.getLogger(__name__)

# Never descended into when walking a plain folder (git sources have .gitignore for that).
EXCLUDED_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        "node_modules",
        "__pycache__",
        ".venv",
        ".codelearn",
        ".tox",
        ".nox",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
    }
)
# Skipped only when they hold a virtual environment: CPython's own `Lib/venv` is code.
VENV_DIR_NAMES = frozenset({"venv", "env"})
STATE_DIR = ".codelearn"  # codelearn's own files, even when a repo does not ignore them

# A candidate: (relative path, blob or None).
_Candidate = tuple[str, "str | None"]


def list_files(source: Source, *, max_bytes: int, ignore_file: str = ".codelearnignore") -> Listing:
    """The files of source worth reading, and the ones skipped by name, size or link."""
    rules = IgnoreRules.from_file(source.root / ignore_file)
    entries: list[FileEntry] = []
    skipped: list[Skip] = []
    if source.kind == "git":
        candidates: Iterator[_Candidate] = _git_candidates(source.root)
    elif source.kind == "python" and source.only:
        candidates = ((path, None) for path in source.only)
    else:
        candidates = _walk(source.root, rules, skipped, os.path.realpath(source.root))
    real_root = os.path.realpath(source.root)
    # RECORD paths of an installed distribution may climb out (`../../bin/tool`); git and the
    # folder walk only ever reach outside through a link, which `_examine` checks anyway.
    check_all = source.kind == "python"
    for path, blob in candidates:
        if rules.ignores(path):
            continue
        result = _examine(source.root, path, blob, max_bytes, real_root, check_all)
        if isinstance(result, FileEntry):
            entries.append(result)
        elif result is not None:
            skipped.append(result)
    entries.sort(key=lambda e: e.path)
    skipped.sort(key=lambda s: s.path)
    log.debug("%s: %d files listed, %d skipped", source.label, len(entries), len(skipped))
    return Listing(entries=entries, skipped=skipped)


def _git_candidates(root: Path) -> Iterator[_Candidate]:
    files = list_git_files(root)
    for path in files.clean.keys() | files.dirty | set(files.untracked):
        if path.split("/", 1)[0] == STATE_DIR or path in files.submodules:
            continue
        yield path, files.clean.get(path)


def inside(real_root: str, target: str) -> bool:
    return target == real_root or target.startswith(real_root.rstrip(os.sep) + os.sep)


def _link_skip(path: str, target: str, real_root: str) -> Skip | None:
    """Why a link (or a climbing path) is not read: it leaves the source, or it names a
    secret, or it points at a file of the source that is indexed under its own path."""
    if (pattern := secret_file_pattern(target.replace(os.sep, "/"))) is not None:
        return Skip(path, "ignored-secret-file", f"links to a file matching {pattern}")
    if not inside(real_root, target):
        return Skip(path, "outside-source", "resolves outside the source folder")
    return None


def _examine(root: Path, path: str, blob: str | None, max_bytes: int, real_root: str,
             check_all: bool = False) -> FileEntry | Skip | None:
    """A listed file, a skip, or None for something that is not a file (any more)."""
    if (pattern := secret_file_pattern(path)) is not None:
        return Skip(path, "ignored-secret-file", f"matches {pattern}")
    full = f"{root}{os.sep}{path}"
    try:
        info = os.lstat(full)
        link = stat.S_ISLNK(info.st_mode)
        if link or check_all:
            target = os.path.realpath(full)
            if (why := _link_skip(path, target, real_root)) is not None:
                return why
            if link:
                if os.path.isfile(target) and target != os.path.join(real_root, path):
                    own = os.path.relpath(target, real_root).replace(os.sep, "/")
                    return Skip(path, "symlink", f"links to {own}, indexed under that path")
                blob = None  # git's blob of a link is its target's name
            info = os.stat(full)
    except FileNotFoundError:
        if os.path.islink(full):
            return Skip(path, "unreadable", "broken symlink")
        return None  # deleted in the work tree
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return Skip(path, "symlink-loop", "symlink resolves to itself")
        return Skip(path, "unreadable", f"{type(exc).__name__}: {exc.strerror or exc}")
    if not stat.S_ISREG(info.st_mode):
        return None  # a directory behind a symlink, a socket, a fifo
    if filters.binary_by_name(path):
        return Skip(path, "binary", "by file extension")
    if (why := filters.generated_by_name(path)) is not None:
        return Skip(path, "minified", why)
    if info.st_size > max_bytes:
        return Skip(path, "too-large", f"{info.st_size} bytes, over {max_bytes}")
    return FileEntry(path=path, size=info.st_size, mtime_ns=info.st_mtime_ns, blob=blob)


def _walk(root: Path, rules: IgnoreRules, skipped: list[Skip], real_root: str) -> Iterator[_Candidate]:
    """Walk a plain folder depth-first; folder links are not followed (one that stays inside
    is walked under its own path, one that leaves is never read)."""
    top = os.stat(root)
    stack: list[tuple[str, str, frozenset[tuple[int, int]]]] = [
        (str(root), "", frozenset({(top.st_dev, top.st_ino)}))
    ]
    while stack:
        directory, prefix, ancestors = stack.pop()
        try:
            with os.scandir(directory) as it:
                children = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            skipped.append(Skip(prefix.rstrip("/") or ".", "unreadable", str(exc.strerror)))
            continue
        for entry in reversed(children):
            rel = prefix + entry.name
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            if not is_dir:
                yield rel, None
                continue
            if _excluded_dir(entry) or rules.ignores(rel, is_dir=True):
                continue
            if entry.is_symlink() and not inside(real_root, os.path.realpath(entry.path)):
                skipped.append(Skip(rel, "outside-source", "a folder link that leaves the source"))
                continue
            try:
                info = entry.stat()
            except OSError as exc:
                reason = "symlink-loop" if exc.errno == errno.ELOOP else "unreadable"
                skipped.append(Skip(rel, reason, str(exc.strerror)))
                continue
            key = (info.st_dev, info.st_ino)
            if key in ancestors:
                skipped.append(Skip(rel, "symlink-loop", "links to a directory above it"))
                continue
            if entry.is_symlink():  # its target is inside and walked under its own path
                target = os.path.relpath(os.path.realpath(entry.path), real_root).replace(os.sep, "/")
                skipped.append(Skip(rel, "symlink", f"links to {target}, indexed under that path"))
                continue
            stack.append((entry.path, rel + "/", ancestors | {key}))


def _excluded_dir(entry: os.DirEntry[str]) -> bool:
    if entry.name in EXCLUDED_DIRS:
        return True
    return entry.name in VENV_DIR_NAMES and os.path.exists(
        os.path.join(entry.path, "pyvenv.cfg")
    )
