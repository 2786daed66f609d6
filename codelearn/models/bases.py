"""Which model a run starts from and which one it must beat.

The candidate must beat the model `ask` serves for the repo now. It is trained
from that model's *base* (a promoted model's base, never the adapted model
itself, so nightly runs do not compound drift), or from `train_base`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from codelearn.errors import CodelearnError
from codelearn.models.registry import Registry, ResolvedModel, resolve_model
from codelearn.project import Project


@dataclass(frozen=True)
class ModelRef:
    """A model as scored: its GGUF, an optional LoRA adapter GGUF, and an identity
    (sha256s) that names it in the cache."""

    label: str
    path: Path
    identity: str
    lora: Path | None = None

    def as_json(self) -> dict:
        return {"label": self.label, "path": str(self.path), "identity": self.identity,
                "lora": str(self.lora) if self.lora else None}


@dataclass(frozen=True)
class Base:
    """The training base: its GGUF (tokenizer, the `base` condition) and where its
    trainable weights come from (the same GGUF, or a Hugging Face folder)."""

    name: str
    gguf: Path
    sha256: str
    weights: Path  # a .gguf file or a Hugging Face folder
    template: str = "chatml"


def model_ref(resolved: ResolvedModel, label: str) -> ModelRef:
    entry = resolved.entry
    identity = entry.sha256 if entry else f"{resolved.path}:{resolved.path.stat().st_size}:" \
                                          f"{resolved.path.stat().st_mtime_ns}"
    if entry and entry.adapter:
        identity += "+" + (entry.adapter_sha256 or entry.adapter)
    return ModelRef(label, resolved.path, identity, resolved.lora)


def serving_model(project: Project, registry: Registry) -> ResolvedModel:
    """What `ask` would answer with in this repo (a `model_url` server cannot be trained against)."""
    origin = f"setting ({project.loaded.origins.get('model', 'default')})"
    return resolve_model(registry, project.settings.model, project.key, origin)


def training_base(project: Project, registry: Registry, serving: ResolvedModel) -> Base:
    """The `train_base` setting, else the serving model's base (itself, if not adapted)."""
    choice = project.settings.train_base
    if choice and Path(choice).expanduser().is_dir():
        return hf_base(Path(choice).expanduser().resolve(), project.settings.converter_path)
    if choice:
        resolved = resolve_model(registry, choice, None, "train_base")
    elif serving.entry is not None and serving.entry.kind == "adapted" and serving.entry.base:
        resolved = resolve_model(registry, serving.entry.base, None, "base of the serving model")
    else:
        resolved = serving
    entry = resolved.entry
    if entry is not None:
        sha = entry.sha256
    else:
        from codelearn.models.registry import sha256_file

        sha = sha256_file(resolved.path)
    return Base(resolved.name, resolved.path, sha, resolved.path, resolved.template or "chatml")


def _hf_key(folder: Path) -> str:
    import hashlib

    digest = hashlib.sha256((folder / "config.json").read_bytes())
    for weights in sorted(folder.glob("*.safetensors")):
        stat = weights.stat()
        digest.update(f"{weights.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def hf_base(folder: Path, converter_path: str = "") -> Base:
    """A Hugging Face model folder as the base; its GGUF (Q8_0) is made once and cached."""
    from codelearn.paths import user_cache_dir

    if not (folder / "config.json").is_file():
        raise CodelearnError(f"{folder} is not a Hugging Face model folder (no config.json).",
                             "Set train_base to a .gguf file, a catalogue name or a model folder.")
    key = _hf_key(folder)
    gguf = user_cache_dir() / "bases" / f"hf-{key[:16]}" / "model-q8_0.gguf"
    if not gguf.is_file():
        from codelearn.llm.llama_backend import quantize_gguf
        from codelearn.models.converter import converter_dir, run_convert_hf

        gguf.parent.mkdir(parents=True, exist_ok=True)
        wide = run_convert_hf(folder, gguf.with_name("model-f16.gguf"), "f16",
                              converter=converter_dir(converter_path))
        quantize_gguf(wide, gguf, "Q8_0")
        wide.unlink()
    return Base(str(gguf), gguf, key, folder)  # named by path: not a registry entry
