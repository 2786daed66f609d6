"""Model downloads against a real HTTP server on 127.0.0.1 (and `localhost` as a second host)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest

from codelearn.errors import CodelearnError
from codelearn.models import download as download_module
from codelearn.models.download import Downloaded, download, hub_url

DATA = os.urandom(300_000)
DATA_SHA = hashlib.sha256(DATA).hexdigest()
WRONG_SHA = "0" * 64


class ServerState:
    """What the test server serves, how it misbehaves, and what it was asked."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.files = {"/model.gguf": DATA}
        self.redirects: dict[str, str] = {}  # path -> Location
        self.status: dict[str, int] = {}  # path -> forced error status
        self.extra_headers: dict[str, dict[str, str]] = {}  # path -> headers
        self.ignore_range = False
        self.drop_after: int | None = None  # close the connection after this many body bytes, once
        self.requests: list[dict] = []

    def url(self, path: str = "/model.gguf", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        state: ServerState = self.server.state
        path = urlsplit(self.path).path
        seen = {"path": path, "host": self.headers.get("Host", "").split(":")[0],
                "range": self.headers.get("Range"), "auth": self.headers.get("Authorization"),
                "status": None, "sent": 0}
        state.requests.append(seen)
        extra = state.extra_headers.get(path, {})
        if path in state.redirects:
            return self.answer(seen, 302, b"", {"Location": state.redirects[path], **extra})
        if path in state.status or path not in state.files:
            return self.answer(seen, state.status.get(path, 404), b"no", extra)
        body = state.files[path]
        headers = {"ETag": '"5d41-not-a-checksum"', **extra}
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if not match or state.ignore_range:
            return self.answer(seen, 200, body, headers)
        start = int(match.group(1))
        if start >= len(body):
            return self.answer(seen, 416, b"", {"Content-Range": f"bytes */{len(body)}"})
        headers["Content-Range"] = f"bytes {start}-{len(body) - 1}/{len(body)}"
        return self.answer(seen, 206, body[start:], headers)

    def answer(self, seen: dict, status: int, body: bytes, headers: dict[str, str]) -> None:
        state: ServerState = self.server.state
        seen["status"] = status
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if state.drop_after is not None and status in (200, 206):
            body, state.drop_after = body[:state.drop_after], None
            self.close_connection = True
        self.wfile.write(body)
        self.wfile.flush()
        seen["sent"] = len(body)


@pytest.fixture(autouse=True)
def clean_network_env(monkeypatch):
    for name in ("HF_TOKEN", "HF_HUB_OFFLINE", "HF_ENDPOINT", "http_proxy", "https_proxy",
                 "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.state = ServerState(httpd.server_address[1])
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02},
                              daemon=True)
    thread.start()
    yield httpd.state
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def dest(tmp_path):
    return tmp_path / "models" / "tiny.gguf"


def part_of(dest):
    return dest.with_name(dest.name + ".part")


def bodies(state: ServerState) -> list[dict]:
    return [seen for seen in state.requests if seen["status"] in (200, 206)]


def test_hub_url_uses_the_endpoint(monkeypatch):
    assert hub_url("org/Model-GGUF", "m-q4.gguf") == (
        "https://huggingface.co/org/Model-GGUF/resolve/main/m-q4.gguf")
    monkeypatch.setenv("HF_ENDPOINT", "http://mirror.example/")
    assert hub_url("org/m", "sub/x.gguf", "refs/pr/1") == (
        "http://mirror.example/org/m/resolve/refs%2Fpr%2F1/sub/x.gguf")


def test_full_download_checks_the_pinned_sha(server, dest):
    got = download(server.url(), dest, sha256=DATA_SHA.upper())
    assert got == Downloaded(dest, DATA_SHA, len(DATA), resumed_from=0)
    assert dest.read_bytes() == DATA
    assert not part_of(dest).exists()
    assert [seen["range"] for seen in server.requests] == [None]


def test_resume_asks_only_for_the_rest(server, dest):
    dest.parent.mkdir(parents=True)
    part_of(dest).write_bytes(DATA[:100_000])
    got = download(server.url(), dest, sha256=DATA_SHA)
    assert server.requests[0]["range"] == "bytes=100000-"
    assert server.requests[0]["status"] == 206
    assert server.requests[0]["sent"] == len(DATA) - 100_000
    assert (got.resumed_from, got.size, got.sha256) == (100_000, len(DATA), DATA_SHA)
    assert dest.read_bytes() == DATA


def test_server_ignoring_range_starts_over(server, dest):
    dest.parent.mkdir(parents=True)
    part_of(dest).write_bytes(b"stale bytes that are not the model" * 100)
    server.ignore_range = True
    got = download(server.url(), dest)
    assert server.requests[0]["range"] is not None and server.requests[0]["status"] == 200
    assert (got.resumed_from, got.sha256) == (0, DATA_SHA)
    assert dest.read_bytes() == DATA


def test_dropped_connection_keeps_the_part_and_the_next_call_finishes(server, dest):
    server.drop_after = 120_000
    with pytest.raises(CodelearnError) as caught:
        download(server.url(), dest, sha256=DATA_SHA)
    assert "resume" in caught.value.fix
    assert part_of(dest).read_bytes() == DATA[:120_000]
    assert not dest.exists()
    got = download(server.url(), dest, sha256=DATA_SHA)
    assert server.requests[-1]["range"] == "bytes=120000-"
    assert got.resumed_from == 120_000
    assert dest.read_bytes() == DATA


def test_a_complete_part_is_verified_when_the_server_says_416(server, dest):
    dest.parent.mkdir(parents=True)
    part_of(dest).write_bytes(DATA)
    got = download(server.url(), dest, sha256=DATA_SHA)
    assert [seen["status"] for seen in server.requests] == [416]
    assert (got.resumed_from, got.size) == (len(DATA), len(DATA))
    assert dest.read_bytes() == DATA and not part_of(dest).exists()


def test_pinned_sha_mismatch_deletes_everything(server, dest):
    with pytest.raises(CodelearnError) as caught:
        download(server.url(), dest, sha256=WRONG_SHA)
    assert WRONG_SHA in caught.value.message and DATA_SHA in caught.value.message
    assert "run the command again" in caught.value.fix.lower()
    assert not dest.exists() and not part_of(dest).exists()


@pytest.mark.parametrize("where", ["X-Linked-Etag on the redirect", "ETag on the file"])
def test_hub_checksum_mismatch_deletes_everything(server, dest, where):
    if where.startswith("X-Linked"):
        server.redirects["/resolve"] = "/model.gguf"
        server.extra_headers["/resolve"] = {"X-Linked-Etag": f'"{WRONG_SHA}"'}
        url = server.url("/resolve")
    else:
        server.extra_headers["/model.gguf"] = {"ETag": f'"{WRONG_SHA}"'}
        url = server.url()
    with pytest.raises(CodelearnError) as caught:
        download(url, dest)
    assert "from the hub" in caught.value.message and WRONG_SHA in caught.value.message
    assert not dest.exists() and not part_of(dest).exists()


def test_hub_checksum_that_matches_is_accepted(server, dest):
    server.redirects["/resolve"] = "/model.gguf"
    server.extra_headers["/resolve"] = {"X-Linked-Etag": f'"{DATA_SHA}"'}
    assert download(server.url("/resolve"), dest).sha256 == DATA_SHA


def test_unreachable_port_fails_fast(dest):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(CodelearnError) as caught:
        download(f"http://127.0.0.1:{port}/model.gguf", dest)
    assert time.monotonic() - started < 2  # a guard against hanging, not a benchmark
    assert caught.value.message == "Cannot reach 127.0.0.1 (connection refused)."
    assert "--model PATH" in caught.value.fix


def test_a_silent_server_times_out(dest):
    with socket.socket() as silent:  # accepts connections (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        started = time.monotonic()
        with pytest.raises(CodelearnError) as caught:
            download(f"http://127.0.0.1:{silent.getsockname()[1]}/m.gguf", dest, timeout=0.3)
    assert time.monotonic() - started < 2  # a guard against hanging, not a benchmark
    assert "no answer within 0.3 s" in caught.value.message


@pytest.mark.parametrize("variable", ["HF_HUB_OFFLINE", "CODELEARN_OFFLINE"])
def test_offline_makes_no_request(server, dest, monkeypatch, variable):
    monkeypatch.setenv(variable, "1")
    with pytest.raises(CodelearnError) as caught:
        download(server.url(), dest)
    assert variable in caught.value.message and "--model PATH" in caught.value.fix
    assert server.requests == []


def test_not_found_names_the_url(server, dest, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", server.url(""))
    url = hub_url("org/missing", "x.gguf")
    with pytest.raises(CodelearnError) as caught:
        download(url, dest)
    assert "not found on the hub" in caught.value.message and url in caught.value.message
    assert not part_of(dest).exists()


@pytest.mark.parametrize("status", [401, 403])
def test_refused_access_explains_gated_models(server, dest, monkeypatch, status):
    monkeypatch.setenv("HF_ENDPOINT", server.url(""))
    server.status["/org/gated/resolve/main/x.gguf"] = status
    with pytest.raises(CodelearnError) as caught:
        download(hub_url("org/gated", "x.gguf"), dest)
    assert "gated" in caught.value.message and f"HTTP {status}" in caught.value.message
    assert "HF_TOKEN" in caught.value.fix


def test_token_follows_same_host_redirects_only(server, dest):
    server.redirects["/same"] = "/model.gguf"
    server.redirects["/cross"] = server.url(host="localhost")
    download(server.url("/same"), dest, token="secret")
    download(server.url("/cross"), dest, token="secret")
    seen = [(s["path"], s["host"], s["auth"]) for s in server.requests]
    assert seen == [
        ("/same", "127.0.0.1", "Bearer secret"), ("/model.gguf", "127.0.0.1", "Bearer secret"),
        ("/cross", "127.0.0.1", "Bearer secret"), ("/model.gguf", "localhost", None),
    ]


def test_hf_token_goes_to_the_hub_only(server, dest, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_env")
    monkeypatch.setenv("HF_ENDPOINT", server.url(""))
    download(server.url(), dest)
    download(server.url(host="localhost"), dest)
    assert [s["auth"] for s in server.requests] == ["Bearer hf_env", None]


def test_progress_is_monotonic_and_ends_at_the_size(server, dest, monkeypatch):
    monkeypatch.setattr(download_module, "CHUNK_BYTES", 16 * 1024)
    dest.parent.mkdir(parents=True)
    part_of(dest).write_bytes(DATA[:50_000])
    calls = []
    download(server.url(), dest, progress=lambda done, total: calls.append((done, total)))
    done = [d for d, _ in calls]
    assert len(calls) > 10 and done == sorted(done)
    assert calls[0] == (50_000, len(DATA)) and calls[-1] == (len(DATA), len(DATA))


def test_not_enough_disk_space_fails_before_writing(server, dest, monkeypatch):
    monkeypatch.setattr(download_module.shutil, "disk_usage",
                        lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(CodelearnError) as caught:
        download(server.url(), dest)
    assert "Not enough disk space" in caught.value.message
    assert not part_of(dest).exists() and not dest.exists()


def test_ctrl_c_keeps_the_part_for_the_next_call(server, dest, monkeypatch):
    monkeypatch.setattr(download_module, "CHUNK_BYTES", 16 * 1024)

    def interrupt(done, total):
        if done >= 64 * 1024:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        download(server.url(), dest, progress=interrupt)
    kept = part_of(dest).read_bytes()
    assert len(kept) == 64 * 1024 and DATA.startswith(kept)
    got = download(server.url(), dest, sha256=DATA_SHA)
    assert got.resumed_from == 64 * 1024 and dest.read_bytes() == DATA


def test_a_part_longer_than_the_file_is_discarded(server, dest):
    dest.parent.mkdir(parents=True)
    part_of(dest).write_bytes(DATA + b"extra")
    got = download(server.url(), dest, sha256=DATA_SHA)
    assert [seen["status"] for seen in server.requests] == [416, 200]
    assert got.resumed_from == 0 and dest.read_bytes() == DATA
