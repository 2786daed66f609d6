"""Which embedding model a project's search uses: the shipped MiniLM, or one tuned on the repo.

`codelearn train --search` fine-tunes the shipped model on the repo's own documented
code and, if it ranks held-out code better, promotes it here. A promoted model is an
ONNX file in the project's state folder (`search-models/`) plus `active.json`, which
names it and keeps the ones before it, so `codelearn models rollback --search` goes
back one step (to the shipped model at the end). With `embedder = "default"` the index
and every search use the active model; its vectors carry their own name, so promoting
or rolling back makes the next `codelearn index` re-embed, and nothing mixes vectors
from two models. No torch here: loading and running the model is onnxruntime's job.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from codelearn.errors import CodelearnError
from codelearn.paths import write_json

log = logging.getLogger(__name__)

FOLDER = "search-models"
ACTIVE = "active.json"
KEEP_PREVIOUS = 2  # models kept to roll back to (about 90 MB each)


@dataclass(frozen=True)
class SearchModel:
    """A promoted, repo-tuned search model."""

    file: str  # name of the ONNX file inside the state folder's search-models/
    sha256: str
    promoted: float  # unix time
    pairs: int = 0  # training pairs it was tuned on
    scores: dict = field(default_factory=dict)  # held-out scores that earned the promotion
    held_out: list = field(default_factory=list)  # `Unit.key`s of the definitions it never saw

    @property
    def tag(self) -> str:
        return tag_for(self.sha256)


def tag_for(sha256: str) -> str:
    """What sets a tuned model's vectors apart from the shipped model's (part of their name)."""
    return f"repo{sha256[:10]}"


def folder(state: Path) -> Path:
    return state / FOLDER


def _read(state: Path) -> dict:
    path = folder(state) / ACTIVE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {"active": None, "previous": []}
    except (OSError, ValueError) as exc:
        raise CodelearnError(f"Could not read {path}: {exc}",
                             f"Delete it to go back to the shipped search model: rm {path}") from exc


def _write(state: Path, data: dict) -> None:
    write_json(folder(state) / ACTIVE, data)


def active(state: Path) -> SearchModel | None:
    """The promoted model, or None for the shipped one (also when its file went missing)."""
    entry = _read(state).get("active")
    if not entry:
        return None
    model = SearchModel(**entry)
    if not model_path(state, model).is_file():
        log.warning("search model %s is missing; searching with the shipped model", model.file)
        return None
    return model


def share(state: Path, other: Path) -> None:
    """Let the project in `other` (a temporary copy of this index) search with this one's model."""
    if folder(state).is_dir() and not folder(other).exists():
        folder(other).symlink_to(folder(state).resolve(), target_is_directory=True)


def model_path(state: Path, model: SearchModel) -> Path:
    return folder(state) / model.file


def promote(state: Path, onnx: Path, sha256: str, *, pairs: int, scores: dict,
            held_out: list | None = None) -> SearchModel:
    """Move `onnx` into the state folder and make it the active search model."""
    dest_name = f"repo-{sha256[:12]}.onnx"
    dest = folder(state) / dest_name
    dest.parent.mkdir(parents=True, exist_ok=True)
    if onnx.resolve() != dest.resolve():
        shutil.move(str(onnx), dest)
    data = _read(state)
    if data.get("active"):
        data["previous"] = [data["active"], *data.get("previous", [])]
    model = SearchModel(dest_name, sha256, time.time(), pairs, scores, held_out or [])
    data["active"] = asdict(model)
    data["previous"] = data.get("previous", [])[:KEEP_PREVIOUS]
    _write(state, data)
    _prune(state, {e["file"] for e in [data["active"], *data["previous"]]})
    return model


def _prune(state: Path, keep: set[str]) -> None:
    for path in folder(state).glob("repo-*.onnx"):
        if path.name not in keep:
            path.unlink(missing_ok=True)


def rollback(state: Path) -> SearchModel | None:
    """Go back to the model promoted before the active one (None: the shipped model)."""
    data = _read(state)
    if not data.get("active"):
        raise CodelearnError("Search already uses the shipped model; there is nothing to roll back.",
                             "`codelearn train --search` tunes one on this repo.")
    previous = [p for p in data.get("previous", []) if (folder(state) / p["file"]).is_file()]
    data["active"], data["previous"] = (previous[0], previous[1:]) if previous else (None, [])
    _write(state, data)
    return SearchModel(**data["active"]) if data["active"] else None
