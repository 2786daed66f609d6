"""Read a GGUF file's metadata without loading the model.

`models info`, template selection and early error messages need a few keys
(architecture, name, context length, chat template, special tokens) long
before llama.cpp is asked to load hundreds of MB. Arrays (the vocabulary) are
skipped except for a bounded scan of the token list for chat markers.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


class _Cursor:
    """Reads GGUF values from a memory-mapped header.

    A mapped buffer and `unpack_from` instead of a file object's `read`: a
    150k-token vocabulary is walked in ~0.05 s instead of ~0.3 s (this runs on
    the model-loading thread, beside the index search).
    """

    def __init__(self, buf, path: Path) -> None:
        self.buf, self.path, self.at = buf, path, 0

    def take(self, size: int) -> bytes:
        end = self.at + size
        if end > len(self.buf):
            raise _corrupt(self.path, "the file ends early")
        data = self.buf[self.at:end]
        self.at = end
        return data

    def unpack(self, fmt: str, size: int) -> tuple:
        return struct.unpack(fmt, self.take(size))

    def string(self) -> str:
        (length,) = self.unpack("<Q", 8)
        if length > 1 << 26:
            raise _corrupt(self.path, "a metadata string is implausibly long")
        return self.take(length).decode("utf-8", errors="replace")

    def skip_or_scan_array(self, key: str, markers: set[str]) -> None:
        item_type, count = self.unpack("<IQ", 12)
        if item_type in _SCALARS:
            self.take(_SCALARS[item_type][1] * count)
            return
        if item_type != _STRING:
            raise _corrupt(self.path, f"unsupported array type {item_type} in {key}")
        wanted = {m.encode() for m in CHAT_MARKERS} if key == "tokenizer.ggml.tokens" else set()
        sizes = {len(m) for m in wanted}
        buf, at, end = self.buf, self.at, len(self.buf)
        unpack_from = struct.unpack_from
        for _ in range(count):
            if at + 8 > end:
                raise _corrupt(self.path, "the file ends early")
            (length,) = unpack_from("<Q", buf, at)
            at += 8
            if length in sizes and buf[at:at + length] in wanted:
                markers.add(buf[at:at + length].decode())
            at += length
        if at > end:
            raise _corrupt(self.path, "the file ends early")
        self.at = at


def read_gguf_info(path: Path) -> GGUFInfo:
    """Parse the header and metadata of `path`; raise CodelearnError if it is not GGUF."""
    path = Path(path)
    if not path.is_file():
        raise CodelearnError(f"Model file {path} does not exist.",
                             "Check the path, or run `codelearn models list`.")
    with path.open("rb") as fh:
        if path.stat().st_size < 4 or fh.read(4) != MAGIC:
            raise _corrupt(path, "no GGUF magic at the start")
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            return _parse(_Cursor(mapped, path))


def _parse(cursor: _Cursor) -> GGUFInfo:
    path = cursor.path
    cursor.take(4)  # the magic, checked by the caller
    version, tensors, kv_count = cursor.unpack("<IQQ", 20)
    if version not in SUPPORTED_VERSIONS:
        raise CodelearnError(
            f"{path} is GGUF version {version}; this llama.cpp reads versions 2-3.",
            "Convert it again with a current llama.cpp, or pick another model.")
    metadata: dict[str, Any] = {}
    markers: set[str] = set()
    for _ in range(kv_count):
        key = cursor.string()
        (value_type,) = cursor.unpack("<I", 4)
        if value_type in _SCALARS:
            fmt, size = _SCALARS[value_type]
            (metadata[key],) = cursor.unpack(fmt, size)
        elif value_type == _STRING:
            metadata[key] = cursor.string()
        elif value_type == _ARRAY:
            cursor.skip_or_scan_array(key, markers)
        else:
            raise _corrupt(path, f"unknown metadata type {value_type} for {key}")
    return GGUFInfo(path, version, tensors, metadata, tuple(sorted(markers)))
