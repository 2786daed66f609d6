"""Resolve what the user asked to index into Sources: their repo and internal libraries."""

from __future__ import annotations

import json
import logging
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from codelearn.errors import CodelearnError
from codelearn.sources import filters
from codelearn.sources.gitfiles import work_tree_top
from codelearn.sources.records import Source

if TYPE_CHECKING:
    from importlib import metadata

log = logging.getLogger(__name__)

_NAMED_SPEC = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9_.\-]*)=(?P<path>.+)$")


def repo_source(root: Path) -> Source:
    """The user's repo: its git work tree when root is inside one, else the folder itself."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise CodelearnError(
            f"The repository folder {root} does not exist.",
            "Run codelearn inside your repository, or pass its path.",
        )
    top = work_tree_top(root)
    if top is not None:
        return Source(label="repo", root=top, kind="git")
    return Source(label="repo", root=root, kind="folder")


def library_source(spec: str, base: Path) -> Source:
    """A library from "python:DIST", "NAME=PATH" or "PATH" (relative to base)."""
    if spec.startswith("python:"):
        return _python_source(spec.removeprefix("python:").strip())
    match = _NAMED_SPEC.match(spec)
    name, raw_path = (match["name"], match["path"]) if match else (None, spec)
    return _folder_source(Path(base) / Path(raw_path).expanduser(), name)


def _folder_source(path: Path, name: str | None) -> Source:
    folder = path.resolve()
    if not folder.is_dir():
        raise CodelearnError(
            f"The library folder {folder} does not exist.",
            "Check the path (relative paths are read from the repository root), "
            "or use python:DIST-NAME for an installed package.",
        )
    label = f"lib:{name or folder.name}"
    # A library inside a work tree is listed through git (honours its .gitignore, gives
    # blobs), but rooted at the library folder, not at the top of that work tree.
    kind = "git" if work_tree_top(folder) is not None else "folder"
    return Source(label=label, root=folder, kind=kind)


def _python_source(name: str) -> Source:
    from importlib import metadata  # ~40 ms: only for `python:` libraries

    try:
        dist = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        raise _unknown_distribution(name) from None
    dist_name = dist.metadata["Name"] or name
    label = f"lib:{dist_name}"
    editable = _editable_folder(dist)
    if editable is not None:
        log.debug("%s is an editable install; reading its source folder %s", dist_name, editable)
        kind = "git" if work_tree_top(editable) is not None else "folder"
        return Source(label=label, root=editable, kind=kind)
    if dist.files is None:
        raise CodelearnError(
            f"The distribution {dist_name!r} has no list of installed files (RECORD).",
            f"Reinstall it with pip: pip install --force-reinstall {dist_name}",
        )
    root = Path(dist.locate_file("")).resolve()
    only = tuple(sorted({p for f in dist.files if _is_source_file(p := f.as_posix())}))
    if not only:
        raise CodelearnError(
            f"The distribution {dist_name!r} installs no text or code files under {root}.",
            "Pick the distribution that holds the source (a compiled-only wheel has none).",
        )
    return Source(label=label, root=root, kind="python", only=only)


def _is_source_file(path: str) -> bool:
    parts = path.split("/")
    if parts[0] in ("..", "") or "__pycache__" in parts:
        return False  # scripts installed into bin/ live outside site-packages
    if any(p.endswith((".dist-info", ".egg-info")) for p in parts):
        return False
    return not filters.binary_by_name(path)


def _editable_folder(dist: metadata.Distribution) -> Path | None:
    from urllib.parse import unquote, urlparse

    raw = dist.read_text("direct_url.json")
    if not raw:
        return None
    try:
        info = json.loads(raw)
    except ValueError:
        return None
    url = info.get("url", "")
    if not info.get("dir_info", {}).get("editable") or not url.startswith("file:"):
        return None
    folder = Path(unquote(urlparse(url).path))
    return folder if folder.is_dir() else None


def _unknown_distribution(name: str) -> CodelearnError:
    import difflib
    from importlib import metadata

    hint = ""
    providers = metadata.packages_distributions().get(name.replace("-", "_"), [])
    if providers:
        hint = f" The module {name!r} is provided by {', '.join(map(repr, providers))}."
    else:
        installed = sorted({n for d in metadata.distributions() if (n := d.metadata["Name"])})
        close = difflib.get_close_matches(name, installed, n=3, cutoff=0.6)
        if close:
            hint = f" Did you mean {', '.join(f'python:{c}' for c in close)}?"
    return CodelearnError(
        f"No Python distribution named {name!r} is installed in {sys.prefix}.{hint}",
        "Use the name pip knows it by: `pip list` shows them "
        "(`pip show -f NAME` lists its files), and install it into this environment first.",
    )
