"""Git hooks that re-index the repo in the background after git changes it.

`install_hooks` writes a small POSIX sh script as post-commit, post-merge,
post-checkout and post-rewrite. A hook that is already there and is not ours
is chained, not replaced: it moves to `<name>.codelearn-chained`, our script
runs it first with the same arguments and stdin, and exits with its status.
`uninstall_hooks` puts it back as it was (the same file, so the same bytes
and mode).

The script never blocks or fails git: it starts `codelearn index` detached,
with every stream away from git's, and returns at once.
"""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from codelearn.errors import CodelearnError

log = logging.getLogger(__name__)

HOOK_NAMES = ("post-commit", "post-merge", "post-checkout", "post-rewrite")
MARKER = "# codelearn-hook v1"
MARKER_PREFIX = "# codelearn-hook v"
CHAINED_SUFFIX = ".codelearn-chained"
LOG_MAX_BYTES = 1_000_000

#: Hook states `hook_status` reports.
INSTALLED = "installed"  # ours, nothing chained
CHAINED = "chained"  # ours, running someone else's hook first
FOREIGN = "foreign"  # someone else's hook that we have not touched
ABSENT = "absent"  # no hook

_SCRIPT = """\
#!/bin/sh
{marker}
# Installed by codelearn: re-indexes this repository in the background after
# git changes it. Remove with `codelearn hooks uninstall`.
status=0
chained="$0{chained_suffix}"
if [ -x "$chained" ]; then
    "$chained" "$@"
    status=$?
fi
python={python}
if [ -x "$python" ]; then
    set -- "$python" -m codelearn
elif command -v codelearn >/dev/null 2>&1; then
    set -- codelearn
else
    exit $status
fi
top=$(git rev-parse --show-toplevel 2>/dev/null) || exit $status
# Git exports these for the hook; the indexer must find its repos on its own.
unset GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE GIT_PREFIX
state="$top/.codelearn"
mkdir -p "$state/logs" 2>/dev/null || exit $status
[ -f "$state/.gitignore" ] || printf '# created by codelearn\\n*\\n' > "$state/.gitignore"
log="$state/logs/hooks.log"
if [ -f "$log" ] && [ "$(wc -c < "$log")" -gt {log_max} ]; then
    mv -f "$log" "$log.1"
fi
(
    cd "$top" || exit 0
    echo "$(date '+%Y-%m-%d %H:%M:%S') $(basename "$0"): codelearn index" >> "$log"
    CODELEARN_FROM_HOOK=1 nohup "$@" index --quiet --repo "$top" < /dev/null >> "$log" 2>&1 &
) < /dev/null > /dev/null 2>&1
exit $status
"""


@dataclass(frozen=True)
class HookState:
    """One hook and what codelearn knows about it."""

    name: str
    path: Path
    state: str  # INSTALLED | CHAINED | FOREIGN | ABSENT


def hooks_dir(repo_root: Path) -> Path:
    """The folder git runs hooks from (honours core.hooksPath and worktrees)."""
    repo_root = Path(repo_root)
    if not repo_root.is_dir():
        raise CodelearnError(f"The folder {repo_root} does not exist.",
                             "Pass the path of your repository.")
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--git-path", "hooks"],
            cwd=repo_root, capture_output=True, text=True, check=False,
        )
    except FileNotFoundError:
        raise CodelearnError("git is not installed.", "Install git, then try again.") from None
    if done.returncode != 0 or not done.stdout.strip():
        raise CodelearnError(
            f"{repo_root} is not inside a git repository, so it has no hooks.",
            "Run `git init` there first, or use `codelearn watch` for a plain folder.",
        )
    # The answer is relative to where git ran (or absolute for an absolute hooksPath).
    return (repo_root / done.stdout.strip()).resolve()


def hook_script(python: str) -> str:
    """The text of our hook, running codelearn with `python`."""
    return _SCRIPT.format(marker=MARKER, chained_suffix=CHAINED_SUFFIX,
                          python=shlex.quote(python), log_max=LOG_MAX_BYTES)


def hook_status(repo_root: Path) -> list[HookState]:
    """What is installed for each hook codelearn manages."""
    folder = hooks_dir(repo_root)
    return [_state(folder / name) for name in HOOK_NAMES]


def install_hooks(repo_root: Path, *, python: str | None = None) -> list[HookState]:
    """Install (or refresh) our hooks, chaining any hook that is already there.

    `python` is the interpreter the hooks run codelearn with; it defaults to
    the one running now.
    """
    folder = hooks_dir(repo_root)
    _refuse_orphans(folder)
    folder.mkdir(parents=True, exist_ok=True)
    text = hook_script(python or sys.executable)
    for name in HOOK_NAMES:
        path = folder / name
        if _present(path) and not _is_ours(path):
            os.rename(path, _chained(path))
            log.info("chained the existing %s hook as %s", name, _chained(path).name)
        if not _current(path, text):
            _write_executable(path, text)
            log.info("installed %s", path)
    return hook_status(repo_root)


def uninstall_hooks(repo_root: Path) -> list[HookState]:
    """Remove our hooks and put back any hook they chained, as it was."""
    folder = hooks_dir(repo_root)
    for name in HOOK_NAMES:
        path = folder / name
        if not _is_ours(path):
            continue
        chained = _chained(path)
        if _present(chained):
            os.replace(chained, path)  # the same file: content and mode unchanged
            log.info("restored the original %s hook", name)
        else:
            path.unlink()
            log.info("removed %s", path)
    return hook_status(repo_root)


def _state(path: Path) -> HookState:
    if _is_ours(path):
        state = CHAINED if _present(_chained(path)) else INSTALLED
    elif _present(path):
        state = FOREIGN
    else:
        state = ABSENT
    return HookState(name=path.name, path=path, state=state)


def _is_ours(path: Path) -> bool:
    if not path.is_file():
        return False
    try:
        with path.open("r", errors="replace") as fh:
            head = [fh.readline() for _ in range(3)]
    except OSError:
        return False
    return any(line.startswith(MARKER_PREFIX) for line in head)


def _present(path: Path) -> bool:
    return path.exists() or path.is_symlink()  # a dangling link is still someone's hook


def _current(path: Path, text: str) -> bool:
    try:
        return path.read_text(errors="replace") == text and os.access(path, os.X_OK)
    except OSError:
        return False


def _chained(path: Path) -> Path:
    return path.with_name(path.name + CHAINED_SUFFIX)


def _refuse_orphans(folder: Path) -> None:
    """Stop before changing anything if chaining would overwrite a saved hook."""
    for name in HOOK_NAMES:
        path = folder / name
        chained = _chained(path)
        if _present(path) and not _is_ours(path) and _present(chained):
            raise CodelearnError(
                f"Both {path} and {chained.name} exist, and the first is not codelearn's.",
                f"Keep the one you want as {name}, delete or rename the other, then install again.",
            )


def _write_executable(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, 0o755)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
