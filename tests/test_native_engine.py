"""The native llama.cpp engine: compiled for this CPU from the installed version's sdist, measured
against the wheel in subprocesses, loaded only on the CPU and version it was built for.

Engines here are real libraries: one test compiles llama.cpp (a few minutes on 2 cores); the
others use a copy of the wheel's own libraries as the "native" engine, which loads and scores
exactly like the wheel, so where it was loaded from is what they check.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from codelearn.cli import app
from codelearn.llm import native_engine as ne
from codelearn.models import engine_build as eb
from codelearn.machine import cpu_signature

CPUINFO = "processor\t: 0\nmodel name\t: Some CPU 9000\nflags\t\t: fpu sse2 avx2 fma ht\n"
WHERE = ("import os\nfrom codelearn.llm.llama_backend import _llama_cpp\n_llama_cpp()\n"
         "from codelearn.llm.native_engine import flash_attention, loaded_from, score_tag\n"
         "print(flash_attention(), repr(score_tag()))\n"
         "print(loaded_from()); print(os.environ.get('LLAMA_CPP_LIB_PATH'))\n")


def wheel_lib() -> Path:
    import llama_cpp

    return Path(llama_cpp.__file__).parent / "lib"


def in_subprocess(**env: str) -> list[str]:
    """In a fresh process that loads llama.cpp as codelearn does: 'fused attention? score tag',
    the folder llama.cpp loaded from, LLAMA_CPP_LIB_PATH after the import."""
    done = subprocess.run([sys.executable, "-c", WHERE], env={**os.environ, **env}, capture_output=True,
                          text=True, check=True)
    return done.stdout.strip().splitlines()[-3:]


def loaded_in_subprocess(**env: str) -> tuple[str, str]:
    """(the folder llama.cpp loaded from, LLAMA_CPP_LIB_PATH after the import) in a fresh process."""
    lines = in_subprocess(**env)
    return lines[-2], lines[-1]


def install_engine(folder: Path, *, kept: bool = True, lib: Path | None = None, flash: bool = False) -> Path:
    """An engine folder holding `lib`'s libraries (default: the wheel's) and its record."""
    shutil.copytree(lib or wheel_lib(), folder / "lib", symlinks=True)
    record = ne.EngineRecord(ne.installed_version(), folder.name.rsplit("-", 1)[-1], "cpu", [], "now", 1.0, "m",
                             ne.Speed(50.0, 1.0), ne.Speed(80.0, 1.0), ne.Speed(90.0, 1.0), kept, flash, "test")
    (folder / ne.RECORD).write_text(json.dumps(record.as_json()))
    return folder / "lib"


def here() -> Path:
    return ne.engine_dir(ne.installed_version(), cpu_signature())


def test_the_cpu_signature_changes_with_any_flag_and_not_with_their_order(tmp_path):
    first, same, other = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    first.write_text(CPUINFO)
    same.write_text(CPUINFO.replace("avx2 fma ht", "ht fma avx2"))
    other.write_text(CPUINFO.replace(" ht", ""))  # a flag no speed table lists still counts
    assert cpu_signature(first) == cpu_signature(same)
    assert cpu_signature(first) != cpu_signature(other)


@pytest.mark.parametrize("portable, native, kept, reason", [
    (ne.Speed(50, 1.000), ne.Speed(80, 1.004), True, "1.60x"),
    (ne.Speed(50, 1.000), ne.Speed(52, 1.000), False, "below the 1.10x"),
    (ne.Speed(50, 1.000), ne.Speed(80, 1.050), False, "loss differs"),
    (ne.Speed(50, 1.000), ne.Speed(error="killed by signal 11"), False, "failed to run: killed by signal 11"),
])
def test_the_native_engine_is_kept_only_when_faster_and_the_same_model(portable, native, kept, reason):
    decision, why = eb.judge(portable, native)
    assert decision is kept and reason in why


@pytest.mark.parametrize("plain, fused, on", [
    (ne.Speed(80, 1.0), ne.Speed(95, 1.001), True),
    (ne.Speed(80, 1.0), ne.Speed(82, 1.0), False),  # within noise: the scores would change for nothing
    (ne.Speed(80, 1.0), ne.Speed(95, 1.1), False),
    (ne.Speed(80, 1.0), ne.Speed(error="exit code 1"), False),
])
def test_fused_attention_is_used_only_where_it_was_measured_faster(plain, fused, on):
    assert eb.fused_pays(plain, fused) is on


def test_fused_attention_follows_the_engine_in_use_and_changes_the_score_key():
    assert in_subprocess()[0] == "False ''"  # the wheel: off, and the score caches of before stay valid
    install_engine(here(), flash=True)
    assert in_subprocess()[0] == f"True '@{here().name}+fa'"
    assert in_subprocess(CODELEARN_FLASH_ATTN="0")[0] == f"False '@{here().name}'"
    assert in_subprocess(CODELEARN_ENGINE="portable")[0] == "False ''"
    assert in_subprocess(CODELEARN_ENGINE="portable", CODELEARN_FLASH_ATTN="1")[0] == "True '+fa'"


def test_a_kept_engine_loads_on_its_cpu_only_and_leaves_no_variable_behind(tmp_path):
    assert loaded_in_subprocess() == (str(wheel_lib()), "None")
    lib = install_engine(here())
    assert loaded_in_subprocess() == (str(lib), "None")  # children get the plain environment
    assert loaded_in_subprocess(CODELEARN_ENGINE="portable")[0] == str(wheel_lib())
    elsewhere = ne.engine_dir(ne.installed_version(), "0123456789abcdef")  # another CPU's build
    shutil.move(str(here()), elsewhere)
    assert loaded_in_subprocess()[0] == str(wheel_lib())


def test_an_engine_not_kept_is_not_loaded(tmp_path):
    install_engine(here(), kept=False)
    assert loaded_in_subprocess()[0] == str(wheel_lib())


def test_a_kept_engine_that_no_longer_loads_falls_back_to_the_wheel(tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "libllama.so").write_bytes(b"not a library")
    install_engine(here(), lib=broken)
    assert loaded_in_subprocess()[0] == str(wheel_lib())


def test_measuring_runs_each_engine_in_its_own_process(tmp_path, tiny_model):
    portable = eb.measure(None, tiny_model)
    copy = install_engine(tmp_path / "engine")
    same = eb.measure(copy, tiny_model)
    assert not portable.error and portable.tokens_per_s > 0 and math.isfinite(portable.mean_loss)
    assert same.mean_loss == portable.mean_loss  # the same libraries score the same, to the bit
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "libllama.so").write_bytes(b"not a library")
    failed = eb.measure(broken, tiny_model)
    assert failed.error and "exit code" in failed.error
    assert eb.judge(portable, failed)[0] is False


def test_engine_status_and_remove_from_the_command_line(tmp_path):
    runner = CliRunner()
    shown = json.loads(runner.invoke(app, ["engine", "status", "--json"]).stdout)
    assert shown["engine"] == "portable" and shown["record"] is None
    lib = install_engine(here())
    shown = json.loads(runner.invoke(app, ["engine", "status", "--json"]).stdout)
    assert shown["engine"] == "native" and shown["lib"] == str(lib) and shown["record"]["speedup"] == 1.6
    result = runner.invoke(app, ["engine", "remove"])
    assert result.exit_code == 0 and "wheel serves models again" in result.output
    assert not here().exists()


def test_a_slow_gate_on_the_wheel_points_to_engine_build_where_it_pays(monkeypatch):
    avx512, avx2 = ("avx2", "fma", "avx512f", "avx512_vnni"), ("avx2", "fma")
    hint = ne.build_hint(464.0, avx512)
    assert hint and "464s" in hint and "codelearn engine build" in hint
    assert ne.build_hint(ne.GATE_GOAL_S, avx512) is None  # within the goal: nothing to say
    assert ne.build_hint(464.0, avx2) is None  # the wheel's AVX2 kernels are this CPU's own
    monkeypatch.setenv(ne.ENGINE_VARIABLE, "portable")
    assert ne.build_hint(464.0, avx512) is None  # the user chose the wheel
    monkeypatch.delenv(ne.ENGINE_VARIABLE)
    install_engine(here(), kept=False)
    assert ne.build_hint(464.0, avx512) is None  # measured here already, kept or not


def test_build_without_cmake_says_what_to_install(monkeypatch, tiny_model):
    monkeypatch.setattr(eb, "_tool", lambda name: None)
    with pytest.raises(eb.CodelearnError, match="needs cmake") as caught:
        eb.build(tiny_model)
    assert "apt-get install cmake" in caught.value.fix


@pytest.mark.skipif(eb._tool("cmake") is None, reason="cmake is not installed (the test install has it)")
def test_build_compiles_llama_cpp_for_this_cpu_and_serves_from_it(tmp_path, tiny_model, llama_sdist):
    stages = []
    record = eb.build(tiny_model, local_source=str(llama_sdist), min_speedup=0.0,
                      progress=lambda stage, done, total: stages.append(stage))
    assert record.kept, record.reason  # the same model: losses agree (speed does not matter here)
    for built in (record.native, record.fused):
        assert not built.error and abs(built.mean_loss / record.portable.mean_loss - 1) <= eb.MAX_LOSS_CHANGE
    assert "compiling llama.cpp for this CPU" in stages
    lib = here() / "lib"
    assert (lib / "libllama.so").is_file() and not (here() / "llama.cpp").exists()  # sources not kept
    assert loaded_in_subprocess()[0] == str(lib)
    assert ne.read_record(here()).native.system_info == record.native.system_info
