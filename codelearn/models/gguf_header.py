"""Read a GGUF file's metadata without loading the model.

`models info`, template selection and early error messages need a few keys
(architecture, name, context length, chat template, special tokens) long
before llama.cpp is asked to load hundreds of MB. Arrays (the vocabulary) are
skipped except for a bounded scan of the token list for chat markers.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from codelearn.errors import CodelearnError

MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
CHAT_MARKERS = ("<|im_start|>", "<|start_header_id|>", "<start_of_turn>", "<|user|>", "[INST]")

# GGUF value types: (struct format, size) for fixed-size scalars.
_SCALARS = {
    0: ("<B", 1), 1: ("<b", 1), 2: ("<H", 2), 3: ("<h", 2), 4: ("<I", 4), 5: ("<i", 4),
    6: ("<f", 4), 7: ("<?", 1), 10: ("<Q", 8), 11: ("<q", 8), 12: ("<d", 8),
}
_STRING, _ARRAY = 8, 9

FILE_TYPES = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K",
    11: "Q3_K_S", 12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S",
    17: "Q5_K_M", 18: "Q6_K", 32: "BF16",
}


@dataclass(frozen=True)
class GGUFInfo:
    """The metadata codelearn needs from a model file."""

    path: Path
    version: int
    tensor_count: int
    metadata: dict[str, Any]
    chat_markers: tuple[str, ...] = field(default=())

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", ""))

    @property
    def name(self) -> str:
        return str(self.metadata.get("general.name", self.path.stem))

    @property
    def context_length(self) -> int:
        return int(self.metadata.get(f"{self.architecture}.context_length", 0) or 0)

    @property
    def chat_template(self) -> str | None:
        value = self.metadata.get("tokenizer.chat_template")
        return value if isinstance(value, str) and value.strip() else None

    @property
    def file_type(self) -> str:
        code = self.metadata.get("general.file_type")
        return FILE_TYPES.get(code, str(code)) if code is not None else "unknown"


def _corrupt(path: Path, why: str) -> CodelearnError:
    return CodelearnError(
        f"{path} is not a usable GGUF model ({why}).",
        "Check the path, or fetch it again (`codelearn models pull NAME` verifies checksums).",
    )


def _read(fh: BinaryIO, size: int, path: Path) -> bytes:
    data = fh.read(size)
    if len(data) != size:
        raise _corrupt(path, "the file ends early")
    return data


def _string(fh: BinaryIO, path: Path) -> str:
    (length,) = struct.unpack("<Q", _read(fh, 8, path))
    if length > 1 << 26:
        raise _corrupt(path, "a metadata string is implausibly long")
    return _read(fh, length, path).decode("utf-8", errors="replace")


def _skip_or_scan_array(fh: BinaryIO, path: Path, key: str, markers: set[str]) -> None:
    item_type, count = struct.unpack("<IQ", _read(fh, 12, path))
    if item_type in _SCALARS:
        fh.seek(_SCALARS[item_type][1] * count, 1)
        return
    if item_type != _STRING:
        raise _corrupt(path, f"unsupported array type {item_type} in {key}")
    wanted = key == "tokenizer.ggml.tokens"
    for _ in range(count):
        (length,) = struct.unpack("<Q", _read(fh, 8, path))
        if wanted and length <= 24:
            token = _read(fh, length, path).decode("utf-8", errors="replace")
            if token in CHAT_MARKERS:
                markers.add(token)
        else:
            fh.seek(length, 1)


def read_gguf_info(path: Path) -> GGUFInfo:
    """Parse the header and metadata of `path`; raise CodelearnError if it is not GGUF."""
    path = Path(path)
    if not path.is_file():
        raise CodelearnError(f"Model file {path} does not exist.",
                             "Check the path, or run `codelearn models list`.")
    with path.open("rb") as fh:
        if fh.read(4) != MAGIC:
            raise _corrupt(path, "no GGUF magic at the start")
        version, tensors, kv_count = struct.unpack("<IQQ", _read(fh, 20, path))
        if version not in SUPPORTED_VERSIONS:
            raise CodelearnError(
                f"{path} is GGUF version {version}; this llama.cpp reads versions 2-3.",
                "Convert it again with a current llama.cpp, or pick another model.")
        metadata: dict[str, Any] = {}
        markers: set[str] = set()
        for _ in range(kv_count):
            key = _string(fh, path)
            (value_type,) = struct.unpack("<I", _read(fh, 4, path))
            if value_type in _SCALARS:
                fmt, size = _SCALARS[value_type]
                (metadata[key],) = struct.unpack(fmt, _read(fh, size, path))
            elif value_type == _STRING:
                metadata[key] = _string(fh, path)
            elif value_type == _ARRAY:
                _skip_or_scan_array(fh, path, key, markers)
            else:
                raise _corrupt(path, f"unknown metadata type {value_type} for {key}")
    return GGUFInfo(path, version, tensors, metadata, tuple(sorted(markers)))
