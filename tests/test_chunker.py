"""Tests for the syntax-aware chunker, with the real tree-sitter grammars."""

from __future__ import annotations

import dataclasses
import os
import sysconfig
import textwrap

import pytest

from codelearn.index import languages
from codelearn.index.chunk import KINDS, Chunk
from codelearn.index.chunker import ChunkLimits, chunk_file, language_for

# Split every class that has methods, so that small samples show qualified symbols.
SPLIT = ChunkLimits(class_chars=1, class_lines=1)


def rows(chunks: list[Chunk]) -> list[tuple[str, str, int, int, str]]:
    """The comparable part of chunks: kind, symbol, lines and context."""
    return [(c.kind, c.symbol, c.start_line, c.end_line, c.context) for c in chunks]


def src(text: str) -> str:
    """A sample without its first newline and common indentation."""
    return textwrap.dedent(text).lstrip("\n")


def assert_exact_and_covering(text: str, chunks: list[Chunk]) -> None:
    """Every chunk is exactly its lines; every non-blank line is in some chunk."""
    lines = text.replace("\r\n", "\n").split("\n")
    covered = [False] * len(lines)
    for chunk in chunks:
        assert chunk.kind in KINDS
        assert 1 <= chunk.start_line <= chunk.end_line <= len(lines)
        assert chunk.text == "\n".join(lines[chunk.start_line - 1 : chunk.end_line])
        covered[chunk.start_line - 1 : chunk.end_line] = [True] * len(chunk.text.split("\n"))
    missing = [i + 1 for i, line in enumerate(lines) if line.strip() and not covered[i]]
    assert missing == []


PYTHON = src('''
    """Decoding JSON."""
    import re

    FLAGS = re.VERBOSE


    # Keep the scanner fast.
    @lru_cache
    def scan(s):
        def inner():
            return s
        return inner


    class Small(Base):
        """Small."""
        def a(self):
            return 1


    class JSONDecoder(object):
        """Decode."""
        strict = True

        @classmethod
        def make(cls):
            return cls()

        parse_float = float

        class Error(ValueError):
            def explain(self):
                return "bad"

        def decode(self, s):
            return s
        # trailing comment


    if __name__ == "__main__":
        scan("x")
''')


def test_python_definitions_symbols_and_context():
    chunks = chunk_file("json/decoder.py", PYTHON, SPLIT)
    assert rows(chunks) == [
        ("module", "", 1, 4, ""),
        ("function", "scan", 7, 12, ""),
        ("header", "Small", 15, 16, ""),
        ("method", "Small.a", 17, 18, "class Small(Base):"),
        ("header", "JSONDecoder", 21, 23, ""),
        ("method", "JSONDecoder.make", 25, 27, "class JSONDecoder(object):"),
        ("header", "JSONDecoder", 29, 29, "class JSONDecoder(object):"),
        ("header", "JSONDecoder.Error", 31, 31, "class JSONDecoder(object):"),
        ("method", "JSONDecoder.Error.explain", 32, 33,
         "class JSONDecoder(object):\nclass Error(ValueError):"),
        ("method", "JSONDecoder.decode", 35, 37, "class JSONDecoder(object):"),
        ("module", "", 40, 41, ""),
    ]
    assert chunks[1].text.startswith("# Keep the scanner fast.\n@lru_cache\ndef scan(s):")
    assert all(c.language == "python" for c in chunks)
    assert_exact_and_covering(PYTHON, chunks)


def test_small_class_stays_one_chunk_with_default_limits():
    chunks = chunk_file("json/decoder.py", PYTHON)
    assert rows(chunks)[2:4] == [("class", "Small", 15, 18, ""),
                                 ("class", "JSONDecoder", 21, 37, "")]
    assert "Small.a" not in {c.symbol for c in chunks}


def test_big_class_splits_into_header_and_methods():
    methods = "".join(
        f"    def method_{i}(self, value):\n"
        f'        """Return value plus {i}, a docstring long enough to count."""\n'
        f"        return value + {i}\n\n"
        for i in range(20)
    )
    text = 'class Registry:\n    """Holds things."""\n    limit = 10\n\n' + methods
    chunks = chunk_file("registry.py", text)
    assert rows(chunks[:3]) == [
        ("header", "Registry", 1, 3, ""),
        ("method", "Registry.method_0", 5, 7, "class Registry:"),
        ("method", "Registry.method_1", 9, 11, "class Registry:"),
    ]
    assert len(chunks) == 21
    assert chunks[-1].symbol == "Registry.method_19"
    assert (chunks[-1].start_line, chunks[-1].end_line) == (81, 83)
    assert "def " not in chunks[0].text


def test_oversized_function_is_cut_into_continuous_windows():
    body = "".join(
        f"    if x == {i}:\n        y = compute({i}, x, 'label {i}')\n        return y + {i}\n\n"
        for i in range(100)
    )
    text = f"import os\n\n\ndef huge(x):\n{body}    return None\n"
    limits = ChunkLimits()
    chunks = chunk_file("huge.py", text, limits)
    windows = [c for c in chunks if c.symbol == "huge"]
    assert len(windows) > 5
    assert {(c.kind, c.context) for c in windows} == {("function", "")}
    assert windows[0].start_line == 4 and windows[-1].end_line == 405
    for prev, nxt in zip(windows, windows[1:]):
        assert nxt.start_line == prev.end_line + 2  # only the blank line between them
        assert nxt.text.startswith("    if x == ")  # cut between statements
    assert all(len(c.text) <= limits.window_chars * 1.25 for c in windows)
    assert_exact_and_covering(text, chunks)


JAVASCRIPT = src("""
    import fs from "fs";

    // Parses a config file.
    export function parse(text) {
      return JSON.parse(text);
    }

    const load = async (path) => {
      return parse(await fs.promises.readFile(path, "utf8"));
    };

    class Store extends Base {
      constructor(root) {
        super();
        this.root = root;
      }

      get(key) {
        return this.root[key];
      }
    }

    module.exports = { parse, load, Store };
""")

TYPESCRIPT = src("""
    import { Request } from "./http";

    export interface Handler {
      handle(req: Request): Promise<void>;
    }

    export enum Level { Debug, Info }

    namespace Util {
      export function slug(s: string): string {
        return s.toLowerCase();
      }
    }

    @Injectable()
    export class Router implements Handler {
      private routes: Map<string, Handler> = new Map();

      async handle(req: Request): Promise<void> {
        await this.routes.get(req.path)?.handle(req);
      }
    }

    export const add = (a: number, b: number): number => a + b;
""")

TYPESCRIPT_EXPECTED = [
    ("module", "", 1, 1, ""),
    ("class", "Handler", 3, 5, ""),
    ("class", "Level", 7, 7, ""),
    ("header", "Util", 9, 9, ""),
    ("function", "Util.slug", 10, 13, "namespace Util {"),
    ("header", "Router", 15, 17, ""),
    ("method", "Router.handle", 19, 22, "export class Router implements Handler {"),
    ("function", "add", 24, 24, ""),
]

TSX_EXTRA = "\n" + src("""
    export function App(props: { name: string }) {
      return <div className="app">{props.name}</div>;
    }
""")

GO = src("""
    package store

    import "sync"

    // Store keeps values in memory.
    type Store struct {
    \tmu   sync.Mutex
    \tdata map[string]string
    }

    // Get returns the value for key.
    func (s *Store) Get(key string) string {
    \ts.mu.Lock()
    \tdefer s.mu.Unlock()
    \treturn s.data[key]
    }

    func New() *Store {
    \treturn &Store{data: map[string]string{}}
    }
""")

RUST = src("""
    use std::fmt;

    /// A point in the plane.
    #[derive(Debug, Clone)]
    pub struct Point {
        x: f64,
        y: f64,
    }

    impl fmt::Display for Point {
        fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "({}, {})", self.x, self.y)
        }
    }

    mod geometry {
        pub fn origin() -> super::Point {
            super::Point { x: 0.0, y: 0.0 }
        }
    }
""")

JAVA = src("""
    package com.example;

    import java.util.List;

    /** A repository of users. */
    @Repository
    public class UserRepo {
        private final List<String> users;

        public UserRepo(List<String> users) {
            this.users = users;
        }

        @Override
        public String toString() {
            return "UserRepo" + users;
        }
    }

    enum Role { ADMIN, USER }
""")

C = src("""
    #include <stdio.h>
    #define MAX 10

    struct point {
        int x;
        int y;
    };

    typedef struct {
        char *name;
    } person_t;

    /* Adds two numbers. */
    static int add(int a, int b)
    {
        return a + b;
    }

    char *name_of(person_t *p) {
        return p->name;
    }
""")

CPP = src("""
    #include <string>

    namespace geo {

    template <typename T>
    struct Box {
      T value;
      T get() const { return value; }
    };

    double Circle::area() const {
      return 3.14 * r * r;
    }

    }  // namespace geo
""")

C_SHARP = src("""
    using System;

    namespace Shop.Orders
    {
        /// <summary>An order.</summary>
        [Serializable]
        public class Order
        {
            public int Id { get; set; }

            public decimal Total()
            {
                return 0m;
            }
        }
    }
""")

RUBY = src("""
    require "json"

    module Billing
      # An invoice.
      class Invoice
        attr_reader :total

        def self.empty
          new(0)
        end
      end

      def self.version
        "1.0"
      end
    end
""")

PHP = src("""
    <?php
    namespace App\\Models;

    use Illuminate\\Support\\Str;

    class Post {
        use HasSlug;

        public function title(): string {
            return ucfirst($this->name);
        }
    }

    function helper($x) {
        return $x * 2;
    }
""")

BASH = src("""
    #!/usr/bin/env bash
    set -euo pipefail

    # Prints usage.
    usage() {
      echo "usage: $0 FILE"
    }

    function build {
      make -j4
    }

    usage
""")

CASES = {
    "javascript": ("src/store.js", JAVASCRIPT, [
        ("module", "", 1, 1, ""),
        ("function", "parse", 3, 6, ""),
        ("function", "load", 8, 10, ""),
        ("header", "Store", 12, 12, ""),
        ("method", "Store.constructor", 13, 16, "class Store extends Base {"),
        ("method", "Store.get", 18, 21, "class Store extends Base {"),
        ("module", "", 23, 23, ""),
    ]),
    "typescript": ("src/router.ts", TYPESCRIPT, TYPESCRIPT_EXPECTED),
    "tsx": ("src/App.tsx", TYPESCRIPT + TSX_EXTRA,
            [*TYPESCRIPT_EXPECTED, ("function", "App", 26, 28, "")]),
    "go": ("store/store.go", GO, [
        ("module", "", 1, 3, ""),
        ("class", "Store", 5, 9, ""),
        ("method", "Store.Get", 11, 16, ""),
        ("function", "New", 18, 20, ""),
    ]),
    "rust": ("src/point.rs", RUST, [
        ("module", "", 1, 1, ""),
        ("class", "Point", 3, 8, ""),
        ("header", "Point", 10, 10, ""),
        ("method", "Point.fmt", 11, 14, "impl fmt::Display for Point {"),
        ("header", "geometry", 16, 16, ""),
        ("function", "geometry.origin", 17, 20, "mod geometry {"),
    ]),
    "java": ("src/UserRepo.java", JAVA, [
        ("module", "", 1, 3, ""),
        ("header", "UserRepo", 5, 8, ""),
        ("method", "UserRepo.UserRepo", 10, 12, "public class UserRepo {"),
        ("method", "UserRepo.toString", 14, 18, "public class UserRepo {"),
        ("class", "Role", 20, 20, ""),
    ]),
    "c": ("src/point.c", C, [
        ("module", "", 1, 2, ""),
        ("class", "point", 4, 7, ""),
        ("class", "person_t", 9, 11, ""),
        ("function", "add", 13, 17, ""),
        ("function", "name_of", 19, 21, ""),
    ]),
    "cpp": ("src/geo.cpp", CPP, [
        ("module", "", 1, 1, ""),
        ("header", "geo", 3, 3, ""),
        ("header", "geo.Box", 5, 7, "namespace geo {"),
        ("method", "geo.Box.get", 8, 9, "namespace geo {\nstruct Box {"),
        ("function", "geo.Circle.area", 11, 15, "namespace geo {"),
    ]),
    "c_sharp": ("Orders/Order.cs", C_SHARP, [
        ("module", "", 1, 1, ""),
        ("header", "Shop.Orders", 3, 4, ""),
        ("header", "Shop.Orders.Order", 5, 9, "namespace Shop.Orders"),
        ("method", "Shop.Orders.Order.Total", 11, 16,
         "namespace Shop.Orders\npublic class Order"),
    ]),
    "ruby": ("lib/billing.rb", RUBY, [
        ("module", "", 1, 1, ""),
        ("header", "Billing", 3, 3, ""),
        ("header", "Billing.Invoice", 4, 6, "module Billing"),
        ("method", "Billing.Invoice.empty", 8, 11, "module Billing\nclass Invoice"),
        ("function", "Billing.version", 13, 16, "module Billing"),
    ]),
    "php": ("app/Models/Post.php", PHP, [
        ("module", "", 1, 4, ""),
        ("header", "Post", 6, 7, ""),
        ("method", "Post.title", 9, 12, "class Post {"),
        ("function", "helper", 14, 16, ""),
    ]),
    "bash": ("scripts/build.sh", BASH, [
        ("module", "", 1, 2, ""),
        ("function", "usage", 4, 7, ""),
        ("function", "build", 9, 11, ""),
        ("module", "", 13, 13, ""),
    ]),
}


@pytest.mark.parametrize("language", sorted(CASES))
def test_language_sample(language):
    path, text, expected = CASES[language]
    chunks = chunk_file(path, text, SPLIT)
    assert rows(chunks) == expected
    assert {c.language for c in chunks} == {language}
    assert_exact_and_covering(text, chunks)


def test_leading_comments_and_attributes_belong_to_the_definition():
    rust = chunk_file("src/point.rs", RUST)
    assert rust[1].text.startswith("/// A point in the plane.\n#[derive(Debug, Clone)]\n")
    java = chunk_file("src/UserRepo.java", JAVA)
    assert java[1].text.startswith("/** A repository of users. */\n@Repository\n")


def test_language_for():
    assert language_for("a/b.py") == "python"
    assert language_for("x.TSX") == "tsx"
    assert language_for("lib/Rakefile") == "ruby"
    assert language_for("README.md") == "markdown"
    assert language_for("setup.cfg") is None


def test_shebang_picks_the_language_of_a_script_without_extension():
    script = "#!/usr/bin/env python3\nimport sys\n\n\ndef main():\n    pass\n"
    chunks = chunk_file("bin/tool", script)
    assert rows(chunks) == [("module", "", 1, 2, ""), ("function", "main", 5, 6, "")]


CPP_HEADER = src("""
    #pragma once
    #include <string>

    /// How many bytes a buffer of `count` items of `size` bytes takes.
    size_t buffer_bytes(size_t count, size_t size);

    /// A device, such as a CPU or a GPU, with an optional index.
    class Device {
     public:
      explicit Device(int index) : index_(index) {}
      int index() const {
        return index_;
      }
     private:
      int index_;
    };

    int twice(int x) {
      return 2 * x;
    }
""")


def test_a_cpp_header_named_dot_h_is_parsed_as_cpp_and_a_c_header_stays_c():
    chunks = chunk_file("core/Device.h", CPP_HEADER)
    assert {c.language for c in chunks} == {"cpp"}
    assert ("class", "Device") in {(c.kind, c.symbol) for c in chunks}
    c_header = "#include <stddef.h>\n\nstruct point { int x; int y; };\n\nint add(int a, int b) {\n  return a + b;\n}\n"
    c_chunks = chunk_file("point.h", c_header)
    assert {c.language for c in c_chunks} == {"c"}
    assert ("function", "add") in {(c.kind, c.symbol) for c in c_chunks}


MARKDOWN = src("""
    Intro text.

    # Project

    Some words.

    ## Install
    ### From source

    ```sh
    # not a heading
    make
    ```

    Usage
    -----
    Run it.
""")


def test_markdown_sections():
    chunks = chunk_file("docs/README.md", MARKDOWN)
    assert rows(chunks) == [
        ("section", "", 1, 1, ""),
        ("section", "Project", 3, 5, ""),
        ("section", "Project > Install > From source", 7, 13, "# Project\n## Install"),
        ("section", "Project > Usage", 15, 17, "# Project"),
    ]
    assert {c.language for c in chunks} == {"markdown"}
    assert_exact_and_covering(MARKDOWN, chunks)


def test_unknown_extension_gets_line_windows():
    paragraphs = [f"key_{i} = value {i}\nother_{i} = more text {i}\n" for i in range(200)]
    text = "\n".join(paragraphs)
    chunks = chunk_file("conf/settings.cfg", text)
    assert len(chunks) > 3
    assert {(c.kind, c.language, c.symbol) for c in chunks} == {("text", "text", "")}
    assert chunks[0].start_line == 1 and chunks[-1].end_line == 599
    for prev, nxt in zip(chunks, chunks[1:]):
        assert nxt.start_line == prev.end_line + 2  # cut at a blank line
    assert_exact_and_covering(text, chunks)


def test_small_text_file_is_one_chunk_and_empty_file_none():
    assert rows(chunk_file("notes.txt", "\nhello\nworld\n\n")) == [("text", "", 2, 3, "")]
    assert chunk_file("empty.py", "") == []
    assert chunk_file("blank.py", "\n\n  \n") == []


def test_a_line_longer_than_the_window_stays_whole():
    minified = "var a = 1;" * 500 + "\nfunction f() {" + "g();" * 500 + "}"
    assert rows(chunk_file("dist/app.min.js", minified)) == [
        ("module", "", 1, 1, ""), ("function", "f", 2, 2, "")]
    assert rows(chunk_file("blob.txt", "x" * 5000)) == [("text", "", 1, 1, "")]


def test_missing_grammar_falls_back_to_text(monkeypatch):
    broken = dataclasses.replace(languages.spec_by_name("go"), module="tree_sitter_missing")
    monkeypatch.setitem(languages._BY_NAME, "go", broken)
    languages.load_grammar.cache_clear()
    try:
        chunks = chunk_file("store/store.go", GO)
    finally:
        monkeypatch.undo()
        languages.load_grammar.cache_clear()
    assert rows(chunks) == [("text", "", 1, 20, "")]
    assert chunks[0].language == "go"


def test_every_query_compiles():
    for spec in languages.LANGUAGES:
        assert languages.load_grammar(spec.name) is not None, spec.name


def _stdlib_sample(count: int) -> list[str]:
    """About `count` .py files spread evenly over the CPython stdlib."""
    root = sysconfig.get_paths()["stdlib"]
    files = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in ("site-packages", "__pycache__"))
        files += [os.path.join(folder, n) for n in sorted(names) if n.endswith(".py")]
    return files[:: max(1, len(files) // count)]


def test_every_non_blank_stdlib_line_is_in_a_chunk():
    sample = _stdlib_sample(100)
    assert len(sample) >= 90
    for path in sample:
        with open(path, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
        chunks = chunk_file(path, text)
        assert chunks or not text.strip(), path
        assert_exact_and_covering(text, chunks)
