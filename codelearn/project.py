"""A project: the repo being learned, its settings, state folder and sources."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codelearn.config import LoadedSettings, Settings, load_settings
from codelearn.paths import find_repo_root, state_dir


@dataclass(frozen=True)
class Project:
    """Everything a command needs to know about where it runs."""

    root: Path
    loaded: LoadedSettings

    @property
    def settings(self) -> Settings:
        return self.loaded.settings

    @property
    def state(self) -> Path:
        return state_dir(self.root)

    @property
    def catalog_path(self) -> Path:
        return self.state / "index.db"

    @property
    def store_path(self) -> Path:
        return self.state / "chroma"

    @property
    def key(self) -> str:
        """Identifies this repo in a shared vector store."""
        return hashlib.sha1(str(self.root).encode()).hexdigest()[:12]

    def ensure_state(self) -> Path:
        return state_dir(self.root, create=True)

    def sources(self):
        """The repo itself, then each configured internal library."""
        from codelearn.sources import library_source, repo_source

        found = [repo_source(self.root)]
        found.extend(library_source(spec, self.root) for spec in self.settings.libraries)
        return found


def open_project(start: Path | str | None = None, overrides: dict[str, Any] | None = None) -> Project:
    """Find the repo around `start` (a path or a string) and load its settings."""
    root = find_repo_root(Path(start) if start else Path.cwd())
    return Project(root=root, loaded=load_settings(root, overrides))
