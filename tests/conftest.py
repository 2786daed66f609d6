"""Shared fixtures: isolated user dirs and real git repos built in the test."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sysconfig
from pathlib import Path

import pytest

# Read at import: the autouse fixture below clears CODELEARN_* for every test.
REAL_CONVERTER = os.environ.get("CODELEARN_CONVERTER_PATH", "")
REAL_SDIST = os.environ.get("CODELEARN_LLAMA_SDIST", "")
TRAIN_MODULES = ("torch", "transformers", "peft", "sentencepiece", "safetensors", "yaml", "llama_cpp")

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.com",
    "GIT_CONFIG_NOSYSTEM": "1",
}


@pytest.fixture(scope="session")
def embedder_cache(tmp_path_factory) -> Path:
    """One build of the int8 embedding model for the whole session (it takes seconds), made
    before any test times an index run."""
    from codelearn.index.onnx_embedder import MiniLMInt8Embedder

    cache = tmp_path_factory.mktemp("embedders")
    MiniLMInt8Embedder(threads=1, cache_dir=cache)
    return cache


@pytest.fixture(autouse=True)
def isolated_user_dirs(tmp_path_factory, monkeypatch, embedder_cache):
    """No test reads or writes the real user's config, data or caches."""
    home = tmp_path_factory.mktemp("home")
    (home / "cache").mkdir()
    (home / "cache" / "embedders").symlink_to(embedder_cache, target_is_directory=True)
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
def llama_sdist(tmp_path_factory, pytestconfig) -> Path:
    """The installed llama-cpp-python's own sdist (llama.cpp's sources and converters): from
    $CODELEARN_LLAMA_SDIST, else downloaded once from PyPI into pytest's cache and checked."""
    from codelearn.errors import CodelearnError
    from codelearn.models.converter import cached_sdist, installed_version

    version = installed_version()
    if REAL_SDIST:
        return Path(REAL_SDIST)
    cache = getattr(pytestconfig, "cache", None)
    folder = cache.mkdir("codelearn-sdist") if cache else tmp_path_factory.mktemp("sdist")
    try:
        return cached_sdist(version, folder)
    except CodelearnError as error:
        pytest.fail(f"llama-cpp-python {version}'s sdist could not be obtained: {error}")


@pytest.fixture(scope="session")
def real_converter(tmp_path_factory, pytestconfig, llama_sdist) -> Path:
    """llama.cpp's pinned converter, from $CODELEARN_CONVERTER_PATH or the sdist (downloaded once
    from PyPI into pytest's cache). The test install reaches PyPI, so failing to get it is an
    error, not a skip."""
    from codelearn.errors import CodelearnError
    from codelearn.models.converter import converter_dir

    missing = [m for m in TRAIN_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} not installed: install the test extra (pip install -e '.[test]')")
    cache = getattr(pytestconfig, "cache", None)
    home = cache.mkdir("codelearn-converter") if cache else tmp_path_factory.mktemp("converter")
    # Session fixtures start before the per-test user dirs: never touch the real cache.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CODELEARN_HOME", str(home))
        try:
            return converter_dir(REAL_CONVERTER or str(llama_sdist))
        except CodelearnError as error:
            pytest.fail(f"llama.cpp's converter could not be obtained: {error}")


@pytest.fixture(scope="session")
def tiny_hf(tmp_path_factory) -> Path:
    """A tiny Hugging Face Llama (SentencePiece tokenizer) that has seen some stdlib code, built once.

    Pretrained a little (~20 s) so that, like a real base model, it knows code: training on the
    repo then helps and training on junk hurts, which a random model cannot show."""
    from tinyhf import build_tiny_hf_llama

    return build_tiny_hf_llama(tmp_path_factory.mktemp("tiny-hf") / "model", pretrain_steps=300)


# -- training fixtures ---------------------------------------------------------------

STDLIB = Path(sysconfig.get_paths()["stdlib"])
HISTORY = ("textwrap.py", "shlex.py", "fnmatch.py", "glob.py", "bisect.py", "heapq.py")
NEW_CODE = '''\
def frobnicate_widget(widget, times):
    """Turn the widget's knob `times` times and report where it stopped."""
    position = widget.knob
    for _ in range(times):
        position = (position + 7) % 360
    widget.knob = position
    return position


def unfrobnicate_widget(widget):
    """Put the widget's knob back to zero."""
    widget.knob = 0
    return widget
'''


def junk_module(seed: int) -> str:
    """Garbage: a model trained on it gets confidently wrong about real code."""
    return "\n".join("zq" * (30 + (seed * 7 + i) % 11) for i in range(120)) + "\n"


def _history_repo(root: Path, junk: bool = False, dialect: bool = False) -> Path:
    """Commits of stdlib modules (or of junk, or of stdlib code in upper case), then one commit of
    new code no model has seen (in upper case too for the dialect)."""
    def text(index: int, name: str) -> str:
        if junk:
            return junk_module(index)
        code = (STDLIB / name).read_text()
        return code.upper() if dialect else code

    make_repo(root, {f"lib/{HISTORY[0]}": text(0, HISTORY[0])}, "first")
    for index, name in enumerate(HISTORY[1:], 1):
        write_files(root, {f"lib/{name}": text(index, name)})
        git(root, "add", "-A")
        git(root, "commit", "-q", "-m", f"add {name}")
    write_files(root, {"lib/widgets.py": NEW_CODE.upper() if dialect else NEW_CODE})
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "widgets")
    return root


def _train_setup(root: Path, tiny_hf: Path, real_converter: Path, monkeypatch) -> Path:
    from codelearn.models.registry import Registry, use_model
    from codelearn.models.bases import hf_base

    settings = {"EMBEDDER": "none", "TRAIN_BASE": str(tiny_hf), "CONVERTER_PATH": str(real_converter),
                "TRAIN_STEPS": "60", "TRAIN_LR": "3e-3", "GATE_TARGETS": "8", "TRAIN_MINUTES": "5"}
    for key, value in settings.items():
        monkeypatch.setenv(f"CODELEARN_{key}", value)
    use_model(Registry(), str(hf_base(tiny_hf, str(real_converter)).gguf))
    return root


@pytest.fixture
def train_repo(tmp_path, tiny_hf, real_converter, monkeypatch) -> Path:
    """A repo with history, the tiny model as the served base, fast training settings."""
    return _train_setup(_history_repo(tmp_path / "repo"), tiny_hf, real_converter, monkeypatch)


@pytest.fixture
def dialect_repo(tmp_path, tiny_hf, real_converter, monkeypatch) -> Path:
    """Stdlib code in upper case: learnable, and a model that learns it unlearns real Python."""
    return _train_setup(_history_repo(tmp_path / "dialect", dialect=True), tiny_hf, real_converter, monkeypatch)


@pytest.fixture
def junk_repo(tmp_path, tiny_hf, real_converter, monkeypatch) -> Path:
    """The same, but its history is junk: training on it makes a deliberately bad candidate."""
    return _train_setup(_history_repo(tmp_path / "junk", junk=True), tiny_hf, real_converter, monkeypatch)


