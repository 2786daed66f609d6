"""The training set of one run: split, samples, replay, token counts.

Built from the index (never re-parsing the repo) and encoded with the serving
model's own vocabulary through llama.cpp, so `--dry-run` reports exact token
counts without importing torch.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from dataclasses import dataclass, field

from codelearn.corpus.formats import Encoded, TextFormat, Vocab, chat_pieces, encode
from codelearn.corpus.general import general_units, prompt_halves
from codelearn.corpus.neighbours import Neighbours, load_vectors
from codelearn.corpus.selfreplay import chat_messages
from codelearn.corpus.split import Split, split_repo
from codelearn.corpus.units import load_units
from codelearn.project import Project
from codelearn.corpus.samples import KINDS, Mix, Sample, code_sample, file_of, repo_samples


@dataclass(frozen=True)
class DataOptions:
    """What goes into the training set."""

    seq_len: int = 512
    replay_share: float = 0.05  # general code, of all training tokens (arXiv 2403.08763: 1-5% suffices)
    chat_replay_share: float = 0.25  # the base model's own chat answers, per token of chat instructions
    holdout_share: float = 0.10  # of the lines in history held out after the cut
    random_share: float = 0.05  # of files held out at random
    file_cap: float = 0.10  # most of the repo tokens one file may hold
    replay_files: int = 40
    seed: int = 0
    since: str = ""
    cut_commit: str = ""
    mix: Mix = field(default_factory=Mix)

    @classmethod
    def from_settings(cls, settings, **overrides) -> DataOptions:
        values = dict(seq_len=settings.train_seq_len, replay_share=settings.replay_share,
                      chat_replay_share=settings.chat_replay_share,
                      holdout_share=settings.holdout_share, random_share=settings.random_holdout_share,
                      seed=settings.train_seed, mix=Mix(neighbours=settings.context_neighbours))
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


@dataclass
class Dataset:
    """Samples and their encodings, the split they came from, and the tools to probe it."""

    samples: list[Sample]
    encoded: list[Encoded]
    split: Split
    fmt: TextFormat
    finder: Neighbours
    repo_name: str
    notes: list[str] = field(default_factory=list)
    use_heldout: list = field(default_factory=list)  # corrections the gate and eval score, never trained

    def stats(self) -> dict:
        kinds = {kind: {"samples": 0, "tokens": 0, "trained_tokens": 0} for kind in KINDS}
        for sample, enc in zip(self.samples, self.encoded):
            row = kinds[sample.kind]
            row["samples"] += 1
            row["tokens"] += len(enc.ids)
            row["trained_tokens"] += enc.trained_tokens
        tokens = sum(row["tokens"] for row in kinds.values())
        return {"kinds": kinds, "samples": len(self.samples), "tokens": tokens,
                "replay_share": round(kinds["replay"]["tokens"] / tokens, 4) if tokens else 0.0,
                "split": self.split.summary(), "use_heldout": len(self.use_heldout), "notes": self.notes}

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for enc in self.encoded:
            digest.update(len(enc.ids).to_bytes(4, "little"))
            digest.update(b"".join(i.to_bytes(4, "little") for i in enc.ids))
        return digest.hexdigest()[:16]


def cap_files(samples: list[Sample], encoded: list[Encoded], cap: float, seed: int) -> tuple[list, list]:
    """Drop random samples of any file holding more than `cap` of the tokens."""
    total = sum(len(e.ids) for e in encoded)
    per_file: Counter = Counter()
    for sample, enc in zip(samples, encoded):
        per_file[file_of(sample.origin)] += len(enc.ids)
    order = list(range(len(samples)))
    random.Random(seed).shuffle(order)
    dropped: set[int] = set()
    for index in order:
        name = file_of(samples[index].origin)
        if per_file[name] > cap * total and len(per_file) > 1:
            per_file[name] -= len(encoded[index].ids)
            dropped.add(index)
    keep = [i for i in range(len(samples)) if i not in dropped]
    return [samples[i] for i in keep], [encoded[i] for i in keep]


def _take(pool: list[Sample], want_tokens: int, vocab: Vocab, seq_len: int,
          cycle: bool = False) -> tuple[list[Sample], list[Encoded]]:
    """Samples from the front of `pool` until `want_tokens`; `cycle` reuses a short pool."""
    samples, encoded, used = [], [], 0
    index = 0
    while used < want_tokens and pool and (cycle or index < len(pool)):
        sample = pool[index % len(pool)]
        index += 1
        enc = encode(list(sample.pieces), vocab, seq_len)
        samples.append(sample)
        encoded.append(enc)
        used += len(enc.ids)
        if cycle and index >= 4 * len(pool):
            break  # an answer seen four times is enough
    return samples, encoded


def code_replay(vocab: Vocab, fmt: TextFormat, want_tokens: int, options: DataOptions, heldout: list):
    """Stdlib modules from the replay half, up to `want_tokens`, none holding held-out code."""
    code = [code_sample(fmt, "cpython", u, "replay")
            for u in general_units("replay", options.replay_files, options.seed, exclude=heldout)]
    random.Random(options.seed).shuffle(code)
    return _take(code, want_tokens, vocab, options.seq_len)


def chat_replay(vocab: Vocab, want_tokens: int, answers: dict[str, str] | None, options: DataOptions):
    """The base model's own answers to the replay half of the generic prompts."""
    chats = [Sample("replay", tuple(chat_pieces(vocab, chat_messages(p), answers[p])), f"replay:chat:{p[:24]}")
             for p in prompt_halves(options.seed)[0] if answers and answers.get(p)]
    return _take(chats, want_tokens, vocab, options.seq_len, cycle=True)


def use_samples(project: Project, vocab: Vocab, options: DataOptions) -> tuple[list, list, list]:
    """(samples, encodings, held-out cases) from the repo's question history: each lesson
    `USE_WEIGHT` times, after the per-file cap (a correction is never dropped for its file's share)."""
    from codelearn.corpus.use import USE_WEIGHT, split_use, use_cases, use_pieces

    trained, held = split_use(use_cases(project.root, project.state), options.seed)
    samples = [Sample("use", tuple(use_pieces(vocab, case)), case.key) for case in trained]
    encoded = [encode(list(s.pieces), vocab, options.seq_len) for s in samples]  # once, then repeated
    return samples * USE_WEIGHT, encoded * USE_WEIGHT, held


def repo_split(project: Project, options: DataOptions, units: list | None = None) -> Split:
    """The run's split of the indexed units (the same for training, the gate and eval)."""
    units = load_units(project.catalog_path) if units is None else units
    return split_repo(project.root, units, holdout_share=options.holdout_share,
                      random_share=options.random_share, seed=options.seed, since=options.since,
                      cut_commit=options.cut_commit)


def heldout_keys(project: Project, options: DataOptions, split: Split | None = None) -> frozenset[str]:
    """Keys of every unit a run does not train on: held out (new or random) or withheld.
    Pass the run's `split` so the search model and the answer model hold out the same code."""
    units = load_units(project.catalog_path)
    split = repo_split(project, options, units) if split is None else split
    trained = {u.key for u in split.train}
    return frozenset(u.key for u in units if u.key not in trained)


class _TrainingSearch:
    """What `ask`'s search serves for a question about a training unit, from the code trained
    on only, packed into what the sequence leaves beside the unit itself."""

    def __init__(self, project: Project, vocab: Vocab, split: Split, seq_len: int) -> None:
        from codelearn.evaluate.served import SearchNeighbours

        self.search = SearchNeighbours(project, vocab, only=frozenset(u.key for u in split.train))
        self.vocab, self.seq_len = vocab, seq_len

    def __call__(self, unit) -> list:
        room = self.seq_len - len(self.vocab.tokenize(unit.context + unit.text)) - SEARCH_OVERHEAD_TOKENS
        return self.search(unit, room) if room >= MIN_SEARCH_TOKENS else []

    def close(self) -> None:
        self.search.close()


SEARCH_OVERHEAD_TOKENS = 32  # the repo and file headers around the unit
MIN_SEARCH_TOKENS = 64  # less room than this: the unit alone


def _repo_samples(project: Project, vocab: Vocab, options: DataOptions, split: Split, fmt: TextFormat,
                  finder: Neighbours) -> list[Sample]:
    search = _TrainingSearch(project, vocab, split, options.seq_len) if options.mix.search_share > 0 else None
    try:
        return repo_samples(split.train, vocab=vocab, fmt=fmt, repo=project.root.name, finder=finder,
                            mix=options.mix, seed=options.seed, retrieve=search)
    finally:
        if search is not None:
            search.close()


def build_dataset(project: Project, vocab: Vocab, options: DataOptions,
                  answers: dict[str, str] | None = None, split: Split | None = None) -> Dataset:
    """Everything one training run learns from; see the module doc. `split`: the run's own,
    when already computed (else computed here)."""
    split = repo_split(project, options) if split is None else split
    vectors = load_vectors(project.catalog_path, {u.vec_key for u in split.train if u.vec_key})
    finder = Neighbours(split.train, vectors, seed=options.seed)
    fmt = TextFormat.for_vocab(vocab)
    repo = project.root.name
    samples = _repo_samples(project, vocab, options, split, fmt, finder)
    encoded = [encode(list(s.pieces), vocab, options.seq_len) for s in samples]
    samples, encoded = cap_files(samples, encoded, options.file_cap, options.seed)
    repo_tokens = sum(len(e.ids) for e in encoded)
    chat_tokens = sum(len(e.ids) for s, e in zip(samples, encoded) if s.kind == "instruct")
    share = min(max(options.replay_share, 0.0), 0.9)
    code, code_encoded = code_replay(vocab, fmt, int(repo_tokens * share / (1 - share)), options,
                                     split.heldout)
    chat, chat_encoded = chat_replay(vocab, int(chat_tokens * options.chat_replay_share), answers, options)
    use, use_encoded, use_heldout = use_samples(project, vocab, options)
    more, more_encoded = code + chat + use, code_encoded + chat_encoded + use_encoded
    notes = [] if answers else ["self-generated replay answers are not included (generated on a real run)"]
    if not split.cut:
        notes.append("no temporal hold-out: the history is too short (only the random slice is held out)")
    if use or use_heldout:
        from codelearn.corpus.use import USE_WEIGHT

        notes.append(f"from use: {len(use) // USE_WEIGHT} answers marked good or corrected, trained "
                     f"{USE_WEIGHT} times each; {len(use_heldout)} corrections held out for the gate")
    return Dataset(samples + more, encoded + more_encoded, split, fmt, finder, repo, notes, use_heldout)
