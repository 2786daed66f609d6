"""Git hooks: installed into real repos and fired by real git commands.

Most tests run the hook against a stand-in `codelearn` package put first on
PYTHONPATH, which records how it was started (and can be told to stay busy),
so they check the hook's contract without waiting for a real index. One test
runs the real `python -m codelearn index` end to end.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from codelearn.errors import CodelearnError
from codelearn.hooks import (
    HOOK_NAMES,
    HookState,
    hook_status,
    hooks_dir,
    install_hooks,
    uninstall_hooks,
)
from conftest import git, make_repo, write_files

FAKE_MAIN = '''\
import json, os, sys, time
from pathlib import Path

record = Path(os.environ["FAKE_CODELEARN_RECORD"])
entry = {"argv": sys.argv[1:], "cwd": os.getcwd(),
         "from_hook": os.environ.get("CODELEARN_FROM_HOOK"),
         "stdin": sys.stdin.read(), "git_dir": os.environ.get("GIT_DIR")}
with record.open("a") as fh:
    fh.write(json.dumps(entry) + "\\n")
release = os.environ.get("FAKE_CODELEARN_RELEASE")
if release:
    while not Path(release).exists():
        time.sleep(0.05)
    with record.open("a") as fh:
        fh.write(json.dumps({"finished": True}) + "\\n")
'''

CLI_READY = importlib.util.find_spec("codelearn.__main__") is not None


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"app.py": "def main():\n    return 1\n"})


@pytest.fixture
def fake(tmp_path: Path, monkeypatch) -> Path:
    """A stand-in `codelearn` package that records each start; returns the record file."""
    package = tmp_path / "fake" / "codelearn"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text(FAKE_MAIN)
    record = tmp_path / "record.jsonl"
    monkeypatch.setenv("PYTHONPATH", str(package.parent))
    monkeypatch.setenv("FAKE_CODELEARN_RECORD", str(record))
    return record


def starts(record: Path, count: int, timeout: float = 30.0) -> list[dict]:
    """The recorded starts, once there are at least `count` of them."""
    deadline = time.monotonic() + timeout
    while True:
        lines = record.read_text().splitlines() if record.exists() else []
        found = [json.loads(line) for line in lines]
        found = [e for e in found if "argv" in e]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def hook_log(repo: Path) -> str:
    path = repo / ".codelearn" / "logs" / "hooks.log"
    return path.read_text() if path.exists() else ""


def states(found: list[HookState]) -> dict[str, str]:
    return {s.name: s.state for s in found}


# --- hooks fire on real git commands ---------------------------------------------------


def test_each_git_command_starts_the_indexer(repo: Path, fake: Path) -> None:
    assert states(install_hooks(repo)) == dict.fromkeys(HOOK_NAMES, "installed")
    top = str(repo.resolve())

    write_files(repo, {"app.py": "def main():\n    return 2\n"})
    git(repo, "commit", "-qam", "second")  # post-commit
    assert len(starts(fake, 1)) == 1
    git(repo, "checkout", "-q", "-b", "topic")  # post-checkout
    assert len(starts(fake, 2)) == 2
    write_files(repo, {"lib.py": "X = 1\n"})
    git(repo, "add", "lib.py")
    git(repo, "commit", "-qm", "topic")  # post-commit
    git(repo, "checkout", "-q", "main")  # post-checkout
    git(repo, "merge", "-q", "--no-ff", "-m", "merge topic", "topic")  # post-merge
    git(repo, "commit", "-q", "--amend", "-m", "merged topic")  # post-commit + post-rewrite

    found = starts(fake, 7)
    log = hook_log(repo)
    for name in HOOK_NAMES:
        assert f"{name}: codelearn index" in log, log
    for entry in found:
        assert entry["argv"] == ["index", "--quiet", "--repo", top]
        assert entry["cwd"] == top
        assert entry["from_hook"] == "1"
        assert entry["stdin"] == ""  # detached from the hook's stdin
        assert entry["git_dir"] is None
    # The state folder the hook made keeps itself out of git.
    assert git(repo, "status", "--porcelain") == ""


def test_git_returns_while_the_indexer_is_still_running(repo: Path, fake: Path,
                                                        tmp_path: Path, monkeypatch) -> None:
    release = tmp_path / "release"
    monkeypatch.setenv("FAKE_CODELEARN_RELEASE", str(release))
    install_hooks(repo)
    write_files(repo, {"app.py": "def main():\n    return 3\n"})
    # Pipes on git's output: a hook that left its children holding them would hang here.
    done = subprocess.run(["git", "commit", "-qam", "busy"], cwd=repo, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert len(starts(fake, 1)) == 1
    assert {"finished": True} not in [json.loads(x) for x in fake.read_text().splitlines()]
    release.touch()
    deadline = time.monotonic() + 30
    while '"finished"' not in fake.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert '"finished"' in fake.read_text()


@pytest.mark.skipif(not CLI_READY, reason="needs the CLI (`python -m codelearn`), not built yet")
def test_hook_builds_the_real_index(repo: Path) -> None:
    install_hooks(repo)
    write_files(repo, {"billing.py": "def total(lines):\n    return sum(lines)\n"})
    git(repo, "add", "billing.py")
    git(repo, "commit", "-qm", "billing")
    index_db = repo / ".codelearn" / "index.db"
    deadline = time.monotonic() + 60
    while not index_db.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert index_db.exists(), hook_log(repo)


# --- chaining an existing hook ---------------------------------------------------------

RECORDING_HOOK = """#!/bin/sh
printf '%s\\n' "$@" > "{out}.args"
cat > "{out}.stdin"
exit {status}
"""


def test_chained_hook_gets_args_and_stdin_and_its_status_is_kept(
        repo: Path, fake: Path, tmp_path: Path) -> None:
    out = tmp_path / "chained"
    hook = hooks_dir(repo) / "post-checkout"
    hook.write_text(RECORDING_HOOK.format(out=out, status=3))
    hook.chmod(0o755)
    assert states(install_hooks(repo))["post-checkout"] == "chained"

    done = subprocess.run([str(hook), "a b", "c", "1"], input="from git\n", cwd=repo,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 3
    assert Path(f"{out}.args").read_text() == "a b\nc\n1\n"
    assert Path(f"{out}.stdin").read_text() == "from git\n"
    assert len(starts(fake, 1)) == 1  # the index still starts

    # Fired by git: post-rewrite gets the rewritten commits on stdin.
    rewrite = hooks_dir(repo) / "post-rewrite"
    uninstall_hooks(repo)
    rewrite.write_text(RECORDING_HOOK.format(out=out, status=0))
    rewrite.chmod(0o755)
    install_hooks(repo)
    old = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "commit", "-q", "--amend", "-m", "amended")
    new = git(repo, "rev-parse", "HEAD").strip()
    assert Path(f"{out}.args").read_text() == "amend\n"
    assert Path(f"{out}.stdin").read_text() == f"{old} {new}\n"


def test_uninstall_restores_the_original_exactly(repo: Path) -> None:
    folder = hooks_dir(repo)
    original = b"#!/bin/sh\n# someone else's\n\xff\xfe exit 0\n"
    hook = folder / "post-merge"
    hook.write_bytes(original)
    hook.chmod(0o750)
    assert states(hook_status(repo)) == {**dict.fromkeys(HOOK_NAMES, "absent"),
                                         "post-merge": "foreign"}

    first = install_hooks(repo)
    ours = hook.read_bytes()
    assert install_hooks(repo) == first  # idempotent
    assert hook.read_bytes() == ours
    assert (folder / "post-merge.codelearn-chained").read_bytes() == original
    assert states(first) == {**dict.fromkeys(HOOK_NAMES, "installed"), "post-merge": "chained"}

    after = uninstall_hooks(repo)
    assert hook.read_bytes() == original
    assert stat.S_IMODE(hook.stat().st_mode) == 0o750
    assert not (folder / "post-merge.codelearn-chained").exists()
    assert states(after) == {**dict.fromkeys(HOOK_NAMES, "absent"), "post-merge": "foreign"}
    assert uninstall_hooks(repo) == after


def test_install_refuses_to_overwrite_a_saved_hook(repo: Path) -> None:
    folder = hooks_dir(repo)
    (folder / "post-commit").write_text("#!/bin/sh\nexit 0\n")
    (folder / "post-commit.codelearn-chained").write_text("#!/bin/sh\nexit 1\n")
    with pytest.raises(CodelearnError) as caught:
        install_hooks(repo)
    assert caught.value.fix
    assert states(hook_status(repo))["post-checkout"] == "absent"  # nothing was changed


# --- where the hooks live --------------------------------------------------------------


@pytest.mark.parametrize("absolute", [False, True], ids=["relative", "absolute"])
def test_core_hooks_path_is_honoured(repo: Path, fake: Path, tmp_path: Path,
                                     absolute: bool) -> None:
    target = tmp_path / "shared-hooks" if absolute else repo / "githooks"
    git(repo, "config", "core.hooksPath", str(target) if absolute else "githooks")
    found = install_hooks(repo)
    assert {s.path.parent for s in found} == {target.resolve()}
    assert not (repo / ".git" / "hooks" / "post-commit").exists()
    if not absolute:
        git(repo, "add", "githooks")  # a hooks folder kept in the repo is committed with it
    git(repo, "commit", "-qm", "hooks", "--allow-empty")
    assert len(starts(fake, 1)) == 1


def test_worktree_shares_the_main_hooks(repo: Path, tmp_path: Path) -> None:
    git(repo, "worktree", "add", "-q", str(tmp_path / "wt"), "-b", "wt")
    found = install_hooks(tmp_path / "wt")
    assert {s.path.parent for s in found} == {(repo / ".git" / "hooks").resolve()}


def test_not_a_git_repo(tmp_path: Path) -> None:
    with pytest.raises(CodelearnError) as caught:
        install_hooks(tmp_path)
    assert "git init" in caught.value.fix


# --- the script's fallbacks ------------------------------------------------------------


def _path_without_codelearn(tmp_path: Path) -> str:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("git", "sh", "date", "basename", "mkdir", "wc", "mv", "nohup", "cat", "printf"):
        found = shutil.which(tool)
        if found and not (bin_dir / tool).exists():
            (bin_dir / tool).symlink_to(found)
    return str(bin_dir)


def test_missing_interpreter_falls_back_to_codelearn_on_path(repo: Path, tmp_path: Path,
                                                            monkeypatch) -> None:
    path = _path_without_codelearn(tmp_path)
    record = tmp_path / "record"
    launcher = Path(path) / "codelearn"
    launcher.write_text(f'#!/bin/sh\necho "$*" >> "{record}"\n')
    launcher.chmod(0o755)
    monkeypatch.setenv("PATH", path)
    install_hooks(repo, python=str(tmp_path / "gone" / "python3"))
    git(repo, "commit", "-qm", "empty", "--allow-empty")
    deadline = time.monotonic() + 30
    while not record.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert record.read_text() == f"index --quiet --repo {repo.resolve()}\n"


def test_no_codelearn_at_all_is_silent(repo: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", _path_without_codelearn(tmp_path))
    install_hooks(repo, python=str(tmp_path / "gone" / "python3"))
    hook = hooks_dir(repo) / "post-checkout"
    done = subprocess.run([str(hook), "0" * 40, "0" * 40, "1"], cwd=repo, capture_output=True,
                          text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert hook_log(repo) == ""


def test_hook_log_is_rotated(repo: Path, fake: Path) -> None:
    install_hooks(repo)
    logs = repo / ".codelearn" / "logs"
    logs.mkdir(parents=True)
    (logs / "hooks.log").write_bytes(b"x" * 1_100_000)
    subprocess.run([str(hooks_dir(repo) / "post-commit")], cwd=repo, check=True, timeout=60)
    starts(fake, 1)
    assert (logs / "hooks.log.1").stat().st_size == 1_100_000
    assert (logs / "hooks.log").stat().st_size < 1000


def test_hook_records_the_interpreter(repo: Path) -> None:
    install_hooks(repo)
    text = (hooks_dir(repo) / "post-commit").read_text()
    assert sys.executable in text
    assert os.access(hooks_dir(repo) / "post-commit", os.X_OK)
