"""Shared fixtures: isolated user dirs and real git repos built in the test."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

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
