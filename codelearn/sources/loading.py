"""Read one listed file into indexable text: filters first, then secret redaction."""

from __future__ import annotations

import hashlib
import logging

from codelearn.sources import filters
from codelearn.sources.records import FileEntry, LoadedFile, Skip, Source
from codelearn.sources.secrets import redact_secrets, secret_file_pattern

log = logging.getLogger(__name__)


def hash_bytes(data: bytes) -> str:
    """The git blob sha1 of data, equal to what `git hash-object` prints."""
    digest = hashlib.sha1(b"blob %d\0" % len(data))
    digest.update(data)
    return digest.hexdigest()


def load_file(source: Source, entry: FileEntry, *, max_bytes: int) -> LoadedFile | Skip:
    """The file's text with LF line ends and secrets redacted, or why it was skipped."""
    path = entry.path
    if (pattern := secret_file_pattern(path)) is not None:
        return Skip(path, "ignored-secret-file", f"matches {pattern}")
    if filters.binary_by_name(path):
        return Skip(path, "binary", "by file extension")
    if (why := filters.generated_by_name(path)) is not None:
        return Skip(path, "minified", why)
    try:
        with open(source.root / path, "rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        return Skip(path, "unreadable", f"{type(exc).__name__}: {exc.strerror or exc}")
    if len(data) > max_bytes:
        return Skip(path, "too-large", f"over {max_bytes} bytes")
    if filters.wide_unicode(data):
        return Skip(path, "encoding", "UTF-16/32 text is not supported")
    if filters.binary_by_content(data):
        return Skip(path, "binary", "NUL byte in the first 8 KiB")
    text, why = filters.decode_text(data)
    if text is None:
        if filters.mostly_binary(data):
            return Skip(path, "binary", "not text")
        return Skip(path, "encoding", why)
    text = text.replace("\r\n", "\n")
    if (why := filters.minified_reason(path, text)) is not None:
        return Skip(path, "minified", why)
    text, redactions = redact_secrets(text, path)
    if redactions:
        log.debug("%s: redacted %d secret value(s)", path, len(redactions))
    return LoadedFile(text=text, content_hash=hash_bytes(data), redactions=redactions)
