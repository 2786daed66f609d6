"""Download model files from the Hugging Face hub (or any HTTP(S) URL), resumable and verified.

    url = hub_url("Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF", "qwen2.5-coder-0.5b-instruct-q8_0.gguf")
    got = download(url, models_dir / "qwen2.5-coder-0.5b-instruct-q8_0.gguf", progress=show)

Decisions, so that they can be argued with:
- Standard library only (urllib), so pulling a model needs no extra; urllib also honours the
  usual `https_proxy` / `no_proxy` variables.
- Bytes go to `<dest>.part`; only a verified file is renamed onto `dest`. An interrupted
  download keeps the .part and the next call asks for the rest with `Range`. A checksum or size
  mismatch deletes it, because resuming a wrong prefix can never succeed.
- The expected SHA-256 is the caller's, else the hub's own (`X-Linked-Etag` on the resolve
  response, else a 64-hex `ETag` on the final one), else none: the computed hash is returned.
- Connection failures are reported at once and never retried, so an offline machine gets its
  answer in one connect attempt. `timeout` bounds each connect and each read; the name lookup
  is the system's (it fails fast when there is no network at all).
- `$HF_TOKEN` is sent only to the hub's own host, so a token is never handed to an arbitrary
  URL; any token is dropped when a redirect leaves the host it was meant for (the hub sends
  file bodies from a CDN).
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import shutil
import socket
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import quote, urlsplit

from codelearn import __version__
from codelearn.errors import CodelearnError

logger = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "https://huggingface.co"
CHUNK_BYTES = 1 << 20
MAX_REDIRECTS = 5
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "CODELEARN_OFFLINE")

Progress = Callable[[int, "int | None"], None]

_SHA256 = re.compile(r"[0-9a-f]{64}")
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)")
_TRUE = {"1", "true", "yes", "on"}
_UNREACHABLE_FIX = ("Connect to the internet and run it again, "
                    "or download the .gguf yourself and use `--model PATH`.")
_RESUME_FIX = "Run the command again: the download resumes where it stopped."


@dataclass(frozen=True)
class Downloaded:
    """A verified file on disk."""

    path: Path
    sha256: str
    size: int
    resumed_from: int  # bytes of an earlier .part that this call kept (0 when it started over)


@dataclass(frozen=True)
class _Reply:
    """What the server answered: a body to read from `start`, or None for 416 (nothing left)."""

    response: http.client.HTTPResponse | None
    start: int
    total: int | None
    hub_sha256: str | None


def hub_url(repo: str, filename: str, revision: str = "main") -> str:
    """The URL of `filename` in the hub repository `repo` at `revision`."""
    return f"{_endpoint()}/{repo}/resolve/{quote(revision, safe='')}/{quote(filename)}"


def download(url: str, dest: Path, *, sha256: str | None = None,
             progress: Progress | None = None, token: str | None = None,
             timeout: float = 15.0) -> Downloaded:
    """Download `url` to `dest`, resuming `<dest>.part` and checking size and SHA-256."""
    _refuse_if_offline(url)
    _check_url(url)
    pinned = _check_sha256(sha256)
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    part.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.exists() else 0
    reply = _open(url, have, token if token is not None else _env_token(url), timeout)
    expected = (pinned, "pinned") if pinned else (reply.hub_sha256, "from the hub")
    if reply.response is None:
        if reply.total is not None and reply.total != have:
            # The .part is longer than the file: it is not a prefix of it, so start over.
            logger.info("discarding %s: %d bytes, the server has %d", part, have, reply.total)
            part.unlink()
            return download(url, dest, sha256=sha256, progress=progress, token=token,
                            timeout=timeout)
        hasher = hash_file(part)
        _report(progress, have, have)
        got = _finish(part, dest, hasher, have, have, expected)
        return Downloaded(dest, got, have, resumed_from=have)
    with reply.response:
        _check_disk_space(part.parent, reply, reclaimable=0 if reply.start else have)
        hasher = hash_file(part) if reply.start else hashlib.sha256()
        size = _stream(reply, part, hasher, progress)
    got = _finish(part, dest, hasher, size, reply.total, expected)
    return Downloaded(dest, got, size, resumed_from=reply.start)


# -- the request ---------------------------------------------------------------------------

class _Redirects(urllib.request.HTTPRedirectHandler):
    """Follows a few redirects, drops Authorization when the origin changes, keeps the hub hash."""

    max_redirections = MAX_REDIRECTS

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url  # the URL asked for last, for error messages
        self.hub_sha256: str | None = None

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        self.hub_sha256 = self.hub_sha256 or _linked_sha256(headers)
        if urlsplit(newurl).scheme.lower() not in ("http", "https"):
            return None
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None:
            if _origin(new.full_url) != _origin(req.full_url):
                new.remove_header("Authorization")
            logger.debug("redirect %d to %s", code, new.full_url)
            self.url = new.full_url
        return new


def _open(url: str, have: int, token: str | None, timeout: float) -> _Reply:
    """Send the request (asking for bytes after `have`) and classify the answer."""
    headers = {"User-Agent": f"codelearn/{__version__}", "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    redirects = _Redirects(url)
    opener = urllib.request.build_opener(redirects)
    logger.info("GET %s%s", url, f" from byte {have}" if have else "")
    try:
        response = opener.open(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as error:
        with error:
            if error.code == 416 and have:
                hub = redirects.hub_sha256 or _hub_sha256(error.headers)
                return _Reply(None, have, _unsatisfied_total(error.headers), hub)
            raise _http_error(error.code, str(error.reason), url) from None
    except (OSError, http.client.HTTPException) as error:  # URLError is an OSError
        raise _unreachable(redirects.url, error, timeout) from None
    hub = redirects.hub_sha256 or _hub_sha256(response.headers)
    try:
        start, total = _body_range(response, have)
    except CodelearnError:
        response.close()
        raise
    return _Reply(response, start, total, hub)


def _body_range(response: http.client.HTTPResponse, have: int) -> tuple[int, int | None]:
    """Where the body starts in the file, and the file's full size when the server says."""
    length = _int_or_none(response.headers.get("Content-Length"))
    if response.status != 206:
        if have:
            logger.info("the server ignored the range: starting over")
        return 0, length
    match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
    if not match or int(match.group(1)) != have:
        raise CodelearnError(
            f"The server sent a part of {response.url} that was not asked for "
            f"(Content-Range: {response.headers.get('Content-Range')!r}).",
            "Delete the .part file next to the model and run the command again.")
    total = match.group(3)
    return have, int(total) if total != "*" else (have + length if length is not None else None)


# -- the body ------------------------------------------------------------------------------

def _stream(reply: _Reply, part: Path, hasher, progress: Progress | None) -> int:
    """Append the body to `part` (or write it afresh), hashing it; returns the size on disk."""
    done = reply.start
    _report(progress, done, reply.total)
    with part.open("ab" if reply.start else "wb") as out:
        while True:
            try:
                chunk = reply.response.read(CHUNK_BYTES)
            except (OSError, http.client.HTTPException) as error:
                raise _interrupted(part, done, reply.total, _describe(error)) from None
            if not chunk:
                return done
            try:
                out.write(chunk)
            except OSError as error:
                raise CodelearnError(
                    f"Could not write {part} ({error.strerror or error}).",
                    "Free some disk space and run the command again: "
                    "the download resumes where it stopped.") from None
            hasher.update(chunk)
            done += len(chunk)
            _report(progress, done, reply.total)


def _finish(part: Path, dest: Path, hasher, size: int, total: int | None,
            expected: tuple[str | None, str]) -> str:
    """Check size and hash, then move the .part onto `dest`; returns the SHA-256."""
    if total is not None and size < total:
        raise _interrupted(part, size, total, "the server closed the connection")
    if total is not None and size > total:
        part.unlink()
        raise CodelearnError(
            f"The download of {dest.name} is {size} bytes, the server said {total}; "
            "the partial file was deleted.", "Run the command again.")
    got = hasher.hexdigest()
    want, source = expected
    if want and got != want:
        part.unlink()
        raise CodelearnError(
            f"The download of {dest.name} is corrupt: expected SHA-256 {want} ({source}), "
            f"got {got}; the partial file was deleted.",
            "Run the command again; if it fails the same way, the file changed upstream: "
            "report it with both hashes.")
    os.replace(part, dest)
    logger.info("saved %s (%d bytes, sha256 %s)", dest, size, got)
    return got


def _check_disk_space(folder: Path, reply: _Reply, reclaimable: int) -> None:
    """Fail before the first byte when the rest of the file cannot fit."""
    if reply.total is None:
        return
    needed = reply.total - reply.start
    free = shutil.disk_usage(folder).free + reclaimable
    if needed > free:
        raise CodelearnError(
            f"Not enough disk space in {folder}: the model needs {_mib(needed)} more, "
            f"{_mib(free)} is free.",
            f"Free at least {_mib(needed - free)} on that disk and run the command again.")


def hash_file(path: Path, progress: Progress | None = None):
    """A sha256 object fed with the file's bytes (a part already on disk, an installed model)."""
    hasher = hashlib.sha256()
    total = path.stat().st_size
    done = 0
    with path.open("rb") as stream:
        while chunk := stream.read(CHUNK_BYTES):
            hasher.update(chunk)
            done += len(chunk)
            _report(progress, done, total)
    return hasher


def _report(progress: Progress | None, done: int, total: int | None) -> None:
    if progress is not None:
        progress(done, total)


# -- settings and headers -------------------------------------------------------------------

def _endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def _is_hub(url: str) -> bool:
    return _origin(url) == _origin(_endpoint())


def _env_token(url: str) -> str | None:
    """$HF_TOKEN, but only for the hub itself: it must not leak to another server."""
    return (os.environ.get("HF_TOKEN") or None) if _is_hub(url) else None


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or ""), parts.port or {"http": 80, "https": 443}.get(scheme)


def _refuse_if_offline(url: str) -> None:
    for name in OFFLINE_VARIABLES:
        if os.environ.get(name, "").strip().lower() in _TRUE:
            raise CodelearnError(
                f"Cannot download {url}: {name} is set, so codelearn stays offline.",
                f"Unset {name} to allow downloads, or download the .gguf yourself "
                "and use `--model PATH`.")


def _check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise CodelearnError(f"{url!r} is not an http(s) URL.",
                             "Give a hub model name or an https:// URL of a .gguf file.")


def _check_sha256(sha256: str | None) -> str | None:
    if sha256 is None:
        return None
    value = sha256.strip().lower()
    if not _SHA256.fullmatch(value):
        raise CodelearnError(f"{sha256!r} is not a SHA-256 checksum.",
                             "Give the 64 hexadecimal digits, or leave the checksum out.")
    return value


def _linked_sha256(headers) -> str | None:
    """The hub's hash of an LFS file, sent on the resolve response before the CDN redirect."""
    return _etag_sha256(headers.get("X-Linked-Etag"))


def _hub_sha256(headers) -> str | None:
    return _linked_sha256(headers) or _etag_sha256(headers.get("ETag"))


def _etag_sha256(value: str | None) -> str | None:
    """The ETag's value when it is a SHA-256 (other servers' ETags are not checksums)."""
    if not value:
        return None
    value = value.strip().removeprefix("W/").strip('"').lower()
    return value if _SHA256.fullmatch(value) else None


def _unsatisfied_total(headers) -> int | None:
    match = _UNSATISFIED_RANGE.match(headers.get("Content-Range", ""))
    return int(match.group(1)) if match else None


def _int_or_none(value: str | None) -> int | None:
    return int(value) if value and value.strip().isdigit() else None


# -- errors --------------------------------------------------------------------------------

def _http_error(code: int, reason: str, url: str) -> CodelearnError:
    hub = _is_hub(url)
    if code in (401, 403) and hub:
        return CodelearnError(
            f"The hub refused access to {url} (HTTP {code}): the model is gated or private, "
            "or HF_TOKEN is missing or has no access to it.",
            "Accept the model's terms on its Hugging Face page, create a read token at "
            "https://huggingface.co/settings/tokens, set HF_TOKEN to it and run it again.")
    if code in (401, 403):
        return CodelearnError(f"The server refused access to {url} (HTTP {code}).",
                              "Check that the URL is public, or download the file yourself "
                              "and use `--model PATH`.")
    if code == 404:
        return CodelearnError(
            f"{url} was not found {'on the hub' if hub else 'on the server'} (HTTP 404).",
            "Check the repository, revision and file name (they are case-sensitive).")
    return CodelearnError(
        f"The server answered HTTP {code} ({reason}) for {url}.",
        "Run it again later; if it keeps failing, download the .gguf yourself "
        "and use `--model PATH`.")


def _unreachable(url: str, error: Exception, timeout: float) -> CodelearnError:
    reason = _describe(getattr(error, "reason", error), timeout)
    return CodelearnError(f"Cannot reach {urlsplit(url).hostname} ({reason}).", _UNREACHABLE_FIX)


def _interrupted(part: Path, done: int, total: int | None, reason: str) -> CodelearnError:
    of = f" of {_mib(total)}" if total is not None else ""
    return CodelearnError(
        f"The download stopped after {_mib(done)}{of} ({reason}); "
        f"{part.name} is kept.", _RESUME_FIX)


def _describe(reason: object, timeout: float | None = None) -> str:
    """A short human reason for a network failure."""
    if isinstance(reason, socket.gaierror):
        return f"name lookup failed: {reason.strerror or reason}"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, TimeoutError):
        return f"no answer within {timeout:g} s" if timeout is not None else "timed out"
    if isinstance(reason, ssl.SSLCertVerificationError):
        return f"TLS certificate check failed: {reason.verify_message}"
    if isinstance(reason, ssl.SSLError):
        return f"TLS error: {reason.reason or reason}"
    if isinstance(reason, ConnectionError):
        return "the connection was closed"
    if isinstance(reason, http.client.IncompleteRead):
        return "the connection was closed"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason) or type(reason).__name__


def _mib(size: int) -> str:
    return f"{size / (1 << 20):.1f} MiB"
