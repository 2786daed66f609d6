"""Which files are not worth reading: binary, too large, minified or generated, not UTF-8.

Name-based checks run at listing time (no file is opened); content checks run in
`load_file`. Decisions, so that they can be argued with:
- Lock files (`package-lock.json`, `yarn.lock`, `poetry.lock`, `Cargo.lock`, `uv.lock`,
  ...) and source maps are skipped as "minified": they are generated, large and answer
  no question that the manifest next to them does not answer better.
- Web-like files (.js, .css, .json, .svg, ...) are minified when their average line is
  over 300 characters or any line is over 5,000. Other text files only when a line is
  over 20,000 characters, because prose formats (Markdown, reST) keep a whole paragraph
  on one line.
- A file with a Go-style `Code generated ... DO NOT EDIT.` header is generated.
- Text must be UTF-8 (with or without a BOM); anything else is skipped as "encoding",
  or as "binary" when it does not look like text at all.
"""

from __future__ import annotations

import re

BINARY_SNIFF_BYTES = 8192

BINARY_SUFFIXES = frozenset(
    """
    .png .jpg .jpeg .gif .bmp .ico .icns .webp .tif .tiff .psd .heic .avif
    .mp3 .mp4 .m4a .wav .flac .ogg .oga .opus .avi .mov .mkv .webm
    .zip .gz .tgz .bz2 .xz .zst .7z .rar .tar .jar .war .ear .whl .egg .apk .dmg .iso
    .so .dylib .dll .exe .bin .o .a .lib .obj .pyc .pyo .pyd .class .wasm .elf
    .pdf .doc .docx .xls .xlsx .ppt .pptx .odt .ods .odp
    .ttf .otf .woff .woff2 .eot
    .db .sqlite .sqlite3 .parquet .feather .arrow .npy .npz .pkl .pickle .h5 .hdf5
    .onnx .pt .pth .safetensors .gguf .ckpt .tflite
    """.split()
)

GENERATED_NAMES = frozenset(
    {
        "package-lock.json",
        "npm-shrinkwrap.json",
        "yarn.lock",
        "pnpm-lock.yaml",
        "bun.lockb",
        "poetry.lock",
        "pipfile.lock",
        "pdm.lock",
        "uv.lock",
        "cargo.lock",
        "composer.lock",
        "gemfile.lock",
        "go.sum",
        "packages.lock.json",
        "flake.lock",
    }
)
_MINIFIED_SUFFIXES = (".min.js", ".min.mjs", ".min.cjs", ".min.css", "-min.js", "-min.css", ".map")
WEB_SUFFIXES = frozenset({".js", ".mjs", ".cjs", ".css", ".json", ".svg", ".map", ".geojson"})

WEB_MAX_AVERAGE_LINE = 300
WEB_MAX_LINE = 5000
TEXT_MAX_LINE = 20000
_GENERATED_HEADER = re.compile(r"^// Code generated .* DO NOT EDIT\.$", re.MULTILINE)


def suffix_of(path: str) -> str:
    name = path.rpartition("/")[2].lower()
    dot = name.rfind(".")
    return name[dot:] if dot > 0 else ""


def binary_by_name(path: str) -> bool:
    """Whether the file name alone says the content is binary."""
    return suffix_of(path) in BINARY_SUFFIXES


def generated_by_name(path: str) -> str | None:
    """Why a file name says the content is generated or minified, or None."""
    name = path.rpartition("/")[2].lower()
    if name in GENERATED_NAMES:
        return "lock file (generated)"
    if name.endswith(_MINIFIED_SUFFIXES):
        return "minified asset or source map (by name)"
    return None


def binary_by_content(data: bytes) -> bool:
    """A NUL byte early on is what git and grep take as binary, too."""
    return b"\0" in data[:BINARY_SNIFF_BYTES]


def wide_unicode(data: bytes) -> bool:
    """UTF-16/32 text starts with a byte-order mark (and is full of NUL bytes)."""
    return data.startswith((b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff"))


def decode_text(data: bytes) -> tuple[str | None, str]:
    """The text (utf-8 or utf-8 with BOM), or None and why it is not text."""
    try:
        return data.decode("utf-8-sig"), ""
    except UnicodeDecodeError as exc:
        return None, f"not UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})"


def mostly_binary(data: bytes) -> bool:
    """Whether bytes that failed to decode are not text in any 8-bit encoding either."""
    sample = data[:BINARY_SNIFF_BYTES]
    if not sample:
        return False
    control = sum(1 for b in sample if b < 32 and b not in (9, 10, 12, 13, 27))
    return control / len(sample) > 0.1


def minified_reason(path: str, text: str) -> str | None:
    """Why the decoded text looks minified or generated, or None."""
    if _GENERATED_HEADER.search(text, 0, 4000):
        return "generated (Code generated ... DO NOT EDIT)"
    longest = max(map(len, text.split("\n")))
    if suffix_of(path) in WEB_SUFFIXES:
        lines = text.count("\n") + 1
        average = len(text) / lines
        if longest > WEB_MAX_LINE:
            return f"a line of {longest} characters"
        if len(text) > 1024 and average > WEB_MAX_AVERAGE_LINE:
            return f"average line of {average:.0f} characters"
    elif longest > TEXT_MAX_LINE:
        return f"a line of {longest} characters"
    return None
