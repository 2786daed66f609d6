"""Indexing speed on the running Python's stdlib, copied into a temporary git repo.

Prints a table: cold index, no-op re-index and one-file re-index (each timed as
a whole `codelearn index` CLI process), and in-process search latency; then the
ratios that travel between machines, each against a baseline timed in the same
run: the cold index against embedding the same texts with the same model and
nothing else, the no-op re-index against `python -c "import codelearn"`.

    python benchmarks/index_stdlib.py [--keep DIR] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

IGNORE = shutil.ignore_patterns("site-packages", "__pycache__", "*.pyc", "*.pyo")
QUERIES = [
    "raw_decode", "HTTPConnection", "getLogger", "urlsplit", "SequenceMatcher",
    "parse an email address into its parts", "how are cookies stored between requests",
    "find the longest common subsequence of two lists", "rotate log files by size",
    "quote a string for use in a shell command", "compress data with zlib",
    "walk a directory tree", "convert a date to ISO 8601 text",
]


def git(repo: Path, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b",
           "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@b"}
    subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)


def make_corpus(dest: Path) -> Path:
    """Copy Lib (without site-packages and caches) into a fresh git repo."""
    shutil.copytree(sysconfig.get_paths()["stdlib"], dest, ignore=IGNORE, symlinks=True)
    git(dest, "init", "-q")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "stdlib")
    return dest


def timed_index(repo: Path, *extra: str) -> tuple[float, dict]:
    """Wall seconds of a whole `codelearn index --json` process, and its report."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "codelearn", "index", "--json", "--repo",
                           str(repo), *extra], capture_output=True, text=True)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    return took, json.loads(proc.stdout)


def keyword_ready(repo: Path, started: float, proc: subprocess.Popen, poll: float = 1.0) -> float:
    """Seconds from `started` until keyword search finds `urlsplit` in urllib/parse.py while the
    cold index is still running (nan if the index finished first)."""
    from codelearn.index.search import Searcher
    from codelearn.project import open_project

    while proc.poll() is None:
        time.sleep(poll)
        try:
            searcher = Searcher(open_project(repo))
            try:
                hits = searcher.search("urlsplit", k=5, mode="keyword")
            finally:
                searcher.close()
        except Exception:  # no catalog yet, or one mid-creation: try again
            continue
        if any(h.path.endswith("urllib/parse.py") for h in hits):
            return time.perf_counter() - started
    return float("nan")


def cold_index(repo: Path) -> tuple[float, dict, float]:
    """A cold `codelearn index --json` process: its wall seconds, its report, and when keyword
    search became usable during it."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "codelearn", "index", "--json", "--repo", str(repo)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ready = keyword_ready(repo, start, proc)
    out, err = proc.communicate()
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(err)
    return took, json.loads(out), ready


def change_one_file(repo: Path, n: int) -> None:
    """Edit one function body in a mid-sized module, a different edit each time."""
    path = repo / "json" / "decoder.py"
    text = path.read_text()
    marker = "        return obj, end\n"
    path.write_text(text.replace(marker, f"        _bench = {n}\n{marker}", 1))


def search_latency(repo: Path, rounds: int = 5) -> list[float]:
    from codelearn.index.search import Searcher
    from codelearn.project import open_project

    searcher = Searcher(open_project(repo))
    for query in QUERIES:
        searcher.search(query, k=10)  # warm-up: model load, caches
    samples = []
    for _ in range(rounds):
        for query in QUERIES:
            start = time.perf_counter()
            searcher.search(query, k=10)
            samples.append((time.perf_counter() - start) * 1000)
    searcher.close()
    return samples


def process_seconds(args: list[str], runs: int) -> float:
    """Median wall seconds of a Python process running `args` (a floor for any command)."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, *args], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def embed_only_seconds(repo: Path) -> tuple[float, int]:
    """Seconds to embed, in this process, the texts the index embedded (same model, same recipe)."""
    from codelearn.index.catalog import Catalog
    from codelearn.index.embedder import project_embedder
    from codelearn.index.indexer import embed_text
    from codelearn.project import open_project

    project = open_project(repo)
    catalog = Catalog(project.catalog_path, readonly=True)
    try:  # one text per vector, as the index embeds each distinct text once
        texts = list({s.vec_key: embed_text(s.chunk) for s in catalog.iter_chunks() if s.vec_key}.values())
    finally:
        catalog.close()
    embedder = project_embedder(project)
    start = time.perf_counter()
    embedder.embed_documents(texts)
    return time.perf_counter() - start, len(texts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="build the corpus here and keep it")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--reuse", action="store_true",
                        help="with --keep: reuse the indexed corpus there, skip the cold run")
    args = parser.parse_args()
    from codelearn.machine import this_machine

    print(f"machine: {this_machine().summary()}", flush=True)
    base = args.keep or Path(tempfile.mkdtemp(prefix="codelearn-bench-")) / "Lib"
    if args.reuse and (base / ".codelearn").exists():
        repo = base
        git(repo, "checkout", "-q", "--", ".")
        cold, report, ready = float("nan"), {"seconds": "skipped (--reuse)"}, float("nan")
        timed_index(repo)
    else:
        if base.exists():
            shutil.rmtree(base)
        repo = make_corpus(base)
        cold, report, ready = cold_index(repo)
    files = int(subprocess.run(["git", "ls-files"], cwd=repo, capture_output=True,
                               text=True).stdout.count("\n"))

    noop_runs = [timed_index(repo) for _ in range(args.runs)]
    noop = [took for took, _ in noop_runs]
    one = []
    for n in range(args.runs):
        change_one_file(repo, n)
        took, one_report = timed_index(repo)
        assert one_report["files_changed"] == 1, one_report
        one.append(took)
    latency = search_latency(repo)

    from codelearn.index.status import index_status
    from codelearn.project import open_project

    info = index_status(open_project(repo))
    rows = [
        ("corpus", f"{files} files in git, {info['files_indexed']} indexed, {info['chunks']} chunks, "
                   f"{info['vectors']} vectors"),
        ("cold index (CLI process)", f"{cold:.1f} s  stages {report['seconds']}"),
        ("keyword search usable after", f"{ready:.1f} s (polled each second during the cold run)"),
        ("no-op re-index (CLI, median)", f"{statistics.median(noop):.2f} s  all {[round(x, 2) for x in noop]}"
                                         " (the first is the one right after the cold run)"),
        ("  its stages, first / last", f"{noop_runs[0][1]['seconds']} / {noop_runs[-1][1]['seconds']}"),
        ("one file changed (CLI, median)", f"{statistics.median(one):.2f} s  all {[round(x, 2) for x in one]}"),
        ("search in process p50 / p95", f"{statistics.median(latency):.1f} ms / "
                                        f"{sorted(latency)[int(len(latency) * 0.95)]:.1f} ms"),
        ("index size", f"catalog {info['index_bytes'] / 1e6:.0f} MB, vectors "
                       f"{info['vector_store_bytes'] / 1e6:.0f} MB"),
        ("cpu cores", str(os.cpu_count())),
    ]
    floor = process_seconds(["-c", "import codelearn"], args.runs)
    cli = process_seconds(["-m", "codelearn", "--version"], args.runs)
    rows.append(("no-op / `import codelearn` process", f"{statistics.median(noop) / floor:.1f}x (import {floor:.2f} s)"))
    rows.append(("no-op / `codelearn --version` process", f"{statistics.median(noop) / cli:.1f}x (the CLI's "
                 f"own start-up {cli:.2f} s: typer, rich; the rest is git listing and the catalog compare)"))
    if cold == cold:  # not skipped by --reuse
        embed_s, count = embed_only_seconds(repo)
        rows.append(("cold index / embedding alone", f"{cold / embed_s:.2f}x (embedding {count} texts "
                     f"in process: {embed_s:.1f} s; the rest is reading, chunking, keyword index, store)"))
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  result")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    if not args.keep:
        shutil.rmtree(base.parent, ignore_errors=True)


if __name__ == "__main__":
    main()
