"""Training on any CPU: the precision is measured, the budget holds inside a step, and progress
shows on a terminal, in plain lines elsewhere and in train.log (real torch, a tiny real model)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from codelearn.machine import Machine, _cpuinfo
from codelearn.progress import ProgressLog
from codelearn.train import precision
from codelearn.train.precision import choose_precision, pick

BIG = 500_000_000  # a 0.5B model: auto measures


def test_auto_takes_fp32_where_the_probe_finds_bf16_slow():
    # the numbers an AVX2-only AMD EPYC gave: bf16 weights 82x, autocast 5.4x slower
    choice = choose_precision("auto", params=BIG, measure=lambda: {"fp32": 54.0, "bf16-autocast": 294.0,
                                                                    "bf16": 4425.0})
    assert choice.precision == "fp32"
    assert "82x slower" in choice.reason and choice.timings_ms["bf16"] == 4425.0


def test_auto_takes_the_fastest_bf16_where_the_cpu_runs_it_natively():
    choice = choose_precision("auto", params=BIG, measure=lambda: {"fp32": 10.0, "bf16-autocast": 8.0,
                                                                    "bf16": 5.0})
    assert choice.precision == "bf16" and "2.0x faster" in choice.reason


def test_bf16_weights_win_a_near_tie_with_autocast():
    # what 2 AMX cores measured: the probe had autocast a hair faster (0.84 vs 0.89 ms) while the
    # real LoRA loop ran 82 (autocast) against 100 tokens/s (bf16 weights)
    choice = pick({"fp32": 1.606, "bf16-autocast": 0.837, "bf16": 0.886})
    assert choice.precision == "bf16" and "recasts every frozen weight" in choice.reason
    # autocast clearly faster, or bf16 weights no faster than fp32: the probe's answer stands
    assert pick({"fp32": 1.6, "bf16-autocast": 0.6, "bf16": 0.9}).precision == "bf16-autocast"
    assert pick({"fp32": 1.0, "bf16-autocast": 0.5, "bf16": 0.95}).precision == "bf16-autocast"


def test_fp32_wins_a_near_tie_and_small_models_skip_the_probe():
    assert pick({"fp32": 10.0, "bf16-autocast": 9.5, "bf16": 9.0}).precision == "fp32"

    def never() -> dict:
        raise AssertionError("a small model needs no probe")

    assert choose_precision("auto", params=1_000_000, measure=never).precision == "fp32"
    assert choose_precision("bf16", params=BIG, measure=never).reason == "set by train_dtype"
    assert choose_precision("auto", params=BIG, device="cuda", bf16_cuda=True, measure=never).precision == "bf16"


def test_an_unknown_setting_says_what_to_use():
    from codelearn.errors import CodelearnError

    with pytest.raises(CodelearnError, match="bf16-autocast"):
        choose_precision("fp16", params=BIG)


def test_the_real_probe_times_every_precision():
    import torch

    timings = precision.measure_here(torch, shape=(16, 64, 128))
    assert set(timings) == set(precision.PRECISIONS) and all(t > 0 for t in timings.values())


def _machine(flags: tuple[str, ...]) -> Machine:
    return Machine(cpu="Test CPU", flags=flags, cores=2, arch="x86_64", torch="2.13.0+cpu", onnxruntime=None)


def test_the_probe_is_cached_per_cpu(monkeypatch):
    import torch  # noqa: F401  (loaded: the probe runs in this process)

    calls = []
    monkeypatch.setattr(precision, "measure_here", lambda _torch: calls.append(1) or {"fp32": 1.0, "bf16": 2.0})
    machine = {"now": _machine(("avx2", "fma"))}
    monkeypatch.setattr("codelearn.machine.this_machine", lambda: machine["now"])
    assert precision.cached_probe() == {"fp32": 1.0, "bf16": 2.0} and len(calls) == 1
    precision.cached_probe()
    assert len(calls) == 1  # same CPU: from the cache
    machine["now"] = _machine(("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16"))
    precision.cached_probe()
    assert len(calls) == 2  # another CPU: measured again
    cache = json.loads(precision.cache_file().read_text())
    assert len(cache) == 2 and {e["machine"]["cpu"] for e in cache.values()} == {"Test CPU"}


def test_the_machine_is_named_by_its_cpu_and_the_flags_that_matter(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx2 fma bmi2\n\n"
                    "processor\t: 1\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 avx2 fma bmi2\n")
    cpu, flags = _cpuinfo(info)
    assert cpu == "AMD EPYC" and {"avx2", "fma"} <= flags
    avx2, amx = _machine(("avx2",)), _machine(("avx2", "amx_bf16"))
    assert avx2.key() != amx.key() and "avx2" in avx2.summary()
    from codelearn.machine import this_machine

    assert this_machine().cores >= 1 and "cpu" in this_machine().as_json()


# -- the budget inside a step ---------------------------------------------------------------------

def _slowed(monkeypatch, seconds: float) -> None:
    """Every sequence's forward pass takes `seconds` longer (a CPU where a step takes forever)."""
    from codelearn.train.trainers import loop

    real = loop._sequence_loss

    def slow(*args, **kwargs):
        time.sleep(seconds)
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "_sequence_loss", slow)


def test_the_budget_ends_training_inside_a_step_and_applies_what_it_did(tiny_hf, tmp_path, monkeypatch):
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    from codelearn.corpus.formats import Encoded
    from codelearn.train.trainers.base import TrainConfig
    from codelearn.train.trainers.peft import PeftTrainer

    _slowed(monkeypatch, 0.3)
    ids = AutoTokenizer.from_pretrained(tiny_hf)("def f(x):\n    return x + 1\n" * 4)["input_ids"][:64]
    data = [Encoded(ids, [True] * len(ids))] * 16
    seen = []
    config = TrainConfig(max_minutes=0.5 / 60, grad_accum=8, lr=1e-2, warmup_steps=1)
    result = PeftTrainer().train(tiny_hf, data, config, tmp_path / "adapter", seen.append)
    # one step planned at 8 sequences, cut by the clock after the first few, and applied
    assert result.stopped == "time" and result.steps == 1
    assert 1 <= result.partial_step == result.sequences < 8
    weights = load_file(str(tmp_path / "adapter" / "adapter_model.safetensors"))
    assert any(float(w.abs().sum()) > 0 for name, w in weights.items() if "lora_B" in name)
    # progress came after every sequence, with an ETA from the first one on
    assert [s.sequences for s in seen[:result.sequences]] == list(range(1, result.sequences + 1))
    assert seen[0].step == 0 and seen[0].eta_s is not None and seen[0].budget_s == 0.5
    assert result.precision["precision"] == "fp32"


def test_decay_steps_plan_the_rate_apart_from_the_step_limit(tiny_hf, tmp_path, monkeypatch):
    # a step-limited benchmark can learn as a clock-ended run does: near its peak rate throughout
    from transformers import AutoTokenizer

    from codelearn.corpus.formats import Encoded
    from codelearn.train.trainers import loop
    from codelearn.train.trainers.base import TrainConfig
    from codelearn.train.trainers.peft import PeftTrainer

    real, factors = loop._lr_factor, {}
    monkeypatch.setattr(loop, "_lr_factor", lambda *a: factors.setdefault(tag, []).append(real(*a)) or real(*a))
    ids = AutoTokenizer.from_pretrained(tiny_hf)("def f(x):\n    return x + 1\n")["input_ids"][:16]
    data = [Encoded(ids, [True] * len(ids))] * 8
    for tag, decay in (("planned", 0), ("passes", 1000)):
        PeftTrainer().train(tiny_hf, data, TrainConfig(max_steps=6, grad_accum=1, warmup_steps=1,
                                                       decay_steps=decay), tmp_path / tag)
    assert len(factors["planned"]) == len(factors["passes"]) == 6
    assert factors["planned"][-1] < 0.2 and min(factors["passes"][1:]) > 0.99


def test_checkpoints_save_the_adapter_on_the_way_with_what_trained_it(tiny_hf, tmp_path, monkeypatch):
    import json

    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    from codelearn.corpus.formats import Encoded
    from codelearn.train.trainers.base import TrainConfig
    from codelearn.train.trainers.peft import PeftTrainer

    _slowed(monkeypatch, 0.15)
    ids = AutoTokenizer.from_pretrained(tiny_hf)("def f(x):\n    return x + 1\n" * 4)["input_ids"][:64]
    data = [Encoded(ids, [True] * len(ids))] * 16
    config = TrainConfig(max_steps=8, grad_accum=1, lr=1e-2, warmup_steps=1, checkpoint_minutes=0.4 / 60,
                         snapshots=True)
    result = PeftTrainer().train(tiny_hf, data, config, tmp_path / "adapter")
    points = result.checkpoints
    assert 2 <= len(points) < result.steps == 8
    assert [p["steps"] for p in points] == sorted({p["steps"] for p in points}) and points[-1]["steps"] < 8
    assert all(p["seconds"] >= 0.4 * (i + 1) - 0.05 for i, p in enumerate(points)), points
    first = Path(points[0]["dir"])
    assert json.loads((first / "progress.json").read_text())["tokens"] == points[0]["tokens"] == 64 * points[0]["steps"]
    early = load_file(str(first / "adapter_model.safetensors"))
    final = load_file(str(tmp_path / "adapter" / "adapter_model.safetensors"))
    assert any(float((early[k] - final[k]).abs().sum()) > 0 for k in final if "lora_B" in k)


def _twelve_functions(tiny_hf) -> list:
    """Twelve distinct 48-token samples, every token trained: six steps of two."""
    from transformers import AutoTokenizer

    from codelearn.corpus.formats import Encoded

    tokenizer = AutoTokenizer.from_pretrained(tiny_hf)
    return [Encoded(ids, [True] * len(ids)) for ids in
            (tokenizer(f"def f{i}(x):\n    return x + {i}\n" * 3)["input_ids"][:48] for i in range(12))]


def test_a_killed_run_resumes_from_its_last_checkpoint_to_the_same_model(tiny_hf, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from codelearn.train.trainers import loop
    from codelearn.train.trainers.base import TrainConfig
    from codelearn.train.trainers.peft import PeftTrainer

    data = _twelve_functions(tiny_hf)
    state = tmp_path / "resume.pt"
    config = TrainConfig(max_steps=6, grad_accum=2, lr=1e-2, warmup_steps=1, checkpoint_minutes=1e-9,
                         resume_file=str(state), resume_key="data+settings")
    real, calls = loop._sequence_loss, []

    def dies_in_step_four(*args, **kwargs):
        calls.append(1)
        if len(calls) > 3 * 2:
            raise RuntimeError("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "_sequence_loss", dies_in_step_four)
    with pytest.raises(RuntimeError):
        PeftTrainer().train(tiny_hf, data, config, tmp_path / "killed")
    monkeypatch.setattr(loop, "_sequence_loss", real)
    assert state.is_file() and not (tmp_path / "killed" / "adapter_model.safetensors").exists()

    resumed = PeftTrainer().train(tiny_hf, data, config, tmp_path / "resumed")
    assert resumed.resumed["steps"] == 3 and resumed.steps == 6 and len(resumed.losses) == 6
    assert resumed.sequences == 12 and resumed.tokens == sum(len(d.ids) for d in data)
    whole = PeftTrainer().train(tiny_hf, data, replace(config, resume_file=""), tmp_path / "whole")
    assert whole.resumed == {} and whole.losses[:3] == pytest.approx(resumed.losses[:3], abs=1e-6)
    a = load_file(str(tmp_path / "resumed" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "whole" / "adapter_model.safetensors"))
    assert all(float((a[k] - b[k]).abs().max()) < 1e-5 for k in b)  # the same model as never killed

    other = PeftTrainer().train(tiny_hf, data, replace(config, resume_key="other data", max_steps=1),
                                tmp_path / "other")
    assert other.resumed == {} and other.steps == 1  # another run's state is never taken


def test_a_warm_start_takes_another_runs_adapter_weights_and_nothing_else(tiny_hf, tmp_path):
    from safetensors.torch import load_file

    from codelearn.train.trainers.base import TrainConfig
    from codelearn.train.trainers.peft import PeftTrainer

    data = _twelve_functions(tiny_hf)
    state = tmp_path / "carry.pt"
    config = TrainConfig(max_steps=3, grad_accum=2, lr=1e-2, warmup_steps=1)
    PeftTrainer().train(tiny_hf, data, replace(config, resume_file=str(state), resume_key="night 1"),
                        tmp_path / "night1")
    # a zero learning rate: what the next run saves is what it started from
    still = replace(config, lr=0.0, max_steps=1)
    warm = PeftTrainer().train(tiny_hf, data, replace(still, warm_file=str(state)), tmp_path / "warm")
    cold = PeftTrainer().train(tiny_hf, data, still, tmp_path / "cold")
    night1, started, fresh = (load_file(str(tmp_path / name / "adapter_model.safetensors"))
                              for name in ("night1", "warm", "cold"))
    assert warm.warm_started and not cold.warm_started
    assert warm.resumed == {} and warm.steps == 1  # its own optimiser, schedule and progress
    assert all(float((started[k] - night1[k]).abs().max()) == 0 for k in night1)
    assert any(float((fresh[k] - night1[k]).abs().max()) > 1e-3 for k in night1)  # the base's zero B
    wider = PeftTrainer().train(tiny_hf, data, replace(still, rank=8, warm_file=str(state)), tmp_path / "wide")
    assert not wider.warm_started  # weights of another shape are not taken: it starts from the base


def test_a_run_that_ended_keeps_its_state_and_goes_on_only_with_more_budget(tiny_hf, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from codelearn.train.trainers import loop
    from codelearn.train.trainers.base import TrainConfig
    from codelearn.train.trainers.peft import PeftTrainer

    data = _twelve_functions(tiny_hf)
    state = tmp_path / "resume.pt"
    config = TrainConfig(max_minutes=60, grad_accum=2, lr=1e-2, warmup_steps=1, checkpoint_minutes=60,
                         resume_file=str(state), resume_key="data+settings")  # no checkpoint comes due
    with monkeypatch.context() as clock:  # the budget ends after three sequences (inside step two)
        clock.setattr(loop._Clock, "out_of_time", lambda self: self.result.sequences >= 3)
        ended = PeftTrainer().train(tiny_hf, data, config, tmp_path / "ended")
        assert ended.stopped == "time" and ended.steps == 2 and state.is_file()  # saved at the end
        assert ended.partial_step == 1
        # the same budget again (a crash in export, then the next night): nothing is trained twice
        again = PeftTrainer().train(tiny_hf, data, config, tmp_path / "again")
    assert again.resumed["steps"] == ended.steps and again.steps == ended.steps and again.stopped == "time"
    assert again.partial_step == 1  # what the report says of that run's last step is kept too
    a = load_file(str(tmp_path / "ended" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "again" / "adapter_model.safetensors"))
    assert all(float((a[k] - b[k]).abs().max()) == 0 for k in a)
    # the real clock: the hour is not spent, so it goes on from where it ended
    more = PeftTrainer().train(tiny_hf, data, config, tmp_path / "more")
    assert more.resumed["steps"] == ended.steps and more.steps == 18 and more.stopped == "data"  # 3 passes
    assert more.partial_step == 0  # its own last step was whole


def test_packed_samples_train_the_same_model_in_fewer_sequences(tiny_hf, tmp_path, monkeypatch):
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    from codelearn.corpus.formats import Encoded
    from codelearn.train.trainers import loop
    from codelearn.train.trainers.base import TrainConfig
    from codelearn.train.trainers.peft import PeftTrainer

    tokenizer = AutoTokenizer.from_pretrained(tiny_hf)
    data = []
    for i in range(12):  # samples of different lengths, some with an untrained prompt before the target
        ids = tokenizer(f"def f{i}(x):\n    return x * {i}\n" * (1 + i % 3))["input_ids"]
        data.append(Encoded(ids, [i % 2 == 0 or n > 5 for n in range(len(ids))]))
    real, sequences = loop._sequence_loss, {}

    def counted(torch, model, pack, *args):
        sequences[tag] = sequences.get(tag, 0) + 1
        return real(torch, model, pack, *args)

    monkeypatch.setattr(loop, "_sequence_loss", counted)
    results = {}
    for tag, pack in (("alone", 0), ("packed", 128)):
        config = TrainConfig(max_steps=3, grad_accum=4, lr=1e-2, warmup_steps=1, pack_tokens=pack, kl_weight=0.5)
        results[tag] = PeftTrainer().train(tiny_hf, data, config, tmp_path / tag)
    alone, packed = results["alone"], results["packed"]
    assert sequences["alone"] == 12 and sequences["packed"] < 8  # 4 samples a step, 2 or fewer sequences
    assert packed.sequences == alone.sequences == 12 and packed.tokens == alone.tokens
    assert packed.losses == pytest.approx(alone.losses, abs=1e-4)
    a = load_file(str(tmp_path / "alone" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "packed" / "adapter_model.safetensors"))
    # no sample saw another: a leak moves weights by ~5e-2 here; rounding, which Adam amplifies
    # where a gradient is near zero, by up to 1.5e-4 (AVX-512 without AMX; 1e-4 on AMX)
    assert all(float((a[k] - b[k]).abs().max()) < 2e-3 for k in a)
    assert packed.pack_tokens == 128 and alone.pack_tokens == 0  # report.json says how it trained


def test_a_gpu_packs_a_whole_step_a_cpu_what_train_pack_asks_and_unsloth_nothing():
    from codelearn.corpus.formats import Encoded
    from codelearn.train.trainers.base import TrainConfig
    from codelearn.train.trainers.loop import pack_limit, pack_step

    samples = [Encoded([1] * n, [True] * n) for n in (30, 200, 120, 7)]
    config = TrainConfig(grad_accum=4)
    gpu = pack_limit(config, samples, backend="peft", device="cuda:0")
    assert all(len(pack_step(step, gpu)) == 1 for step in ([samples[1]] * 4, samples, samples[:2]))
    assert pack_limit(config, samples, backend="peft", device="cpu") == 0
    assert pack_limit(replace(config, pack_tokens=512), samples, backend="peft", device="cpu") == 512
    assert pack_limit(replace(config, pack_tokens=512), samples, backend="unsloth", device="cuda") == 0


# -- progress lines ------------------------------------------------------------------------------

def _wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)


def test_plain_progress_lines_keep_coming_while_a_step_hangs():
    lines, warnings = [], []
    stuck = threading.Event()
    with ProgressLog(lines.append, interval=0.2, warn=warnings.append, tick=0.02) as log:
        log.watch(lambda: "still stuck" if stuck.is_set() else None)
        log("training", 0, 40, "step 0/10")
        log("training", 0, 40, "step 0/10")  # no news: no second line yet
        assert len(lines) == 1 and lines[0].startswith("training: 0/40 · step 0/10")
        _wait_for(lambda: any("no progress for" in line for line in lines))
        stuck.set()
        _wait_for(lambda: warnings)
        time.sleep(0.1)
        log("export", 0, None)
    assert any("no progress for" in line for line in lines)
    assert warnings == ["still stuck"]  # once, not on every tick
    assert lines[-1].startswith("export")


def test_progress_is_plain_lines_on_stderr_when_it_is_not_a_terminal(capsys):
    from codelearn import console

    with console.progress_bar() as progress:
        progress("embedding", 3, 10, "")
    err = capsys.readouterr().err
    assert "embedding: 3/10" in err and "eta" in err


def test_a_slow_first_step_is_reported_in_the_log_with_the_fix(train_repo, monkeypatch):
    from codelearn.project import open_project
    from codelearn.train import nightly

    monkeypatch.setattr(nightly, "SLOW_START_S", 0.5)
    monkeypatch.setattr(nightly, "PROGRESS_INTERVAL_S", 0.3)
    _slowed(monkeypatch, 0.4)
    report = nightly.run_training(open_project(train_repo), nightly.RunOptions(max_steps=1, max_minutes=0.02))
    assert report.training["steps"] == 1 and report.training["stopped"] in ("time", "steps")
    assert any("first training step is not done" in w for w in report.warnings), report.warnings
    text = Path(report.log).read_text()
    assert "first training step is not done" in text and "training: " in text and "step 0/" in text
    assert report.precision["precision"] == "fp32" and "small model" in report.precision["reason"]
    assert report.machine["cpu"] and report.machine["cores"] >= 1
