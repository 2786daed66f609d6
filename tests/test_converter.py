"""llama.cpp's converter: found locally, cached, downloaded from a real (local) index, and run.

Fake sdists are real .tar.gz files with the sdist's layout and small scripts; the index is a real
HTTP server on 127.0.0.1. One test runs the real pinned converter on a tiny Llama.
"""

from __future__ import annotations

import hashlib
import http.server
import importlib.util
import io
import json
import logging
import os
import tarfile
import threading
from pathlib import Path

import pytest

from codelearn.errors import CodelearnError, MissingExtraError
from codelearn.models import converter as conv
from codelearn.models.converter import (
    LORA_NEEDS, cache_path, converter_dir, require_modules, run_convert_hf,
    run_convert_lora,
)

FAKE = "9.9.9"
UNREACHABLE = "http://127.0.0.1:9/simple"  # the discard port: connection refused at once
TOP = f"llama_cpp_python-{FAKE}"
DUMMY_HF = """\
import argparse, json, os
parser = argparse.ArgumentParser()
parser.add_argument("model")
parser.add_argument("--outfile")
parser.add_argument("--outtype")
args = parser.parse_args()
keys = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "NO_LOCAL_GGUF", "PYTHONUNBUFFERED")
with open(args.outfile, "w") as out:
    json.dump({"model": args.model, "outtype": args.outtype,
               "env": {key: os.environ.get(key) for key in keys}}, out)
"""
DUMMY_LORA = """\
import argparse, json
parser = argparse.ArgumentParser()
parser.add_argument("lora_path")
parser.add_argument("--base", required=True)
parser.add_argument("--outfile")
parser.add_argument("--outtype")
args = parser.parse_args()
with open(args.outfile, "w") as out:
    json.dump(vars(args), out)
"""
FAILING_HF = """\
for i in range(30):
    print(f"progress line {i}")
raise RuntimeError("BPE pre-tokenizer was not recognized")
"""
SLOW_HF = "import time\ntime.sleep(60)\n"
CONVERTER_FILES = {
    "convert_hf_to_gguf.py": DUMMY_HF,
    "convert_lora_to_gguf.py": DUMMY_LORA,
    "conversion/__init__.py": "",
    "conversion/llama.py": "# a model module\n",
    "gguf-py/gguf/__init__.py": "",
}
needs_converter_modules = pytest.mark.skipif(
    any(importlib.util.find_spec(module) is None for module, _ in LORA_NEEDS),
    reason="the converter's modules (the train extra) are not installed")


# -- building fake sdists ----------------------------------------------------------------------

def add_file(tar: tarfile.TarFile, name: str, text: str) -> None:
    data = text.encode()
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def make_sdist(path: Path, version: str = FAKE, extra=()) -> Path:
    """A .tar.gz laid out like the llama-cpp-python sdist, with files the converter never needs."""
    top = f"llama_cpp_python-{version}"
    with tarfile.open(path, "w:gz") as tar:
        add_file(tar, f"{top}/PKG-INFO", "Name: llama_cpp_python\n")
        add_file(tar, f"{top}/llama_cpp/llama.py", "# the binding\n")
        add_file(tar, f"{top}/vendor/llama.cpp/src/llama.cpp", "// the engine\n")
        add_file(tar, f"{top}/vendor/llama.cpp/convert_llama_ggml_to_gguf.py", "# not needed\n")
        for rel, text in CONVERTER_FILES.items():
            add_file(tar, f"{top}/vendor/llama.cpp/{rel}", text)
        for member, text in extra:
            tar.addfile(member, io.BytesIO(text.encode()) if text is not None else None)
    return path


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pin(monkeypatch, path: Path, sha256: str | None = None) -> None:
    monkeypatch.setitem(conv.PINNED, FAKE, (path.name, sha256 or sha256_of(path)))


def converters_root() -> Path:
    return cache_path(FAKE).parent


def relative_files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def write_converter(folder: Path, **scripts: str) -> Path:
    """A converter folder with the dummy scripts, some replaced by `scripts` (by file stem)."""
    for rel, text in CONVERTER_FILES.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(scripts.get(Path(rel).stem, text))
    return folder


# -- a local package index ---------------------------------------------------------------------

class Index:
    """A PEP 503 simple index for llama-cpp-python, served over HTTP from a temporary folder."""

    def __init__(self, root: Path, server: http.server.ThreadingHTTPServer) -> None:
        self.root = root
        self.url = f"http://127.0.0.1:{server.server_address[1]}/simple"

    def publish(self, sdist: Path, listed_sha256: str | None) -> None:
        (self.root / "files").mkdir(exist_ok=True)
        (self.root / "files" / sdist.name).write_bytes(sdist.read_bytes())
        fragment = f"#sha256={listed_sha256}" if listed_sha256 else ""
        page = self.root / "simple" / "llama-cpp-python" / "index.html"
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text(
            "<!DOCTYPE html><html><body>\n"
            '<a href="../../files/llama_cpp_python-0.0.1.tar.gz#sha256=' + "0" * 64
            + '">llama_cpp_python-0.0.1.tar.gz</a><br/>\n'
            f'<a href="../../files/{sdist.name}{fragment}" data-requires-python="&gt;=3.8">'
            f"{sdist.name}</a><br/>\n</body></html>\n")


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def index(tmp_path, monkeypatch):
    root = tmp_path / "www"
    root.mkdir()

    def handler(*args, **kwargs):
        return QuietHandler(*args, directory=str(root), **kwargs)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    served = Index(root, server)
    monkeypatch.setenv("CODELEARN_PYPI_SIMPLE", served.url)
    yield served
    server.shutdown()
    server.server_close()


# -- a local sdist -----------------------------------------------------------------------------

def test_local_sdist_extracts_only_the_converter_into_the_cache(tmp_path, monkeypatch):
    link = tarfile.TarInfo(f"{TOP}/vendor/llama.cpp/gguf-py/gguf/escape")
    link.type, link.linkname = tarfile.SYMTYPE, "../../../../../../outside"
    sdist = make_sdist(tmp_path / f"{TOP}.tar.gz", extra=[(link, None)])
    pin(monkeypatch, sdist)

    found = converter_dir(str(sdist), version=FAKE)

    assert found == cache_path(FAKE)
    assert relative_files(found) == {*CONVERTER_FILES, "COMPLETE"}  # no link, no engine source
    assert (found / "COMPLETE").read_text().strip() == sha256_of(sdist)
    assert [p.name for p in converters_root().iterdir()] == [found.name]  # no staging left


def test_the_cache_is_reused_without_the_network(tmp_path, monkeypatch):
    sdist = make_sdist(tmp_path / f"{TOP}.tar.gz")
    pin(monkeypatch, sdist)
    first = converter_dir(str(sdist), version=FAKE)
    monkeypatch.setenv("CODELEARN_PYPI_SIMPLE", UNREACHABLE)

    assert converter_dir(version=FAKE) == first


def test_a_half_extracted_cache_is_not_used(monkeypatch):
    write_converter(cache_path(FAKE))  # everything but the COMPLETE marker
    monkeypatch.setenv("CODELEARN_PYPI_SIMPLE", UNREACHABLE)

    with pytest.raises(CodelearnError, match="Could not download"):
        converter_dir(version=FAKE)


def test_a_cache_from_another_sdist_than_the_pinned_one_is_not_used(tmp_path, monkeypatch):
    sdist = make_sdist(tmp_path / f"{TOP}.tar.gz")
    pin(monkeypatch, sdist)
    converter_dir(str(sdist), version=FAKE)
    pin(monkeypatch, sdist, "d" * 64)  # e.g. a cache filled by hand, or an older pin
    monkeypatch.setenv("CODELEARN_PYPI_SIMPLE", UNREACHABLE)

    with pytest.raises(CodelearnError, match="Could not download"):
        converter_dir(version=FAKE)


def test_a_damaged_local_sdist_is_reported(tmp_path):
    broken = tmp_path / f"{TOP}.tar.gz"
    broken.write_bytes(b"not a tarball")

    with pytest.raises(CodelearnError, match="Could not read"):
        converter_dir(str(broken), version=FAKE)


def test_a_local_sdist_that_does_not_match_its_pin_is_refused(tmp_path, monkeypatch):
    sdist = make_sdist(tmp_path / f"{TOP}.tar.gz")
    pin(monkeypatch, sdist, "0" * 64)

    with pytest.raises(CodelearnError, match="expected SHA-256 0000") as caught:
        converter_dir(str(sdist), version=FAKE)

    assert "pip download --no-deps --no-binary :all: llama-cpp-python==9.9.9" in caught.value.fix
    assert sdist.exists()  # the user's own file is left alone
    assert not converters_root().exists() or not any(converters_root().iterdir())


def test_a_local_sdist_of_another_version_is_refused(tmp_path):
    sdist = make_sdist(tmp_path / "llama_cpp_python-9.9.8.tar.gz", version="9.9.8")

    with pytest.raises(CodelearnError, match="is llama-cpp-python 9.9.8, but 9.9.9 is installed"):
        converter_dir(str(sdist), version=FAKE)


def test_a_tar_member_with_dot_dot_is_never_written_outside(tmp_path, monkeypatch):
    # Five levels up from <cache>/converters/<staging>/conversion/ is the tests' base folder.
    escape = tarfile.TarInfo(f"{TOP}/vendor/llama.cpp/conversion/" + "../" * 5 + "escaped.py")
    escape.size = len(b"boom\n")
    sdist = make_sdist(tmp_path / f"{TOP}.tar.gz", extra=[(escape, "boom\n")])
    pin(monkeypatch, sdist)
    base = Path(os.environ["CODELEARN_HOME"]).parent

    with pytest.raises(CodelearnError, match="unsafe path"):
        converter_dir(str(sdist), version=FAKE)

    assert not list(base.rglob("escaped.py"))
    assert not any(converters_root().iterdir())  # the staging folder is gone too


@pytest.mark.parametrize("layout", ["converter folder", "sdist root"])
def test_a_local_folder_is_used_in_place(tmp_path, layout):
    root = tmp_path / TOP
    folder = root if layout == "converter folder" else root / "vendor" / "llama.cpp"
    write_converter(folder)

    assert converter_dir(str(root), version=FAKE) == folder


def test_a_local_folder_without_a_converter_is_refused(tmp_path):
    with pytest.raises(CodelearnError, match="holds no llama.cpp converter") as caught:
        converter_dir(str(tmp_path), version=FAKE)
    assert "converter_path" in caught.value.fix


# -- downloading -------------------------------------------------------------------------------

def test_download_from_the_index_verifies_extracts_and_cleans_up(tmp_path, index, caplog):
    sdist = make_sdist(tmp_path / f"{TOP}.tar.gz")
    index.publish(sdist, sha256_of(sdist))
    seen: list[tuple[int, int | None]] = []

    with caplog.at_level(logging.WARNING, logger="codelearn.models.converter"):
        found = converter_dir(version=FAKE, progress=lambda done, total: seen.append((done, total)))

    assert (found / "COMPLETE").read_text().strip() == sha256_of(sdist)
    assert relative_files(found) == {*CONVERTER_FILES, "COMPLETE"}
    assert seen[-1] == (sdist.stat().st_size, sdist.stat().st_size)
    assert "not pinned" in caplog.text  # 9.9.9 trusted the index's hash, and says so
    assert [p.name for p in converters_root().iterdir()] == [found.name]  # tarball removed


def test_a_download_that_does_not_match_the_index_hash_leaves_nothing(tmp_path, index):
    sdist = make_sdist(tmp_path / f"{TOP}.tar.gz")
    index.publish(sdist, "f" * 64)

    with pytest.raises(CodelearnError, match="corrupt"):
        converter_dir(version=FAKE)

    assert not any(converters_root().iterdir())


def test_the_pin_wins_over_the_index_hash(tmp_path, index, monkeypatch):
    sdist = make_sdist(tmp_path / f"{TOP}.tar.gz")
    index.publish(sdist, sha256_of(sdist))  # the index agrees with the file...
    pin(monkeypatch, sdist, "e" * 64)  # ...but codelearn pinned another one

    with pytest.raises(CodelearnError, match="corrupt"):
        converter_dir(version=FAKE)
    assert not any(converters_root().iterdir())


def test_an_index_without_a_hash_is_refused_for_an_unpinned_version(tmp_path, index):
    sdist = make_sdist(tmp_path / f"{TOP}.tar.gz")
    index.publish(sdist, None)

    with pytest.raises(CodelearnError, match="lists no SHA-256"):
        converter_dir(version=FAKE)


def test_offline_the_download_fails_at_once_with_the_manual_fix(monkeypatch):
    monkeypatch.setenv("CODELEARN_PYPI_SIMPLE", UNREACHABLE)

    with pytest.raises(CodelearnError, match="Could not download") as caught:
        converter_dir(version="0.3.36")

    assert ("pip download --no-deps --no-binary :all: llama-cpp-python==0.3.36"
            in caught.value.fix)
    assert "converter_path = '/path/to/it'" in caught.value.fix


# -- running -----------------------------------------------------------------------------------

@needs_converter_modules
def test_run_convert_hf_writes_the_outfile_with_the_hub_switched_off(tmp_path, monkeypatch):
    converter = write_converter(tmp_path / "converter")
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    monkeypatch.setenv("NO_LOCAL_GGUF", "1")  # would make the script import PyPI's gguf

    out = run_convert_hf(model, tmp_path / "out" / "model.gguf", "f32", converter=converter)

    written = json.loads(out.read_text())
    assert written["model"] == str(model.resolve())
    assert written["outtype"] == "f32"
    assert written["env"] == {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                              "NO_LOCAL_GGUF": None, "PYTHONUNBUFFERED": "1"}
    assert not out.with_suffix(".partial").exists()


@needs_converter_modules
def test_run_convert_lora_always_passes_the_base(tmp_path):
    converter = write_converter(tmp_path / "converter")
    adapter, base = tmp_path / "adapter", tmp_path / "base"
    for folder, name in ((adapter, "adapter_config.json"), (base, "config.json")):
        folder.mkdir()
        (folder / name).write_text("{}")

    out = run_convert_lora(adapter, base, tmp_path / "adapter.gguf", converter=converter)

    written = json.loads(out.read_text())
    assert written["base"] == str(base.resolve())
    assert written["lora_path"] == str(adapter.resolve())
    assert written["outtype"] == "f16"


@needs_converter_modules
def test_a_failing_conversion_shows_the_tail_of_its_output(tmp_path):
    converter = write_converter(tmp_path / "converter", convert_hf_to_gguf=FAILING_HF)
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    log = tmp_path / "logs" / "convert.log"

    with pytest.raises(CodelearnError) as caught:
        run_convert_hf(model, tmp_path / "model.gguf", converter=converter, log_file=log)

    message = caught.value.message
    assert "RuntimeError: BPE pre-tokenizer was not recognized" in message
    assert "progress line 29" in message and "progress line 0\n" not in message
    assert "tokenizer" in caught.value.fix and str(log) in caught.value.fix
    assert "progress line 0\n" in log.read_text()  # the whole output is kept in the log
    assert not list(tmp_path.glob("model.*"))


@needs_converter_modules
def test_a_conversion_past_its_timeout_is_stopped(tmp_path):
    converter = write_converter(tmp_path / "converter", convert_hf_to_gguf=SLOW_HF)
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")

    with pytest.raises(CodelearnError, match="did not finish within 1 s"):
        run_convert_hf(model, tmp_path / "model.gguf", converter=converter, timeout=1)


def test_a_missing_converter_module_names_the_extra():
    with pytest.raises(MissingExtraError, match="no-such-package") as caught:
        require_modules((("json", "json"), ("codelearn_no_such_module", "no-such-package")))
    assert "codelearn[train]" in caught.value.fix


def test_an_unknown_outtype_is_refused_before_running(tmp_path):
    with pytest.raises(CodelearnError, match="'q4_k_m' is not an output type"):
        run_convert_hf(tmp_path, tmp_path / "m.gguf", "q4_k_m", converter=tmp_path)


# -- the real converter ------------------------------------------------------------------------

def test_the_real_converter_turns_a_tiny_llama_into_a_gguf_llama_cpp_reads(
        real_converter, tmp_path):
    import llama_cpp
    import numpy as np
    import sentencepiece
    import torch
    from tinyhf import IM_END, IM_START, SAMPLE, build_tiny_hf_llama
    from transformers import AutoModelForCausalLM

    model = build_tiny_hf_llama(tmp_path / "hf")
    out = run_convert_hf(model, tmp_path / "tiny.f32.gguf", "f32", converter=real_converter,
                         log_file=tmp_path / "convert.log")

    vocab = llama_cpp.Llama(model_path=str(out), vocab_only=True, verbose=False)
    ids = vocab.tokenize(SAMPLE.encode(), add_bos=False)
    spm = sentencepiece.SentencePieceProcessor(model_file=str(model / "tokenizer.model"))
    assert ids == spm.encode(SAMPLE)  # the same tokens as the tokenizer the model trains with
    assert vocab.detokenize(ids).decode() == SAMPLE
    chat = vocab.tokenize(b"<|im_start|>user\nhi<|im_end|>", add_bos=False, special=True)
    assert chat[0] == IM_START and chat[-1] == IM_END
    assert vocab.metadata["tokenizer.chat_template"].startswith("{% for message in messages %}")

    # The weights arrive intact: llama.cpp's logits match transformers' on the same tokens.
    llm = llama_cpp.Llama(model_path=str(out), n_ctx=64, n_threads=1, logits_all=True,
                          verbose=False)
    llm.eval(ids[:16])
    hf = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
    with torch.no_grad():
        expected = hf(torch.tensor([ids[:16]])).logits[0].numpy()
    np.testing.assert_allclose(np.asarray(llm.scores[:16]), expected, atol=1e-3)
