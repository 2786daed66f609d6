"""`codelearn eval`: retrieval, learning, answering and forgetting on the user's own repo.

Reads the index, the registry and git; writes only its own report (and the
per-probe score cache that lets an interrupted run resume).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from codelearn.errors import CodelearnError
from codelearn.project import Project

SCHEMA = 1
Progress = Callable[..., None]


@dataclass(frozen=True)
class EvalOptions:
    quick: bool = False  # subsampled: a minute on a small repo with the default model
    since: str = ""
    questions: Path | None = None
    retrieval: bool = True
    learning: bool = True
    answering: bool = True

    @property
    def sizes(self) -> dict:
        if self.quick:
            return {"retrieval": 40, "targets": 3, "neighbours": 2, "target_tokens": 96, "general": 2,
                    "answers": 0, "facts": 0}
        return {"retrieval": 200, "targets": 24, "neighbours": 3, "target_tokens": 256, "general": 12,
                "answers": 6, "facts": 12}


def _noop(stage: str, done: int, total: int | None, detail: str = "") -> None:
    pass


class _Eval:
    """One evaluation's shared state."""

    def __init__(self, project: Project, options: EvalOptions, progress: Progress) -> None:
        if not project.catalog_path.exists():
            raise CodelearnError(f"No index for {project.root} yet.", "Run `codelearn index` first.")
        self.project, self.options, self.progress = project, options, progress
        self.sizes = options.sizes
        self.notes: list[str] = ["quick: subsampled (few targets, no answering); numbers are noisy"] \
            if options.quick else []
        from codelearn.models.registry import Registry
        from codelearn.models.bases import serving_model, training_base

        self.registry = Registry()
        self.serving = serving_model(project, self.registry)
        self.base = training_base(project, self.registry, self.serving)
        self.adapted = self._adapted_entry()

    def _adapted_entry(self):
        serving = self.serving.entry
        if serving is not None and serving.kind == "adapted":
            return serving
        history = self.registry.history(self.project.key)
        if history:
            self.notes.append(f"no trained model is serving; measuring the newest candidate {history[-1].name}")
            return history[-1]
        self.notes.append("no trained model for this repo yet: only base and base + retrieval "
                          "(run `codelearn train`)")
        return None

    def vocab(self):
        from codelearn.llm.llama_backend import LlamaVocab

        if not hasattr(self, "_vocab"):
            self._vocab = LlamaVocab(self.base.gguf, declared_format=self.base.template,
                                     format_override=self.project.settings.chat_format)
        return self._vocab

    def split(self):
        """The adapted model's own cut (so its held-out code is truly unseen), else a fresh one."""
        from codelearn.corpus.split import split_repo
        from codelearn.corpus.units import load_units

        if hasattr(self, "_split"):
            return self._split
        s = self.project.settings
        metrics = (self.adapted.metrics or {}) if self.adapted else {}
        recipe = metrics.get("split") or {}
        cut = recipe.get("cut") or (metrics.get("cut") or {}).get("commit")
        if self.adapted and not cut:
            self.notes.append("the trained model recorded no cut commit: its hold-out is only the random slice")
        if self.adapted and not recipe:
            self.notes.append("the trained model recorded no split (trained by an older codelearn): its random "
                              "slice is re-drawn from today's settings")
        files = recipe.get("random_files")
        self._split = split_repo(self.project.root, load_units(self.project.catalog_path),
                                 holdout_share=0.0 if self.adapted else s.holdout_share,
                                 random_share=recipe.get("random_share", s.random_holdout_share),
                                 seed=recipe.get("seed", s.train_seed), since=self.options.since,
                                 cut_commit=cut or "", random_files=set(files) if files is not None else None)
        return self._split

    # -- sections ------------------------------------------------------------------
    def retrieval(self) -> dict:
        from codelearn.evaluate.retrieval import retrieval_section

        return retrieval_section(self.project, limit=self.sizes["retrieval"], seed=self.project.settings.train_seed,
                                 questions=self.options.questions, vocab=self.vocab(),
                                 progress=lambda d, t: self.progress("retrieval", d, t))

    def learning(self) -> dict:
        from codelearn.corpus.formats import TextFormat
        from codelearn.corpus.neighbours import Neighbours, load_vectors
        from codelearn.evaluate.learning import learning_json, score_models
        from codelearn.evaluate.probes import ProbeOptions, all_probes
        from codelearn.evaluate.scoring import ScoreCache

        split, vocab = self.split(), self.vocab()
        if not split.heldout:
            return {"notes": ["nothing is held out (no history after the cut, no random slice)"]}
        vectors = load_vectors(self.project.catalog_path, {u.vec_key for u in split.train if u.vec_key})
        finder = Neighbours(split.train, vectors, seed=self.project.settings.train_seed)
        options = ProbeOptions(targets=self.sizes["targets"], neighbours=self.sizes["neighbours"],
                               target_tokens=self.sizes["target_tokens"], general=self.sizes["general"],
                               seed=self.project.settings.train_seed)
        from codelearn.evaluate.served import SearchNeighbours

        search = SearchNeighbours(self.project, vocab)
        try:
            probes = all_probes(split, finder, TextFormat.for_vocab(vocab), vocab, self.project.root.name,
                                self._answers(), options, retrieve=search, use_cases=self._use_heldout())
        finally:
            search.close()
        scored = score_models(self._models(), probes, vocab,
                              cache=ScoreCache(self.project.state / "eval" / "scores.jsonl"),
                              threads=self.project.settings.threads, progress=self.progress)
        section = learning_json(scored)
        section["split"] = split.summary()
        return section

    def _use_heldout(self) -> list:
        """Corrections from the question history that training holds out (the same seeded share)."""
        from codelearn.corpus.use import split_use, use_cases

        metrics = (self.adapted.metrics or {}) if self.adapted else {}
        seed = (metrics.get("split") or {}).get("seed", self.project.settings.train_seed)
        return split_use(use_cases(self.project.root, self.project.state), seed)[1]

    def _answers(self) -> dict[str, str] | None:
        from codelearn.corpus.selfreplay import cache_file, self_answers

        if self.options.quick and not cache_file(self.base.sha256, 160).is_file():
            self.notes.append("quick: chat forgetting probes skipped (the base model's answers are not cached yet)")
            return None
        return self_answers(self.base.gguf, self.base.sha256, threads=self.project.settings.threads,
                            progress=lambda d, t: self.progress("base answers", d, t))

    def _models(self):
        from codelearn.evaluate.scoring import ModelRef
        from codelearn.models.registry import resolve_model
        from codelearn.models.bases import model_ref

        models = [ModelRef("base", self.base.gguf, self.base.sha256)]
        if self.adapted is not None:
            resolved = resolve_model(self.registry, self.adapted.name, None, "eval")
            models.append(model_ref(resolved, "adapted"))
        return models

    def answering(self) -> dict:
        from codelearn.evaluate.answering import answering_section

        split = self.split()
        section = answering_section(self.project, split.new or split.random, limit=self.sizes["answers"],
                                    seed=self.project.settings.train_seed,
                                    progress=lambda d, t: self.progress("answering", d, t))
        if self.sizes["facts"]:
            section["facts"] = self.facts(split)
        return section

    def facts(self, split) -> dict:
        """Fact questions about held-out code, to the base and the adapted model (both with search)."""
        from codelearn.corpus.units import load_units
        from codelearn.evaluate.facts import ask_facts, build_facts

        facts = build_facts(split.new or split.random, load_units(self.project.catalog_path), self.sizes["facts"])
        models = {"base": self.base.name} | ({"adapted": self.adapted.name} if self.adapted else {})
        return ask_facts(self.project, facts, models, progress=self.progress)


def run_eval(project: Project, options: EvalOptions, progress: Progress = _noop) -> dict:
    """The whole report (see docs for the schema); saved under .codelearn/eval/runs/."""
    from codelearn.evaluate.report import save_report

    started = time.perf_counter()
    run = _Eval(project, options, progress)
    report = {"schema": SCHEMA, "repo": str(project.root), "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "quick": options.quick, "models": {"serving": run.serving.name, "base": run.base.name,
                                                 "adapted": run.adapted.name if run.adapted else None},
              "seconds": {}}
    for name in ("retrieval", "learning", "answering"):
        if getattr(options, name) and (name != "answering" or run.sizes["answers"]):
            section_started = time.perf_counter()
            report[name] = getattr(run, name)()
            report["seconds"][name] = round(time.perf_counter() - section_started, 2)
    report["notes"] = run.notes
    report["seconds"]["total"] = round(time.perf_counter() - started, 2)
    return save_report(project, report)
