"""What machine a number was measured on: CPU model, the instruction sets that decide speed,
cores, and the torch and onnxruntime builds.

Two CPUs of the same "2-core" kind can differ 2.5x in speed and 82x in bf16 matmuls (AVX2
against AMX), so every benchmark table and run report names the machine it came from, and
caches of measured settings are keyed by it. Reading it imports nothing heavy: torch is asked
for its CPU capability only when something has already imported it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import sys
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

# x86 and Arm flags that change which kernels (and so which precisions) are fast.
FLAGS_THAT_MATTER = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile",
                     "amx_bf16", "amx_int8", "asimd", "bf16", "i8mm", "sve")


@dataclass(frozen=True)
class Machine:
    """The facts that make two measurements comparable (or not)."""

    cpu: str
    flags: tuple[str, ...]
    cores: int  # usable by this process (affinity), not the host's count
    arch: str
    torch: str | None  # version, None when not installed
    onnxruntime: str | None

    def as_json(self) -> dict:
        data = asdict(self)
        data["flags"] = list(self.flags)
        capability = torch_capability()
        if capability:
            data["torch_cpu_capability"] = capability
        data["llama_cpp"] = llama_engine()
        return data

    def key(self) -> str:
        """Stable across runs on one machine; changes with the CPU, its flags or torch."""
        text = "|".join((self.cpu, self.arch, ",".join(self.flags), self.torch or ""))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def summary(self) -> str:
        """One line for a benchmark table's header or a log."""
        flags = ", ".join(self.flags) or "no vector flags read"
        builds = [f"torch {self.torch}" + (f" ({torch_capability()})" if torch_capability() else "")
                  if self.torch else "", f"onnxruntime {self.onnxruntime}" if self.onnxruntime else ""]
        builds.append(llama_engine())
        return f"{self.cpu} [{flags}], {self.cores} cores, {self.arch}" + "".join(f"; {b}" for b in builds if b)


@lru_cache(maxsize=1)
def this_machine() -> Machine:
    """The machine this process runs on."""
    cpu, flags = _cpuinfo(Path("/proc/cpuinfo"))
    return Machine(cpu=cpu or platform.processor() or platform.machine() or "unknown CPU",
                   flags=tuple(f for f in FLAGS_THAT_MATTER if f in flags), cores=_cores(),
                   arch=platform.machine(), torch=_version("torch"), onnxruntime=_version("onnxruntime"))


def cpu_signature(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """Names this exact CPU kind: its model and *every* flag it reports, not only those that matter
    for speed. Code compiled for one CPU (`-march=native`) may use any instruction it has, so a
    native build is only ever loaded where this signature matches the one it was built on."""
    cpu, flags = _cpuinfo(cpuinfo)
    text = "|".join((platform.machine(), cpu or platform.processor(), " ".join(sorted(flags))))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def llama_engine() -> str:
    """Which llama.cpp build serves models here (the portable wheel or one built for this CPU)."""
    from codelearn.llm.native_engine import describe, installed_version

    return describe() if installed_version() else ""


def torch_capability() -> str | None:
    """torch's own name for the CPU kernels it picked (AVX2, AVX512, ...), if torch is loaded."""
    torch = sys.modules.get("torch")
    try:
        return str(torch.backends.cpu.get_cpu_capability()) if torch is not None else None
    except AttributeError:
        return None


def _cpuinfo(path: Path) -> tuple[str, set[str]]:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "", set()
    cpu, flags = "", set()
    for line in text.splitlines():
        name, _, value = line.partition(":")
        name = name.strip()
        if name in ("model name", "Model", "cpu model") and not cpu:
            cpu = value.strip()
        elif name in ("flags", "Features") and not flags:
            flags = set(value.split())
    return cpu, flags


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None
