"""Text embedders: the interface, the registry, and the text recipe for code chunks.

An embedder turns texts into float32, L2-normalised vectors. Its `name` says
which model *and* which text recipe made them (`minilm-int8-onnx@1`); the
store keeps it next to the vectors, and a different name means re-embed.

Embedding is the cost of a cold index, and it grows with tokens per chunk, so
the indexer does not embed the raw chunk: it embeds `descriptor(...)`, about 31
tokens: module and symbol as words, the docstring's first sentence, then the
start of the code. benchmarks/EMBEDDERS.md has the measurements behind the
recipe and the caps.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable


from codelearn.errors import CodelearnError
from codelearn.index import keywords
from codelearn.index.vectors import RECIPE_VERSION

if TYPE_CHECKING:  # numpy loads only when something is embedded
    import numpy as np

    from codelearn.project import Project

log = logging.getLogger(__name__)


#: Default cap on the descriptor, in characters (about 4 per token: 64 tokens).
DESCRIPTOR_MAX_CHARS = 160


@runtime_checkable
class Embedder(Protocol):
    """What the indexer and the searcher need from an embedding backend."""

    name: str  # model + recipe version, stored with the vectors
    dim: int
    max_tokens: int

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        """float32 (len(texts), dim), L2-normalised rows, in input order."""
        ...

    def embed_query(self, text: str) -> np.ndarray:
        """float32 (dim,), L2-normalised."""
        ...


# --- registry -------------------------------------------------------------


def _minilm(threads: int | None) -> Embedder:
    from codelearn.index.onnx_embedder import MiniLMInt8Embedder

    return MiniLMInt8Embedder(threads=threads, compute="int8")


def _minilm_fp32(threads: int | None) -> Embedder:
    from codelearn.index.onnx_embedder import MiniLMInt8Embedder

    return MiniLMInt8Embedder(threads=threads, compute="float")


# Each entry: the name its vectors carry (model + recipe), and how to build it.
# The name is known without loading the model, so a run with nothing to embed
# never pays for onnxruntime. (Keep in step with onnx_embedder.vectors_name:
# a test checks.)
_REGISTRY: dict[str, tuple[str, Callable[[int | None], Embedder]]] = {
    "minilm": (f"minilm-q8b1-t64@{RECIPE_VERSION}", _minilm),
    "minilm-fp32": (f"minilm-int8-onnx-t64@{RECIPE_VERSION}", _minilm_fp32),
}
_ALIASES = {"default": "minilm", "minilm-int8-onnx": "minilm"}

#: The setting value that turns vector search off: keyword search only, and
#: no embedding cost at all (for very large repos or slow machines).
NO_EMBEDDER = "none"


class _NoEmbedder:
    name = NO_EMBEDDER
    dim = 0
    max_tokens = 0

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        raise CodelearnError("Vector search is off (embedder = none).",
                             "Use --mode keyword, or set embedder = default.")

    embed_query = embed_documents


def available() -> list[str]:
    """The names `get_embedder` accepts."""
    return sorted([*_REGISTRY, *_ALIASES, NO_EMBEDDER])


class LazyEmbedder:
    """An embedder whose model loads on the first call that needs it."""

    def __init__(self, name: str, factory: Callable[[int | None], Embedder],
                 threads: int | None) -> None:
        self.name = name
        self._factory = factory
        self._threads = threads
        self._backend: Embedder | None = None

    @property
    def backend(self) -> Embedder:
        if self._backend is None:
            self._backend = self._factory(self._threads)
            if self._backend.name != self.name:
                raise CodelearnError(
                    f"Embedder {self._backend.name!r} does not match its registry entry "
                    f"{self.name!r}.", "This is a bug in codelearn; please report it.")
        return self._backend

    @property
    def dim(self) -> int:
        return self.backend.dim

    @property
    def max_tokens(self) -> int:
        return self.backend.max_tokens

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self.backend.embed_documents(texts)

    def embed_query(self, text: str) -> np.ndarray:
        return self.backend.embed_query(text)


def get_embedder(name: str = "default", *, threads: int | None = None) -> Embedder:
    """The embedder configured as `name` ("default", "minilm"), loaded lazily.

    `threads` defaults to every core (os.cpu_count()).
    """
    if name == NO_EMBEDDER:
        return _NoEmbedder()
    key = _ALIASES.get(name, name)
    entry = _REGISTRY.get(key)
    if entry is None:
        raise CodelearnError(
            f"Unknown embedder {name!r}.",
            f"Choose one of: {', '.join(available())}.",
        )
    vector_name, factory = entry
    return LazyEmbedder(vector_name, factory, threads if threads else (os.cpu_count() or 1))


def project_embedder(project: Project, *, threads: int | None = None) -> Embedder:
    """The embedder a project's index and searches use: its `embedder` setting, where
    `default` means the model tuned on this repo once `codelearn train --search` promoted one
    (codelearn.index.search_model)."""
    if project.settings.embedder == "default":
        from codelearn.index import search_model

        tuned = search_model.active(project.state)
        if tuned is not None:
            return tuned_embedder(search_model.model_path(project.state, tuned), tuned.sha256,
                                   tuned.tag, threads)
    return get_embedder(project.settings.embedder, threads=threads)


def tuned_embedder(path, sha256: str, tag: str, threads: int | None) -> Embedder:
    """MiniLM with other weights (an ONNX file of the same graph), run in int8 like the default."""
    from codelearn.index.onnx_embedder import vectors_name

    def build(n: int | None) -> Embedder:
        from codelearn.index.onnx_embedder import MiniLMInt8Embedder

        return MiniLMInt8Embedder(threads=n, weights=(path, sha256, tag))

    return LazyEmbedder(vectors_name("int8", tag=tag), build, threads if threads else (os.cpu_count() or 1))


# --- helpers shared by backends ---------------------------------------------


# --- the text recipe --------------------------------------------------------

_SELF = re.compile(r"\b(?:self|cls)\.")
_DOCSTRING = re.compile(r'^\s*[rRbBuU]{0,2}("""|\'\'\'|"|\')(.*?)(\1|$)', re.S)


def split_identifier(name: str) -> list[str]:
    """`parse_HTTPHeaders2` -> ['parse', 'http', 'headers', '2']."""
    return [w.lower() for w in keywords.split_identifier(name)]


def _signature(text: str) -> tuple[str, str]:
    """The header line(s) of a def/class and the rest of the text."""
    lines = text.splitlines()
    i = 0
    while i < len(lines) and lines[i].lstrip().startswith("@"):
        i += 1
    head: list[str] = []
    while i < len(lines):
        head.append(lines[i].strip())
        i += 1
        if head[-1].endswith(":") or head[-1].endswith("{") or len(head) >= 6:
            break
    return " ".join(head), "\n".join(lines[i:])


def _first_sentence(body: str) -> tuple[str, str]:
    """The docstring's first sentence (if the body opens with one), and the rest."""
    m = _DOCSTRING.match(body)
    if not m:
        return "", body
    doc = " ".join(m.group(2).split())
    cut = re.search(r"(?<=[.!?])\s", doc)
    return (doc[: cut.start()] if cut else doc), body[m.end() :]


def _module_words(path: str) -> list[str]:
    parts = path.replace("\\", "/").rsplit(".", 1)[0].split("/")
    if parts[-1] in ("__init__", "__main__", "mod", "index", "lib") and len(parts) > 1:
        parts = parts[:-1]
    return split_identifier(parts[-1]) if parts and parts[-1] else []


def descriptor(
    kind: str,
    symbol: str,
    context: str,
    text: str,
    path: str,
    max_chars: int = DESCRIPTOR_MAX_CHARS,
) -> str:
    """The text to embed for a code chunk (recipe RECIPE_VERSION).

    `module words: symbol words: docstring's first sentence: code`, the code
    without its docstring, `self.` and underscores (each costs a token and says
    nothing), whitespace collapsed, then cut to `max_chars` (the tokenizer cuts
    again at the model's `max_tokens`). Most telling first, because the tail is
    cut. Measured (benchmarks/EMBEDDERS.md): raw code beats a bag of
    identifier words at the same token budget, so the code itself stays.
    Non-code chunks (`section`, `text`) are embedded as their own text.
    `context` is accepted for recipes to come; the symbol already carries the
    class name.
    """
    if kind in ("section", "text") or not text.strip():
        return " ".join(text.split())[:max_chars]
    head, body = _signature(text)
    doc, body = _first_sentence(body)
    head = re.sub(r"^(async\s+)?def\s+", "", head)
    code = _SELF.sub("", head + " " + body).replace("_", " ")
    name = " ".join(split_identifier(symbol.replace(".", "_")))
    module = " ".join(_module_words(path))
    parts = [p for p in (module, name, doc[:120]) if p]
    parts.append(" ".join(code.split()))
    return ": ".join(parts)[:max_chars]
