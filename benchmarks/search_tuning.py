"""What tuning the search model on the repo buys (`codelearn train --search`; a script, not a test).

    python benchmarks/search_tuning.py --repo <indexed repo> [--repo ...] [--questions FILE] [--targets 300]

Works on a temporary copy of each repo (its index included), so the repo's own search model
is never touched. For each copy: the query sets of benchmarks/ranking.py (the shadow docstring
set: `--targets` documented definitions searched by their docstring's first sentence with
those docstrings removed from the index; with --questions, hand-written questions for the
first repo; for Python repos the generated error/constant/class sets) are searched in hybrid
and vector mode with the model search uses now; then the search model is tuned on the copy's
documented definitions *except the shadow set's targets* (never trained on, never gated on),
promoted whatever the gate says, the copy re-embedded, and every set searched again.
Prints recall@1 / recall@5 / MRR before and after (`--keyword-weights 0.5,0.4`: hybrid also at other
keyword weights), the gate's held-out scores, and timings.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

MODES = ("hybrid", "vector")


def measure(repo: Path, questions: Path | None, targets: int,
            weights: tuple[float, ...] = ()) -> dict[str, dict[str, dict]]:
    """Scores per set and mode; `weights`: also hybrid at these keyword weights (`hybrid@0.5`)."""
    from ranking import question_sets

    from codelearn.evaluate.retrieval import rank_of, scores
    from codelearn.index import search

    modes = [(mode, search.KEYWORD_WEIGHT) for mode in MODES]
    modes += [(f"hybrid@{w}", w) for w in weights if w != search.KEYWORD_WEIGHT]
    out: dict[str, dict[str, dict]] = {}
    default = search.KEYWORD_WEIGHT
    with contextlib.ExitStack() as stack:
        for name, searcher, queries, finders in question_sets(repo, questions, targets, stack):
            out[name] = {}
            for label, weight in modes:
                search.KEYWORD_WEIGHT = weight
                out[name][label] = scores([rank_of(searcher.search(q, k=10, mode=label.split("@")[0]), f)
                                           for q, f in zip(queries, finders)])
            search.KEYWORD_WEIGHT = default
    return out


def shadow_keys(repo: Path, targets: int) -> frozenset:
    from codelearn.corpus.units import load_units
    from codelearn.evaluate.retrieval import find_targets, sample_targets
    from codelearn.project import open_project

    chosen = sample_targets(find_targets(load_units(open_project(repo).catalog_path)), targets, seed=0)
    return frozenset(t.unit.key for t in chosen)


def cell(row: dict) -> str:
    return f"{row['recall@1']:.3f} / {row['recall@5']:.3f} / {row['mrr']:.3f}"


def one_repo(source: Path, questions: Path | None, targets: int, weights: tuple[float, ...],
             epochs: float | None = None, lr: float | None = None, no_hard: bool = False) -> None:
    from codelearn.project import open_project
    from codelearn.train.search_tuning import SearchTuneOptions, run_search_tuning

    with tempfile.TemporaryDirectory(prefix="codelearn-tune-bench-") as tmp:
        repo = Path(tmp) / source.name
        shutil.copytree(source, repo, symlinks=True)
        before = measure(repo, questions, targets, weights)
        started = time.monotonic()

        def progress(stage: str, done: int, total: int | None, detail: str = "") -> None:
            if stage == "tune" and (done == 1 or done % 10 == 0 or done == total):
                print(f"  tune {done}/{total} {detail} ({time.monotonic() - started:.0f} s)", file=sys.stderr)

        options = SearchTuneOptions(exclude=shadow_keys(repo, targets), min_gain=-1.0, epochs=epochs,
                                    hard_negatives=not no_hard)
        if lr is not None:
            options.lr = lr
        report = run_search_tuning(open_project(repo), options, progress)
        after = measure(repo, questions, targets, weights)
    print(f"\n{source.name}: {report.pairs} pairs ({report.held_out} held out for the gate), "
          f"{report.steps} steps in {report.train_seconds:.0f} s, re-embedding {report.reindex_seconds:.0f} s")
    print(f"gate (held-out sentence -> its code among {report.held_out} + up to 2,000 others), "
          f"recall@1 / recall@5 / MRR: current {cell(report.before)}, tuned {cell(report.after)}")
    print("| set | mode | shipped model | tuned on the repo |\n|---|---|---|---|")
    for name in before:
        for mode in before[name]:
            print(f"| {name} | {mode} | {cell(before[name][mode])} | {cell(after[name][mode])} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repo", type=Path, action="append", required=True)
    parser.add_argument("--questions", type=Path, default=None, help="only for the first repo")
    parser.add_argument("--targets", type=int, default=300)
    parser.add_argument("--keyword-weights", default="", help="also hybrid at these keyword weights, "
                        "comma-separated (`hybrid@0.5` rows)")
    parser.add_argument("--epochs", type=float, default=None, help="passes over the pairs (default: the product's rule)")
    parser.add_argument("--no-hard-negatives", action="store_true",
                        help="in-batch negatives only (the product also trains each sentence against "
                             "another definition of its file)")
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the product's)")
    args = parser.parse_args()
    from codelearn.machine import this_machine

    print(f"machine: {this_machine().summary()}", flush=True)
    weights = tuple(float(w) for w in args.keyword_weights.split(",") if w)
    for n, repo in enumerate(args.repo):
        one_repo(repo.resolve(), args.questions.resolve() if args.questions and n == 0 else None, args.targets,
                 weights, args.epochs, args.lr, args.no_hard_negatives)


if __name__ == "__main__":
    main()
