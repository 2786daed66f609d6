"""Which languages the chunker knows, and lazy loading of their tree-sitter grammars.

Adding a language is one entry in `LANGUAGES` plus one `queries/<name>.scm` file that
captures definitions as `@definition.function`, `@definition.method`,
`@definition.class` or `@definition.module`, each with a `@name` (and, for methods
declared outside their type such as Go's, a `@receiver`).

This module is the only place that imports `tree_sitter`: a grammar is imported on
first use and cached; a missing grammar package is logged once and the caller falls
back to the text chunker.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_QUERY_DIR = Path(__file__).with_name("queries")


@dataclass(frozen=True)
class LanguageSpec:
    """One language: how to recognise its files and where its grammar lives."""

    name: str
    extensions: tuple[str, ...]
    module: str  # the grammar package, e.g. "tree_sitter_python"
    function: str = "language"  # the function in `module` returning the grammar pointer
    query: str = ""  # query file in codelearn/index/queries; defaults to "<name>.scm"
    filenames: tuple[str, ...] = ()  # exact file names without a telling extension
    interpreters: tuple[str, ...] = ()  # shebang interpreters, e.g. "python3"

    @property
    def query_file(self) -> str:
        """The query file name for this language."""
        return self.query or f"{self.name}.scm"


LANGUAGES: tuple[LanguageSpec, ...] = (
    LanguageSpec("python", (".py", ".pyi", ".pyw"), "tree_sitter_python",
                 interpreters=("python", "python3")),
    LanguageSpec("javascript", (".js", ".mjs", ".cjs", ".jsx"), "tree_sitter_javascript",
                 interpreters=("node",)),
    LanguageSpec("typescript", (".ts", ".mts", ".cts"), "tree_sitter_typescript",
                 function="language_typescript"),
    LanguageSpec("tsx", (".tsx",), "tree_sitter_typescript",
                 function="language_tsx", query="typescript.scm"),
    LanguageSpec("go", (".go",), "tree_sitter_go"),
    LanguageSpec("rust", (".rs",), "tree_sitter_rust"),
    LanguageSpec("java", (".java",), "tree_sitter_java"),
    LanguageSpec("c", (".c", ".h"), "tree_sitter_c"),
    LanguageSpec("cpp", (".cc", ".cpp", ".cxx", ".c++", ".hh", ".hpp", ".hxx", ".h++", ".ipp"),
                 "tree_sitter_cpp"),
    LanguageSpec("c_sharp", (".cs",), "tree_sitter_c_sharp"),
    LanguageSpec("ruby", (".rb", ".rake", ".gemspec", ".ru"), "tree_sitter_ruby",
                 filenames=("Rakefile", "Gemfile", "Guardfile", "Vagrantfile"),
                 interpreters=("ruby",)),
    LanguageSpec("php", (".php", ".phtml"), "tree_sitter_php", function="language_php",
                 interpreters=("php",)),
    LanguageSpec("bash", (".sh", ".bash"), "tree_sitter_bash",
                 filenames=(".bashrc", ".bash_profile", ".bash_aliases", ".profile"),
                 interpreters=("sh", "bash")),
)

_BY_NAME = {spec.name: spec for spec in LANGUAGES}
_BY_EXTENSION = {ext: spec for spec in LANGUAGES for ext in spec.extensions}
_BY_FILENAME = {fn: spec for spec in LANGUAGES for fn in spec.filenames}
_BY_INTERPRETER = {i: spec for spec in LANGUAGES for i in spec.interpreters}


@dataclass(frozen=True)
class Grammar:
    """A loaded grammar and its compiled definitions query."""

    name: str
    language: Any  # tree_sitter.Language
    query: Any  # tree_sitter.Query

    def parse(self, source: bytes) -> Any:
        """Parse `source` and return the root node (a fresh parser: thread-safe)."""
        from tree_sitter import Parser

        return Parser(self.language).parse(source).root_node

    def definitions(self, root: Any) -> list[tuple[int, dict[str, list[Any]]]]:
        """Run the definitions query over `root`: (pattern index, captures) per match."""
        from tree_sitter import QueryCursor

        return QueryCursor(self.query).matches(root)


def spec_for_path(path: str) -> LanguageSpec | None:
    """The language of `path` by its file name or extension, or None."""
    base = os.path.basename(path)
    spec = _BY_FILENAME.get(base)
    if spec is not None:
        return spec
    return _BY_EXTENSION.get(os.path.splitext(base)[1].lower())


# `.h` is C and C++ alike: a header with any of these is parsed as C++ (the C grammar cannot see
# its classes, namespaces or templates and would leave it one block of glue).
_CPP_HEADER = re.compile(r"^\s*(?:(?:class|namespace)\s+\w|template\s*<|(?:public|private|protected)\s*:)"
                         r"|\bstd::", re.M)


def spec_for_text(path: str, text: str) -> LanguageSpec | None:
    """The language of `path`, looking at its text where the name is ambiguous (a `#!` line,
    a C++ header named `.h`)."""
    spec = spec_for_path(path)
    if spec is None:
        return spec_for_shebang(text)
    if spec.name == "c" and path.endswith(".h") and _CPP_HEADER.search(text, 0, 65536):
        return _BY_NAME["cpp"]
    return spec


def spec_for_shebang(text: str) -> LanguageSpec | None:
    """The language named by a `#!` first line (`#!/usr/bin/env python3`), or None."""
    if not text.startswith("#!"):
        return None
    words = text[2:].split("\n", 1)[0].split()
    if not words:
        return None
    program = os.path.basename(words[0])
    if program == "env" and len(words) > 1:
        program = words[-1] if words[1].startswith("-") else words[1]
    return _BY_INTERPRETER.get(program) or _BY_INTERPRETER.get(program.rstrip("0123456789."))


def spec_by_name(name: str) -> LanguageSpec | None:
    """The spec registered under `name`, or None."""
    return _BY_NAME.get(name)


@lru_cache(maxsize=None)
def load_grammar(name: str) -> Grammar | None:
    """Import and cache the grammar for language `name`; None (logged) if unavailable."""
    spec = _BY_NAME.get(name)
    if spec is None:
        return None
    try:
        from tree_sitter import Language, Query

        module = importlib.import_module(spec.module)
        language = Language(getattr(module, spec.function)())
    except (ImportError, AttributeError) as exc:
        log.warning("No tree-sitter grammar for %s (%s); using the text chunker.", name, exc)
        return None
    source = (_QUERY_DIR / spec.query_file).read_text(encoding="utf-8")
    return Grammar(name, language, Query(language, source))
