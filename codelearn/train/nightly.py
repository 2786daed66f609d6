"""`codelearn train`: one run from the index to a promoted (or refused) model.

Stages: refresh the index → choose base and serving model → build the data
(split, samples, replay) → train (budgeted) → export (merge → GGUF →
requantize, or adapter) → load-and-generate smoke test → score serving and
candidate on the held-out probes → gate → register, promote, prune.

Nothing the serving model depends on changes before the very end: a run works
in its own folder, and promotion is one atomic rewrite of the registry file.
A run that is killed leaves only its folder, which the next run cleans up.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from codelearn.errors import CodelearnError
from codelearn.paths import write_json
from codelearn.project import Project
from codelearn.train import carry

log = logging.getLogger(__name__)

EXIT_OK, EXIT_ERROR, EXIT_REJECTED, EXIT_BUSY = 0, 1, 3, 75
PROGRESS_INTERVAL_S = 60.0  # a plain progress line in train.log at least this often
SLOW_START_S = 60.0  # a first step still unfinished after this long is reported, with the fix,
SLOW_STEP_S = 3600.0  # when no sequence is done yet, or one step would outlast the budget (or this)
progress_log = logging.getLogger("codelearn.train.progress")
Progress = Callable[..., None]  # progress(stage, done, total, detail="")


@dataclass(frozen=True)
class RunOptions:
    """What one `codelearn train` invocation asks for."""

    nightly: bool = False  # skip when nothing changed since the last finished run
    dry_run: bool = False
    force: bool = False
    max_steps: int | None = None
    max_minutes: float | None = None
    export: str | None = None
    since: str = ""


@dataclass
class TrainReport:
    """What a run did and decided; `report.json` in the run folder and `--json`."""

    status: str  # promoted | rejected | up_to_date | dry_run | busy
    message: str
    run_id: str = ""
    serving: str = ""
    base: str = ""
    candidate: str | None = None
    dataset: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    export: dict = field(default_factory=dict)
    gate: dict = field(default_factory=dict)
    search: dict = field(default_factory=dict)  # the search model's own tuning (`train_search`)
    precision: dict = field(default_factory=dict)  # what training computes in, and why
    machine: dict = field(default_factory=dict)  # the CPU and builds the numbers came from
    warnings: list = field(default_factory=list)
    scores: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)
    log: str = ""

    @property
    def exit_code(self) -> int:
        return {"rejected": EXIT_REJECTED, "busy": EXIT_BUSY}.get(self.status, EXIT_OK)

    def as_json(self) -> dict:
        return {k: v for k, v in vars(self).items()} | {"exit_code": self.exit_code}


def _noop(stage: str, done: int, total: int | None, detail: str = "") -> None:
    pass


def train_dir(project: Project) -> Path:
    return project.state / "train"


def run_training(project: Project, options: RunOptions, progress: Progress = _noop) -> TrainReport:
    """One run (see the module doc); returns busy at once if another run holds the lock."""
    from codelearn.train.lock import TrainLock, clean_stale_runs

    project.ensure_state()
    lock = TrainLock(project.state)
    if not lock.acquire():
        return TrainReport("busy", "Another `codelearn train` is running for this repo.")
    try:
        for name in clean_stale_runs(train_dir(project) / "runs"):
            log.warning("cleaned up after run %s, which did not finish", name)
        return _Run(project, options, progress).go()
    finally:
        lock.release()


def _state_file(project: Project) -> Path:
    return train_dir(project) / "state.json"


def last_finished(project: Project) -> dict:
    """What the last finished run recorded (`inputs`, `run_id`, `status`); empty if none did."""
    try:
        return json.loads(_state_file(project).read_text())
    except (OSError, ValueError):
        return {}


def training_status(project: Project) -> dict:
    """The last finished run and what the next run goes on from: its state on unchanged data, its
    adapter after a commit where `warm_start` (nothing loaded)."""
    folder = train_dir(project)
    last = last_finished(project)
    waiting = carry.waiting(folder) if project.settings.train_carry_on else None
    carried = ({**waiting.as_json(), "warm_start": project.settings.train_warm_start,
                "refused": carry.refusals(folder)} if waiting else None)
    return {"last_run": {"run_id": last.get("run_id"), "status": last.get("status")} if last else None,
            "carried": carried}


def input_fingerprint(project: Project) -> str:
    """Changes when anything a run learns from changes: commits, edits, settings, codelearn,
    feedback in the question history."""
    from codelearn import __version__
    from codelearn.ask.history import History

    digest = hashlib.sha256(__version__.encode())
    for args in (["rev-parse", "HEAD"], ["status", "--porcelain", "-z"]):
        proc = subprocess.run(["git", *args], cwd=project.root, capture_output=True, check=False)
        digest.update(proc.stdout)
    settings = project.settings.as_dict()
    digest.update(json.dumps({k: settings[k] for k in sorted(settings)}, default=str).encode())
    with History(project.state) as history:
        digest.update(history.feedback_digest().encode())
    return digest.hexdigest()[:20]


class _Run:
    """The stages of one run, sharing its state."""

    def __init__(self, project: Project, options: RunOptions, progress: Progress) -> None:
        self.project, self.options, self.progress = project, options, progress
        self.settings = project.settings
        self.report = TrainReport("running", "")
        self.state_file = _state_file(project)
        self.loop_state = None  # the training loop's latest LoopState
        self.loop_started: float | None = None
        self._data_split = None  # (DataOptions, Split) once computed: see _split
        self.carrying = False  # nothing changed, and a promoted run left training to go on with

    def go(self) -> TrainReport:
        inputs = input_fingerprint(self.project)
        if last_finished(self.project).get("inputs") == inputs:
            self.carrying = self.settings.train_carry_on and carry.pending(train_dir(self.project))
            if self.options.nightly and not self.options.force and not self.carrying:
                return TrainReport("up_to_date", "Nothing changed since the last finished run.")
        from codelearn.machine import this_machine
        from codelearn.progress import ProgressLog

        self.report.machine = this_machine().as_json()
        with ProgressLog(progress_log.info, PROGRESS_INTERVAL_S, warn=log.warning) as lines:
            self.lines = lines
            lines.watch(self._slow_start)
            shown = self.progress

            def both(stage: str, done: int, total: int | None, detail: str = "") -> None:
                shown(stage, done, total, detail)
                lines(stage, done, total, detail)

            self.progress = both
            try:
                return self._stages(inputs)
            finally:
                self.report.warnings = list(lines.warnings)

    def _stages(self, inputs: str) -> TrainReport:
        self._stage("index", self._refresh_index)
        from codelearn.models.registry import Registry
        from codelearn.models.bases import serving_model, training_base

        self.registry = Registry()
        self.serving = serving_model(self.project, self.registry)
        self.base = training_base(self.project, self.registry, self.serving)
        self.report.serving, self.report.base = self.serving.name, self.base.name
        if not self.options.dry_run:
            self._stage("preflight", self._preflight)
            if self.settings.train_search and self.settings.embedder == "default" and not self.carrying:
                self._stage("search", self._tune_search)
        self._stage("data", self._build_data)
        from codelearn.train.precision import decide

        self.precision = decide(self.settings.train_dtype, self.base.weights)
        self.report.precision = self.precision.as_json()
        if self.options.dry_run:
            self.report.status, self.report.message = "dry_run", "Dry run: nothing was trained."
            return self.report
        self._open_run_dir()
        try:
            for stage in ("train", "export", "gate", "decide"):
                self._stage(stage, getattr(self, f"_{stage}"))
            self._engine_hint()
        finally:
            self._write_report()
        self._remember(inputs)
        return self.report

    # -- bookkeeping ------------------------------------------------------------
    def _stage(self, name: str, action: Callable[[], None]) -> None:
        started = time.perf_counter()
        log.info("stage %s", name)
        self.lines(f"stage {name}", 0, None)
        action()
        self.report.seconds[name] = round(time.perf_counter() - started, 2)

    def _engine_hint(self) -> None:
        """A gate slower than a user can wait for, where `engine build` would speed it up: say so."""
        from codelearn.llm.native_engine import build_hint

        hint = build_hint(self.report.seconds.get("gate", 0.0), self.report.machine.get("flags", ()))
        if hint:
            log.warning(hint)
            self.lines.warnings.append(hint)

    def _remember(self, inputs: str) -> None:
        write_json(self.state_file, {"inputs": inputs, "run_id": self.report.run_id,
                                     "status": self.report.status}, indent=None)

    def _open_run_dir(self) -> None:
        from codelearn.paths import new_run_dir

        self.run_dir = new_run_dir(train_dir(self.project) / "runs")
        self.report.run_id = self.run_dir.name
        self.log_path = self.run_dir / "train.log"
        self.report.log = str(self.log_path)
        handler = logging.FileHandler(self.log_path)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler.setLevel(logging.INFO)
        root = logging.getLogger("codelearn")
        root.addHandler(handler)
        root.setLevel(min(root.level or logging.WARNING, logging.INFO))
        self._handler = handler

    def _slow_start(self) -> str | None:
        """After a minute without a finished first step, if the pace says that step will outlast the
        budget (or no sequence is done yet): say so, how slow, and what to change."""
        state, started = self.loop_state, self.loop_started
        if started is None or (state is not None and state.step > 0):
            return None
        waited = time.monotonic() - started
        if waited < SLOW_START_S:
            return None
        from codelearn.progress import duration

        accum = self.settings.train_grad_accum
        done = state.sequences if state else 0
        per_step = waited / done * accum if done else waited * accum
        budget = (self.options.max_minutes if self.options.max_minutes is not None
                  else self.settings.train_minutes) * 60
        fix = ("set train_dtype = fp32 (bf16 is slow on CPUs without AVX512-BF16 or AMX)"
               if "bf16" in self.precision.precision else
               "train a smaller model (train_base) or shorter samples, or give it a GPU")
        if done and per_step <= (budget or SLOW_STEP_S):
            return None  # slow to start but on pace (a 0.5B step takes about a minute on 2 cores)
        over = f", longer than the whole {duration(budget)} budget" if budget and per_step > budget else ""
        return (f"The first training step is not done after {duration(waited)} ({done} of {accum} sequences): "
                f"{'about' if done else 'at least'} {duration(per_step)} per step{over}. Training in "
                f"{self.precision.precision} ({self.precision.reason}). If this is too slow, {fix}.")

    def _write_report(self) -> None:
        if self.report.status == "running":
            self.report.status, self.report.message = "failed", "The run stopped with an error (see the log)."
        write_json(self.run_dir / "report.json", self.report.as_json(), default=str)
        logging.getLogger("codelearn").removeHandler(self._handler)
        self._handler.close()

    # -- stages -----------------------------------------------------------------
    def _preflight(self) -> None:
        """Fail in seconds, not after an hour: the trainer can run and the converter is at hand."""
        from codelearn.models.converter import converter_dir
        from codelearn.train.trainers.base import choose_trainer

        kind = self.options.export or self.settings.export
        if kind not in ("gguf", "adapter"):
            raise CodelearnError(f"Unknown export {kind!r}.", "Set export to gguf or adapter.")
        forget_scales(self.settings.forget_scales)  # a typo fails now, not after the night's training
        self.trainer = choose_trainer(self.settings.train_backend)
        self.converter = converter_dir(self.settings.converter_path,
                                       progress=lambda d, t: self.progress("fetching converter", d, t))

    def _tune_search(self) -> None:
        """The search model learns the repo first (its own gate decides); the answer model's
        data then comes from the index it searches. Its failure is reported, not fatal."""
        from codelearn.train.dataset import heldout_keys
        from codelearn.train.search_tuning import SearchTuneOptions, tune_and_gate

        # what the answer model holds out, the search model must not learn either: eval and the
        # gate search for held-out code with it (one split, computed once, for both)
        options, split = self._split()
        exclude = heldout_keys(self.project, options, split)
        try:
            self.report.search = tune_and_gate(self.project, SearchTuneOptions(exclude=exclude),
                                               self.progress).as_json()
        except CodelearnError as exc:
            log.warning("search model not tuned: %s", exc)
            self.report.search = {"error": str(exc)}

    def _split(self):
        """The run's data options and split of the indexed code, computed once: the search model's
        exclusions and the answer model's hold-out must be the same code even if HEAD moves."""
        if self._data_split is None:
            from codelearn.train.dataset import DataOptions, repo_split

            options = DataOptions.from_settings(self.settings, since=self.options.since or None)
            self._data_split = options, repo_split(self.project, options)
        return self._data_split

    def _refresh_index(self) -> None:
        from codelearn.index.indexer import run_index

        run_index(self.project, wait=True, progress=self.progress)

    def _build_data(self) -> None:
        from codelearn.llm.llama_backend import LlamaVocab
        from codelearn.train.dataset import build_dataset

        self.vocab = LlamaVocab(self.base.gguf, declared_format=self.base.template,
                                format_override=self.settings.chat_format)
        self.answers = None
        if not self.options.dry_run:
            from codelearn.corpus.selfreplay import self_answers

            self.answers = self_answers(self.base.gguf, self.base.sha256, threads=self.settings.threads,
                                        progress=lambda d, t: self.progress("replay answers", d, t))
        options, split = self._split()
        self.dataset = build_dataset(self.project, self.vocab, options, self.answers, split)
        self.report.dataset = self.dataset.stats()
        self.report.dataset["recipe"] = self.dataset.split.recipe(options.seed, options.random_share)

    def _train(self) -> None:
        from codelearn.train.hf import prepare_base
        from codelearn.train.trainers.base import TrainConfig

        self.progress("preparing base", 0, 1)
        self.hf_dir = prepare_base(self.base.weights, self.base.sha256)
        self.progress("preparing base", 1, 1)
        s = self.settings
        config = TrainConfig(
            rank=s.train_rank, alpha=s.train_alpha or 2 * s.train_rank, lr=s.train_lr,
            grad_accum=s.train_grad_accum, kl_weight=s.train_kl_weight, dtype=self.precision.precision,
            threads=s.threads, seed=s.train_seed,
            max_steps=self.options.max_steps if self.options.max_steps is not None else s.train_steps,
            max_minutes=self.options.max_minutes if self.options.max_minutes is not None else s.train_minutes,
            checkpoint_minutes=s.train_checkpoint_minutes, pack_tokens=s.train_seq_len if s.train_pack else 0)
        self.data_fingerprint = self.dataset.fingerprint()  # hashes every token: once a run
        config, carried, warm = self._start_from(config)
        log.info("training in %s: %s", self.precision.precision, self.precision.reason)

        def step(state) -> None:
            self.loop_state = state
            self.progress("training", state.sequences, state.sequences_planned, loop_detail(state))

        self.loop_started = time.monotonic()
        result = self.trainer.train(self.hf_dir, self.dataset.encoded, config, self.run_dir / "adapter", step)
        self.loop_started = None
        if result.backend != "unsloth":  # unsloth picks its own (bf16 or 4-bit)
            result.precision = self.precision.as_json()
        self.report.training = result.as_json()
        self.report.training["carried"] = carried.as_json() if carried else {}
        self.report.training["warm"] = warm.as_json() if warm and result.warm_started else {}
        if warm and not result.warm_started:
            log.warning("run %s's adapter could not be read: this run trained from the base", warm.run_id)
        if result.resumed:
            log.info("went on from the state a stopped run saved: step %d, %.0fs trained",
                     result.resumed["steps"], result.resumed["seconds"])
        log.info("trained %d steps, %d sequences in %.0fs (stopped: %s%s)", result.steps, result.sequences,
                 result.seconds, result.stopped, f", last step cut to {result.partial_step} sequences and "
                 "applied" if result.partial_step else "")

    def _export(self) -> None:
        self.export = self._export_at(1.0)
        self.report.export = {**self.export.as_json(), "scale": 1.0}

    def _export_at(self, scale: float):
        """The candidate as `ask` would serve it; below 1, with its learned change scaled
        (`scaled_adapter`), in a folder of its own."""
        from codelearn.train.export import export_adapter, export_gguf, export_quant, scaled_adapter

        kind = self.options.export or self.settings.export
        work, adapter = self.run_dir, self.run_dir / "adapter"
        if scale != 1.0:
            work = self.run_dir / f"scale-{scale:g}"
            adapter = scaled_adapter(adapter, scale, work / "adapter")
        label = "exporting" if scale == 1.0 else f"exporting at {scale:g}"
        self.progress(label, 0, 1)
        if kind == "adapter":
            export = export_adapter(self.base.gguf, self.hf_dir, adapter, work, converter=self.converter,
                                    log_file=self.log_path)
        else:
            quant = export_quant(self.settings.export_quant, _file_type(self.serving.path))
            export = export_gguf(self.hf_dir, adapter, work, quant=quant, converter=self.converter,
                                 log_file=self.log_path)
        self.progress(label, 1, 1)
        return export

    def _gate(self) -> None:
        from codelearn.evaluate.scoring import ModelRef, ScoreCache, score_probes, scores_json
        from codelearn.models.bases import model_ref
        from codelearn.train.gate import Rules, decide, staged_decision, tokenizer_mismatch

        s = self.settings
        rules = Rules(tolerance=s.forget_tolerance, min_gain=s.gate_min_gain, confidence=s.gate_confidence,
                      seed=s.train_seed)
        why_not = tokenizer_mismatch(self.serving.path, self.vocab)
        if why_not:  # scoring the serving model would compare per-token losses over other tokens
            self.gate = decide({}, {}, rules=rules, comparable=why_not)
            self.report.gate = self.gate.as_json()
            return
        cache = ScoreCache(self.project.state / "eval" / "scores.jsonl")
        probes = self._gate_probes()
        refs = {"serving": model_ref(self.serving, "serving"),
                "base": ModelRef("base", self.base.gguf, self.base.sha256)}

        def judge(scale: float):
            identity = f"run:{self.report.run_id}" + ("" if scale == 1.0 else f"@{scale:g}")
            models = {**refs, "candidate": ModelRef("candidate", self.export.model, identity, self.export.adapter)}
            shown = {"candidate": "candidate" if scale == 1.0 else f"candidate at {scale:g}"}

            def score(label: str, chosen: list, stage: str):
                name = shown.get(label, label)
                return score_probes(models[label], chosen, self.vocab, cache=cache, threads=s.threads,
                                    progress=lambda d, t: self.progress(f"scoring {name} {stage}", d, t))

            return staged_decision(probes, score, rules)

        self.gate, scores = judge(1.0)
        tries, chosen = [_try_json(1.0, self.gate)], 1.0
        if self.gate.forgot_only:
            chosen, scores = self._smaller_steps(judge, tries, scores)
        self.report.export = {**self.export.as_json(), "scale": chosen}
        self.report.gate = {**self.gate.as_json(), "scale": chosen, "tries": tries}
        self.report.scores = {label: scores_json(scored) for label, scored in scores.items()}

    def _smaller_steps(self, judge: Callable, tries: list[dict], scores: dict) -> tuple[float, dict]:
        """A candidate refused for forgetting alone, exported and judged again at each of
        `forget_scales` in turn: the first that passes every check becomes the candidate (the
        full-strength files are deleted), each that fails is deleted. Returns the scale and scores."""
        full, gate = self.export, self.gate
        for scale in forget_scales(self.settings.forget_scales):
            log.info("refused for forgetting alone at %g (%s): trying the candidate at %g of its learned change",
                     tries[-1]["scale"], gate.summary(), scale)
            self.export = self._export_at(scale)
            gate, scored = judge(scale)
            tries.append(_try_json(scale, gate))
            if gate.promote:
                _remove_export(full, self.run_dir)
                self.gate = gate
                return scale, scored
            _remove_export(self.export, self.run_dir)
            self.export = full
            if not gate.forgot_only:
                break
        return 1.0, scores

    def _gate_probes(self) -> list:
        """The held-out probes, with what `ask`'s own search shows for each target (the served condition)."""
        from codelearn.evaluate.probes import ProbeOptions, all_probes
        from codelearn.evaluate.served import SearchNeighbours

        options = ProbeOptions(targets=self.settings.gate_targets, neighbours=self.settings.context_neighbours,
                               seed=self.settings.train_seed)
        d = self.dataset
        search = SearchNeighbours(self.project, self.vocab)
        try:
            return all_probes(d.split, d.finder, d.fmt, self.vocab, d.repo_name, self.answers, options,
                              retrieve=search, use_cases=d.use_heldout)
        finally:
            search.close()

    def _decide(self) -> None:
        from codelearn.train.registering import register_candidate

        entry = register_candidate(self.registry, self.project, self.base, self.export, self.report,
                                   self.data_fingerprint)
        self.report.candidate = entry.name
        tries = self.report.gate.get("tries", [])
        if self.gate.promote:
            self.registry.promote(self.project.key, entry.name)
            self.report.status = "promoted"
            scale = self.report.gate.get("scale", 1.0)
            self.report.message = (f"Promoted {entry.name}: {self.gate.summary()}." if scale == 1.0 else
                                   f"Promoted {entry.name} at {scale:g} of its learned change (at full strength "
                                   f"it forgot too much: {', '.join(tries[0]['failed'])}): {self.gate.summary()}.")
            if self.settings.model:
                self.report.message += (f" The `model` setting ({self.settings.model}) still decides what "
                                        "`ask` uses; clear it to answer with the trained model.")
        else:
            self.report.status = "rejected"
            self.report.message = f"Kept {self.serving.name}; the candidate failed: {self.gate.summary()}."
            if len(tries) > 1:
                self.report.message += " With its learned change scaled to " + ", ".join(
                    f"{t['scale']:g} ({', '.join(t['failed'])})" for t in tries[1:]) + " it failed too."
        for gone in self.registry.prune(self.project.key, self.settings.keep_candidates):
            log.info("pruned old candidate %s", gone.name)
        shutil.rmtree(self.run_dir / "adapter", ignore_errors=True)  # exported; 30+ MB
        for folder in self.run_dir.glob("scale-*"):  # what they held to serve is registered or deleted
            shutil.rmtree(folder, ignore_errors=True)
        self._carry_or_forget()

    def _start_from(self, config):
        """Where training starts: the kept state on the same data (go on), its adapter on changed data
        (a warm start), or the base; returns the config to train with, and the carried or warm state."""
        s = self.settings
        self.warm_key = warm_key(config, self.base.sha256, self.trainer.name)
        folder = train_dir(self.project)
        carried = warm = None
        self._drop_if_not_promoted(folder)
        self.lineage = carry.lineage(folder) if s.train_carry_on else carry.Lineage()
        self.resume_key = self._trajectory_key(config)
        if s.train_carry_on:
            carried = carry.take(folder, self.resume_key, self._resume_file())
        else:
            carry.drop(folder)
        if carried:  # the same data as a promoted run whose budget ended first: go on from it
            minutes, steps = carried.budget(config.max_minutes, config.max_steps)
            config = replace(config, max_minutes=minutes, max_steps=steps)
            log.info("going on from run %s (%d steps, %.0fs trained on the same data)", carried.run_id,
                     carried.steps, carried.seconds)
        else:
            if s.train_carry_on and s.train_warm_start:
                warm = self._warm_start(carry.warm(folder))
            self.lineage = (carry.Lineage(warm.generation + 1, warm.tokens, warm.run_id, warm.refused) if warm
                            else carry.Lineage())
            self.resume_key = self._trajectory_key(config)
            config = replace(config, warm_file=str(warm.state) if warm else "")
        # another seed for each data version and each try: not the samples the last run began with
        config = replace(config, seed=self.lineage.seed(config.seed), resume_file=str(self._resume_file()),
                         resume_key=self.resume_key)
        return config, carried, warm

    def _drop_if_not_promoted(self, folder: Path) -> None:
        """A kept state whose run is no longer the repo's promoted model (rolled back, or another
        chosen by hand) is no start for the next model: dropped."""
        kept = carry.kept_run(folder)
        if kept is None:
            return
        name = self.registry.serving(self.project.key)
        entry = self.registry.get(name) if name else None
        if entry is None or entry.metrics.get("run_id") != kept:
            log.info("training starts from the base: run %s, whose state was kept, is not the promoted "
                     "model now (%s)", kept, name or "none")
            carry.drop(folder)

    def _warm_start(self, warm: carry.Warm | None) -> carry.Warm | None:
        """`warm` if this run may start from its adapter (`carry.why_not`), logging why not."""
        if warm is None:
            return None
        from codelearn.corpus.history import is_ancestor

        why = carry.why_not(warm, self.warm_key, self.report.dataset["recipe"],
                            lambda old, new: is_ancestor(self.project.root, old, new))
        if why:
            log.info("training starts from the base, not from run %s's adapter: %s", warm.run_id, why)
            return None
        log.info("starting from run %s's adapter (%s; %d tokens trained before)", warm.run_id,
                 f"try {warm.refused + 1}: {warm.refused} refused" if warm.refused else "the data changed since",
                 warm.tokens)
        return warm

    def _carry_or_forget(self) -> None:
        """Decided: a promoted run the budget ended keeps its state for the next run on the same
        data (`train_carry_on`); otherwise nothing is left to resume."""
        folder, resume = train_dir(self.project), self._resume_file()
        training = self.report.training
        if (self.gate.promote and self.settings.train_carry_on and training.get("stopped") in carry.CARRIED_STOPS
                and resume.is_file()):
            recipe = self.report.dataset["recipe"]
            lineage = {"shape": self.warm_key, **self.lineage.as_json(),
                       "split": {k: recipe[k] for k in ("cut", "seed", "random_share")}}
            carry.keep(folder, resume, self.resume_key, self.report.run_id, training, lineage)
            self.report.message += " Training goes on from here at the next run while nothing changes."
            return
        if self.gate.promote:
            carry.drop(folder)  # the new model's own state is not kept (its data ended, or carrying is off)
        else:
            carry.refuse(folder)  # the serving model's state stays, for a new try from its adapter
        resume.unlink(missing_ok=True)

    def _resume_file(self) -> Path:
        return train_dir(self.project) / "resume.pt"

    def _trajectory_key(self, config) -> str:
        """The resume key of `self.lineage`'s trajectory: its seed moves on with each data version,
        and the adapter it started from (if not the base) is part of its data."""
        warm_from = self.lineage.warm_from
        return resume_key(replace(config, seed=self.lineage.seed(config.seed)), self.base.sha256,
                          self.trainer.name, f"{self.data_fingerprint}:{warm_from}" if warm_from else
                          self.data_fingerprint)


def forget_scales(text: str) -> list[float]:
    """The `forget_scales` setting: the scales to try, largest first."""
    try:
        scales = sorted({float(part) for part in text.replace(" ", "").split(",") if part}, reverse=True)
    except ValueError:
        scales = [-1.0]
    if any(not 0 < scale < 1 for scale in scales):
        raise CodelearnError(f"forget_scales = {text!r}: each must be a number between 0 and 1.",
                             'Set it in .codelearn.toml like forget_scales = "0.75,0.5", or to "" to refuse at once.')
    return scales


def _try_json(scale: float, gate) -> dict:
    """One candidate strength the gate judged: what failed, and how much each check moved."""
    return {"scale": scale, "promote": gate.promote, "failed": [c.name for c in gate.failures],
            "changes": {c.name: round(c.change, 5) for c in gate.checks if c.change is not None}}


def _remove_export(export, run_dir: Path) -> None:
    """Delete an export that will not be registered (never the base model an adapter sits on)."""
    for path in (export.adapter, export.model):
        if path is not None and run_dir in Path(path).parents:
            Path(path).unlink(missing_ok=True)


def warm_key(config, base_sha: str, backend: str) -> str:
    """What an adapter must have been trained with for another run to start from it: the base,
    the trainer and the LoRA shape."""
    fields = (config.rank, config.alpha, base_sha, backend)
    return hashlib.sha256(repr(fields).encode()).hexdigest()[:20]


def resume_key(config, base_sha: str, backend: str, data: str) -> str:
    """What a saved training state must share with a run to be resumed by it: the data, the base,
    the trainer and every setting that shapes training (budgets may differ)."""
    fields = (config.rank, config.alpha, config.dropout, config.lr, config.grad_accum, config.warmup_steps,
              config.decay_steps, config.kl_weight, config.dtype, config.seed, base_sha, backend, data)
    return hashlib.sha256(repr(fields).encode()).hexdigest()[:20]


def loop_detail(state) -> str:
    """step, loss, speed and the time left, for the bar and the log lines."""
    from codelearn.progress import duration

    parts = [f"step {state.step}/{state.steps}"]
    if state.loss is not None:
        parts.append(f"loss {state.loss:.3f}")
    parts.append(f"{state.tokens_per_s:.0f} tok/s")
    if state.eta_s is not None:
        parts.append(f"eta {duration(state.eta_s)}")
    return " · ".join(parts)


def _file_type(path: Path) -> str:
    from codelearn.llm.gguf_header import read_gguf_info

    return read_gguf_info(path).file_type
