"""The settings model and where each value comes from.

Precedence, highest first: command-line flag > `CODELEARN_*` environment
variable > repo config (`.codelearn.toml` at the repo root) > user config
(`config.toml` in the platform's user config dir) > the default.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from codelearn.errors import CodelearnError

REPO_CONFIG_NAME = ".codelearn.toml"
ENV_PREFIX = "CODELEARN_"


def _setting(default: Any, description: str) -> Any:
    """A settings field: its default and the one line `codelearn config` shows."""
    factory = (lambda: list(default)) if isinstance(default, list) else (lambda: default)
    return field(default_factory=factory, metadata={"description": description})


@dataclass(frozen=True)
class Settings:
    """Every knob codelearn has, each with a default and a description.

    A plain dataclass rather than a pydantic model: this is loaded by every
    command, including the one git hooks run after each commit, and pydantic's
    import and model build cost ~0.1 s of that budget.
    """

    libraries: list[str] = _setting(
        [], "Internal libraries to index beside the repo: folders "
        "(`../sdk`, `NAME=PATH`) or installed distributions (`python:mycompany-sdk`).")
    embedder: str = _setting(
        "default", "Embedding backend for vector search: default (MiniLM int8 ONNX) or "
        "none (keyword search only, no embedding cost).")
    embed_tests: bool = _setting(
        False, "Also embed chunks under test folders; they are always keyword-indexed.")
    max_file_bytes: int = _setting(1_000_000, "Files larger than this are skipped (bytes).")
    ignore_file: str = _setting(
        ".codelearnignore",
        "Gitignore-style file of paths to keep out of the index but not out of git.")
    chroma_url: str = _setting(
        "", "URL of a Chroma server (http://host:8000) to hold vectors; "
        "empty keeps them on disk in the repo's state folder.")
    store_flush_min: int = _setting(
        1000, "New vectors wait in the catalog (searched exactly) until this many "
        "accumulate, then go to the vector store in one write.")
    search_k: int = _setting(10, "Results `codelearn search` returns.")
    threads: int = _setting(
        0, "CPU threads for embedding and for the answer model; 0 picks automatically "
        "(all cores for embedding; for the model, fewer when the machine is busy).")
    watch_debounce_ms: int = _setting(500, "`codelearn watch` waits this long after a change.")
    model: str = _setting(
        "", "Answer model: a name from `codelearn models list` or a path to a .gguf file; "
        "empty uses the repo's promoted trained model, else the `models use` choice, else the default.")
    model_url: str = _setting(
        "", "Base URL of a running llama.cpp server (http://host:8080) to answer instead of a "
        "local model; its OpenAI-compatible endpoint is used.")
    chat_format: str = _setting(
        "", "Chat prompt format when the model file has no template of its own: chatml, "
        "llama3, gemma, phi3 or llama2; empty uses the file's template or the catalogue's.")
    context_size: int = _setting(
        0, "Model context window in tokens; 0 picks min(the model's trained length, 4096).")
    gpu_layers: int = _setting(
        -1, "Layers offloaded to the GPU; -1 offloads all when llama.cpp was built with GPU "
        "support, 0 keeps everything on the CPU.")
    max_context: int = _setting(
        1000, "Tokens of retrieved code put in the prompt (prompt speed on a CPU is about "
        "100 tokens/s for a 0.5B model, so this sets the wait before the first word).")
    answer_tokens: int = _setting(512, "Most tokens an answer may have; room kept for it in the window.")
    ask_k: int = _setting(8, "Search hits considered for an answer before packing.")
    temperature: float = _setting(0.2, "Sampling temperature for answers; 0 is greedy.")
    repeat_penalty: float = _setting(1.1, "Penalty on repeated tokens (small models loop without it).")
    multi_query: str = _setting(
        "auto", "Let the model write extra search queries first: on, off, or auto "
        "(on only for models the catalogue marks as good enough).")
    deep: bool = _setting(
        False, "Answer in deep mode: read up to `deep_tokens` of code in window-sized batches, take "
        "notes with their sources, then answer from the notes (slower; `ask --deep` for one question).")
    deep_tokens: int = _setting(6000, "Most tokens of code deep mode reads for one answer.")
    history: bool = _setting(
        True, "Keep every answered question, its sources and your feedback in .codelearn/history.db "
        "(local only; `codelearn history clear` deletes it).")
    # -- training (`codelearn train`) and evaluation (`codelearn eval`) --
    train_base: str = _setting(
        "", "Model to fine-tune: a catalogue name, a .gguf path or a Hugging Face model folder; "
        "empty trains the base of the model `ask` serves.")
    train_backend: str = _setting(
        "auto", "Trainer: auto (unsloth QLoRA on a CUDA GPU when installed, else peft LoRA), peft or unsloth.")
    train_minutes: float = _setting(
        240.0, "Time budget of one training run in minutes (the nightly run stops training then "
        "and still exports, evaluates and decides); 0 = no limit.")
    train_steps: int = _setting(0, "Most optimiser steps per run; 0 = until the time budget or three passes over the data.")
    train_checkpoint_minutes: float = _setting(
        15.0, "Save the training state this often; a run that is killed or crashes goes on from there "
        "the next time (same data, base and settings); 0 = never.")
    train_carry_on: bool = _setting(
        True, "A promoted run that its budget (train_minutes or train_steps) ended before three passes "
        "keeps its training state, and the next run with the same data (nothing changed) goes on "
        "from it with a budget of its own instead of being up to date; false = up to date.")
    train_warm_start: bool = _setting(
        True, "With train_carry_on, a run on changed data (a commit since) starts from that kept "
        "state's adapter instead of the base, where the split allows it (same base and LoRA shape, "
        "a cut at or after the last run's): what earlier nights learned is kept; so does the run after "
        "a refused candidate, with other samples; false = from the base.")
    train_search: bool = _setting(
        True, "`codelearn train` first tunes the search model on the repo (as `train --search` does; "
        "needs embedder = default and 40+ documented definitions, else skipped).")
    train_rank: int = _setting(16, "LoRA rank.")
    train_alpha: int = _setting(0, "LoRA alpha; 0 = 2 x rank.")
    train_lr: float = _setting(2e-4, "Peak learning rate (linear warm-up, cosine decay to 10%).")
    train_seq_len: int = _setting(512, "Longest training sequence in tokens.")
    train_grad_accum: int = _setting(4, "Samples per optimiser step.")
    train_pack: bool = _setting(
        False, "On a CPU, join a step's short samples into sequences of up to train_seq_len tokens (the "
        "same gradient from fewer, longer sequences; measured no faster on 2 AMX cores, see "
        "docs/learning.md). On a GPU a step is always one sequence (3x the tokens/s on an H200).")
    train_kl_weight: float = _setting(
        0.0, "Weight of a KL penalty toward the base model's predictions (costs a second forward pass).")
    train_dtype: str = _setting(
        "auto", "Training precision: auto (the fastest on this machine, measured once: bf16 only where the "
        "CPU runs it natively), fp32, bf16-autocast (fp32 weights) or bf16 (bf16 weights).")
    train_seed: int = _setting(0, "Seed for the hold-out slice, sample draws and training order.")
    replay_share: float = _setting(
        0.05, "Share of training tokens that are general code (the running Python's stdlib), "
        "against forgetting.")
    chat_replay_share: float = _setting(
        0.25, "Tokens of the base model's own chat answers replayed per token of chat instructions, "
        "so the chat model keeps answering like itself; each of its answers (42) is used at most four "
        "times, which caps the replay (at about 0.2 on a repo with 170k tokens of chat instructions).")
    holdout_share: float = _setting(
        0.10, "Share of the history's added lines held out after a cut commit (never trained on; "
        "what the gate and eval measure on).")
    random_holdout_share: float = _setting(0.05, "Share of files held out at random as well.")
    context_neighbours: int = _setting(3, "Neighbour chunks before the target in context samples and probes.")
    export: str = _setting(
        "gguf", "What a run exports: gguf (merged and requantized model) or adapter (a LoRA GGUF "
        "served on top of the base model; keeps all of the gain, 20-40 MB).")
    export_quant: str = _setting(
        "same", "Quantization of an exported GGUF: same (the serving model's type), or Q8_0, Q4_K_M, F16...")
    converter_path: str = _setting(
        "", "A local copy of llama.cpp's converter (a llama-cpp-python sdist .tar.gz or its folder), "
        "for machines that cannot download it.")
    forget_tolerance: float = _setting(
        0.02, "The gate refuses a candidate whose loss on general code or chat rises more than this (relative).")
    forget_scales: str = _setting(
        "0.75,0.5,0.25", "A candidate refused for forgetting alone is tried again with its learned change "
        "scaled to each of these in turn (weights part of the way from the base to the candidate: most "
        "of the repo gain stays, most of the drift goes), and the first that passes every check is "
        "promoted; empty = refuse at once.")
    gate_targets: int = _setting(24, "Held-out chunks the gate scores both models on.")
    gate_min_gain: float = _setting(
        0.01, "The gate promotes only when held-out repo loss falls by at least this (relative), with and "
        "without retrieved code.")
    gate_confidence: float = _setting(
        0.95, "...and when a paired bootstrap over the probed targets puts this share of the interval below 0.")
    keep_candidates: int = _setting(3, "Trained models kept per repo besides the serving one; older ones are deleted.")

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


SETTING_TYPES: dict[str, Any] = {f.name: f.type for f in fields(Settings)}
SETTING_NAMES = tuple(SETTING_TYPES)
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def describe(name: str) -> str:
    """The one-line description of a setting."""
    return next(f.metadata["description"] for f in fields(Settings) if f.name == name)


def _coerce(name: str, value: Any) -> Any:
    """Check or convert one value to the setting's type; raise ValueError if it won't go."""
    kind = SETTING_TYPES[name]
    if kind in ("bool", bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ValueError("expected true or false")
    if kind in ("int", int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
        raise ValueError("expected a whole number")
    if kind in ("float", float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            return float(value)  # ValueError says what is wrong
        raise ValueError("expected a number")
    if kind in ("list[str]", list[str]):
        if isinstance(value, str):
            value = json.loads(value) if value.startswith("[") else [
                part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
        raise ValueError("expected a list of strings")
    if isinstance(value, str):
        return value
    raise ValueError("expected a string")


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
    import tomllib

    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except (OSError, ValueError) as exc:  # TOMLDecodeError is a ValueError
        raise CodelearnError(f"Cannot read {path}: {exc}.", "Fix or delete the file.") from exc
    return data.get("codelearn", data)


def _from_env() -> dict[str, Any]:
    return {name: os.environ[ENV_PREFIX + name.upper()] for name in SETTING_NAMES
            if ENV_PREFIX + name.upper() in os.environ}


def load_settings(repo_root: Path | None, overrides: dict[str, Any] | None = None) -> LoadedSettings:
    """Merge all layers into one validated Settings, remembering origins."""
    layers: list[tuple[str, dict[str, Any]]] = [("user config " + str(user_config_path()), _read_toml(user_config_path()))]
    if repo_root is not None:
        repo_file = repo_root / REPO_CONFIG_NAME
        layers.append((f"repo config {repo_file}", _read_toml(repo_file)))
    layers.append(("environment", _from_env()))
    layers.append(("command line", {k: v for k, v in (overrides or {}).items() if v is not None}))

    merged: dict[str, Any] = {}
    origins = {name: "default" for name in SETTING_NAMES}
    for origin, values in layers:
        for key, value in values.items():
            if key not in SETTING_TYPES:
                raise CodelearnError(
                    f"Unknown setting {key!r} in {origin}.",
                    f"Valid settings: {', '.join(SETTING_NAMES)}.",
                )
            try:
                merged[key] = _coerce(key, value)
            except (ValueError, json.JSONDecodeError) as exc:
                raise CodelearnError(
                    f"Invalid value {value!r} for setting {key!r} (from {origin}): {exc}.",
                    "Correct it, or run `codelearn config` to see every setting.",
                ) from None
            origins[key] = origin
    return LoadedSettings(Settings(**merged), origins)


def describe_settings() -> list[tuple[str, str, str]]:
    """(name, default, description) for every setting, for docs and `config`."""
    defaults = Settings().as_dict()
    return [(name, json.dumps(defaults[name]), describe(name)) for name in SETTING_NAMES]
