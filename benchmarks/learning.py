"""Does the model learn the repo? One budgeted LoRA run on a real temporal split, every export
measured through llama.cpp on the files that would be served.

    python benchmarks/learning.py --repo /path/to/git/repo --minutes 60 [--model qwen2.5-coder-0.5b]

The repo is cloned (committed history only) into a temporary folder and indexed there. The cut
is chosen as `codelearn train` chooses it (the commit that holds back ~10% of the added lines):
everything added after it is held out and scored, never trained on. Prints the training numbers,
the cost of each export step and a table of held-out repo loss (no context / with the training
chunks most like the target, an oracle / with random ones / with what `ask`'s own search finds for
a question about it, the served condition), general-code loss and chat-replay loss per served model.

A lever against a baseline, in one work folder (the clone, index and base scores are reused):

    python benchmarks/learning.py --repo . --minutes 12 --targets 8 --exports adapter --work W --tag mix-
    python benchmarks/learning.py --repo . --minutes 12 --targets 8 --exports adapter --work W --tag raft- \
        --context-share 1.0
    python benchmarks/learning.py --repo . --minutes 24 --steps 200 --targets 12 --work W --tag views- \
        --mix fim=0.4,context=0.6,instruct=0.6     # more views per unit, fewer passes
    python benchmarks/learning.py --repo . --steps 60 --decay-over-passes --targets 8 --work W --tag srch- \
        --mix context=1.0,search=1.0               # context samples shaped like what ask serves
    python benchmarks/learning.py --repo . --steps 195 --decay-over-passes --lr 4e-4 --work W --tag lr4-
        # the same samples as a 195-step run the clock ended, at another peak rate

A run longer than one sitting: `--resume` saves the training state at every checkpoint and at the
end, and goes on from the last one when the same command runs again (with a larger --minutes: the
budget counts the minutes already trained). The curve then holds every checkpoint of every sitting:

    python benchmarks/learning.py --repo . --minutes 110 --checkpoint-minutes 55 --resume --work W --tag long-
    python benchmarks/learning.py --repo . --minutes 165 --checkpoint-minutes 55 --resume --work W --tag long-

Weights part of the way from the base (what the gate's `forget_scales` serves), for a run this
work folder holds, without training again (`--trained`: its adapter folder):

    python benchmarks/learning.py --repo R --since C --targets 8 --exports adapter --work W --tag fresh- \
        --trained W/adapterfresh- --scales 0.75,0.5,0.25

A night after a commit (`train_warm_start`): train at an earlier cut and keep the state, then at
the later cut from that state, against the same from the base:

    python benchmarks/learning.py --repo R --since C1 --steps 80 --decay-over-passes --resume --work W1 --tag n1-
    python benchmarks/learning.py --repo R --since C2 --steps 80 --decay-over-passes --work W2 --tag fresh-
    python benchmarks/learning.py --repo R --since C2 --steps 80 --decay-over-passes --work W2 --tag warm- \
        --warm-from W1/resume-n1-.pt
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import tempfile
import time
from dataclasses import replace
from pathlib import Path


def clone(repo: Path, dest: Path) -> Path:
    subprocess.run(["git", "clone", "-q", str(repo), str(dest)], check=True)
    return dest


def curve_points(adapter_dir: Path, final_step: int) -> list[dict]:
    """The run's saved snapshots, earlier sittings' included, but not one taken at the last step
    (the final adapter is that one)."""
    points = [json.loads(f.read_text()) for f in sorted(adapter_dir.glob("checkpoints/step-*/progress.json"))]
    return [p for p in points if p["steps"] < final_step]


def write_gpu_data(path: Path, train: list, probes: list) -> None:
    """The samples and probes as flat arrays with offsets (what benchmarks/gpu_train.py reads)."""
    import numpy as np

    def flat(prefix: str, encoded: list) -> dict:
        offsets = np.cumsum([0] + [len(e.ids) for e in encoded])
        return {f"{prefix}_ids": np.array([t for e in encoded for t in e.ids], dtype=np.int32),
                f"{prefix}_mask": np.array([m for e in encoded for m in e.train], dtype=np.bool_),
                f"{prefix}_offs": offsets}

    np.savez_compressed(path, **flat("train", train), **flat("probe", [p.encoded for p in probes]),
                        probe_group=np.array([p.group for p in probes]),
                        probe_cond=np.array([p.condition for p in probes]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repo", type=Path, required=True)
    parser.add_argument("--model", default="", help="base model (default: the serving default)")
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--steps", type=int, default=0, help="a step limit; the schedule then decays over "
                        "these steps (to compare levers on the same samples, whatever each machine's speed)")
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate (default: train_lr)")
    parser.add_argument("--decay-over-passes", action="store_true",
                        help="with --steps: plan the rate's decay over three passes, as a run the clock ends "
                             "does (the product on a CPU night), so that the step limit only stops it")
    parser.add_argument("--since", default="", help="the cut commit (default: chosen as `codelearn train` "
                        "chooses it); to repeat an earlier run's split")
    parser.add_argument("--targets", type=int, default=24)
    parser.add_argument("--work", type=Path, default=None, help="keep the work here (default: a temp dir)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--dtype", default="auto", help="training precision (train_dtype): auto, fp32, "
                        "bf16-autocast or bf16")
    parser.add_argument("--exports", default="Q4_K_M,Q8_0,adapter",
                        help="which exports to make and score (comma-separated)")
    parser.add_argument("--context-share", type=float, default=None,
                        help="share of training units that also get a context sample (the RAFT lever; "
                             "default: the product's mix)")
    parser.add_argument("--mix", default="", help="views per training unit, e.g. fim=0.4,context=0.6,"
                        "instruct=0.6 (more kinds of samples against more passes over the same ones); "
                        "search=1.0: that share of the context samples shows what ask's search finds "
                        "for a question about the unit, among trained code, instead of similar and "
                        "random chunks (the served condition's shape)")
    parser.add_argument("--checkpoint-minutes", type=float, default=0.0,
                        help="also save the adapter this often and score each one with the first export "
                             "kind: the learning curve of one run")
    parser.add_argument("--resume", action="store_true",
                        help="save the training state at each checkpoint and at the end, and go on from "
                             "the last one this work folder and tag hold (same data, base and settings)")
    parser.add_argument("--warm-from", type=Path, default=None,
                        help="start the adapter from this saved state's weights (another run's --resume "
                             "state, e.g. at an earlier cut): what a nightly after a commit does "
                             "(train_warm_start); the seed moves on, as there")
    parser.add_argument("--scales", default="", help="also export each kind with the learned change scaled "
                        "to these (e.g. 0.75,0.5: weights that part of the way from the base, as the "
                        "gate's forget_scales serves them), and score them")
    parser.add_argument("--trained", type=Path, default=None,
                        help="score this adapter folder (a run's adapter<tag> in the same --work and --since) "
                             "instead of training")
    parser.add_argument("--gpu-data", type=Path, default=None,
                        help="write this split's encoded samples and probes to this .npz for "
                             "benchmarks/gpu_train.py, and stop before training")
    parser.add_argument("--tag", default="",
                        help="names this run's exports, so runs sharing --work keep apart scores "
                             "(the base model's stay cached)")
    args = parser.parse_args()
    from codelearn.machine import this_machine

    print(f"machine: {this_machine().summary()}", flush=True)

    from codelearn.corpus.selfreplay import self_answers
    from codelearn.evaluate.learning import learning_json, score_models
    from codelearn.evaluate.probes import ProbeOptions, all_probes
    from codelearn.evaluate.scoring import ModelRef, ScoreCache
    from codelearn.evaluate.served import SearchNeighbours
    from codelearn.index.indexer import run_index
    from codelearn.llm.llama_backend import LlamaVocab
    from codelearn.models.registry import Registry, sha256_file
    from codelearn.project import open_project
    from codelearn.models.bases import serving_model, training_base
    from codelearn.models.converter import converter_dir
    from codelearn.train.dataset import DataOptions, build_dataset
    from codelearn.train.nightly import forget_scales, resume_key
    from codelearn.train.export import export_adapter, export_gguf, scaled_adapter
    from codelearn.train.hf import prepare_base
    from codelearn.train.trainers.base import TrainConfig, choose_trainer
    from codelearn.train.trainers.loop import planned_steps, trainable

    work = args.work or Path(tempfile.mkdtemp(prefix="codelearn-learning-"))
    work.mkdir(parents=True, exist_ok=True)
    repo = clone(args.repo, work / "repo") if not (work / "repo").exists() else work / "repo"
    overrides = {"model": args.model} if args.model else {}
    project = open_project(repo, overrides)
    clock: dict[str, float] = {}

    def timed(name, fn, *a, **kw):
        started = time.perf_counter()
        value = fn(*a, **kw)
        clock[name] = round(time.perf_counter() - started, 1)
        print(f"  {name}: {clock[name]:.1f}s", flush=True)
        return value

    timed("index", run_index, project, wait=True)
    registry = Registry()
    serving = serving_model(project, registry)
    base = training_base(project, registry, serving)
    vocab = LlamaVocab(base.gguf)
    answers = timed("self replay answers", self_answers, base.gguf, base.sha256)
    data_options = DataOptions.from_settings(project.settings, **({"cut_commit": args.since} if args.since else {}))
    if args.context_share is not None:
        data_options = replace(data_options, mix=replace(data_options.mix, context_share=args.context_share))
    if args.mix:
        shares = {f"{k}_share": float(v) for k, v in (item.split("=") for item in args.mix.split(","))}
        data_options = replace(data_options, mix=replace(data_options.mix, **shares))
    print(f"mix: {data_options.mix}", flush=True)
    dataset = timed("dataset", build_dataset, project, vocab, data_options, answers)
    stats = dataset.stats()
    print(json.dumps(stats["split"], indent=1))
    print({k: (v["samples"], v["tokens"]) for k, v in stats["kinds"].items()}, "total", stats["tokens"])

    def held_out_probes():
        search = SearchNeighbours(project, vocab)  # the served condition: what ask's search finds
        try:
            return all_probes(dataset.split, dataset.finder, dataset.fmt, vocab, dataset.repo_name, answers,
                              ProbeOptions(targets=args.targets, seed=0), retrieve=search)
        finally:
            search.close()

    if args.gpu_data:
        write_gpu_data(args.gpu_data, dataset.encoded, held_out_probes())
        print(f"wrote {args.gpu_data}")
        return
    hf_dir = timed("dequantise base (cached after the first run)", prepare_base, base.weights, base.sha256)
    settings = project.settings
    config = TrainConfig(max_minutes=args.minutes, max_steps=args.steps, seed=0, dtype=args.dtype,
                         lr=args.lr or settings.train_lr,
                         pack_tokens=settings.train_seq_len if settings.train_pack else 0,
                         checkpoint_minutes=args.checkpoint_minutes, snapshots=True)
    if args.warm_from:
        config = replace(config, warm_file=str(args.warm_from), seed=1)
    if args.decay_over_passes:
        config = replace(config, decay_steps=planned_steps(replace(config, max_steps=0), len(trainable(dataset.encoded))))
    trainer = choose_trainer("auto")
    adapter_dir = work / f"adapter{args.tag}"
    if args.resume:
        config = replace(config, resume_file=str(work / f"resume-{args.tag}.pt"),
                         resume_key=resume_key(config, base.sha256, trainer.name, dataset.fingerprint()))
    elif not args.trained:  # a fresh run: an earlier run's snapshots under this tag are not its curve
        shutil.rmtree(adapter_dir / "checkpoints", ignore_errors=True)

    shown = set()

    def step(state):
        if state.step not in shown and (state.step % 10 == 0 or state.step == 1):
            shown.add(state.step)
            print(f"  step {state.step}/{state.steps} loss {state.loss:.3f} {state.tokens_per_s:.0f} tok/s "
                  f"{state.seconds / 60:.1f} min", flush=True)

    if args.trained:
        adapter_dir, result = args.trained, None
    else:
        result = timed("train", trainer.train, hf_dir, dataset.encoded, config, adapter_dir, step)
        if args.warm_from and not result.warm_started:
            raise SystemExit(f"{args.warm_from} could not be read as a state of this base and LoRA shape")
        print(json.dumps({k: v for k, v in result.as_json().items() if k != "losses"}, indent=1))
    converter = converter_dir(project.settings.converter_path)
    def export(kind: str, adapter: Path, name: str):
        folder = work / f"export-{args.tag}{name}"
        folder.mkdir(exist_ok=True)
        if kind == "adapter":
            return timed(f"export {name}", export_adapter, base.gguf, hf_dir, adapter, folder, converter=converter)
        return timed(f"export {name}", export_gguf, hf_dir, adapter, folder, quant=kind, converter=converter)

    exports = {name: export(name, adapter_dir, name) for name in args.exports.split(",")}
    for scale in forget_scales(args.scales):
        scaled = scaled_adapter(adapter_dir, scale, work / f"scaled-{args.tag}{scale:g}")
        exports.update({f"{name}x{scale:g}": export(name, scaled, f"{name}x{scale:g}")
                        for name in args.exports.split(",")})
    curve_kind = args.exports.split(",")[0]
    for point in curve_points(adapter_dir, result.steps) if result else []:  # each saved adapter, as the first kind
        name = f"{curve_kind}@{point['seconds'] / 60:.0f}min"
        exports[name] = export(curve_kind, Path(point["dir"]), name)
    for name, made in exports.items():
        print(f"  {name}: {json.dumps(made.as_json()['seconds'])} size {made.size / 1e6:.1f} MB")

    probes = held_out_probes()
    # cached scores are keyed by what was exported, never by its name: a resumed run's final
    # model has the name of the shorter run's before it
    models = [ModelRef("base", base.gguf, base.sha256)] + [
        ModelRef(f"{args.tag}{name}", e.model, f"learning:{sha256_file(e.adapter or e.model)}", e.adapter)
        for name, e in exports.items()]
    scored = timed("score", score_models, models, probes, vocab, cache=ScoreCache(work / "scores.jsonl"),
                   progress=lambda stage, d, t: print(f"  {stage} {d}/{t}", flush=True) if d % 20 == 0 else None)
    table = {}
    print("\n| served model | repo loss | +retrieval (oracle) | +random | +search (served) | next-line EM "
          "| general code | chat replay |")
    print("|---|---|---|---|---|---|---|---|")
    for model in scored.by_model:
        row = {c: scored.loss(model, "repo", c) for c in ("none", "relevant", "random", "retrieved")}
        row["em"] = scored.tally(model, "repo").exact_match
        row["general_code"] = scored.loss(model, "general_code")
        row["general_chat"] = scored.loss(model, "general_chat")
        table[model] = row
        print(f"| {model} | " + " | ".join("n/a" if v is None else f"{v:.4f}" for v in row.values()) + " |")
    for model in list(scored.by_model)[1:]:
        b, a = table["base"], table[model]
        print(f"{model}: repo {(a['none'] - b['none']) / b['none']:+.1%}, +retrieval "
              f"{(a['relevant'] - b['relevant']) / b['relevant']:+.1%}, +search "
              f"{(a['retrieved'] - b['retrieved']) / b['retrieved']:+.1%}, general code "
              f"{(a['general_code'] - b['general_code']) / b['general_code']:+.1%}, chat replay "
              f"{(a['general_chat'] - b['general_chat']) / b['general_chat']:+.1%}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory {peak:.0f} MB; timings {json.dumps(clock)}")
    if args.json:
        args.json.write_text(json.dumps({"machine": this_machine().as_json(), "stats": stats,
                                         "training": result.as_json() if result else {"trained": str(args.trained)},
                                         "clock": clock,
                                         "exports": {n: e.as_json() for n, e in exports.items()},
                                         "table": table, "peak_mb": peak,
                                         "learning": learning_json(scored)}, indent=1, default=str))
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("CODELEARN_EMBEDDER", os.environ.get("CODELEARN_EMBEDDER", "default"))
    main()
