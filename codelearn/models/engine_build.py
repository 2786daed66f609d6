"""Build llama.cpp for this CPU and measure it against the wheel: `codelearn engine build`.

What is built, how it is chosen and loaded: `codelearn.llm.native_engine` (loading lives there,
beside the llama.cpp adapter; building fetches sources, so it lives with the other downloads).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from codelearn.errors import CodelearnError
from codelearn.llm.native_engine import (
    ENGINE_VARIABLE, FLASH_VARIABLE, LIB_VARIABLE, RECORD, EngineRecord, Speed, library_name, engine_dir,
    engines_root, installed_version)
from codelearn.machine import cpu_signature, this_machine
from codelearn.paths import user_cache_dir

MIN_SPEEDUP = 1.10
MIN_FLASH_SPEEDUP = 1.05
MAX_LOSS_CHANGE = 0.01  # relative difference of the mean loss on the measuring tokens
MEASURE_TIMEOUT = 900.0  # seconds per engine
ROUNDS = 2
SOURCE_DIRS = ("cmake", "ggml", "src", "include", "vendor", "licenses")
SOURCE_FILES = ("CMakeLists.txt", "LICENSE")
CMAKE_OPTIONS = ("-DCMAKE_BUILD_TYPE=Release", "-DBUILD_SHARED_LIBS=ON", "-DGGML_NATIVE=ON",
                 "-DLLAMA_BUILD_COMMON=OFF", "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
                 "-DLLAMA_BUILD_TOOLS=OFF", "-DLLAMA_BUILD_SERVER=OFF", "-DLLAMA_BUILD_APP=OFF",
                 "-DLLAMA_CURL=OFF",
                 # the libraries find each other beside themselves once copied out of the build
                 "-DCMAKE_BUILD_WITH_INSTALL_RPATH=ON", "-DCMAKE_INSTALL_RPATH=$ORIGIN")
_STEP = re.compile(rb"^\[(\d+)/(\d+)\]")  # ninja's progress: [12/78]
_PERCENT = re.compile(rb"^\[\s*(\d+)%\]")  # make's progress: [ 15%]
BuildProgress = Callable[[str, int, int | None], None]  # (stage, done, total)


def build(model: Path, *, local_source: str = "", progress: BuildProgress | None = None,
          log_file: Path | None = None, min_speedup: float = MIN_SPEEDUP, jobs: int = 0) -> EngineRecord:
    """Compile llama.cpp for this CPU, measure it against the wheel on `model`, keep it if it pays.

    `local_source`: a llama-cpp-python sdist (.tar.gz) or a llama.cpp source folder, instead of
    the cached or downloaded sdist. The record is written either way (`engine status` shows it);
    the libraries are kept only with the engine."""
    version = installed_version()
    if version is None:
        raise CodelearnError("llama-cpp-python is not installed, so there is nothing to rebuild.",
                             "Install codelearn with its dependencies: pip install codelearn")
    tools = _build_tools()
    signature = cpu_signature()
    engines_root().mkdir(parents=True, exist_ok=True)
    _clear_stale(engines_root())
    staging = Path(tempfile.mkdtemp(dir=engines_root(), prefix=".build-"))
    report = progress or (lambda stage, done, total: None)
    log_file = Path(log_file or engines_root() / "build.log")
    log_file.write_text(f"codelearn engine build: llama-cpp-python {version}, {this_machine().summary()}\n")
    try:
        source = _source(local_source, version, staging, report)
        started = time.perf_counter()
        built = _compile(source, staging / "build", tools, log_file, report, jobs)
        build_s = time.perf_counter() - started
        engine = staging / "engine"
        _copy_libraries(built, engine / "lib")
        portable, native, fused = measure_all(engine / "lib", model, report)
        machine = this_machine()
        record = EngineRecord(version, signature, machine.cpu, list(machine.flags),
                              time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), round(build_s, 1),
                              str(model), portable, native, fused)
        record.flash_attention = fused_pays(native, fused)
        record.kept, record.reason = judge(portable, record.serving, min_speedup)
        if record.kept:
            record.reason += ", fused attention " + ("on" if record.flash_attention else "off (no faster)")
        if not record.kept:
            shutil.rmtree(engine / "lib")
        (engine / RECORD).write_text(json.dumps(record.as_json(), indent=1) + "\n")
        _replace(engine, engine_dir(version, signature))
        return record
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _clear_stale(root: Path, hours: float = 6.0) -> None:
    """Remove build folders a killed build left behind (a live build is younger than `hours`)."""
    for folder in root.glob(".build-*"):
        if time.time() - folder.stat().st_mtime > hours * 3600:
            shutil.rmtree(folder, ignore_errors=True)


def measure_all(lib: Path, model: Path, report: BuildProgress, rounds: int = ROUNDS) -> tuple[Speed, Speed, Speed]:
    """The wheel, the native build and the native build with fused attention, measured in turn
    `rounds` times; each keeps its fastest round. Interleaved, so that a machine that slows down
    for a minute (shared cores: ±15% between runs here) does not decide against one of them."""
    configs = ((None, False), (lib, False), (lib, True))
    best = [Speed(), Speed(), Speed()]
    stage = "measuring both builds"
    for round_ in range(rounds):
        for i, (where, flash) in enumerate(configs):
            report(stage, round_ * len(configs) + i, rounds * len(configs))
            if best[i].error:
                continue  # a build that failed once is not measured again, nor trusted
            speed = measure(where, model, flash=flash)
            if speed.error or speed.tokens_per_s > best[i].tokens_per_s:
                best[i] = speed
    report(stage, rounds * len(configs), rounds * len(configs))
    return best[0], best[1], best[2]


def fused_pays(plain: Speed, fused: Speed) -> bool:
    """Serve with fused attention: it ran, scored the same and was faster by MIN_FLASH_SPEEDUP."""
    if plain.error or fused.error or not plain.tokens_per_s or not plain.mean_loss:
        return False
    same = abs(fused.mean_loss / plain.mean_loss - 1) <= MAX_LOSS_CHANGE
    return same and fused.tokens_per_s >= MIN_FLASH_SPEEDUP * plain.tokens_per_s


def judge(portable: Speed, native: Speed, min_speedup: float = MIN_SPEEDUP) -> tuple[bool, str]:
    """Keep the native engine? (decision, the reason in words)."""
    if native.error:
        return False, f"the native build failed to run: {native.error}"
    if portable.error:
        return False, f"the wheel's engine could not be measured to compare: {portable.error}"
    change = abs(native.mean_loss / portable.mean_loss - 1) if portable.mean_loss else 0.0
    if change > MAX_LOSS_CHANGE:
        return False, (f"its loss differs from the wheel's by {change:.2%} (more than "
                       f"{MAX_LOSS_CHANGE:.0%}): its answers would not be the same model's")
    ratio = native.tokens_per_s / portable.tokens_per_s if portable.tokens_per_s else 0.0
    if ratio < min_speedup:
        return False, f"{ratio:.2f}x the wheel's speed, below the {min_speedup:.2f}x worth keeping"
    return True, f"{ratio:.2f}x the wheel's speed, loss within {change:.2%}"


@dataclass(frozen=True)
class _Tools:
    cmake: str
    generator: list[str]


def _tool(name: str) -> str | None:
    """`name` on PATH, or beside this Python (`pip install cmake ninja` into codelearn's venv)."""
    beside = Path(sys.executable).parent / name
    return shutil.which(name) or (str(beside) if beside.is_file() and os.access(beside, os.X_OK) else None)


def _build_tools() -> _Tools:
    cmake = _tool("cmake")
    if cmake is None:
        raise CodelearnError("Building llama.cpp needs cmake and a C/C++ compiler; cmake is not on PATH.",
                             "Install them (Debian/Ubuntu: sudo apt-get install cmake build-essential; or "
                             "pip install cmake into codelearn's environment), then run "
                             "`codelearn engine build` again.")
    ninja = _tool("ninja")
    return _Tools(cmake, ["-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={ninja}"] if ninja else [])


def _source(local: str, version: str, staging: Path, report: BuildProgress) -> Path:
    """llama.cpp's source folder: `local`, else the sdist (cached, else downloaded) extracted."""
    from codelearn.models.converter import cached_sdist, checked_sdist, extract, vendored

    if local:
        path = Path(local).expanduser()
        if path.is_dir():
            for candidate in (path, path / "vendor" / "llama.cpp"):
                if (candidate / "CMakeLists.txt").is_file() and (candidate / "ggml").is_dir():
                    return candidate
            raise CodelearnError(f"{path} holds no llama.cpp sources (CMakeLists.txt and ggml/).",
                                 "Give a llama.cpp checkout or the llama-cpp-python sdist (.tar.gz).")
        tarball = path
        checked_sdist(tarball, version)
    else:
        tarball = cached_sdist(version, user_cache_dir() / "sdists",
                               lambda done, total: report("downloading llama.cpp's sources", done, total))
    report("extracting llama.cpp's sources", 0, None)
    source = staging / "llama.cpp"
    extract(tarball, source, vendored(SOURCE_DIRS, SOURCE_FILES))
    if not (source / "CMakeLists.txt").is_file():
        raise CodelearnError(f"{tarball.name} has no llama.cpp sources under vendor/llama.cpp/.",
                             "Use the llama-cpp-python sdist (.tar.gz).")
    return source


def _compile(source: Path, build_dir: Path, tools: _Tools, log_file: Path,
             report: BuildProgress, jobs: int) -> Path:
    """Configure and build libllama with its ggml libraries; the folder they were written to."""
    from codelearn.llm.base import auto_threads

    log = Path(log_file)
    configure = [tools.cmake, "-S", str(source), "-B", str(build_dir), *tools.generator, *CMAKE_OPTIONS]
    compile_ = [tools.cmake, "--build", str(build_dir), "--target", "llama",
                "-j", str(jobs or max(1, auto_threads(0)))]
    with log.open("ab") as out:
        report("configuring", 0, None)
        _run(configure, out, log, "configure", report)
        _run(compile_, out, log, "compiling llama.cpp for this CPU", report)
    found = sorted({p.parent for p in build_dir.rglob(library_name())})
    if not found:
        raise CodelearnError(f"The build finished without {library_name()}; see {log}.",
                             "Report it with the log; codelearn keeps using the wheel's llama.cpp.")
    return found[0]


def _run(command: list[str], out, log: Path, stage: str, report: BuildProgress) -> None:
    out.write(f"$ {' '.join(command)}\n".encode())
    out.flush()
    try:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT)
    except OSError as error:
        raise CodelearnError(f"Could not run {command[0]} ({error}).",
                             "Install cmake and a C/C++ compiler, then try again.") from None
    tail: list[bytes] = []
    for line in process.stdout:
        out.write(line)
        tail = (tail + [line])[-15:]
        step, percent = _STEP.match(line), _PERCENT.match(line)
        if step:
            report(stage, int(step.group(1)), int(step.group(2)))
        elif percent:
            report(stage, int(percent.group(1)), 100)
    code = process.wait()
    if code != 0:
        joined = b"".join(tail)
        text = joined.decode("utf-8", errors="replace").rstrip()
        fix = ("Install a C/C++ compiler (Debian/Ubuntu: sudo apt-get install build-essential)"
               if b"CMAKE_C_COMPILER" in joined or b"No CMAKE_CXX_COMPILER" in joined
               else "Read the log; codelearn keeps using the wheel's llama.cpp meanwhile")
        raise CodelearnError(f"cmake {stage} failed (exit code {code}):\n{text}", f"{fix}. Full log: {log}")


def _copy_libraries(built: Path, dest: Path) -> None:
    """The shared libraries with their version links, nothing else of the build."""
    dest.mkdir(parents=True, exist_ok=True)
    for path in built.iterdir():
        if path.name.startswith(("libllama", "libggml", "llama", "ggml")) and (
                ".so" in path.name or path.suffix in (".dylib", ".dll")):
            if path.is_symlink():
                (dest / path.name).symlink_to(os.readlink(path))
            else:
                shutil.copy2(path, dest / path.name)


def _replace(staged: Path, target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    os.replace(staged, target)


# -- measuring ---------------------------------------------------------------------------------

def measure(lib: Path | None, model: Path, *, flash: bool = False, timeout: float = MEASURE_TIMEOUT) -> Speed:
    """Score the same tokens with `model` on the engine in `lib` (None: the wheel's), with fused
    attention or not, in a subprocess: a crash, a hang or an unloadable library is a result, not
    our crash."""
    env = {k: v for k, v in os.environ.items() if k != LIB_VARIABLE}
    env[ENGINE_VARIABLE] = "portable"
    env[FLASH_VARIABLE] = "1" if flash else "0"
    if lib is not None:
        env[LIB_VARIABLE] = str(lib)
    command = [sys.executable, "-m", "codelearn.llm.engine_probe", str(model)]
    try:
        done = subprocess.run(command, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return Speed(error=f"no result within {timeout:g} s")
    if done.returncode != 0:
        how = f"killed by signal {-done.returncode}" if done.returncode < 0 else f"exit code {done.returncode}"
        last = done.stderr.decode("utf-8", errors="replace").strip().splitlines()[-1:] or [""]
        return Speed(error=f"{how} {last[0]}".strip())
    try:
        return Speed(**json.loads(done.stdout.decode().strip().splitlines()[-1]))
    except (ValueError, IndexError, TypeError):
        return Speed(error="the measuring process printed no result")
