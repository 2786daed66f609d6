"""The settings model and where each value comes from.

Precedence, highest first: command-line flag > `CODELEARN_*` environment
variable > repo config (`.codelearn.toml` at the repo root) > user config
(`config.toml` in the platform's user config dir) > the default.
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from codelearn.errors import CodelearnError

REPO_CONFIG_NAME = ".codelearn.toml"
ENV_PREFIX = "CODELEARN_"


class Settings(BaseModel):
    """Every knob codelearn has, each with a default and a description."""

    model_config = {"extra": "forbid"}

    libraries: list[str] = Field(
        default_factory=list,
        description="Internal libraries to index beside the repo: folders "
        "(`../sdk`, `NAME=PATH`) or installed distributions (`python:mycompany-sdk`).",
    )
    embedder: str = Field(
        default="default",
        description="Embedding backend for vector search: default (MiniLM int8 ONNX) or "
        "none (keyword search only, no embedding cost).",
    )
    embed_tests: bool = Field(
        default=False,
        description="Also embed chunks under test folders; they are always keyword-indexed.",
    )
    max_file_bytes: int = Field(
        default=1_000_000, description="Files larger than this are skipped (bytes)."
    )
    ignore_file: str = Field(
        default=".codelearnignore",
        description="Gitignore-style file of paths to keep out of the index but not out of git.",
    )
    chroma_url: str = Field(
        default="",
        description="URL of a Chroma server (http://host:8000) to hold vectors; "
        "empty keeps them on disk in the repo's state folder.",
    )
    store_flush_min: int = Field(
        default=1000,
        description="New vectors wait in the catalog (searched exactly) until this many "
        "accumulate, then go to the vector store in one write.",
    )
    search_k: int = Field(default=10, description="Results `codelearn search` returns.")
    threads: int = Field(
        default=0, description="CPU threads for embedding; 0 picks all cores."
    )
    watch_debounce_ms: int = Field(
        default=500, description="`codelearn watch` waits this long after a change."
    )


@dataclass(frozen=True)
class LoadedSettings:
    """Settings plus, for each field, the place its value came from."""

    settings: Settings
    origins: dict[str, str]


def user_config_path() -> Path:
    """Where the per-user config file lives."""
    env = os.environ.get("CODELEARN_CONFIG")
    if env:
        return Path(env)
    from platformdirs import user_config_dir

    return Path(user_config_dir("codelearn")) / "config.toml"


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CodelearnError(f"Cannot read {path}: {exc}.", "Fix or delete the file.") from exc
    return data.get("codelearn", data)


def _from_env() -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, field in Settings.model_fields.items():
        raw = os.environ.get(ENV_PREFIX + name.upper())
        if raw is None:
            continue
        if field.annotation == list[str]:
            values[name] = json.loads(raw) if raw.startswith("[") else [
                part.strip() for part in raw.split(",") if part.strip()
            ]
        else:
            values[name] = raw
    return values


def load_settings(repo_root: Path | None, overrides: dict[str, Any] | None = None) -> LoadedSettings:
    """Merge all layers into one validated Settings, remembering origins."""
    layers: list[tuple[str, dict[str, Any]]] = [("user config " + str(user_config_path()), _read_toml(user_config_path()))]
    if repo_root is not None:
        repo_file = repo_root / REPO_CONFIG_NAME
        layers.append((f"repo config {repo_file}", _read_toml(repo_file)))
    layers.append(("environment", _from_env()))
    layers.append(("command line", {k: v for k, v in (overrides or {}).items() if v is not None}))

    merged: dict[str, Any] = {}
    origins = {name: "default" for name in Settings.model_fields}
    for origin, values in layers:
        for key, value in values.items():
            if key not in Settings.model_fields:
                raise CodelearnError(
                    f"Unknown setting {key!r} in {origin}.",
                    f"Valid settings: {', '.join(Settings.model_fields)}.",
                )
            merged[key] = value
            origins[key] = origin
    try:
        settings = Settings(**merged)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = str(err["loc"][0]) if err["loc"] else "?"
        raise CodelearnError(
            f"Invalid value for setting {key!r} (from {origins.get(key, '?')}): {err['msg']}.",
            "Correct it, or run `codelearn config` to see every setting.",
        ) from None
    return LoadedSettings(settings, origins)


def describe_settings() -> list[tuple[str, str, str]]:
    """(name, default, description) for every setting, for docs and `config`."""
    rows = []
    for name, field in Settings.model_fields.items():
        default = field.default_factory() if field.default_factory else field.default
        rows.append((name, json.dumps(default), field.description or ""))
    return rows
