"""Tests for codelearn.sources: real git repos and folders in tmp_path, no mocks."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from codelearn.errors import CodelearnError
from codelearn.sources import (
    SKIP_REASONS,
    FileEntry,
    LoadedFile,
    Skip,
    Source,
    hash_bytes,
    library_source,
    list_files,
    load_file,
    repo_source,
)
from codelearn.sources.ignore import IgnoreRules
from codelearn.sources.secrets import redact_secrets

MAX = 100_000


def git(cwd: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.org",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.org",
        "GIT_CONFIG_NOSYSTEM": "1",
        "HOME": str(cwd),  # no user-wide excludes or hooks leak into the tests
    }
    proc = subprocess.run(
        ["git", "-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout


def write(root: Path, rel: str, content: str | bytes = "x = 1\n") -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def listed(listing) -> dict[str, FileEntry]:
    return {e.path: e for e in listing.entries}


def skipped(listing) -> dict[str, Skip]:
    return {s.path: s for s in listing.skipped}


def loaded(root: Path, rel: str, text: str | bytes, max_bytes: int = MAX) -> LoadedFile | Skip:
    write(root, rel, text)
    source = Source(label="repo", root=root, kind="folder")
    entry = listed(list_files(source, max_bytes=10 * max_bytes))[rel]
    return load_file(source, entry, max_bytes=max_bytes)


# --- git sources ---------------------------------------------------------------------


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    write(root, "clean.py", "print('clean')\n")
    write(root, "modified.py", "a = 1\n")
    write(root, "deleted.py", "gone = True\n")
    write(root, "pkg/mod.py", "def f():\n    return 1\n")
    write(root, ".gitignore", "*.log\nbuild/\n")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "init")
    write(root, "modified.py", "a = 2\n")
    (root / "deleted.py").unlink()
    write(root, "untracked.py", "new = 1\n")
    write(root, "staged.py", "staged = 1\n")
    git(root, "add", "staged.py")
    write(root, "debug.log", "ignored by .gitignore\n")
    write(root, "build/out.py", "ignored dir\n")
    write(root, "local_only.py", "excluded by info/exclude\n")
    (root / ".git/info").mkdir(exist_ok=True)
    (root / ".git/info/exclude").write_text("local_only.py\n")
    write(root, "global_only.py", "excluded by core.excludesFile\n")
    write(tmp_path, "global-ignore", "global_only.py\n")
    git(root, "config", "core.excludesFile", str(tmp_path / "global-ignore"))
    return root


def test_repo_source_is_git_and_uses_work_tree_top(repo: Path) -> None:
    source = repo_source(repo / "pkg")
    assert source == Source(label="repo", root=repo.resolve(), kind="git")


def test_repo_source_outside_git_is_folder(tmp_path: Path) -> None:
    assert repo_source(tmp_path).kind == "folder"


def test_git_lists_tracked_and_untracked_but_not_ignored_or_deleted(repo: Path) -> None:
    files = listed(list_files(repo_source(repo), max_bytes=MAX))
    assert sorted(files) == [
        ".gitignore",
        "clean.py",
        "modified.py",
        "pkg/mod.py",
        "staged.py",
        "untracked.py",
    ]


def test_git_blob_only_for_files_equal_to_the_staged_content(repo: Path) -> None:
    source = repo_source(repo)
    files = listed(list_files(source, max_bytes=MAX))
    assert files["modified.py"].blob is None
    assert files["untracked.py"].blob is None
    for clean in ("clean.py", "pkg/mod.py", "staged.py"):
        blob = files[clean].blob
        assert blob == git(repo, "hash-object", clean).strip()
        loaded_file = load_file(source, files[clean], max_bytes=MAX)
        assert isinstance(loaded_file, LoadedFile)
        assert loaded_file.content_hash == blob
    entry = files["clean.py"]
    stat = (repo / "clean.py").stat()
    assert (entry.size, entry.mtime_ns) == (stat.st_size, stat.st_mtime_ns)


def test_git_blob_survives_stale_stat_data(repo: Path) -> None:
    # A touched (or freshly copied) file has stale stat data in the index, same content.
    os.utime(repo / "clean.py", ns=(1, 1))
    files = listed(list_files(repo_source(repo), max_bytes=MAX))
    assert files["clean.py"].blob == git(repo, "hash-object", "clean.py").strip()


def test_a_tracked_link_inside_the_repo_is_indexed_once_under_its_target(repo: Path) -> None:
    (repo / "link.py").symlink_to("clean.py")
    git(repo, "add", "link.py")
    listing = list_files(repo_source(repo), max_bytes=MAX)
    assert "clean.py" in listed(listing) and "link.py" not in listed(listing)
    assert skipped(listing)["link.py"].reason == "symlink"
    assert "clean.py" in skipped(listing)["link.py"].detail


def test_links_out_of_the_repo_are_never_read(repo: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    write(outside, "passwd", "root:x:0:0:root:/root:/bin/bash\n")
    write(outside, "dir/creds.py", "TOKEN = 'hunter2hunter2'\n")
    (repo / "pw").symlink_to(outside / "passwd")
    (repo / "etc").symlink_to(outside / "dir", target_is_directory=True)
    (repo / "loop").symlink_to("loop")
    git(repo, "add", "pw", "etc", "loop")
    listing = list_files(repo_source(repo), max_bytes=MAX)
    assert not {"pw", "etc", "etc/creds.py", "loop"} & set(listed(listing))
    assert skipped(listing)["pw"].reason == "outside-source"
    assert skipped(listing)["loop"].reason == "symlink-loop"
    assert {s.reason for s in listing.skipped} <= SKIP_REASONS


def test_a_library_folder_does_not_follow_links_out_of_it(tmp_path: Path) -> None:
    write(tmp_path, "outside/secret.py", "KEY = 1\n")
    write(tmp_path, "lib/a.py")
    (tmp_path / "lib/out").symlink_to(tmp_path / "outside", target_is_directory=True)
    (tmp_path / "lib/one.py").symlink_to(tmp_path / "outside/secret.py")
    listing = list_files(Source("lib:x", tmp_path / "lib", "folder"), max_bytes=MAX)
    assert sorted(listed(listing)) == ["a.py"]
    assert skipped(listing)["out"].reason == "outside-source"
    assert skipped(listing)["one.py"].reason == "outside-source"


def test_the_index_never_holds_what_a_link_out_of_the_repo_points_to(repo: Path, tmp_path: Path,
                                                                     monkeypatch) -> None:
    from codelearn.index.indexer import run_index
    from codelearn.index.search import Searcher
    from codelearn.project import open_project

    write(tmp_path, "outside/passwd", "root:x:0:0:zorbulon:/root:/bin/bash\n")
    (repo / "pw").symlink_to(tmp_path / "outside/passwd")
    git(repo, "add", "pw")
    monkeypatch.setenv("CODELEARN_EMBEDDER", "none")
    project = open_project(repo)
    run_index(project, wait=True)
    searcher = Searcher(project)
    try:
        assert searcher.search("zorbulon", k=5, mode="keyword") == []
    finally:
        searcher.close()


def test_git_submodules_are_skipped(repo: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    git(other, "init", "-q")
    write(other, "inner.py")
    git(other, "add", "-A")
    git(other, "commit", "-qm", "x")
    git(repo, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(other), "sub")
    paths = listed(list_files(repo_source(repo), max_bytes=MAX))
    assert not any(p == "sub" or p.startswith("sub/") for p in paths)
    assert ".gitmodules" in paths


def test_git_library_rooted_in_a_subfolder(repo: Path) -> None:
    source = library_source("pkg", repo)
    assert (source.kind, source.label, source.root) == ("git", "lib:pkg", (repo / "pkg").resolve())
    write(repo, "pkg/new.py", "n = 1\n")
    files = listed(list_files(source, max_bytes=MAX))
    assert sorted(files) == ["mod.py", "new.py"]
    assert files["mod.py"].blob == git(repo, "hash-object", "pkg/mod.py").strip()
    assert files["new.py"].blob is None


def test_codelearnignore_applies_to_git(repo: Path) -> None:
    write(repo, ".codelearnignore", "pkg/\n!pkg/mod.py\nuntracked.py\n")
    files = listed(list_files(repo_source(repo), max_bytes=MAX))
    assert "untracked.py" not in files
    assert "pkg/mod.py" not in files  # a file in an excluded folder cannot be re-included
    assert "clean.py" in files


def test_hash_bytes_matches_git_hash_object(tmp_path: Path) -> None:
    data = b"caf\xc3\xa9\r\nline\n\x00bin"
    write(tmp_path, "f.bin", data)
    assert hash_bytes(data) == git(tmp_path, "hash-object", "f.bin").strip()
    assert hash_bytes(b"") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"


# --- ignore rules --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "path", "is_dir", "expected"),
    [
        ("*.log", "a.log", False, True),
        ("*.log", "deep/dir/a.log", False, True),
        ("*.log", "a.log.txt", False, False),
        ("/top.txt", "top.txt", False, True),
        ("/top.txt", "sub/top.txt", False, False),
        ("build/", "build/x.py", False, True),
        ("build/", "src/build/x.py", False, True),
        ("build/", "build", False, False),  # a file named build is not a directory
        ("docs/*.md", "docs/a.md", False, True),
        ("docs/*.md", "docs/sub/a.md", False, False),
        ("docs/**/*.md", "docs/a.md", False, True),
        ("docs/**/*.md", "docs/x/y/a.md", False, True),
        ("**/gen", "a/b/gen/x.py", False, True),
        ("**/gen", "gen", False, True),
        ("data/**", "data/a/b.csv", False, True),
        ("data/**", "data", True, False),
        ("a?c.txt", "abc.txt", False, True),
        ("a?c.txt", "a/c.txt", False, False),
        ("[ab]*.py", "b1.py", False, True),
        ("[!ab]*.py", "b1.py", False, False),
        ("# comment", "# comment", False, False),
        ("\\#hash", "#hash", False, True),
    ],
)
def test_ignore_patterns(pattern: str, path: str, is_dir: bool, expected: bool) -> None:
    assert IgnoreRules([pattern]).ignores(path, is_dir=is_dir) is expected


def test_ignore_negation_and_order() -> None:
    rules = IgnoreRules(["*.log", "!keep.log", "", "# c", "logs/", "!logs/x.log"])
    assert rules.ignores("a.log")
    assert not rules.ignores("keep.log")
    assert not rules.ignores("sub/keep.log")
    assert rules.ignores("logs/x.log")  # parent excluded: no re-include
    assert IgnoreRules(["!keep.log", "*.log"]).ignores("keep.log")  # last match wins


def test_codelearnignore_in_plain_folder(tmp_path: Path) -> None:
    write(tmp_path, ".codelearnignore", "# generated\n/vendor/\n*.tmp\n!important.tmp\n")
    for rel in ("a.py", "vendor/lib.py", "src/vendor/keep.py", "x.tmp", "important.tmp"):
        write(tmp_path, rel)
    files = listed(list_files(Source("repo", tmp_path, "folder"), max_bytes=MAX))
    assert sorted(files) == [".codelearnignore", "a.py", "important.tmp", "src/vendor/keep.py"]


# --- plain folders -------------------------------------------------------------------


def test_folder_walk_skips_tool_and_vcs_dirs(tmp_path: Path) -> None:
    for rel in (
        "src/app.py",
        ".git/config",
        ".hg/x",
        "node_modules/m/index.js",
        "src/__pycache__/app.cpython-311.pyc",
        ".venv/lib/site.py",
        ".codelearn/index.db",
        ".tox/x.py",
        ".mypy_cache/x.json",
        "venv/pyvenv.cfg",
        "venv/lib/x.py",
        "tools/venv/__init__.py",  # a package named venv, not an environment
    ):
        write(tmp_path, rel)
    source = repo_source(tmp_path)
    assert source.kind == "folder"
    listing = list_files(source, max_bytes=MAX)
    assert sorted(listed(listing)) == ["src/app.py", "tools/venv/__init__.py"]
    assert all(e.blob is None for e in listing.entries)


def test_folder_symlink_loops_and_broken_links(tmp_path: Path) -> None:
    write(tmp_path, "a/file.py")
    (tmp_path / "a/up").symlink_to("..", target_is_directory=True)
    (tmp_path / "a/self").symlink_to("self")
    (tmp_path / "broken.py").symlink_to("missing.py")
    write(tmp_path, "real/lib.py")
    (tmp_path / "alias").symlink_to("real", target_is_directory=True)
    listing = list_files(Source("repo", tmp_path, "folder"), max_bytes=MAX)
    assert sorted(listed(listing)) == ["a/file.py", "real/lib.py"]  # alias/ is real/, once
    skips = skipped(listing)
    assert skips["alias"].reason == "symlink"
    assert skips["a/up"].reason == "symlink-loop"
    assert skips["a/self"].reason == "symlink-loop"
    assert skips["broken.py"].reason == "unreadable"
    assert {s.reason for s in listing.skipped} <= SKIP_REASONS


def test_symlink_to_a_secret_file_is_not_read(tmp_path: Path) -> None:
    write(tmp_path, "outside/.env", "TOKEN=abc\n")
    write(tmp_path, "repo/a.py")
    (tmp_path / "repo/settings.txt").symlink_to(tmp_path / "outside/.env")
    listing = list_files(Source("repo", tmp_path / "repo", "folder"), max_bytes=MAX)
    assert skipped(listing)["settings.txt"].reason == "ignored-secret-file"


# --- secret files --------------------------------------------------------------------

SECRET_FILES = [
    ".env",
    ".env.local",
    ".env.production",
    "config/prod.env",
    "server.pem",
    "tls/server.key",
    "id_rsa",
    "id_rsa.pub",
    "keys/id_ed25519",
    "id_ecdsa",
    "id_dsa",
    "cert.p12",
    "cert.pfx",
    "release.keystore",
    "release.jks",
    ".npmrc",
    ".pypirc",
    ".netrc",
    ".git-credentials",
    ".aws/credentials",
    "credentials.json",
    "gcp-credentials.json",
    "passwords.kdbx",
    "config/secrets.yml",
    "secrets.yaml",
    ".htpasswd",
    "prod.tfvars",
    "terraform.tfstate",
    "my-project-service-account.json",
    "client_secret_1234.apps.googleusercontent.com.json",
    ".docker/config.json",
    ".kube/config",
    ".ssh/config",
    ".pgpass",
    "putty.ppk",
]


def test_every_secret_file_pattern_is_skipped(tmp_path: Path) -> None:
    for rel in SECRET_FILES:
        write(tmp_path, rel, "SECRET=1\n")
    for rel in (".env.example", ".env.sample", ".env.template", "credentials.py", "env.py"):
        write(tmp_path, rel, "API_KEY=\n")
    source = Source("repo", tmp_path, "folder")
    listing = list_files(source, max_bytes=MAX)
    skips = skipped(listing)
    for rel in SECRET_FILES:
        assert skips[rel].reason == "ignored-secret-file", rel
        refused = load_file(source, FileEntry(rel, 9, 0, None), max_bytes=MAX)
        assert isinstance(refused, Skip) and refused.reason == "ignored-secret-file"
    assert sorted(listed(listing)) == [
        ".env.example",
        ".env.sample",
        ".env.template",
        "credentials.py",
        "env.py",
    ]


def test_secret_files_are_skipped_in_git_too(repo: Path) -> None:
    write(repo, ".env", "TOKEN=x\n")
    write(repo, "deploy/id_rsa", "key\n")
    git(repo, "add", "deploy/id_rsa")
    skips = skipped(list_files(repo_source(repo), max_bytes=MAX))
    assert skips[".env"].reason == skips["deploy/id_rsa"].reason == "ignored-secret-file"


# --- secret values -------------------------------------------------------------------

# Built by concatenation so that this file does not itself look like it leaks secrets.
AWS = "AKIA" + "Q3EGRYZ7LMB4WXPD"
GHP = "gh" + "p_" + "aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dF3hJ5"
GHO = "gh" + "o_" + "Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0FeDcBa"
GH_PAT = "github" + "_pat_" + "11ABCDEFG0" + "aZ3bY4cX5dW6eV7fU8gT9hS0iR1jQ2kP3lO4mN5"
SLACK = "xo" + "xb-" + "1234567890-0987654321-aB3dE5gH7jK9mN1p"
STRIPE = "sk" + "_live_" + "51HqX2eK9mN4pQ7sT0vW3yZ6bC"
GOOGLE = "AI" + "za" + "SyB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dF3h"
OPENAI = "sk" + "-proj-" + "aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dF3hJ5kL7"
ANTHROPIC = "sk" + "-ant-" + "api03-aB3dE5gH7jK9mN1pQ3sT5vW7yZ9"
JWT = (
    "ey" + "JhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
    ".eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
HF = "h" + "f_" + "aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dF3hJ"
GITLAB = "gl" + "pat-" + "aB3dE5gH7jK9mN1pQ3sT"
RANDOM = "q8Zr2Lw9Xk4Vn7Tb1Mc6"

SECRET_VALUE_CASES = [
    ("aws-access-key", f'AWS_ID = "{AWS}"\n', AWS),
    ("github-token", f"token: {GHP}\n", GHP),
    ("github-token", f'headers = {{"Authorization": "Bearer {GHO}"}}\n', GHO),
    ("github-token", f"gh auth login --with-token {GH_PAT}\n", GH_PAT),
    ("slack-token", f"slack = Client('{SLACK}')\n", SLACK),
    ("stripe-key", f"stripe.api_version = 1; stripe.key = '{STRIPE}'\n", STRIPE),
    ("google-api-key", f"const maps = '{GOOGLE}';\n", GOOGLE),
    ("openai-api-key", f"client = OpenAI(api_key='{OPENAI}')\n", OPENAI),
    ("anthropic-api-key", f"curl -H 'x-api-key: {ANTHROPIC}'\n", ANTHROPIC),
    ("jwt", f"Authorization: Bearer {JWT}\n", JWT),
    ("huggingface-token", f"login('{HF}')\n", HF),
    ("gitlab-token", f"GITLAB={GITLAB}\n", GITLAB),
    ("generic-secret-assignment", f'password = "{RANDOM}"\n', RANDOM),
    ("generic-secret-assignment", f"db:\n  api_key: '{RANDOM}'\n", RANDOM),
    ("generic-secret-assignment", f"SECRET_KEY={RANDOM}\n", RANDOM),
    ("generic-secret-assignment", f'{{"client_secret": "{RANDOM}"}}\n', RANDOM),
    ("generic-secret-assignment", f'DB_PASSWORD: str = "{RANDOM}"\n', RANDOM),
    ("generic-secret-assignment", f'auth_token := "{RANDOM}"\n', RANDOM),
    ("url-credentials", f"DSN = 'postgres://app:{RANDOM}@db:5432/x'\n", RANDOM),
]


@pytest.mark.parametrize(("kind", "line", "secret"), SECRET_VALUE_CASES)
def test_secret_values_are_redacted(tmp_path: Path, kind: str, line: str, secret: str) -> None:
    text = "# header\n\n" + line + "print('after')\n"
    result = loaded(tmp_path, "config.py", text)
    assert isinstance(result, LoadedFile)
    assert secret not in result.text
    assert f"«redacted:{kind}»" in result.text
    assert result.text.count("\n") == text.count("\n")
    assert [(r.kind, r.path) for r in result.redactions] == [(kind, "config.py")]
    assert result.redactions[0].line == 3 + line.count("\n", 0, line.index(secret))
    assert result.content_hash == hash_bytes(text.encode())  # hash of the raw bytes


def test_private_key_block_is_redacted_keeping_lines(tmp_path: Path) -> None:
    body = "\n".join("MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC" for _ in range(5))
    block = "-----BEGIN " + "RSA PRIVATE KEY-----\n" + body + "\n-----END RSA PRIVATE KEY-----"
    text = f'import x\nKEY = """{block}"""\nprint(KEY)\n'
    result = loaded(tmp_path, "keys.py", text)
    assert isinstance(result, LoadedFile)
    assert "MIIEvQ" not in result.text
    assert result.text.count("\n") == text.count("\n")
    lines = result.text.split("\n")
    assert lines[0] == "import x"
    assert lines[1] == 'KEY = """«redacted:private-key»'
    assert lines[7] == '"""'
    assert lines[8] == "print(KEY)"
    assert [(r.line, r.kind) for r in result.redactions] == [(2, "private-key")]


def test_private_key_in_one_line_string_and_without_end_marker() -> None:
    one_line = (
        'k = "-----BEGIN ' + 'PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0BAQEF\\n'
        '-----END PRIVATE KEY-----"\n'
    )
    text, reds = redact_secrets(one_line, "a.py")
    assert "MIIEvQ" not in text and [r.kind for r in reds] == ["private-key"]
    cut = "-----BEGIN " + "EC PRIVATE KEY-----\n"
    cut += "MHcCAQEEIBkg4LVWM9nuwNSk3yByxZpYRTBnVJk5oCHp\nAwEHoUQDQgAEx8Pc\n"
    text, reds = redact_secrets(cut, "a.pem.txt")
    assert "MHcCAQ" not in text and "AwEHoUQ" not in text
    assert text.count("\n") == cut.count("\n")


def test_passwords_inside_urls_are_redacted_whatever_they_look_like() -> None:
    line = "DB_URL=postgres://admin:SuperSecretPgPw42@db.internal:5432/prod\n"
    text, redactions = redact_secrets(line, "settings.ini")
    assert "SuperSecretPgPw42" not in text and [r.kind for r in redactions] == ["url-credentials"]
    assert text.startswith("DB_URL=postgres://admin:«redacted:url-credentials»@db.internal:5432/prod")
    for kept in ("redis://app:${REDIS_PASSWORD}@cache:6379/0\n", "amqp://guest:password@mq//\n",
                 "mysql://root:********@db/app\n"):
        assert redact_secrets(kept, "settings.ini") == (kept, [])


@pytest.mark.parametrize(
    "snippet",
    [
        "password = getpass.getpass()\n",
        'token = os.environ["TOKEN"]\n',
        "api_key = settings.api_key\n",
        'api_key = os.environ.get("API_KEY", "")\n',
        'password = "changeme"\n',
        'API_KEY = "<your-api-key-here>"\n',
        "secret_key: ${SECRET_KEY}\n",
        "SECRET_KEY={{ vault_secret_key }}\n",
        'password = "xxxxxxxxxxxxxxxx"\n',
        'TOKEN_RE = re.compile(r"[A-Za-z0-9_]+(?:\\.[A-Za-z0-9_]+)*")\n',
        'if password == "Tr0ub4dor&3xyZ":\n',
        "tokens = tokenize.generate_tokens(io.StringIO(src).readline)\n",
        'password_reset_url = "https://example.org/reset"\n',
        'token_file = "~/.config/app/token2.json"\n',
        "def check_password(password: str = DEFAULT_PASSWORD) -> bool:\n",
        'msg = "Please enter your password and try again"\n',
        'url = "http://user:pass@localhost/"\n',
        'sha = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"\n',
        'if data.startswith(b"-----BEGIN PRIVATE KEY-----"):\n    load(data)\n',
        "AWS_EXAMPLE = 'AKIAIOSFODNN7EXAMPLE'\n",
        '"secret_ref": "V1LocalObjectReference",\n',
        'get_loader(token_filename="not_exists_file_1123")\n',
        '<assemblyIdentity publicKeyToken="1fc8b3b9a1e18e3b"/>\n',
    ],
)
def test_no_false_positive_on_ordinary_code(snippet: str) -> None:
    text, redactions = redact_secrets(snippet, "app.py")
    assert (text, redactions) == (snippet, [])


# --- content filters -----------------------------------------------------------------


def test_binary_by_content_and_by_name(tmp_path: Path) -> None:
    result = loaded(tmp_path, "data.dat", b"abc\x00def" * 10)
    assert isinstance(result, Skip) and result.reason == "binary"
    write(tmp_path, "logo.png", b"\x89PNG\r\n")
    skip = skipped(list_files(Source("repo", tmp_path, "folder"), max_bytes=MAX))["logo.png"]
    assert skip.reason == "binary"


def test_too_large_at_listing_and_at_load(tmp_path: Path) -> None:
    write(tmp_path, "big.py", "x = 1\n" * 100)
    source = Source("repo", tmp_path, "folder")
    assert skipped(list_files(source, max_bytes=100))["big.py"].reason == "too-large"
    entry = listed(list_files(source, max_bytes=10_000))["big.py"]
    result = load_file(source, entry, max_bytes=100)
    assert isinstance(result, Skip) and result.reason == "too-large"


def test_minified_and_generated(tmp_path: Path) -> None:
    long_js = "var a=1;" * 1000 + "\n"
    result = loaded(tmp_path, "bundle.js", long_js)
    assert isinstance(result, Skip) and result.reason == "minified"
    dense_css = ("a{color:red}" * 40 + "\n") * 10
    result = loaded(tmp_path, "site.css", dense_css)
    assert isinstance(result, Skip) and result.reason == "minified"
    go = "// Code generated by protoc-gen-go. DO NOT EDIT.\n\npackage pb\n"
    result = loaded(tmp_path, "api.pb.go", go)
    assert isinstance(result, Skip) and result.reason == "minified"
    prose = ("A whole paragraph on one line. " * 30 + "\n\n") * 5  # normal for Markdown
    assert isinstance(loaded(tmp_path, "README.md", prose), LoadedFile)
    for name in ("app.min.js", "style.min.css", "app.js.map", "package-lock.json", "yarn.lock",
                 "poetry.lock", "Cargo.lock"):
        write(tmp_path, name, "{}\n")
    skips = skipped(list_files(Source("repo", tmp_path, "folder"), max_bytes=MAX))
    for name in ("app.min.js", "style.min.css", "app.js.map", "package-lock.json", "yarn.lock",
                 "poetry.lock", "Cargo.lock"):
        assert skips[name].reason == "minified", name


def test_encodings(tmp_path: Path) -> None:
    result = loaded(tmp_path, "latin.txt", "café crème\n".encode("latin-1"))
    assert isinstance(result, Skip) and result.reason == "encoding"
    result = loaded(tmp_path, "wide.txt", "hello\n".encode("utf-16"))
    assert isinstance(result, Skip) and result.reason == "encoding"
    raw = "\ufeffcafé\n".encode()
    result = loaded(tmp_path, "bom.txt", raw)
    assert isinstance(result, LoadedFile)
    assert result.text == "café\n" and result.content_hash == hash_bytes(raw)


def test_crlf_becomes_lf_with_the_same_lines(tmp_path: Path) -> None:
    raw = b"a = 1\r\nb = 2\r\n\r\nc = 3"
    result = loaded(tmp_path, "win.py", raw)
    assert isinstance(result, LoadedFile)
    assert result.text == "a = 1\nb = 2\n\nc = 3"
    assert result.content_hash == hash_bytes(raw)


def test_unreadable_file(tmp_path: Path) -> None:
    source = Source("repo", tmp_path, "folder")
    result = load_file(source, FileEntry("missing.py", 1, 0, None), max_bytes=MAX)
    assert isinstance(result, Skip) and result.reason == "unreadable"


# --- libraries -----------------------------------------------------------------------


def test_python_library_from_installed_distribution() -> None:
    source = library_source("python:Typer", Path("."))
    assert (source.label, source.kind) == ("lib:typer", "python")
    assert "typer/__init__.py" in source.only
    assert (source.root / "typer/__init__.py").is_file()
    for path in source.only:
        assert ".dist-info/" not in path and "__pycache__" not in path, path
        assert not path.endswith(".pyc") and not path.startswith(".."), path
    listing = list_files(source, max_bytes=1_000_000)
    paths = listed(listing)
    assert "typer/main.py" in paths
    assert set(paths) <= set(source.only)
    result = load_file(source, paths["typer/main.py"], max_bytes=1_000_000)
    assert isinstance(result, LoadedFile) and "def " in result.text


def test_unknown_python_distribution_says_how_to_find_the_name() -> None:
    with pytest.raises(CodelearnError) as info:
        library_source("python:typr", Path("."))
    assert "typr" in info.value.message
    assert "python:typer" in info.value.message  # close match among installed ones
    assert "pip list" in info.value.fix


def test_module_name_instead_of_distribution_name_is_explained() -> None:
    with pytest.raises(CodelearnError) as info:
        library_source("python:_pytest", Path("."))
    assert "'pytest'" in info.value.message


def test_folder_library_labels_and_errors(tmp_path: Path) -> None:
    write(tmp_path, "vendor/shared-utils/util.py")
    named = library_source("utils=vendor/shared-utils", tmp_path)
    assert named == Source("lib:utils", (tmp_path / "vendor/shared-utils").resolve(), "folder")
    plain = library_source("vendor/shared-utils", tmp_path)
    assert plain.label == "lib:shared-utils"
    assert sorted(listed(list_files(named, max_bytes=MAX))) == ["util.py"]
    with pytest.raises(CodelearnError) as info:
        library_source("nope=does/not/exist", tmp_path)
    assert "does not exist" in info.value.message and info.value.fix
