"""The whole training loop on a tiny model, timed: data → LoRA → merge → GGUF → quantize → load →
generate → gate → promote, as one `codelearn train` process (target: ≤ 60 s end to end).

    python benchmarks/train_tiny.py [--steps 60]

Builds a tiny random Llama (tests/tinyhf.py) and a git repo of a few stdlib modules with history in
a temporary folder; llama.cpp's converter is fetched once into the user cache (or set
CODELEARN_CONVERTER_PATH). Prints the wall time of the process and of each stage.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
MODULES = ("textwrap.py", "shlex.py", "fnmatch.py", "glob.py", "bisect.py", "heapq.py")


def make_repo(root: Path) -> Path:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b",
           "GIT_COMMITTER_EMAIL": "b@b"}
    root.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=root, check=True)
    for name in MODULES:
        shutil.copy(stdlib / name, root / name)
        subprocess.run(["git", "add", "-A"], cwd=root, check=True)
        subprocess.run(["git", "commit", "-q", "-m", name], cwd=root, check=True, env=env)
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    from codelearn.machine import this_machine

    print(f"machine: {this_machine().summary()}", flush=True)
    from tinyhf import build_tiny_hf_llama

    from codelearn.models.registry import Registry, use_model
    from codelearn.models.bases import hf_base

    work = Path(tempfile.mkdtemp(prefix="codelearn-tiny-"))
    os.environ.setdefault("CODELEARN_HOME", str(work / "home"))
    try:
        started = time.perf_counter()
        model = build_tiny_hf_llama(work / "tiny-hf")
        base = hf_base(model, os.environ.get("CODELEARN_CONVERTER_PATH", ""))
        use_model(Registry(), str(base.gguf))
        repo = make_repo(work / "repo")
        prepared = time.perf_counter() - started
        env = {**os.environ, "CODELEARN_TRAIN_BASE": str(model), "CODELEARN_EMBEDDER": "none",
               "CODELEARN_TRAIN_LR": "3e-3", "CODELEARN_GATE_TARGETS": "8"}
        started = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "codelearn", "train", "-C", str(repo), "--max-steps",
                               str(args.steps), "--json"], env=env, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if not proc.stdout.strip():
            sys.exit(proc.stderr)
        report = json.loads(proc.stdout)
        print(f"tiny model + base GGUF + repo prepared in {prepared:.1f}s")
        print(f"`codelearn train` process: {wall:.1f}s wall, status {report['status']}: {report['message']}")
        print("stages (s):", json.dumps(report["seconds"]))
        print("export steps (s):", json.dumps(report["export"]["seconds"]))
        training = report["training"]
        print(f"training: {training['steps']} steps, {training['tokens']} tokens, "
              f"{training['tokens_per_s']:.0f} tok/s, loss {training['first_loss']:.3f} → {training['last_loss']:.3f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
