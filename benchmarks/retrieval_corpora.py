"""Retrieval quality on more than one language, with the query set `codelearn eval` uses.

    python benchmarks/retrieval_corpora.py [--corpus stdlib|cpp|PATH ...] [--targets 300] [--keep DIR]

Corpora (all offline, from what is installed):
  stdlib  the running Python's `Lib` (Python)
  cpp     torch's bundled C++ headers, `c10/` and `ATen/core/` (needs torch, the train extra)
  PATH    any folder (copied as it is)

Each corpus is copied into a fresh git repo and indexed with the CLI (the cold time is printed).
Query sets (codelearn/evaluate/retrieval.py): documented definitions, query = their doc's first
sentence (Python docstring, or the leading comment block in other languages), searched on a
shadow index with every target's doc removed from its text, keywords and vector; `paraphrase` is
the same sentence minus every word naming an identifier of the target. A hit overlaps the
target's lines within the top 10. Prints recall@1/5/10 and MRR per set and mode.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
import sysconfig
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from index_stdlib import IGNORE, git, timed_index  # noqa: E402  (benchmarks/ is not a package)


def _torch_include() -> Path:
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the cpp corpus needs torch's headers: pip install -e '.[train]'")
    return Path(next(iter(spec.submodule_search_locations))) / "include"


def build_corpus(name: str, dest: Path) -> Path:
    if name == "stdlib":
        shutil.copytree(sysconfig.get_paths()["stdlib"], dest, ignore=IGNORE, symlinks=True)
    elif name == "cpp":
        include = _torch_include()
        for part in ("c10", "ATen/core"):
            shutil.copytree(include / part, dest / part)
    else:
        shutil.copytree(Path(name), dest, ignore=shutil.ignore_patterns(".git", "__pycache__"))
    git(dest, "init", "-q")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "corpus")
    return dest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", action="append", help="stdlib, cpp or a folder (repeatable)")
    parser.add_argument("--targets", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, help="build the corpora under this folder and keep them")
    args = parser.parse_args()
    from codelearn.machine import this_machine

    print(f"machine: {this_machine().summary()}", flush=True)
    from codelearn.evaluate.retrieval import retrieval_section
    from codelearn.index.status import index_status
    from codelearn.project import open_project

    base = args.keep or Path(tempfile.mkdtemp(prefix="codelearn-corpora-"))
    rows = []
    for name in args.corpus or ["stdlib", "cpp"]:
        repo = base / Path(name).name
        if not (repo / ".codelearn").exists():
            shutil.rmtree(repo, ignore_errors=True)
            build_corpus(name, repo)
        took, _ = timed_index(repo)
        project = open_project(repo)
        info = index_status(project)
        languages = ", ".join(f"{k} {v}" for k, v in list(info["chunks_by_language"].items())[:3])
        print(f"{name}: {info['files_indexed']} files, {info['chunks']} chunks ({languages}), "
              f"{info['vectors']} vectors; index {took:.0f} s", flush=True)
        section = retrieval_section(project, limit=args.targets, seed=args.seed)
        print(f"  {section['notes'][0]}", flush=True)
        for set_name, result in section["sets"].items():
            for mode, got in result["modes"].items():
                rows.append((Path(name).name, set_name, result["queries"], mode, got))
    print("\n| corpus | set | n | mode | recall@1 | recall@5 | recall@10 | MRR |")
    print("|---|---|---|---|---|---|---|---|")
    for corpus, set_name, n, mode, got in rows:
        print(f"| {corpus} | {set_name} | {n} | {mode} | {got['recall@1']:.3f} | {got['recall@5']:.3f} | "
              f"{got['recall@10']:.3f} | {got['mrr']:.3f} |")
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
