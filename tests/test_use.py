"""Learning from use: the team's marked and corrected answers become training samples in `ask`'s
own prompt, a seeded share of the corrections becomes gate and eval cases, and the gate judges them."""

from __future__ import annotations

from pathlib import Path

from codelearn.ask.history import History
from codelearn.corpus.use import USE_WEIGHT, case_for, split_use, use_cases
from codelearn.evaluate.metrics import Tally
from codelearn.evaluate.scoring import Scores
from codelearn.train.gate import decide, gate_stages
from conftest import make_repo

AWS_KEY = "AKIAIOSFODNN7REALKEY"
SETTINGS = f'TAX_RATE = 0.2\nAWS_ACCESS_KEY_ID = "{AWS_KEY}"\n\n\ndef rate():\n    return TAX_RATE\n'


def _ask(kept: History, question: str, answer: str, path: str = "app/settings.py") -> str:
    turn = kept.record({"question": question, "answer": answer, "model": {"name": "m"},
                        "sources": [{"path": path, "source": "repo", "start_line": 1, "end_line": 6,
                                     "used": True}]}, "ask")
    return str(turn)


def _repo(tmp_path) -> Path:
    return make_repo(tmp_path / "shop", {"app/settings.py": SETTINGS, "app/billing.py": "def total(x):\n    return x\n"})


def test_marked_and_corrected_turns_become_lessons_in_asks_own_prompt(tmp_path):
    root = _repo(tmp_path)
    kept = History(root / ".codelearn")
    good = _ask(kept, "Where is the tax rate?", "TAX_RATE in app/settings.py:1.")
    wrong = _ask(kept, "What does total do?", "It computes taxes.", "app/billing.py")
    located = _ask(kept, "Where are credentials?", "Nowhere.")
    _ask(kept, "Unmarked question?", "Unmarked answer.")
    bare = _ask(kept, "Bad without a fix?", "Wrong.")
    kept.feedback(good, good=True)
    kept.feedback(wrong, answer="It returns its argument unchanged.")
    kept.feedback(located, source="app/settings.py:2")
    kept.feedback(bare, good=False)
    cases = use_cases(root, root / ".codelearn")
    assert [(c.turn, c.kind, c.target) for c in cases] == [
        (int(good), "good", "TAX_RATE in app/settings.py:1."),
        (int(wrong), "corrected", "It returns its argument unchanged."),
        (int(located), "corrected", "It is in `app/settings.py:2`.")]  # unmarked and bare "bad" teach nothing
    shown = cases[0].excerpts[0]
    assert (shown.path, shown.start_line, shown.end_line) == ("app/settings.py", 1, 6)
    assert "TAX_RATE = 0.2" in "\n".join(shown.lines)
    # the code is read again from today's files, with secrets redacted as the index does
    assert all(AWS_KEY not in "\n".join(e.lines) for c in cases for e in c.excerpts)
    # a location correction also shows the code at that location
    assert [(e.path, e.start_line) for e in cases[2].excerpts] == [("app/settings.py", 1), ("app/settings.py", 2)]


def test_a_deep_answers_lesson_shows_what_it_used_then_the_best_not_all_it_read():
    from codelearn.corpus.use import LESSON_SOURCES, lesson_sources

    read = [{"path": f"f{i}.py", "source": "repo", "used": i in (3, 15)} for i in range(20)]
    kept = [s["path"] for s in lesson_sources(read)]
    assert len(kept) == LESSON_SOURCES and {"f3.py", "f15.py"} <= set(kept)
    assert kept == sorted(kept, key=lambda p: int(p[1:-3]))  # still in rank order
    assert kept[:6] == [f"f{i}.py" for i in range(6)]
    plain = read[:5] + [{"path": "lib.py", "source": "lib:acme", "used": True}]
    assert lesson_sources(plain) == read[:5]  # a plain answer's repo sources, all of them


def test_a_seeded_share_of_corrections_is_held_out_and_good_answers_all_train(tmp_path):
    root = _repo(tmp_path)
    kept = History(root / ".codelearn")
    for i in range(40):
        kept.feedback(_ask(kept, f"Question {i}?", "Wrong."), answer=f"Right {i}.")
    for i in range(5):
        kept.feedback(_ask(kept, f"Good {i}?", "Yes."), good=True)
    cases = use_cases(root, root / ".codelearn")
    trained, held = split_use(cases, seed=0)
    assert 3 <= len(held) <= 16 and all(c.kind == "corrected" for c in held)
    assert {c.turn for c in trained} | {c.turn for c in held} == {c.turn for c in cases}
    assert not {c.turn for c in trained} & {c.turn for c in held}
    assert split_use(cases, seed=0) == (trained, held)  # the same share every run
    assert split_use(cases, seed=1)[1] != held


def test_the_training_set_holds_the_lessons_weighted_and_never_the_held_out_ones(train_repo):
    repo = train_repo
    from test_train import _dataset, _texts

    kept = History(repo / ".codelearn")
    for i in range(20):
        kept.feedback(_ask(kept, f"What does widget step {i} do?", "No idea.", "lib/widgets.py"),
                      answer=f"Widget step {i} frobs the lever {i} times.")
    kept.close()
    dataset, _ = _dataset(repo)
    stats = dataset.stats()
    held = {c.key for c in dataset.use_heldout}
    trained = [s for s in dataset.samples if s.kind == "use"]
    assert held and stats["use_heldout"] == len(held)
    assert stats["kinds"]["use"]["samples"] == len(trained) == USE_WEIGHT * (20 - len(held))
    texts = _texts(dataset)
    for case in dataset.use_heldout:
        assert not any(case.target in text for text in texts)
    assert any("frobs the lever" in t for t in texts) and any("from use:" in n for n in stats["notes"])
    # the sample is `ask`'s prompt: its system rules and the excerpt, the answer trained
    sample = trained[0]
    assert "Code from the repository" in sample.pieces[0].text and not sample.pieces[0].train
    assert sample.pieces[1].train and "frobs the lever" in sample.pieces[1].text


def _with_use(scores: Scores, loss: float, cases: int = 4) -> Scores:
    for i in range(cases):
        scores.add("use", "none", f"use:{i}", Tally(nll=loss * 50, tokens=50, probes=1))
    return scores


def test_a_correction_is_a_gate_case_the_candidate_must_answer_better(tmp_path):
    from test_gate import _scores

    serving, candidate = _scores(2.0, searched=1.9), _scores(1.7, searched=1.6, seed=1)
    assert next(c for c in decide(serving, candidate).checks if c.name == "use_corrections").status == "not checked"
    assert decide(serving, candidate).promote
    # held-out corrections the candidate finds less likely than the serving model does: refused
    result = decide(_with_use(serving, 1.0), _with_use(_scores(1.7, searched=1.6, seed=1), 1.3))
    assert [c.name for c in result.failed] == ["use_corrections"]
    assert decide(_with_use(serving, 1.0), _with_use(_scores(1.7, searched=1.6, seed=1), 0.8)).promote


def test_use_probes_are_scored_first_in_asks_own_prompt(tmp_path, tiny_model):
    from codelearn.evaluate.probes import ProbeOptions, use_probes
    from codelearn.llm.llama_backend import LlamaVocab
    from test_gate import _probe_set

    root = _repo(tmp_path)
    kept = History(root / ".codelearn")
    kept.feedback(_ask(kept, "What does total do?", "Taxes."), answer="It returns x.")
    (case,) = use_cases(root, root / ".codelearn")
    vocab = LlamaVocab(tiny_model)
    (probe,) = use_probes([case], vocab, ProbeOptions())
    assert (probe.group, probe.condition, probe.key) == ("use", "none", case.key)
    scored = [i for i, t in zip(probe.encoded.ids, probe.encoded.train) if t]
    assert vocab.detokenize(scored).decode().startswith("It returns x.")
    prompt = vocab.detokenize([i for i, t in zip(probe.encoded.ids, probe.encoded.train) if not t]).decode()
    assert "What does total do?" in prompt and "app/settings.py:1-6" in prompt
    first, _ = gate_stages(_probe_set() + [probe])
    assert probe in first


def test_a_nightly_run_trains_on_corrections_and_its_gate_scores_the_held_out_ones(train_repo):
    """The whole path: history → training samples and held-out cases → the gate's use check."""
    from codelearn.project import open_project
    from codelearn.train.nightly import RunOptions, run_training

    kept = History(train_repo / ".codelearn")
    for i in range(15):
        kept.feedback(_ask(kept, f"What does step {i} of the widget do?", "No idea.", "lib/widgets.py"),
                      answer=f"Step {i} frobnicates the widget {i} times.")
    kept.close()
    report = run_training(open_project(train_repo), RunOptions())
    assert report.dataset["kinds"]["use"]["samples"] > 0 and report.dataset["use_heldout"] > 0
    check = next(c for c in report.gate["checks"] if c["name"] == "use_corrections")
    assert check["status"] in ("passed", "failed") and check["serving"] and check["candidate"]
