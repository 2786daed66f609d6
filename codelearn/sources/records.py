"""Records that describe what gets read: sources, listed files, skips and redactions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SKIP_REASONS = frozenset(
    {
        "ignored-secret-file",
        "binary",
        "too-large",
        "minified",
        "encoding",
        "symlink-loop",
        "symlink",  # a link to a file inside the source: indexed under its own path, once
        "outside-source",  # a link (or a path) that resolves outside the source root: never read
        "unreadable",
    }
)


@dataclass(frozen=True)
class Source:
    """A tree of files to read: the user's repo or one internal library."""

    label: str  # "repo" for the user's repo; "lib:NAME" for internal libraries
    root: Path  # absolute
    kind: str  # "git" | "folder" | "python"
    # For kind "python": the exact relative paths that belong to the distribution
    # (from its RECORD); empty means everything under root.
    only: tuple[str, ...] = ()


@dataclass(frozen=True)
class FileEntry:
    """One file found by listing; its content has not been read."""

    path: str  # posix path relative to the source root
    size: int
    mtime_ns: int
    # The git blob sha1 when git vouches that the working-tree file equals the staged
    # content; None for modified, untracked or non-git files.
    blob: str | None


@dataclass(frozen=True)
class Skip:
    """A file that is deliberately not read, and why."""

    path: str
    reason: str  # one of SKIP_REASONS
    detail: str = ""


@dataclass(frozen=True)
class Redaction:
    """A secret value that was replaced by a placeholder before the text left load_file."""

    path: str
    line: int  # 1-based
    kind: str


@dataclass(frozen=True)
class Listing:
    """The files of a source, and the ones skipped without reading them."""

    entries: list[FileEntry]
    skipped: list[Skip]


@dataclass(frozen=True)
class LoadedFile:
    """A file's text, safe to index: LF line ends, secret values replaced."""

    text: str
    content_hash: str  # git blob sha1 of the raw bytes
    redactions: list[Redaction]
