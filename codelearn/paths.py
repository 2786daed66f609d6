"""Where codelearn keeps its state: one folder per repo, user dirs for the rest."""

from __future__ import annotations

import os
from pathlib import Path

STATE_DIR_NAME = ".codelearn"


def find_repo_root(start: Path) -> Path:
    """The enclosing git work tree's top, or `start` itself for a plain folder."""
    start = start.resolve()
    for candidate in (start, *start.parents):
        if (candidate / ".git").exists():
            return candidate
    return start


def state_dir(repo_root: Path, create: bool = False) -> Path:
    """The repo's state folder; created with a `.gitignore` so git never sees it."""
    path = repo_root / STATE_DIR_NAME
    if create:
        path.mkdir(exist_ok=True)
        marker = path / ".gitignore"
        if not marker.exists():
            # A `*` inside the folder keeps it out of git without touching the
            # user's tracked .gitignore (pytest's cache does the same).
            marker.write_text("# created by codelearn\n*\n")
    return path


def user_data_dir() -> Path:
    """Per-user data (models)."""
    env = os.environ.get("CODELEARN_HOME")
    if env:
        return Path(env) / "data"
    from platformdirs import user_data_dir as _dir

    return Path(_dir("codelearn"))


def user_cache_dir() -> Path:
    """Per-user caches."""
    env = os.environ.get("CODELEARN_HOME")
    if env:
        return Path(env) / "cache"
    from platformdirs import user_cache_dir as _dir

    return Path(_dir("codelearn"))


def new_run_dir(parent: Path) -> Path:
    """A fresh folder named by the UTC time (YYYYmmdd-HHMMSS), suffixed when a run already took it."""
    import time

    parent.mkdir(parents=True, exist_ok=True)
    stem = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    for n in range(1, 1000):
        path = parent / (stem if n == 1 else f"{stem}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free run folder under {parent}")


def write_atomic(path: Path, text: str | bytes, mode: int | None = None) -> None:
    """Replace `path` with `text` all at once: readers see the old file or the new one, never
    a part, and a crash (even of the machine) leaves one of the two. `mode`: its permissions."""
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, data, indent: int = 1, **dumps) -> None:
    """`data` as JSON in `path`, written atomically (see write_atomic)."""
    import json

    write_atomic(path, json.dumps(data, indent=indent, **dumps))
