"""`codelearn train` end to end on real engines: a real git repo with history, the real index,
a tiny Hugging Face Llama trained with peft, llama.cpp's own converter and quantizer, llama.cpp
scoring both models for the gate, and the model registry.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import NEW_CODE, git, make_repo, write_files
from typer.testing import CliRunner

from codelearn.cli import app
from codelearn.errors import CodelearnError
from codelearn.index.indexer import run_index
from codelearn.models.registry import Registry, resolve_model
from codelearn.project import open_project
from codelearn.train.lock import TrainLock
from codelearn.train.nightly import EXIT_BUSY, EXIT_REJECTED, RunOptions, run_training

SECRET_KEY = "AKIAZ7QK3NB4XW5TY2PV"
SECRET_URL_PASSWORD = "SuperSecretPgPw42"


@pytest.fixture
def repo(train_repo) -> Path:
    return train_repo


def _serving(root: Path) -> str | None:
    return Registry().serving(open_project(root).key)


def test_a_run_trains_exports_gates_and_promotes_a_model_ask_then_uses(repo):
    report = run_training(open_project(repo), RunOptions())
    assert report.status == "promoted", report.message
    # 60 steps, or three passes over the data if that comes first (the replay answers the tiny
    # model writes, and so the sample count, depend on its thread count)
    assert 20 <= report.training["steps"] <= 60 and report.training["stopped"] in ("steps", "data")
    assert report.training["last_loss"] < report.training["first_loss"]
    assert report.export["kind"] == "gguf" and report.export["quant"] == "Q8_0"
    assert {c["name"] for c in report.gate["checks"]} == {
        "repo_loss", "repo_loss_served", "forgetting_code", "forgetting_chat", "instruct_loss", "context_helps",
        "random_context", "use_corrections"}
    assert next(c for c in report.gate["checks"] if c["name"] == "use_corrections")["status"] == "not checked"
    served = next(c for c in report.gate["checks"] if c["name"] == "repo_loss_served")
    assert served["status"] == "passed" and served["interval"][1] < 0
    assert report.precision["precision"] == "fp32" and report.machine["cpu"]
    assert _serving(repo) == report.candidate
    registry = Registry()
    entry = registry.get(report.candidate)
    assert entry.kind == "adapted" and entry.metrics["cut"]["commits_after"] >= 1
    resolved = resolve_model(registry, "", open_project(repo).key, "setting")
    assert resolved.name == report.candidate and resolved.reason == "trained for this repo"
    from tinygguf import is_quantized

    assert is_quantized(Path(entry.path))
    rows = json.loads(CliRunner().invoke(app, ["models", "history", "-C", str(repo), "--json"]).stdout)
    assert [r["status"] for r in rows] == ["serving"]
    assert rows[0]["repo_loss_candidate"] < rows[0]["repo_loss_serving"]
    result = CliRunner().invoke(app, ["models", "rollback", "-C", str(repo)])
    assert result.exit_code == 0 and _serving(repo) is None


def test_an_adapter_export_is_served_on_top_of_the_base(repo):
    report = run_training(open_project(repo), RunOptions(export="adapter"))
    entry = Registry().get(report.candidate)
    assert entry.adapter and Path(entry.adapter).is_file() and entry.adapter_sha256
    assert entry.size == Path(entry.path).stat().st_size  # the base file, shared
    from codelearn.llm.llama_backend import LlamaModel

    model = LlamaModel(Path(entry.path), lora_path=Path(entry.adapter), context_size=256)
    model.close()


def test_a_deliberately_bad_candidate_is_refused_and_the_serving_model_kept(junk_repo, monkeypatch):
    from codelearn.llm import native_engine

    asked = []  # a slow gate's advice (`engine build`) is given from the gate's own seconds
    monkeypatch.setattr(native_engine, "build_hint", lambda seconds, flags: asked.append(seconds) or "HINT")
    report = run_training(open_project(junk_repo), RunOptions(since="HEAD~1"))  # trained on junk
    assert asked == [report.seconds["gate"]] and "HINT" in report.warnings
    assert report.status == "rejected" and report.exit_code == EXIT_REJECTED
    assert "repo_loss" in report.message
    assert _serving(junk_repo) is None
    rows = json.loads(CliRunner().invoke(app, ["models", "history", "-C", str(junk_repo), "--json"]).stdout)
    assert rows[0]["status"] == "refused" and "repo_loss" in rows[0]["failed_checks"]


def test_nightly_is_up_to_date_when_nothing_changed_and_runs_after_a_commit(repo, monkeypatch):
    monkeypatch.setenv("CODELEARN_TRAIN_CARRY_ON", "false")  # a promoted 2-step run would go on
    project = open_project(repo)
    first = run_training(project, RunOptions(nightly=True, max_steps=2))
    assert first.status in ("promoted", "rejected")
    started = time.perf_counter()
    again = run_training(project, RunOptions(nightly=True))
    assert again.status == "up_to_date" and again.exit_code == 0
    assert time.perf_counter() - started < 5
    write_files(repo, {"lib/more.py": "def another_one():\n    return 42\n"})
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "more")
    assert run_training(project, RunOptions(nightly=True, dry_run=True)).status == "dry_run"


def test_a_second_run_while_one_holds_the_lock_says_busy(repo):
    project = open_project(repo)
    project.ensure_state()
    lock = TrainLock(project.state)
    assert lock.acquire()
    try:
        report = run_training(project, RunOptions(nightly=True))
    finally:
        lock.release()
    assert report.status == "busy" and report.exit_code == EXIT_BUSY == 75


def test_a_failed_export_leaves_the_serving_model_alone(repo, monkeypatch, tmp_path):
    broken = tmp_path / "broken-converter"
    for name in ("convert_hf_to_gguf.py", "convert_lora_to_gguf.py"):
        write_files(broken, {name: "import sys\nprint('converter exploded')\nsys.exit(3)\n"})
    (broken / "conversion").mkdir()
    (broken / "gguf-py").mkdir()
    monkeypatch.setenv("CODELEARN_CONVERTER_PATH", str(broken))
    before = Registry().data
    result = CliRunner().invoke(app, ["train", "-C", str(repo), "--max-steps", "2"])
    assert result.exit_code == 1 and "converter exploded" in result.output
    assert Registry().data == before
    runs = list((repo / ".codelearn" / "train" / "runs").iterdir())
    assert json.loads((runs[0] / "report.json").read_text())["status"] == "failed"


def test_a_run_killed_mid_training_changes_nothing_and_the_next_run_goes_on_from_its_state(repo, monkeypatch):
    import torch

    monkeypatch.setenv("CODELEARN_TRAIN_STEPS", "100000")
    monkeypatch.setenv("CODELEARN_TRAIN_CHECKPOINT_MINUTES", "0.0001")  # after every step
    env = {**os.environ}
    proc = subprocess.Popen([sys.executable, "-m", "codelearn", "train", "-C", str(repo), "-q"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    runs = repo / ".codelearn" / "train" / "runs"
    deadline = time.time() + 120
    while time.time() < deadline:
        logs = list(runs.glob("*/train.log"))
        if logs and (repo / ".codelearn" / "train" / "resume.pt").is_file():  # a step is done and saved
            time.sleep(1.0)  # some steps more, then the kill lands mid-training
            break
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("training never started")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert _serving(repo) is None and not list(Registry().history(open_project(repo).key))
    killed = logs[0].parent
    assert not (killed / "report.json").exists()
    state = repo / ".codelearn" / "train" / "resume.pt"
    saved = torch.load(state, weights_only=True)["progress"]
    assert saved["steps"] >= 1
    report = run_training(open_project(repo), RunOptions(max_steps=saved["steps"] + 1))
    assert report.status in ("promoted", "rejected")
    assert report.training["resumed"]["steps"] == saved["steps"] and report.training["steps"] == saved["steps"] + 1
    assert not state.exists()  # decided: the state is gone
    assert json.loads((killed / "report.json").read_text())["status"] == "died"
    assert not (killed / "adapter").exists() and (killed / "train.log").exists()


def test_a_promoted_run_its_budget_ended_goes_on_at_the_next_nightly_while_nothing_changes(repo, monkeypatch):
    monkeypatch.setenv("CODELEARN_TRAIN_STEPS", "12")
    folder = repo / ".codelearn" / "train"
    first = run_training(open_project(repo), RunOptions(nightly=True))
    assert first.status == "promoted", first.message
    assert first.training["stopped"] == "steps" and first.training["carried"] == {}
    assert (folder / "carry.pt").is_file() and not (folder / "resume.pt").exists()
    assert "goes on from here" in first.message
    shown = json.loads(CliRunner().invoke(app, ["status", "--repo", str(repo), "--json"]).stdout)["training"]
    assert shown == {"last_run": {"run_id": first.run_id, "status": "promoted"},
                     "carried": {"run_id": first.run_id, "steps": 12, "seconds": round(first.training["seconds"], 1),
                                 "tokens": first.training["tokens"], "warm_start": True, "refused": 0}}
    assert f"goes on from run {first.run_id} (12 steps" in " ".join(
        CliRunner().invoke(app, ["status", "--repo", str(repo)]).stdout.split())

    again = run_training(open_project(repo), RunOptions(nightly=True))  # nothing changed: not up to date
    carried = again.training["carried"]
    assert carried["run_id"] == first.run_id and carried["steps"] == 12
    assert carried["tokens"] == first.training["tokens"]
    assert again.training["resumed"]["steps"] == 12 and again.training["steps"] == 24  # 12 more of its own
    if again.status == "promoted":  # still training left: it goes on again
        assert (folder / "carry.pt").is_file() and json.loads((folder / "carry.json").read_text())["steps"] == 24
    else:  # refused: the serving model's state stays, not to go on along this trajectory again
        assert (folder / "carry.pt").is_file() and json.loads((folder / "carry.json").read_text())["refused"] == 1
        assert run_training(open_project(repo), RunOptions(nightly=True)).status == "up_to_date"
    assert not (folder / "resume.pt").exists()


def test_a_carried_state_goes_only_to_a_run_on_the_same_data(tmp_path):
    from dataclasses import replace

    from codelearn.train import carry

    resume = tmp_path / "resume.pt"
    resume.write_bytes(b"state")
    lineage = {"shape": "lora-a", "generation": 1, "before_tokens": 500, "warm_from": "run-0",
               "split": {"cut": "c1", "seed": 0, "random_share": 0.05}}
    carry.keep(tmp_path, resume, "key-a", "run-1", {"steps": 40, "seconds": 600.0, "tokens": 9000}, lineage)
    assert not resume.exists() and carry.pending(tmp_path)
    assert carry.lineage(tmp_path) == carry.Lineage(1, 500, "run-0")
    assert carry.take(tmp_path, "key-b", resume) is None and carry.pending(tmp_path)  # other data: kept...
    warm = carry.warm(tmp_path)  # ...for a warm start
    assert warm == carry.Warm("run-1", tmp_path / "carry.pt", "lora-a", lineage["split"], 1, 9500)
    taken = carry.take(tmp_path, "key-a", resume)
    assert taken == carry.Carried("run-1", 40, 600.0, 9000) and resume.read_bytes() == b"state"
    assert taken.budget(240.0, 0) == (250.0, 0) and taken.budget(0.0, 10) == (0.0, 50)  # 0 stays no limit
    assert carry.pending(tmp_path)  # until the run decides: a killed run's budget still counts the carry
    resume.write_bytes(b"later")  # the run trained on, then was killed
    assert carry.take(tmp_path, "key-a", resume) == taken and resume.read_bytes() == b"later"  # stays in place
    assert (tmp_path / "carry.pt").read_bytes() == b"state"  # a copy was taken: the kept state is intact
    resume.unlink()  # the copy was lost: taken again
    assert carry.take(tmp_path, "key-a", resume) == taken and resume.read_bytes() == b"state"
    carry.refuse(tmp_path)  # that run's candidate was refused
    assert carry.take(tmp_path, "key-a", resume) is None  # never the refused trajectory again...
    assert carry.warm(tmp_path) == replace(warm, refused=1)  # ...a new try from the kept adapter instead
    assert carry.refusals(tmp_path) == 1 and carry.kept_run(tmp_path) == "run-1"
    assert carry.Lineage(2, 0, "run-1", 1).seed(0) != carry.Lineage(2, 0, "run-1", 0).seed(0)
    carry.drop(tmp_path)
    assert not carry.pending(tmp_path) and carry.lineage(tmp_path) == carry.Lineage()


def test_a_warm_start_needs_the_same_lora_and_hold_out_and_a_cut_at_or_after_the_last_runs(tmp_path):
    from codelearn.corpus.history import is_ancestor
    from codelearn.train.carry import Warm, why_not

    repo = make_repo(tmp_path / "r", {"m0.py": "X = 0\n"})
    commits = [git(repo, "rev-parse", "HEAD").strip()]
    for n in (1, 2):
        write_files(repo, {f"m{n}.py": f"X = {n}\n"})
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", f"c{n}")
        commits.append(git(repo, "rev-parse", "HEAD").strip())
    follows = lambda old, new: is_ancestor(repo, old, new)  # noqa: E731
    split = {"cut": commits[1], "seed": 0, "random_share": 0.05}
    warm = Warm("run-1", tmp_path / "carry.pt", "lora-a", split)
    assert why_not(warm, "lora-a", split, follows) == ""  # the same cut
    assert why_not(warm, "lora-a", {**split, "cut": commits[2]}, follows) == ""  # a later one
    assert "cut" in why_not(warm, "lora-a", {**split, "cut": commits[0]}, follows)  # earlier: it trained on it
    assert "cut" in why_not(Warm("run-1", warm.state, "lora-a", {**split, "cut": ""}), "lora-a", split, follows)
    assert why_not(warm, "lora-a", {**split, "cut": ""}, follows) == ""  # no temporal hold-out now
    assert "LoRA" in why_not(warm, "lora-b", split, follows)
    assert "random hold-out" in why_not(warm, "lora-a", {**split, "seed": 1}, follows)
    assert "cut" in why_not(warm, "lora-a", {**split, "cut": "0" * 40}, follows)  # unknown here


def test_after_a_commit_the_next_nightly_starts_from_the_kept_adapter_not_the_base(repo, monkeypatch):
    monkeypatch.setenv("CODELEARN_TRAIN_STEPS", "12")
    folder = repo / ".codelearn" / "train"
    first = run_training(open_project(repo), RunOptions(nightly=True))
    assert first.status == "promoted", first.message
    kept = json.loads((folder / "carry.json").read_text())
    assert (kept["generation"], kept["before_tokens"], kept["warm_from"]) == (0, 0, "") and kept["split"]["cut"]
    # a large commit: the cut moves on, the widgets are trained on now and more of their kind held out
    gadgets = "\n\n".join(NEW_CODE.replace("widget", f"gadget{n}") for n in range(16))
    write_files(repo, {"lib/gadgets.py": gadgets})
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "gadgets")
    second = run_training(open_project(repo), RunOptions(nightly=True))
    assert second.dataset["split"]["cut"]["commit"] != kept["split"]["cut"]
    training = second.training
    assert training["warm"] == {"run_id": first.run_id, "generation": 0, "tokens": first.training["tokens"],
                                "refused": 0}
    assert training["warm_started"] and training["carried"] == {} and not training["resumed"]
    assert training["steps"] == 12  # a budget of its own, a fresh optimiser and schedule
    assert f"starting from run {first.run_id}'s adapter" in (folder / "runs" / second.run_id / "train.log").read_text()
    assert second.status == "promoted", second.message
    kept = json.loads((folder / "carry.json").read_text())
    assert (kept["generation"], kept["before_tokens"], kept["warm_from"]) == (1, first.training["tokens"], first.run_id)
    third = run_training(open_project(repo), RunOptions(nightly=True))  # nothing changed: goes on, not warm
    assert third.training["carried"]["run_id"] == second.run_id and third.training["warm"] == {}
    assert third.training["resumed"]["steps"] == 12


def test_a_refused_candidate_leaves_the_serving_models_state_for_a_new_try_and_a_rollback_drops_it(
        repo, monkeypatch):
    import hashlib

    monkeypatch.setenv("CODELEARN_TRAIN_STEPS", "12")
    folder = repo / ".codelearn" / "train"
    first = run_training(open_project(repo), RunOptions(nightly=True))
    assert first.status == "promoted", first.message
    kept = hashlib.sha256((folder / "carry.pt").read_bytes()).hexdigest()
    monkeypatch.setenv("CODELEARN_GATE_MIN_GAIN", "0.99")  # no candidate can pass now (a settings change)
    second = run_training(open_project(repo), RunOptions(nightly=True))  # the same data: goes on from it
    assert second.status == "rejected" and second.training["carried"]["run_id"] == first.run_id
    assert hashlib.sha256((folder / "carry.pt").read_bytes()).hexdigest() == kept  # still the serving model's
    assert json.loads((folder / "carry.json").read_text())["refused"] == 1 and not (folder / "resume.pt").exists()
    shown = json.loads(CliRunner().invoke(app, ["status", "--repo", str(repo), "--json"]).stdout)["training"]
    assert shown["carried"]["run_id"] == first.run_id and shown["carried"]["refused"] == 1
    assert f"1 candidate(s) refused since run {first.run_id}" in " ".join(
        CliRunner().invoke(app, ["status", "--repo", str(repo)]).stdout.split())

    monkeypatch.setenv("CODELEARN_GATE_MIN_GAIN", "0.98")
    third = run_training(open_project(repo), RunOptions(nightly=True))  # not along the refused trajectory
    training = third.training
    assert training["carried"] == {} and not training["resumed"] and training["warm_started"]
    assert training["warm"] == {"run_id": first.run_id, "generation": 0, "tokens": first.training["tokens"],
                                "refused": 1}
    assert training["steps"] == 12 and training["losses"] != second.training["losses"][12:]  # another seed
    assert "try 2: 1 refused" in (folder / "runs" / third.run_id / "train.log").read_text()
    assert third.status == "rejected" and json.loads((folder / "carry.json").read_text())["refused"] == 2

    result = CliRunner().invoke(app, ["models", "rollback", "-C", str(repo)])  # the base serves again
    assert result.exit_code == 0, result.output
    monkeypatch.setenv("CODELEARN_GATE_MIN_GAIN", "0.01")
    fourth = run_training(open_project(repo), RunOptions(nightly=True))
    assert fourth.training["warm"] == {} and not fourth.training["warm_started"]
    assert fourth.training["carried"] == {}
    assert "is not the promoted model now" in (folder / "runs" / fourth.run_id / "train.log").read_text()


def test_dry_run_prints_the_mix_without_importing_torch(repo):
    run_index(open_project(repo), wait=True)
    code = ("import sys\nfrom codelearn.cli import app\n"
            "try:\n    app(['train', '--dry-run', '--json'])\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n"
            "assert 'transformers' not in sys.modules\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True,
                          env={**os.environ})
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["status"] == "dry_run"
    kinds = report["dataset"]["kinds"]
    assert all(kinds[k]["samples"] > 0 for k in ("code", "file", "context", "instruct", "replay"))
    assert report["dataset"]["split"]["heldout_new"] >= 2  # the two widget functions


def _dataset(root: Path, **overrides):
    from codelearn.llm.llama_backend import LlamaVocab
    from codelearn.models.bases import serving_model
    from codelearn.train.dataset import DataOptions, build_dataset

    project = open_project(root)
    run_index(project, wait=True)
    vocab = LlamaVocab(serving_model(project, Registry()).path)
    return build_dataset(project, vocab, DataOptions.from_settings(project.settings, **overrides)), vocab


def _texts(dataset) -> list[str]:
    return ["".join(p.text for p in sample.pieces) for sample in dataset.samples]


def test_held_out_code_never_reaches_the_training_data(repo):
    # the repo's modules are stdlib copies, and the replay may draw on all of the stdlib's replay
    # half: a held-out chunk must not come back through the replay
    dataset, _ = _dataset(repo, replay_share=0.5, replay_files=10_000)
    assert {u.symbol for u in dataset.split.new} >= {"frobnicate_widget", "unfrobnicate_widget"}
    texts = _texts(dataset)
    for unit in dataset.split.heldout:
        assert not any(unit.text in text for text in texts), unit.label
    assert not any("frobnicate" in text for text in texts)


def test_general_material_leaves_out_what_the_repo_holds():
    from codelearn.corpus.general import general_units

    units = general_units("probe", 4, seed=0)
    repo_copies = units[::3]
    kept = general_units("probe", 4, seed=0, exclude=repo_copies)
    # the copies go, and the few chunks that hold one of them (a class around a method)
    assert 0.9 * (len(units) - len(repo_copies)) <= len(kept) <= len(units) - len(repo_copies)
    assert not {u.text for u in kept} & {u.text for u in repo_copies}


def test_replay_share_and_the_contrastive_mix_come_out_as_configured(repo):
    dataset, _ = _dataset(repo)
    stats = dataset.stats()
    assert 0.03 <= stats["replay_share"] <= 0.08
    details = [s.detail for s in dataset.samples if s.kind == "context"]
    similar = {int(d.split()[0].split("=")[1]) for d in details}
    assert {0, 3} <= similar  # all-random and all-similar both occur, and mixes between
    assert any("copy=1" in d for d in details) and any("copy=0" in d for d in details)
    for sample in (s for s in dataset.samples if s.kind == "context"):
        trained = "".join(p.text for p in sample.pieces if p.train)
        untrained = "".join(p.text for p in sample.pieces if not p.train)
        assert trained.strip() and untrained.strip()


def test_search_shaped_context_samples_show_what_ask_finds_among_trained_code_only(repo):
    from codelearn.corpus.samples import Mix
    from codelearn.corpus.units import Unit
    from codelearn.evaluate.served import SearchNeighbours
    from codelearn.train.dataset import _TrainingSearch

    same = dict(file_cap=1.0, replay_share=0.0)  # longer contexts move neither cap nor replay size
    plain, _ = _dataset(repo, mix=Mix(context_share=1.0), **same)
    searched, vocab = _dataset(repo, mix=Mix(context_share=1.0, search_share=1.0), **same)
    # only the context samples' neighbours change: every other sample, and the order, stay
    assert [(s.kind, s.origin) for s in plain.samples] == [(s.kind, s.origin) for s in searched.samples]
    assert all(a == b for a, b in zip(plain.samples, searched.samples) if a.kind != "context")
    details = [s.detail for s in searched.samples if s.kind == "context"]
    assert all(d.startswith("search=") for d in details)
    assert sum(int(d.split()[0].split("=")[1]) > 0 for d in details) > len(details) // 2
    texts = _texts(searched)
    assert not any("frobnicate" in text for text in texts)
    # a question the held-out code answers best: search shows it, the training search never
    project = open_project(repo)
    asked = Unit(0, "repo", "lib/new.py", "python", "function", "turn", 1, 4,
                 'def turn(widget):\n    """Turn the widget\'s knob and report where the knob stopped."""\n'
                 '    return widget.knob\n', "", False, None)
    search = _TrainingSearch(project, vocab, searched.split, 512)
    try:
        shown = search(asked)
        served = SearchNeighbours(project, vocab)
        try:
            unfiltered = served(asked, 400)
        finally:
            served.close()
    finally:
        search.close()
    assert any(u.path == "lib/widgets.py" for u in unfiltered)  # the filter has something to do
    trained = {(u.path, u.start_line) for u in searched.split.train}
    assert shown and all((u.path, u.start_line) in trained for u in shown)
    assert not any(u.path == "lib/widgets.py" for u in shown)


def test_chat_replay_is_sized_by_the_chat_instructions(repo):
    from codelearn.corpus.general import PROMPTS
    from codelearn.llm.llama_backend import LlamaVocab
    from codelearn.models.bases import serving_model
    from codelearn.train.dataset import DataOptions, build_dataset

    project = open_project(repo)
    run_index(project, wait=True)
    vocab = LlamaVocab(serving_model(project, Registry()).path)
    answers = {p: "Here is how: use a loop over the lines and count them." for p in PROMPTS}
    dataset = build_dataset(project, vocab, DataOptions.from_settings(project.settings), answers)
    chat = sum(len(e.ids) for s, e in zip(dataset.samples, dataset.encoded) if s.origin.startswith("replay:chat"))
    instruct = dataset.stats()["kinds"]["instruct"]["tokens"]
    assert 0.2 * instruct <= chat <= 0.35 * instruct


def test_secrets_never_enter_the_training_data(repo):
    write_files(repo, {
        "lib/settings.py": f'AWS_ACCESS_KEY_ID = "{SECRET_KEY}"\n'
                           f'DB_URL = "postgres://admin:{SECRET_URL_PASSWORD}@db.internal:5432/prod"\n\n'
                           'def connect():\n    """Open the database."""\n    return DB_URL\n',
        ".env": f"TOKEN={SECRET_KEY}\n"})
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "settings")
    git(repo, "commit", "-q", "--allow-empty", "-m", "later")
    dataset, _ = _dataset(repo)
    blob = "\n".join(_texts(dataset))
    assert SECRET_KEY not in blob
    assert "AWS_ACCESS_KEY_ID" in blob or any("settings.py" in u.path for u in dataset.split.heldout)


def test_unsloth_is_refused_without_cuda_and_auto_falls_back_to_peft():
    from codelearn.errors import CodelearnError
    from codelearn.train.trainers.base import choose_trainer

    assert choose_trainer("auto").name == "peft"
    with pytest.raises(CodelearnError, match="unsloth trainer cannot run here"):
        choose_trainer("unsloth")
    with pytest.raises(CodelearnError, match="Unknown train_backend"):
        choose_trainer("deepspeed")


def test_pruning_keeps_the_serving_model_and_never_deletes_a_shared_base(tiny_model, tmp_path):
    import shutil

    from codelearn.models.registry import ModelEntry, models_dir

    registry = Registry()
    folder = models_dir() / "adapted"
    folder.mkdir(parents=True)
    base = shutil.copy(tiny_model, models_dir() / "base.gguf")
    names = []
    for n in range(4):
        adapter = n % 2 == 1  # alternate merged models and adapters served on the shared base
        own = Path(shutil.copy(tiny_model, folder / (f"m{n}.adapter.gguf" if adapter else f"m{n}.gguf")))
        entry = ModelEntry(name=f"m{n}", path=str(base if adapter else own), sha256="x", size=1, mtime=0,
                           source="trained", kind="adapted", base="b", repo="key", added=f"2026-11-0{n + 1}",
                           adapter=str(own) if adapter else None)
        registry.add(entry)
        names.append(entry.name)
    registry.promote("key", "m0")
    gone = registry.prune("key", keep=1)
    assert [e.name for e in gone] == ["m1", "m2"]
    assert {e.name for e in registry.history("key")} == {"m0", "m3"}
    assert not (folder / "m1.adapter.gguf").exists() and not (folder / "m2.gguf").exists()
    assert Path(base).exists() and (folder / "m0.gguf").exists()


def test_the_kl_penalty_trains_and_keeps_the_adapted_model_closer_to_the_base(tiny_hf, tmp_path):
    from codelearn.corpus.formats import Encoded
    from codelearn.train.trainers.base import TrainConfig
    from codelearn.train.trainers.peft import PeftTrainer
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_hf)
    ids = tokenizer("zq " * 120)["input_ids"][:128]  # junk: plain training drifts far from the base
    data = [Encoded(ids, [True] * len(ids))] * 16
    losses = {}
    for weight in (0.0, 5.0):
        config = TrainConfig(max_steps=4, lr=5e-3, kl_weight=weight, grad_accum=2)
        result = PeftTrainer().train(tiny_hf, data, config, tmp_path / f"kl-{weight}")
        assert result.steps == 4 and (tmp_path / f"kl-{weight}" / "adapter_config.json").is_file()
        losses[weight] = result.losses[-1]
    # `losses` are the plain next-token loss: pulled back toward the base, it fits the junk less
    assert losses[5.0] > losses[0.0]


def test_a_scaled_adapter_is_the_model_that_far_from_the_base_merged_or_served(tiny_hf, real_converter, tmp_path):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    from codelearn.corpus.formats import Encoded
    from codelearn.llm.llama_backend import LlamaScorer, LlamaVocab
    from codelearn.models.bases import hf_base
    from codelearn.train.export import export_adapter, scaled_adapter
    from codelearn.train.hf import merge_adapter
    from codelearn.train.trainers.base import TrainConfig
    from codelearn.train.trainers.peft import PeftTrainer

    ids = AutoTokenizer.from_pretrained(tiny_hf)(NEW_CODE * 4)["input_ids"][:160]
    config = TrainConfig(max_steps=4, lr=5e-3, grad_accum=2)
    PeftTrainer().train(tiny_hf, [Encoded(ids, [True] * len(ids))] * 8, config, tmp_path / "full")
    half = scaled_adapter(tmp_path / "full", 0.5, tmp_path / "half")
    base = load_file(tiny_hf / "model.safetensors")
    full = load_file(merge_adapter(tiny_hf, tmp_path / "full", tmp_path / "merged-full") / "model.safetensors")
    halved = load_file(merge_adapter(tiny_hf, half, tmp_path / "merged-half") / "model.safetensors")
    moved = [k for k in base if not torch.equal(full[k], base[k])]
    assert len(moved) >= 7  # every LoRA target of every layer
    for k in base:  # merged: exactly half of the trained change
        assert torch.allclose(halved[k] - base[k], 0.5 * (full[k] - base[k]), atol=1e-6), k

    gguf = hf_base(tiny_hf, str(real_converter)).gguf  # served: a LoRA GGUF on the unchanged base
    vocab = LlamaVocab(gguf)
    tokens = vocab.tokenize(NEW_CODE)
    losses = {}
    for name, adapter in (("base", None), ("half", half), ("full", tmp_path / "full")):
        lora = export_adapter(gguf, tiny_hf, adapter, tmp_path / f"gguf-{name}",
                              converter=real_converter).adapter if adapter else None
        scorer = LlamaScorer(gguf, n_ctx=512, lora_path=lora)
        losses[name] = float(scorer.score(tokens, [True] * len(tokens))[0].mean())
    assert losses["base"] > losses["half"] > losses["full"], losses
    with pytest.raises(CodelearnError, match="forget_scales"):
        scaled_adapter(tmp_path / "full", 1.5, tmp_path / "more")


def test_a_candidate_refused_for_forgetting_alone_is_tried_at_smaller_scales_then_refused(repo, monkeypatch):
    monkeypatch.setenv("CODELEARN_FORGET_TOLERANCE", "-1")  # every candidate forgets too much
    monkeypatch.setenv("CODELEARN_FORGET_SCALES", "0.25,0.5")
    report = run_training(open_project(repo), RunOptions())
    tries = report.gate["tries"]
    assert report.status == "rejected" and [t["scale"] for t in tries] == [1.0, 0.5, 0.25]
    for t in tries:
        assert not t["promote"] and set(t["failed"]) & {"forgetting_code", "forgetting_chat"}
        assert set(t["failed"]) <= {"forgetting_code", "forgetting_chat"}, t
    assert len({t["changes"]["repo_loss"] for t in tries}) == 3  # three models were scored, not one thrice
    assert report.gate["scale"] == 1.0 and report.export["scale"] == 1.0
    run_dir = repo / ".codelearn" / "train" / "runs" / report.run_id
    assert not list(run_dir.glob("scale-*")) and not list(run_dir.glob("**/adapter_config.json"))
    entry = Registry().get(report.candidate)  # the candidate kept for inspection is the full one
    assert Path(entry.path).is_file() and entry.metrics["gate"]["tries"] == tries
    assert "at 0.25 of its learned change" in (run_dir / "train.log").read_text()
    assert "0.5" in report.message and "0.25" in report.message

    monkeypatch.setenv("CODELEARN_FORGET_SCALES", "")  # off: refused at once
    assert [t["scale"] for t in run_training(open_project(repo), RunOptions()).gate["tries"]] == [1.0]
    monkeypatch.setenv("CODELEARN_FORGET_SCALES", "0.5,1.2")
    with pytest.raises(CodelearnError, match="forget_scales"):
        run_training(open_project(repo), RunOptions())


def test_a_candidate_that_forgot_too_much_is_promoted_at_a_smaller_step_from_the_base(dialect_repo, capsys):
    # trained on upper-case Python, the tiny model answers chat unlike itself (+20% there, measured)
    report = run_training(open_project(dialect_repo), RunOptions())  # the default forget_scales
    tries, chosen = report.gate["tries"], report.gate["scale"]
    assert report.status == "promoted" and 0 < chosen < 1 and tries[-1]["scale"] == chosen, tries
    assert tries[0]["scale"] == 1.0 and tries[0]["failed"] == ["forgetting_chat"], tries[0]
    assert all(t["failed"] and set(t["failed"]) <= {"forgetting_code", "forgetting_chat"} for t in tries[:-1])
    chat = [t["changes"]["forgetting_chat"] for t in tries]
    assert chat == sorted(chat, reverse=True) and chat[-1] <= 0.02  # a smaller step drifts less
    assert tries[-1]["promote"] and tries[-1]["changes"]["repo_loss"] <= -0.01  # and still learned the repo
    assert tries[-1]["changes"]["repo_loss_served"] <= -0.01
    entry = Registry().get(report.candidate)
    assert _serving(dialect_repo) == entry.name and entry.metrics["gate"]["scale"] == chosen
    assert report.export["scale"] == chosen and f"at {chosen:g} of its learned change" in report.message
    run_dir = dialect_repo / ".codelearn" / "train" / "runs" / report.run_id
    assert not list(run_dir.glob("**/*.gguf"))  # the full-strength export deleted, the chosen one registered
    rows = json.loads(CliRunner().invoke(app, ["models", "history", "-C", str(dialect_repo), "--json"]).stdout)
    assert rows[-1]["status"] == "serving" and rows[-1]["scale"] == chosen
    from codelearn.render_train import render_train

    capsys.readouterr()
    render_train(report)
    printed = " ".join(capsys.readouterr().out.split())
    assert f"gate: serving vs candidate at {chosen:g} of its learned change" in printed
    assert f"at full strength: failed forgetting_chat {tries[0]['changes']['forgetting_chat']:+.1%}" in printed


def test_a_run_tunes_the_search_model_first_when_it_can(repo, monkeypatch):
    monkeypatch.setenv("CODELEARN_EMBEDDER", "default")  # the fixture turns vectors off to be quick
    documented = "".join(f'def measure_{n}(rows):\n    """Count the rows of kind {n} in a batch."""\n'
                         f"    return sum(1 for r in rows if r == {n})\n\n" for n in range(12))
    write_files(repo, {"lib/measures.py": documented})
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "measures")
    # cut at HEAD: with the default cut, the newest commits (these measures among them) are held
    # out, and held-out code never trains the search model
    result = CliRunner().invoke(app, ["train", "-C", str(repo), "--max-steps", "2", "--since", "HEAD", "--json"])
    report = json.loads(result.stdout)
    assert result.exit_code in (0, EXIT_REJECTED), result.output
    search = report["search"]
    assert "search" in report["seconds"] and "error" not in search
    assert search["pairs"] >= 40 and search["steps"] > 0 and search["after"], search
    monkeypatch.setenv("CODELEARN_TRAIN_SEARCH", "false")
    later = run_training(open_project(repo), RunOptions(max_steps=2))
    assert later.search == {} and "search" not in later.seconds


@pytest.mark.parametrize("config", [[], ["diff.noprefix=true"], ["diff.mnemonicPrefix=true"],
                                    ["diff.relative=true"], ["color.diff=always", "diff.renames=false"]])
def test_the_temporal_split_reads_git_whatever_the_users_diff_settings(tmp_path, config):
    from conftest import make_repo

    from codelearn.corpus.history import lines_added_since

    old = "def old():\n    return 1\n"
    root = make_repo(tmp_path / "r", {"a.py": old, "moved.py": old + "x = 1\n", "sub/keep.py": old})
    cut = git(root, "rev-parse", "HEAD").strip()
    for item in config:
        git(root, "config", *item.split("="))
    write_files(root, {"a.py": old + "def new():\n    return 2\n", "with space.py": "a = 1\n",
                       "tab\there.py": "b = 2\n", "ünï.py": "c = 3\n", "sub/keep.py": old + "y = 2\n"})
    git(root, "mv", "moved.py", "renamed.py")
    write_files(root, {"renamed.py": old + "x = 1\nz = 3\n"})
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "later")
    added = lines_added_since(root, cut)
    assert added == {"a.py": {3, 4}, "with space.py": {1}, "tab\there.py": {1}, "ünï.py": {1},
                     "sub/keep.py": {3}, "renamed.py": {4}}


def test_the_file_cap_counts_library_files_one_by_one_and_views_with_their_chunks():
    from codelearn.corpus.formats import Encoded
    from codelearn.train.dataset import cap_files
    from codelearn.corpus.samples import Sample, file_of

    assert file_of("lib:acme:pkg/x.py:12") == "lib:acme:pkg/x.py" == file_of("lib:acme:pkg/x.py:view")
    assert file_of("repo:a.py:3") == "repo:a.py"

    def sample(origin: str) -> tuple[Sample, Encoded]:
        return Sample("code", (), origin), Encoded([1] * 10, [True] * 10)

    # an internal library of 12 files of 3 chunks each, next to a repo file with chunks and a view
    rows = [sample(f"lib:acme:m{f}.py:{line}") for f in range(12) for line in (1, 20, 40)]
    rows += [sample(f"repo:big.py:{line}") for line in range(1, 9)] + [sample("repo:big.py:view")] * 4
    samples, encoded = map(list, zip(*rows))
    kept, _ = cap_files(samples, encoded, cap=0.10, seed=0)
    kept_origins = [s.origin for s in kept]
    # every library file is ~6% of the tokens: none is cut (all of `lib:acme` was, as one "file")
    assert sum(o.startswith("lib:acme:") for o in kept_origins) == 36
    # the repo file's chunks and views together are held to the cap
    big = sum(o.startswith("repo:big.py") for o in kept_origins)
    assert big * 10 <= 0.10 * sum(10 for _ in rows) + 10 and big < 12


def test_a_saved_training_state_is_taken_only_by_the_same_data_base_and_settings():
    from dataclasses import replace

    from codelearn.train.nightly import resume_key
    from codelearn.train.trainers.base import TrainConfig

    config = TrainConfig(dtype="bf16", max_minutes=240)
    key = resume_key(config, "base-sha", "peft", "data-fp")
    assert key == resume_key(replace(config, max_minutes=30, max_steps=9), "base-sha", "peft", "data-fp")
    assert key == resume_key(replace(config, pack_tokens=512), "base-sha", "peft", "data-fp")  # same gradient
    others = [resume_key(replace(config, dtype="fp32"), "base-sha", "peft", "data-fp"),
              resume_key(replace(config, lr=1e-4), "base-sha", "peft", "data-fp"),
              resume_key(replace(config, decay_steps=3000), "base-sha", "peft", "data-fp"),
              resume_key(config, "other-base", "peft", "data-fp"),
              resume_key(config, "base-sha", "unsloth", "data-fp"),
              resume_key(config, "base-sha", "peft", "other-data")]
    assert key not in others and len(set(others)) == len(others)
