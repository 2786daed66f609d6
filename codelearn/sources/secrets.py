"""Keep secrets out of the index: files that are never read, values that are redacted.

Secret *files* are recognised by name alone, so their bytes are never opened. Secret
*values* in otherwise indexable text are replaced by `«redacted:KIND»` before the text
leaves `load_file`; replacements never add or remove a line break, so line numbers in
the index still point at the right lines of the file on disk.
"""

from __future__ import annotations

import fnmatch
import math
import re
from bisect import bisect_right
from collections import Counter

from codelearn.sources.records import Redaction

# Matched case-insensitively against the file name (or, with a "/", the path's tail).
SECRET_FILE_PATTERNS: tuple[str, ...] = (
    ".env",
    ".env.*",
    "*.env",
    "*.pem",
    "*.key",
    "*.ppk",
    "id_rsa*",
    "id_ed25519*",
    "id_ecdsa*",
    "id_dsa*",
    "*.p12",
    "*.pfx",
    "*.keystore",
    "*.jks",
    "*.kdbx",
    "*.tfvars",
    "*.tfvars.json",
    "*.tfstate",
    "*.tfstate.backup",
    ".npmrc",
    ".pypirc",
    ".netrc",
    "_netrc",
    ".pgpass",
    ".my.cnf",
    ".git-credentials",
    ".htpasswd",
    ".dockercfg",
    "credentials",
    "credentials.json",
    "*credentials*.json",
    "client_secret*.json",
    "*service-account*.json",
    "*service_account*.json",
    "secrets.yml",
    "secrets.yaml",
    "secrets.json",
    "secrets.toml",
    ".docker/config.json",
    ".kube/config",
    "kubeconfig",
    ".ssh/*",
)
# Templates that document the variables without holding their values.
SECRET_FILE_ALLOWED: tuple[str, ...] = (
    ".env.example",
    ".env.sample",
    ".env.template",
    ".env.dist",
    "*.env.example",
    "*.env.sample",
    "*.env.template",
)

def _alternation(patterns: list[str], prefix: str = "") -> re.Pattern[str]:
    # One regex for the whole list: one match per file instead of one per pattern.
    alternatives = (f"(?P<p{i}>{prefix}{fnmatch.translate(p)})" for i, p in enumerate(patterns))
    return re.compile("|".join(alternatives))


_NAME_LIST = [p for p in SECRET_FILE_PATTERNS if "/" not in p]
_PATH_LIST = [p for p in SECRET_FILE_PATTERNS if "/" in p]
_NAME_RE = _alternation(_NAME_LIST)
_PATH_RE = _alternation(_PATH_LIST, prefix=r"(?:.*/)?")
_ALLOWED_RE = _alternation(list(SECRET_FILE_ALLOWED))
_PATH_DIRS = tuple({p.rpartition("/")[0] + "/" for p in _PATH_LIST})


def secret_file_pattern(path: str) -> str | None:
    """The deny-list pattern that a (posix, relative) path matches, or None."""
    lowered = path.lower()
    name = lowered.rpartition("/")[2]
    if (m := _NAME_RE.match(name)) is not None:
        if _ALLOWED_RE.match(name):
            return None
        return _NAME_LIST[int(m.lastgroup[1:])]  # type: ignore[index]
    if any(d in lowered for d in _PATH_DIRS) and (m := _PATH_RE.match(lowered)) is not None:
        return _PATH_LIST[int(m.lastgroup[1:])]  # type: ignore[index]
    return None


# --- secret values ---------------------------------------------------------------

_PLACEHOLDER = "«redacted:{}»"

# A whole block, or (cut off, no END marker) the base64 lines after BEGIN. The body may
# hold PEM headers and, inside a string literal, quotes and backslash-n escapes; code that
# only looks for the markers (it has parentheses or dots) does not match.
_PRIVATE_KEY = re.compile(
    r"-----BEGIN[A-Z0-9 ]{0,30} PRIVATE KEY(?: BLOCK)?-----"
    r"(?:[A-Za-z0-9+/=\s\\\"',:\-]{0,20000}?-----END[A-Z0-9 ]{0,30} PRIVATE KEY(?: BLOCK)?-----"
    r"|(?:(?:\\n|\n)[ \t\"']*[A-Za-z0-9+/=]{16,}[ \t\"']*)+)"
)

_GITHUB_PREFIXES = ("ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_")
# Tokens whose shape alone says what they are, each with the literals that any match
# contains: a plain substring test is far cheaper than running the regex over the text.
_TOKENS: tuple[tuple[str, tuple[str, ...], re.Pattern[str]], ...] = tuple(
    (kind, literals, re.compile(pattern))
    for kind, literals, pattern in (
        ("aws-access-key", ("AKIA", "ASIA", "ABIA", "ACCA"), r"A(?:KIA|SIA|BIA|CCA)[0-9A-Z]{16}\b"),
        (
            "github-token",
            _GITHUB_PREFIXES,
            r"(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b",
        ),
        ("gitlab-token", ("glpat-",), r"glpat-[A-Za-z0-9_\-]{20,}\b"),
        ("slack-token", ("xox",), r"xox[abposre]-[A-Za-z0-9\-]{10,}\b"),
        ("slack-webhook", ("hooks.slack.com",), r"hooks\.slack\.com/services/T[A-Za-z0-9_/]{20,}"),
        ("stripe-key", ("k_live_", "k_test_"), r"[sr]k_(?:live|test)_[A-Za-z0-9]{16,}\b"),
        ("google-api-key", ("AIza",), r"AIza[0-9A-Za-z_\-]{35}\b"),
        ("anthropic-api-key", ("sk-ant-",), r"sk-ant-[A-Za-z0-9_\-]{20,}"),
        ("openai-api-key", ("sk-",), r"sk-(?!ant-)(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{32,}"),
        ("huggingface-token", ("hf_",), r"hf_[A-Za-z0-9]{34,}\b"),
        ("npm-token", ("npm_",), r"npm_[A-Za-z0-9]{36}\b"),
        ("pypi-token", ("pypi-AgE",), r"pypi-AgE[A-Za-z0-9_\-]{50,}"),
        ("jwt", ("eyJ",), r"eyJ[A-Za-z0-9_\-]{10,}\.eyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{10,}"),
    )
)

# Names that say "the value is a secret", found with str.find in the lowered text.
_SECRET_STEMS = (
    "passw",
    "passphrase",
    "pwd",
    "secret",
    "token",
    "apikey",
    "api_key",
    "api-key",
    "accesskey",
    "access_key",
    "authkey",
    "auth_key",
    "privatekey",
    "private_key",
    "credential",
)
_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
# What follows a secret-looking name: `= "v"`, `: v`, `": "v"`, `:= "v"`, `=> 'v'`, with
# an optional type annotation; an unquoted value only when it ends the line (env, yaml).
_VALUE_RE = re.compile(
    r"[\"']?(?:[ \t]*:[ \t]*[A-Za-z_][\w\[\]., |]*?(?=[ \t]*=))?"
    r"[ \t]*(?:=>|:=|:|(?<![=!<>])=(?!=))[ \t]*"
    r"(?:[rbuf]{0,2}(?P<q>[\"'`])(?P<quoted>[^\"'`\n]{12,200})(?P=q)"
    r"|(?P<bare>[A-Za-z0-9+/=_\-.!@#$%^&*~]{12,200})[ \t]*(?:$|(?=#|//)))",
    re.MULTILINE,
)
_URL_CREDENTIALS_RE = re.compile(r"://[^\s:/@\"'<>]+:(?P<pw>[^\s@/\"'<>]{6,})@")

_PLACEHOLDER_WORDS = (
    "changeme",
    "change_me",
    "change-me",
    "example",
    "placeholder",
    "your",
    "xxx",
    "***",
    "...",
    "dummy",
    "fake",
    "sample",
    "redacted",
    "todo",
    "replace",
    "insert",
    "secret",
    "password",
    "token",
    "test",
    "mock",
)
_NOT_RANDOM_CHARS = frozenset(" \t[](){}<>\\|,;")
_WORD_RE = re.compile(r"[A-Z]?[a-z]{3,}")


def redact_secrets(text: str, path: str) -> tuple[str, list[Redaction]]:
    """Replace secret values in text by placeholders; line count is unchanged."""
    spans: list[tuple[int, int, str]] = []
    if "PRIVATE KEY" in text:
        spans += [(m.start(), m.end(), "private-key") for m in _PRIVATE_KEY.finditer(text)]
    for kind, literals, regex in _TOKENS:
        if any(literal in text for literal in literals):
            spans += [
                (m.start(), m.end(), kind)
                for m in regex.finditer(text)
                if _starts_word(text, m.start()) and "EXAMPLE" not in m.group().upper()
            ]
    spans += _assignment_spans(text)
    if "://" in text and "@" in text:
        for m in _URL_CREDENTIALS_RE.finditer(text):
            if not _url_placeholder(m.group("pw")):
                spans.append((m.start("pw"), m.end("pw"), "url-credentials"))
    if not spans:
        return text, []
    return _apply(text, path, spans)


_URL_PLACEHOLDERS = frozenset({"password", "passwd", "pass", "pwd", "secret", "changeme", "change_me",
                               "example", "placeholder", "redacted", "xxxxxx", "yourpassword"})


def _url_placeholder(password: str) -> bool:
    """A password in a URL is redacted unless it is plainly not one: a template variable
    (`${DB_PW}`, `{pw}`, `%(pw)s`, `<password>`), stars, or a stock word. Any real-looking
    value is a credential, however wordy (`SuperSecretPgPw42`)."""
    if password[0] in "$%{<[" or set(password) <= {"*", "x", "X", "."}:
        return True
    return password.lower() in _URL_PLACEHOLDERS


def _starts_word(text: str, start: int) -> bool:
    # The token regexes start with a literal (fast to scan for) instead of a \b.
    return start == 0 or not (text[start - 1].isalnum() or text[start - 1] == "_")


def _assignment_spans(text: str) -> list[tuple[int, int, str]]:
    lowered = text.lower()
    key_ends: set[int] = set()
    for stem in _SECRET_STEMS:
        pos = lowered.find(stem)
        while pos >= 0:
            start, end = pos, pos + len(stem)
            while start > 0 and text[start - 1] in _KEY_CHARS:
                start -= 1
            while end < len(text) and text[end] in _KEY_CHARS:
                end += 1
            if "public" not in lowered[start:end]:  # publicKeyToken, public_key
                key_ends.add(end)
            pos = lowered.find(stem, end)
    spans = []
    for end in sorted(key_ends):
        m = _VALUE_RE.match(text, end)
        if m is None:
            continue
        group = "quoted" if m.group("quoted") is not None else "bare"
        if looks_random(m.group(group)):
            spans.append((m.start(group), m.end(group), "generic-secret-assignment"))
    return spans


def looks_random(value: str) -> bool:
    """Whether a value looks like a real secret rather than a word, name or placeholder."""
    if len(value) < 12 or _NOT_RANDOM_CHARS.intersection(value):
        return False
    lowered = value.lower()
    if any(word in lowered for word in _PLACEHOLDER_WORDS):
        return False
    if value.startswith(("$", "%", "/", "./", "~/")) or "://" in value or "{{" in value:
        return False
    classes = sum(
        (
            any(c.islower() for c in value),
            any(c.isupper() for c in value),
            any(c.isdigit() for c in value),
            any(not c.isalnum() for c in value),
        )
    )
    has_digit = any(c.isdigit() for c in value)
    if not has_digit or classes < 2 or (classes < 3 and len(value) < 16):
        return False
    return _entropy(value) >= 3.0 and not _wordy(value)


def _wordy(value: str) -> bool:
    # Type and file names (V1LocalObjectReference, not_exists_file_1123) are mostly
    # words; random tokens hardly ever hold a run of 3+ lowercase letters.
    in_words = sum(len(m) for m in _WORD_RE.findall(value))
    return in_words >= 0.6 * len(value)


def _entropy(value: str) -> float:
    counts = Counter(value)
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def _apply(
    text: str, path: str, spans: list[tuple[int, int, str]]
) -> tuple[str, list[Redaction]]:
    line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
    out: list[str] = []
    redactions: list[Redaction] = []
    pos = 0
    for start, end, kind in sorted(spans, key=lambda s: (s[0], -s[1])):
        if start < pos:
            continue  # overlaps a span already replaced
        out.append(text[pos:start])
        out.append(_PLACEHOLDER.format(kind) + "\n" * text.count("\n", start, end))
        redactions.append(Redaction(path, bisect_right(line_starts, start), kind))
        pos = end
    out.append(text[pos:])
    return "".join(out), redactions
