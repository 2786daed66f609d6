"""Which llama.cpp this process loads: the portable wheel, or one compiled for this CPU.

codelearn installs llama-cpp-python built portable (`GGML_NATIVE=OFF`: AVX2 kernels), so that
the wheel runs on any x86-64 CPU and never takes the AMX path that crashes on quantized models
(FACTS.md). On a CPU with wider vector units that leaves speed unused: on an Intel Xeon with
AVX-512 VNNI, llama.cpp compiled for the CPU evaluates the bundled 0.5B's prompts about 1.4x
as fast. `codelearn engine build` (`codelearn.models.engine_build`) compiles it into the user
data folder, measures it against the wheel and records whether to keep it, and whether fused
attention pays on it.

Before llama_cpp is first imported, `import_llama_cpp()` points it (LLAMA_CPP_LIB_PATH, for the
import only) at the kept engine built for this CPU signature (its model and every flag: a
native build may use any instruction the CPU has) and this llama-cpp-python version; anywhere
else the wheel's own libraries load. `CODELEARN_ENGINE=portable` ignores the native engine; a
LLAMA_CPP_LIB_PATH the user set wins.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from codelearn.machine import cpu_signature
from codelearn.paths import user_data_dir

logger = logging.getLogger(__name__)

ENGINE_VARIABLE = "CODELEARN_ENGINE"  # "portable": never load a native engine
FLASH_VARIABLE = "CODELEARN_FLASH_ATTN"  # "1" / "0": fused attention on / off, whatever was measured
LIB_VARIABLE = "LLAMA_CPP_LIB_PATH"  # llama-cpp-python loads its libraries from here when set
PACKAGE = "llama-cpp-python"
RECORD = "engine.json"


@dataclass
class Speed:
    """One engine measured on the same tokens: prompt evaluation speed and the loss it gives."""

    tokens_per_s: float = 0.0
    mean_loss: float = 0.0
    system_info: str = ""
    error: str = ""  # why it could not be measured (a crash, a load failure)


@dataclass
class EngineRecord:
    version: str
    signature: str
    cpu: str
    flags: list[str]
    built: str
    build_s: float
    model: str
    portable: Speed = field(default_factory=Speed)
    native: Speed = field(default_factory=Speed)
    fused: Speed = field(default_factory=Speed)  # the native build with fused (flash) attention
    kept: bool = False
    flash_attention: bool = False
    reason: str = ""

    @property
    def serving(self) -> Speed:
        """The native build as it serves: with fused attention where that was faster."""
        return self.fused if self.flash_attention else self.native

    @property
    def speedup(self) -> float | None:
        if self.portable.tokens_per_s <= 0 or self.serving.tokens_per_s <= 0:
            return None
        return self.serving.tokens_per_s / self.portable.tokens_per_s

    def as_json(self) -> dict:
        data = asdict(self)
        data["speedup"] = None if self.speedup is None else round(self.speedup, 3)
        return data

    @classmethod
    def from_json(cls, data: dict) -> EngineRecord:
        data = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        for name in ("portable", "native", "fused"):
            data[name] = Speed(**data.get(name, {}))
        return cls(**data)


# -- which engine loads ------------------------------------------------------------------------

def installed_version() -> str | None:
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        return None


def engines_root() -> Path:
    return user_data_dir() / "engines"


def engine_dir(version: str, signature: str) -> Path:
    return engines_root() / f"{PACKAGE}-{version}-{signature}"


def read_record(folder: Path) -> EngineRecord | None:
    try:
        return EngineRecord.from_json(json.loads((folder / RECORD).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def this_record() -> EngineRecord | None:
    """What `engine build` measured on this CPU for the installed llama-cpp-python, if it ran."""
    version = installed_version()
    return read_record(engine_dir(version, cpu_signature())) if version else None


def disabled() -> bool:
    """CODELEARN_ENGINE=portable: the wheel's own libraries, whatever was built."""
    return os.environ.get(ENGINE_VARIABLE, "").strip().lower() == "portable"


def active_lib() -> Path | None:
    """The folder of the native engine to load here, or None for the wheel's own libraries."""
    if disabled():
        return None
    version = installed_version()
    if version is None:
        return None
    folder = engine_dir(version, cpu_signature())
    record = read_record(folder)
    lib = folder / "lib"
    if record is None or not record.kept or not (lib / library_name()).is_file():
        return None
    return lib


def import_llama_cpp():
    """`import llama_cpp`, from the native engine when one was kept for this CPU."""
    if "llama_cpp" in sys.modules:
        return sys.modules["llama_cpp"]
    lib = None if os.environ.get(LIB_VARIABLE) else active_lib()
    if lib is None:
        import llama_cpp
        return llama_cpp
    os.environ[LIB_VARIABLE] = str(lib)
    try:
        import llama_cpp
    except (OSError, RuntimeError) as error:  # the engine's files broke since: the wheel still works
        logger.warning("the native llama.cpp in %s did not load (%s); using the wheel's. "
                       "`codelearn engine build` makes a new one.", lib, error)
        for name in [n for n in sys.modules if n == "llama_cpp" or n.startswith("llama_cpp.")]:
            del sys.modules[name]
        os.environ.pop(LIB_VARIABLE, None)
        import llama_cpp
    finally:  # read once, at import: keep it out of the subprocesses this one starts
        os.environ.pop(LIB_VARIABLE, None)
    return llama_cpp


def loaded_from() -> str:
    """Where the llama.cpp libraries of this process came from ("" before llama_cpp is imported)."""
    module = sys.modules.get("llama_cpp.llama_cpp")
    library = getattr(getattr(module, "_lib", None), "_name", "")
    return str(Path(library).parent) if library else ""


def describe() -> str:
    """One line for reports: which engine serves models in this process (or would)."""
    tag = score_tag()
    build, fused = tag.removesuffix("+fa"), ", fused attention" if tag.endswith("+fa") else ""
    return f"llama.cpp built for this CPU ({build[1:]}{fused})" if build else f"llama.cpp portable wheel{fused}"


GATE_GOAL_S = 300  # a nightly gate a user can wait for: five minutes on 2 cores


def build_hint(gate_seconds: float, flags) -> str | None:
    """What to do when the nightly gate outlasted `GATE_GOAL_S` on the portable wheel of a CPU that
    a native build speeds up (AVX-512: the wheel computes with AVX2 kernels there) and `engine build`
    never measured this CPU; None otherwise (an AVX2-only CPU: the wheel is already its build)."""
    if gate_seconds <= GATE_GOAL_S or "avx512f" not in flags or disabled() or this_record() is not None:
        return None
    return (f"the gate took {gate_seconds:.0f}s on the portable llama.cpp build. `codelearn engine build` "
            "(once; about 4 minutes, needs cmake) compiles llama.cpp for this CPU and keeps it only if faster: "
            "on 2 AVX-512 cores it cut the gate from 464 s to 270 s.")


def flash_attention() -> bool:
    """Fused attention for models loaded here? What `engine build` measured for the native build
    in use (on 2 AVX-512 cores it evaluated the gate's prompts 1.2x as fast); off on the wheel,
    where it was 5% slower. CODELEARN_FLASH_ATTN=1 or 0 decides instead."""
    forced = os.environ.get(FLASH_VARIABLE, "").strip()
    if forced:
        return forced.lower() not in ("0", "false", "no", "off")
    folder = _serving_lib()
    record = read_record(folder.parent) if folder is not None and folder.name == "lib" else None
    return bool(record and record.kept and record.flash_attention)


def score_tag() -> str:
    """What score caches add to a model's identity for the engine in use: nothing for the wheel
    (caches from before native engines stay valid), the build's folder name for a native one,
    whose kernels round differently (per-probe losses differ by ~5e-3 on the 0.5B), and "+fa"
    with fused attention, which rounds differently again."""
    fused = "+fa" if flash_attention() else ""
    folder = _serving_lib()
    if folder is None or folder == _wheel_lib():
        return fused
    if folder.parent.parent == engines_root():
        return "@" + folder.parent.name + fused
    import hashlib  # LLAMA_CPP_LIB_PATH set by hand: some other build

    return "@lib-" + hashlib.sha256(str(folder).encode()).hexdigest()[:12] + fused


def _serving_lib() -> Path | None:
    """The folder llama.cpp was loaded from here, or will be (None: not yet known, the wheel)."""
    loaded = loaded_from()
    return Path(loaded) if loaded else active_lib()


def _wheel_lib() -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec("llama_cpp")
    return Path(spec.origin).parent / "lib" if spec and spec.origin else None


def library_name() -> str:
    return {"darwin": "libllama.dylib", "win32": "llama.dll"}.get(sys.platform, "libllama.so")


def remove() -> bool:
    """Forget the native engine built for this CPU (the wheel serves again). True when one existed."""
    version = installed_version()
    folder = engine_dir(version, cpu_signature()) if version else None
    if folder is None or not folder.exists():
        return False
    shutil.rmtree(folder)
    return True
