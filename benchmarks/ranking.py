"""Sweep the code-aware ranking weights (codelearn/index/ranking.py) on several query sets at once.

    python benchmarks/ranking.py --repo <indexed stdlib copy> [--repo <another indexed repo> ...]
        [--questions benchmarks/questions.jsonl] [--targets 300]

For each repo: its documented definitions as queries (docstring's first sentence) searched on a
shadow index with those docstrings removed (the same honest set `codelearn eval` uses), and, for
the stdlib, the hand-written questions; for Python repos, four generated sets that name code the
way people paste it (`pasted_code_sets`: error messages asked about in quotes, as a traceback
prints them, with their values filled in, module-level constants and classes by name; the hit is
the chunk holding the `raise`, the assignment or part of the class), 150 of each, unique ones
only. Prints recall@1/5/10 and MRR of hybrid search for each
setting of one lever at a time, the others at their current values, so a lever is kept only if it
pays on every set, not on one.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

LEVERS = {
    "DEFINES_BONUS": (0.0, 0.5, 0.6, 0.7),
    "HEADER_FACTOR": (1.0, 0.6),
    "QUOTE_BONUS": (0.0, 0.3, 0.5, 0.7),
    "PARTIAL_QUOTE": (0.0, 0.5, 1.0),
    "TEST_FACTOR": (0.8, 0.5, 0.3),
    "AUX_FACTOR": (1.0, 0.7, 0.5),
    "PATH_BONUS": (0.0, 0.05, 0.1, 0.2),
    "COHERENCE_BONUS": (0.0, 0.02, 0.05),
    "PER_FILE_CAP": (0, 2, 3),
    "SYMBOL_BONUS": (0.1, 0.2),
}


def question_sets(repo: Path, questions: Path | None, targets: int, stack: contextlib.ExitStack):
    """(name, searcher, queries, finders) for every set of one repo."""
    from codelearn.corpus.units import load_units
    from codelearn.evaluate.retrieval import find_targets, sample_targets, shadow_project
    from codelearn.index.search import Searcher
    from codelearn.project import open_project

    project = open_project(repo)
    chosen = sample_targets(find_targets(load_units(project.catalog_path)), targets, seed=0)
    shadow = stack.enter_context(shadow_project(project, chosen, vectors=True))
    searcher = Searcher(shadow)
    stack.callback(searcher.close)
    sets = [(f"{repo.name}:docstring", searcher, [t.sentence for t in chosen], [t.found_by for t in chosen])]
    if questions:  # the retrieval benchmark's own set and hit rule (line overlap with the target)
        from retrieval import first_match, question_set

        real = Searcher(project)
        stack.callback(real.close)
        asked = question_set(repo, questions)
        sets.append((f"{repo.name}:questions", real, [q.q for q in asked],
                     [lambda hit, q=q: first_match(q, [hit]) == 1 for q in asked]))
    if any(repo.rglob("*.py")):
        real = Searcher(project)
        stack.callback(real.close)
        sets += pasted_code_sets(repo, real)
    return sets


_FORMAT_FIELD = re.compile(r"%[-#0 +]*\d*(?:\.\d+)?[sdrifx]")


def _raised_message(node) -> tuple[str, str, bool] | None:
    """(exception name, message, whether values were filled in) of `raise X("...")`."""
    import ast

    if not (isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and node.exc.args):
        return None
    func, arg = node.exc.func, node.exc.args[0]
    name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "Error")
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        message, filled = arg.value, False
    elif isinstance(arg, ast.BinOp) and isinstance(arg.op, ast.Mod) and isinstance(arg.left, ast.Constant) \
            and isinstance(arg.left.value, str):  # "... %s ..." % value
        message, filled = _FORMAT_FIELD.sub("spam", arg.left.value), True
    elif isinstance(arg, ast.JoinedStr):  # f"... {value} ..."
        message = "".join(v.value if isinstance(v, ast.Constant) else "spam" for v in arg.values)
        filled = True
    else:
        return None
    if not 4 <= len(message.split()) <= 14 or {"%", "{"} & set(message):
        return None
    return name, message, filled


def pasted_code_sets(repo: Path, searcher, n: int = 150, seed: int = 3):
    """(name, searcher, queries, finders) for error messages and constants found with `ast`.

    errors: `Where is the error "<message>" raised?`; tracebacks: `<Error>: <message>` as a
    traceback prints it; formatted: the same for messages built with `%` or an f-string, their
    fields filled with a value (`spam`); constants: `Where is <NAME> defined?`; classes: `Where is
    the <Name> class defined?` (any chunk of the class is a hit).
    """
    import ast
    import random

    from codelearn.index.indexer import is_test_path

    found: dict[str, dict[str, list]] = {"errors": {}, "tracebacks": {}, "formatted": {}, "constants": {},
                                         "classes": {}}
    for path in sorted(repo.rglob("*.py")):
        rel = path.relative_to(repo).as_posix()
        if is_test_path(rel) or rel.startswith(".") or "/test" in rel:
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                found["classes"].setdefault(f"Where is the {node.name} class defined?", []).append(
                    (rel, node.lineno, node.end_lineno))
            raised = _raised_message(node)
            if raised is None:
                continue
            name, message, filled = raised
            place = (rel, node.lineno, node.end_lineno)
            if filled:
                found["formatted"].setdefault(f"{name}: {message}", []).append(place)
            else:
                found["errors"].setdefault(f'Where is the error "{message}" raised?', []).append(place)
                found["tracebacks"].setdefault(f"{name}: {message}", []).append(place)
        for node in tree.body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                name = node.targets[0].id
                if name.isupper() and "_" in name and len(name) > 5:
                    found["constants"].setdefault(f"Where is {name} defined?", []).append(
                        (rel, node.lineno, node.end_lineno))
    out = []
    for label, queries in found.items():
        unique = [(query, places[0]) for query, places in queries.items() if len(places) == 1]
        chosen = random.Random(seed).sample(unique, min(n, len(unique)))
        out.append((f"{repo.name}:{label}", searcher, [query for query, _ in chosen],
                    [lambda hit, p=place: hit.path == p[0] and hit.start_line <= p[2] and p[1] <= hit.end_line
                     for _, place in chosen]))
    return out


def measure(sets) -> dict[str, dict[str, float]]:
    from codelearn.evaluate.retrieval import rank_of, scores

    out = {}
    for name, searcher, queries, finders in sets:
        ranks = [rank_of(searcher.search(q, k=10, mode="hybrid"), f) for q, f in zip(queries, finders)]
        out[name] = scores(ranks)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repo", type=Path, action="append", required=True)
    parser.add_argument("--questions", type=Path, default=None, help="only for the first repo")
    parser.add_argument("--targets", type=int, default=300)
    parser.add_argument("--lever", action="append", help="only these levers")
    args = parser.parse_args()
    from codelearn.machine import this_machine

    print(f"machine: {this_machine().summary()}", flush=True)
    from codelearn.index import ranking

    with contextlib.ExitStack() as stack:
        sets = []
        for n, repo in enumerate(args.repo):
            sets += question_sets(repo, args.questions if n == 0 else None, args.targets, stack)
        names = [s[0] for s in sets]
        print("| lever | value | " + " | ".join(f"{n} r@1 / r@5 / MRR" for n in names) + " |")
        print("|---|---|" + "---|" * len(names))
        for lever, values in LEVERS.items():
            if args.lever and lever not in args.lever:
                continue
            current = getattr(ranking, lever)
            for value in values:
                setattr(ranking, lever, value)
                got = measure(sets)
                cells = [f"{got[n]['recall@1']:.3f} / {got[n]['recall@5']:.3f} / {got[n]['mrr']:.3f}"
                         for n in names]
                mark = " (now)" if value == current else ""
                print(f"| {lever} | {value}{mark} | " + " | ".join(cells) + " |", flush=True)
            setattr(ranking, lever, current)


if __name__ == "__main__":
    main()
