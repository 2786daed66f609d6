"""search_code through a real MCP stdio session vs `Searcher.search` in process (a script, not a test).

Both sides search the same index with the same queries, interleaved call by call so
background load hits both alike, after a warm-up. The MCP side pays what an editor
pays: JSON-RPC over pipes to a `codelearn mcp` process, argument validation, a hop to
the server's index thread and JSON encoding of the hits. Goal: MCP p50 within 10 ms of
in-process p50.

    CODELEARN_HOME=/tmp/clhome python benchmarks/mcp_latency.py --repo . [-n 300] [--mode hybrid]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

QUERIES = [
    "Searcher", "run_index", "redact_secrets", "how are secrets kept out of the index",
    "where is the answer model loaded", "list files tracked by git", "chunk a big class into methods",
    "fuse keyword and vector scores", "WriterLock", "which model answers a question",
    "schema version mismatch", "watch files and reindex", "citation verified against excerpts",
]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def measure(repo: Path, queries: list[str], n: int, warmup: int, k: int, mode: str) -> dict:
    """Seconds per call: in process, in process with JSON encoding, and over MCP."""
    from mcp import Client, StdioServerParameters

    from codelearn.index.search import Searcher
    from codelearn.project import open_project

    searcher = Searcher(open_project(repo))
    params = StdioServerParameters(command=sys.executable, args=["-m", "codelearn", "mcp", "-C", str(repo)],
                                   env=dict(os.environ))
    times: dict[str, list[float]] = {"in process": [], "in process + JSON": [], "MCP stdio": []}
    async with Client(params) as client:
        for i in range(warmup + n):
            query = queries[i % len(queries)]
            start = time.perf_counter()
            hits = searcher.search(query, k=k, mode=mode)
            middle = time.perf_counter()
            json.dumps([h.as_json() for h in hits], ensure_ascii=False)
            encoded = time.perf_counter()
            result = await client.call_tool("search_code", {"query": query, "k": k, "mode": mode})
            done = time.perf_counter()
            if result.is_error:
                raise SystemExit(result.content[0].text)
            if i >= warmup:
                times["in process"].append(middle - start)
                times["in process + JSON"].append(encoded - start)
                times["MCP stdio"].append(done - encoded)
    searcher.close()
    return times


def main() -> None:
    import anyio

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", type=Path, default=Path("."), help="an indexed repo (never re-indexed here)")
    ap.add_argument("-n", type=int, default=300, help="timed calls per side")
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--mode", default="hybrid", choices=("hybrid", "keyword", "vector"))
    ap.add_argument("--queries", type=Path, help="one query per line (default: a mixed built-in set)")
    args = ap.parse_args()
    from codelearn.machine import this_machine

    print(f"machine: {this_machine().summary()}", flush=True)
    queries = args.queries.read_text().split("\n") if args.queries else QUERIES
    queries = [q for q in queries if q.strip()]
    times = anyio.run(measure, args.repo.resolve(), queries, args.n, args.warmup, args.k, args.mode)
    print(f"search_code, k={args.k}, mode={args.mode}, {args.n} calls per side, {len(queries)} queries\n")
    print("| path | p50 ms | p95 ms | mean ms |\n|---|---|---|---|")
    for name, values in times.items():
        ms = [v * 1000 for v in values]
        print(f"| {name} | {percentile(ms, 0.5):.2f} | {percentile(ms, 0.95):.2f} | {statistics.fmean(ms):.2f} |")
    gap = (percentile(times["MCP stdio"], 0.5) - percentile(times["in process"], 0.5)) * 1000
    print(f"\nMCP p50 - in-process p50 = {gap:.2f} ms (goal: <= 10 ms): {'met' if gap <= 10 else 'MISSED'}")


if __name__ == "__main__":
    main()
