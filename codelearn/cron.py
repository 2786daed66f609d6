"""A crontab line that runs `codelearn train --nightly` for a repo.

Each repo gets at most one line, found again by the marker comment at its end
(`# codelearn nightly <project key> <repo path>`). Cron hands everything after
the schedule to `sh`, which reads the marker as a comment. Installing or
removing our line leaves every other line of the crontab as it was.

Where the crontab lives is a small backend: the user's crontab through the
`crontab` program, or a plain file named by `CODELEARN_CRONTAB` (for tests,
or for a system that loads crontab files some other way).
"""

from __future__ import annotations

import getpass
import logging
import os
import re
import shlex
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

from codelearn.errors import CodelearnError
from codelearn.paths import write_atomic
from codelearn.project import Project

log = logging.getLogger(__name__)

DEFAULT_SCHEDULE = "30 2 * * *"
ENV_CRONTAB = "CODELEARN_CRONTAB"
MARKER = "# codelearn nightly"
LOG_NAME = "train-cron.log"

_MARKER_RE = re.compile(r"\s#\s*codelearn nightly ([0-9a-f]+)(?:\s|$)")
_MACROS = ("@reboot", "@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight",
           "@hourly")
# (name, lowest, highest, names cron accepts in place of numbers)
_FIELDS = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct",
                      "nov", "dec")),
    ("day of week", 0, 7, ("sun", "mon", "tue", "wed", "thu", "fri", "sat")),
)
_ITEM_RE = re.compile(r"^(\*|\w+(?:-\w+)?)(?:/(\d+))?$")
_SCHEDULE_FIX = ('Use five fields "minute hour day-of-month month day-of-week" '
                 f'(e.g. "{DEFAULT_SCHEDULE}") or one of {", ".join(_MACROS)}.')


@dataclass(frozen=True)
class CronState:
    """Whether a repo's nightly line is installed, and what it says."""

    installed: bool
    schedule: str | None
    line: str | None
    where: str  # the crontab it is (or would be) in
    log_path: str

    def as_json(self) -> dict:
        return asdict(self)


class CrontabBackend(Protocol):
    """Somewhere a crontab is kept, read and written whole."""

    where: str

    def read(self) -> str: ...

    def write(self, text: str) -> None: ...


class SystemCrontab:
    """The current user's crontab, through the `crontab` program."""

    def __init__(self) -> None:
        self.where = f"the crontab of user {_user()}"

    def read(self) -> str:
        done = _crontab(["-l"])
        if done.returncode == 0:
            return _decode(done.stdout)
        message = _decode(done.stderr).strip()
        # "no crontab for USER" (cronie, Debian), or a silent exit 1: nothing installed yet.
        if "no crontab" in message.lower() or (done.returncode == 1 and not done.stdout
                                               and not message):
            return ""
        raise CodelearnError(f"`crontab -l` failed: {message or f'exit {done.returncode}'}",
                             "Check that you may use cron (see /etc/cron.allow and cron.deny).")

    def write(self, text: str) -> None:
        done = _crontab(["-"], stdin=text.encode("utf-8", "surrogateescape"))
        if done.returncode != 0:
            message = _decode(done.stderr).strip() or f"exit {done.returncode}"
            raise CodelearnError(f"`crontab -` refused the new crontab: {message}",
                                 "Check the crontab with `crontab -l`, fix it, then try again.")


class FileCrontab:
    """A crontab-format file, read and replaced directly."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path).expanduser()
        self.where = str(self.path)

    def read(self) -> str:
        try:
            return _decode(self.path.read_bytes())
        except FileNotFoundError:
            return ""

    def write(self, text: str) -> None:
        mode = self.path.stat().st_mode & 0o777 if self.path.exists() else 0o644
        write_atomic(self.path, text, mode)


def crontab_backend() -> CrontabBackend:
    """The file named by CODELEARN_CRONTAB, else the user's crontab."""
    path = os.environ.get(ENV_CRONTAB)
    return FileCrontab(path) if path else SystemCrontab()


def install_cron(project: Project, schedule: str | None = None,
                 backend: CrontabBackend | None = None) -> CronState:
    """Add (or refresh) the repo's nightly line; keeps its schedule unless one is given."""
    backend = backend or crontab_backend()
    text = backend.read()
    current = _find(text, project.key)
    if schedule is None:
        schedule = _schedule_of(current) if current else DEFAULT_SCHEDULE
    line = cron_line(project, validate_schedule(schedule))
    _ensure_log_dir(project)
    new_text = _with_line(text, project.key, line)
    if new_text != text:
        backend.write(new_text)
        log.info("installed the nightly line in %s", backend.where)
    return _state(project, line, backend)


def uninstall_cron(project: Project, backend: CrontabBackend | None = None) -> CronState:
    """Remove the repo's nightly line, leaving the rest of the crontab alone."""
    backend = backend or crontab_backend()
    text = backend.read()
    if _find(text, project.key) is not None:
        backend.write(_with_line(text, project.key, None))
        log.info("removed the nightly line from %s", backend.where)
    return _state(project, None, backend)


def cron_status(project: Project, backend: CrontabBackend | None = None) -> CronState:
    """Whether the repo's nightly line is installed."""
    backend = backend or crontab_backend()
    return _state(project, _find(backend.read(), project.key), backend)


def validate_schedule(schedule: str) -> str:
    """The schedule with its spacing normalised; CodelearnError if cron would reject it."""
    fields = schedule.split()
    if len(fields) == 1 and fields[0].startswith("@"):
        if fields[0].lower() not in _MACROS:
            raise CodelearnError(f"Unknown cron schedule {schedule!r}.", _SCHEDULE_FIX)
        return fields[0].lower()
    if len(fields) != 5:
        raise CodelearnError(f"The cron schedule {schedule!r} has {len(fields)} fields, not 5.",
                             _SCHEDULE_FIX)
    for field, spec in zip(fields, _FIELDS):
        for item in field.split(","):
            _check_item(item, spec, schedule)
    return " ".join(fields)


def cron_line(project: Project, schedule: str) -> str:
    """The whole crontab line (without its newline) for the repo."""
    root = str(project.root)
    if "\n" in root or "\r" in root:
        raise CodelearnError(f"The repo path {root!r} contains a line break; cron cannot run it.",
                             "Move the repository to a path without one.")
    command = (f"cd {shlex.quote(root)} && {executable()} train --nightly --quiet"
               f" >> {shlex.quote(str(log_path(project)))} 2>&1 {MARKER} {project.key} {root}")
    return f"{schedule} {_escape_percent(command)}"


def executable() -> str:
    """How cron should start this codelearn, quoted for sh."""
    python = Path(sys.executable)
    script = python.parent / "codelearn"
    if script.is_file() and os.access(script, os.X_OK):
        return shlex.quote(str(script))
    return f"{shlex.quote(str(python))} -m codelearn"


def log_path(project: Project) -> Path:
    """Where the nightly runs append their output."""
    return project.state / "logs" / LOG_NAME


def _check_item(item: str, spec: tuple, schedule: str) -> None:
    name, low, high, names = spec
    match = _ITEM_RE.match(item.lower())
    if not match:
        raise CodelearnError(f"The {name} field {item!r} of {schedule!r} is not valid cron syntax.",
                             _SCHEDULE_FIX)
    if match.group(1) != "*":
        for value in match.group(1).split("-"):
            if value not in names and not (value.isdigit() and low <= int(value) <= high):
                raise CodelearnError(
                    f"The {name} field of {schedule!r} has {value!r}; it must be {low}-{high}.",
                    _SCHEDULE_FIX)
    if match.group(2) is not None and int(match.group(2)) == 0:
        raise CodelearnError(f"The {name} field of {schedule!r} has a step of 0.", _SCHEDULE_FIX)


def _escape_percent(command: str) -> str:
    # Cron turns an unescaped % in the command into a newline (the rest becomes stdin),
    # and offers no way to write a literal backslash before a %.
    if "\\%" in command:
        raise CodelearnError(f"Cron cannot run a command with a backslash before %: {command}",
                             "Move the repository (or codelearn) to a path without `\\%`.")
    return command.replace("%", "\\%")


def _ensure_log_dir(project: Project) -> None:
    project.ensure_state()
    log_path(project).parent.mkdir(exist_ok=True)


def _state(project: Project, line: str | None, backend: CrontabBackend) -> CronState:
    return CronState(installed=line is not None, schedule=_schedule_of(line) if line else None,
                     line=line, where=backend.where, log_path=str(log_path(project)))


def _lines(text: str) -> list[str]:
    """The crontab's lines with their newlines, byte for byte (the last may lack one)."""
    # Not str.splitlines: it also splits at \r, \f and other characters cron does not.
    return re.findall(r"[^\n]*\n|[^\n]+$", text)


def _is_ours(line: str, key: str) -> bool:
    if line.lstrip().startswith("#"):
        return False  # a commented-out line is the user's, and cron ignores it anyway
    match = _MARKER_RE.search(line)
    return match is not None and match.group(1) == key


def _find(text: str, key: str) -> str | None:
    return next((line.rstrip("\n") for line in _lines(text) if _is_ours(line, key)), None)


def _with_line(text: str, key: str, new: str | None) -> str:
    """The crontab with the repo's line replaced in place (or removed, or appended)."""
    kept: list[str] = []
    for line in _lines(text):
        if not _is_ours(line, key):
            kept.append(line)
        elif new is not None:
            kept.append(new + "\n")
            new = None  # any further copies of our line are dropped
    if kept and not kept[-1].endswith("\n"):
        kept[-1] += "\n"  # cron ignores (and `crontab -` refuses) a last line without one
    if new is not None:
        kept.append(new + "\n")
    return "".join(kept)


def _schedule_of(line: str) -> str:
    fields = line.split()
    return fields[0] if fields[0].startswith("@") else " ".join(fields[:5])


def _crontab(args: list[str], stdin: bytes | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["crontab", *args], input=stdin, capture_output=True, check=False)
    except FileNotFoundError:
        raise CodelearnError(
            "The `crontab` program is not installed, so codelearn cannot schedule nightly runs.",
            "Install cron (Debian/Ubuntu: `sudo apt-get install cron`, Fedora: "
            "`sudo dnf install cronie`), or set CODELEARN_CRONTAB to a crontab file to write.",
        ) from None


def _decode(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")  # undecodable bytes survive a rewrite


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())
