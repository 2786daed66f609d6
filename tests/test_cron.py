"""The nightly crontab line: written to real crontab files, run by a real sh.

The user's real crontab is never touched: most tests point CODELEARN_CRONTAB at
a temporary file, and SystemCrontab is checked against a stand-in `crontab`
program on PATH that keeps its crontab in a temporary file too.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from codelearn.cli import app
from codelearn.cron import (
    DEFAULT_SCHEDULE,
    FileCrontab,
    SystemCrontab,
    cron_status,
    crontab_backend,
    executable,
    install_cron,
    uninstall_cron,
    validate_schedule,
)
from codelearn.errors import CodelearnError
from codelearn.project import open_project
from conftest import make_repo

FAKE_CRONTAB = """\
#!/bin/sh
# Stands in for crontab(1), keeping "the user's crontab" in $FAKE_CRONTAB_FILE.
case "$1" in
    -l) if [ -f "$FAKE_CRONTAB_FILE" ]; then cat "$FAKE_CRONTAB_FILE"; exit 0; fi
        echo "no crontab for tester" >&2; exit 1 ;;
    -)  cat > "$FAKE_CRONTAB_FILE" ;;
    *)  echo "usage" >&2; exit 2 ;;
esac
"""

OTHER_LINES = (
    "SHELL=/bin/sh\n"
    "# m h dom mon dow command\n"
    "0 * * * * echo hourly >> /tmp/hourly.log\n"
    "\n"
    "#30 2 * * * cd /old && codelearn train --nightly # codelearn nightly 000000000000 /old\n"
    "15 1 * * * backup --all # last line, no newline"
)

runner = CliRunner()


@pytest.fixture
def crontab(tmp_path: Path, monkeypatch) -> Path:
    """A crontab file that codelearn is told to use instead of the user's crontab."""
    path = tmp_path / "crontabs" / "tester"
    monkeypatch.setenv("CODELEARN_CRONTAB", str(path))
    return path


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo", {"app.py": "def main():\n    return 1\n"})


def ours(text: str) -> list[str]:
    return [line for line in text.splitlines() if "codelearn nightly" in line
            and not line.startswith("#")]


def command_of(line: str) -> str:
    """What cron hands to sh for `line`: the part after the schedule, % unescaped."""
    command = line.split(None, 1 if line.startswith("@") else 5)[-1]
    assert not re.search(r"(?<!\\)%", command), "a bare % would end the command in cron"
    return command.replace("\\%", "%")


def test_install_writes_one_line(crontab, repo):
    project = open_project(repo)
    state = install_cron(project)
    lines = crontab.read_text().splitlines()
    assert lines == [state.line]
    assert state.installed and state.schedule == DEFAULT_SCHEDULE == "30 2 * * *"
    assert state.line.startswith("30 2 * * * cd ")
    assert str(repo) in state.line and project.key in state.line
    assert " train --nightly --quiet >> " in state.line
    assert state.where == str(crontab)
    assert state.log_path == str(repo / ".codelearn" / "logs" / "train-cron.log")
    assert (repo / ".codelearn" / "logs").is_dir()
    assert crontab.read_text().endswith("\n")


def test_install_twice_keeps_one_line(crontab, repo):
    project = open_project(repo)
    install_cron(project)
    install_cron(project)
    assert len(ours(crontab.read_text())) == 1
    install_cron(project, "0 3 * * mon-fri")
    assert ours(crontab.read_text())[0].startswith("0 3 * * mon-fri cd ")
    # Without --schedule a reinstall keeps the schedule the user chose.
    state = install_cron(project)
    assert state.schedule == "0 3 * * mon-fri" and len(ours(crontab.read_text())) == 1


def test_other_lines_are_kept_byte_for_byte(crontab, repo):
    crontab.parent.mkdir()
    crontab.write_text(OTHER_LINES)
    project = open_project(repo)
    state = install_cron(project)
    assert crontab.read_text() == OTHER_LINES + "\n" + state.line + "\n"
    uninstall_cron(project)
    assert crontab.read_text() == OTHER_LINES + "\n"


def test_reinstall_replaces_the_line_where_it_was(crontab, repo):
    project = open_project(repo)
    first = install_cron(project)
    crontab.write_text("# before\n" + first.line + "\n# after\n")
    second = install_cron(project, "@daily")
    assert crontab.read_text() == "# before\n" + second.line + "\n# after\n"


def test_duplicate_lines_collapse_to_one(crontab, repo):
    project = open_project(repo)
    line = install_cron(project).line
    crontab.write_text(f"{line}\n# keep\n{line}\n")
    state = install_cron(project)
    assert crontab.read_text() == f"{state.line}\n# keep\n"


def test_two_repos_two_lines(crontab, tmp_path):
    one = open_project(make_repo(tmp_path / "one", {"a.py": "x = 1\n"}))
    two = open_project(make_repo(tmp_path / "two", {"b.py": "y = 2\n"}))
    install_cron(one)
    install_cron(two, "0 4 * * *")
    assert len(ours(crontab.read_text())) == 2
    uninstall_cron(one)
    remaining = ours(crontab.read_text())
    assert remaining == [cron_status(two).line] and str(tmp_path / "two") in remaining[0]
    assert not cron_status(one).installed and cron_status(two).schedule == "0 4 * * *"


def test_status_before_and_after(crontab, repo):
    project = open_project(repo)
    before = cron_status(project)
    assert not before.installed and before.line is None and before.schedule is None
    assert not crontab.exists()  # status never writes
    installed = install_cron(project, "@daily")
    assert cron_status(project) == installed
    assert installed.as_json() == {
        "installed": True, "schedule": "@daily", "line": installed.line,
        "where": str(crontab), "log_path": str(repo / ".codelearn/logs/train-cron.log"),
    }
    after = uninstall_cron(project)
    assert not after.installed and cron_status(project) == after
    assert crontab.read_text() == ""


def test_uninstall_when_absent_changes_nothing(crontab, repo):
    crontab.parent.mkdir()
    crontab.write_text(OTHER_LINES)
    assert not uninstall_cron(open_project(repo)).installed
    assert crontab.read_text() == OTHER_LINES  # not even the missing newline is added


def test_a_commented_out_line_is_not_ours(crontab, repo):
    project = open_project(repo)
    line = install_cron(project).line
    crontab.write_text(f"# {line}\n")
    assert not cron_status(project).installed
    state = install_cron(project)
    assert crontab.read_text() == f"# {line}\n{state.line}\n"


@pytest.mark.parametrize("schedule", [
    "30 2 * * *  *", "30 2 * *", "", "61 2 * * *", "0 24 * * *", "0 0 0 * *", "0 0 * 13 *",
    "0 0 * * 8", "*/0 * * * *", "a b c d e", "0 0 * * funday", "@nightly", "@daily 3",
])
def test_invalid_schedule(crontab, repo, schedule):
    with pytest.raises(CodelearnError) as caught:
        install_cron(open_project(repo), schedule)
    assert caught.value.fix and "30 2 * * *" in caught.value.fix
    assert not crontab.exists()


@pytest.mark.parametrize(("schedule", "normal"), [
    (" 30   2 * * * ", "30 2 * * *"), ("@DAILY", "@daily"), ("@hourly", "@hourly"),
    ("*/15 1,2 1-31 jan *", "*/15 1,2 1-31 jan *"), ("0 3 * * MON-FRI", "0 3 * * MON-FRI"),
    ("0 0 * * 7", "0 0 * * 7"), ("5-55/10 */2 * * 0", "5-55/10 */2 * * 0"),
])
def test_valid_schedule(schedule, normal):
    assert validate_schedule(schedule) == normal


def test_the_command_parses_in_sh(crontab, repo):
    line = install_cron(open_project(repo)).line
    done = subprocess.run(["sh", "-n", "-c", command_of(line)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_a_path_with_space_quote_and_percent_runs(crontab, tmp_path, monkeypatch):
    """Run the whole line in sh, with a stand-in codelearn next to a stand-in python."""
    bin_dir = tmp_path / "venv's bin %d"
    bin_dir.mkdir()
    (bin_dir / "python").write_text("")
    script = bin_dir / "codelearn"
    script.write_text('#!/bin/sh\necho "ran $* in $(pwd)"\n')
    script.chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(bin_dir / "python"))
    repo = make_repo(tmp_path / "it's my repo 100%", {"a.py": "x = 1\n"})
    state = install_cron(open_project(repo))
    command = command_of(state.line)

    cd_part = command.split(" && ")[0]
    done = subprocess.run(["sh", "-c", f"{cd_part} && pwd"], capture_output=True, text=True,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(repo)

    subprocess.run(["sh", "-c", command], check=True, cwd=tmp_path)
    assert Path(state.log_path).read_text() == f"ran train --nightly --quiet in {repo}\n"


def test_executable_falls_back_to_python_dash_m(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "executable", str(tmp_path / "py thon"))
    assert executable() == f"'{tmp_path}/py thon' -m codelearn"


def test_cli_end_to_end(crontab, repo):
    done = runner.invoke(app, ["cron", "install", "--repo", str(repo), "--schedule", "0 1 * * *"])
    assert done.exit_code == 0, done.output
    status = runner.invoke(app, ["cron", "status", "--json", "--repo", str(repo)])
    assert status.exit_code == 0, status.output
    data = json.loads(status.stdout)
    assert data["installed"] and data["schedule"] == "0 1 * * *"
    assert data["line"] == crontab.read_text().rstrip("\n") and data["where"] == str(crontab)

    plain = runner.invoke(app, ["cron", "status", "--repo", str(repo)])
    assert plain.stdout.strip() == data["line"]

    bad = runner.invoke(app, ["cron", "install", "--repo", str(repo), "--schedule", "every night"])
    assert bad.exit_code == 1 and "error:" in bad.output and "Traceback" not in bad.output

    done = runner.invoke(app, ["cron", "uninstall", "--repo", str(repo)])
    assert done.exit_code == 0, done.output
    after = json.loads(runner.invoke(app, ["cron", "status", "--json", "--repo", str(repo)]).stdout)
    assert after["installed"] is False and after["line"] is None
    assert crontab.read_text() == ""


def test_backend_choice(tmp_path, monkeypatch):
    assert isinstance(crontab_backend(), SystemCrontab)
    monkeypatch.setenv("CODELEARN_CRONTAB", str(tmp_path / "cron"))
    backend = crontab_backend()
    assert isinstance(backend, FileCrontab) and backend.where == str(tmp_path / "cron")


def test_file_crontab_keeps_the_file_mode(crontab, repo):
    crontab.parent.mkdir()
    crontab.write_text("# mine\n")
    crontab.chmod(0o600)
    install_cron(open_project(repo))
    assert crontab.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in crontab.parent.iterdir()] == ["tester"]  # no temp file left


def test_missing_crontab_program(repo, tmp_path, monkeypatch):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(CodelearnError) as caught:
        cron_status(open_project(repo))
    assert "not installed" in caught.value.message and "apt-get install cron" in caught.value.fix
    result = runner.invoke(app, ["cron", "status", "--repo", str(repo)])
    assert result.exit_code == 1 and "apt-get install cron" in result.output


@pytest.fixture
def fake_crontab(tmp_path: Path, monkeypatch) -> Path:
    """A stand-in crontab(1) first on PATH; returns the file holding its crontab."""
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    program = bin_dir / "crontab"
    program.write_text(FAKE_CRONTAB)
    program.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    store = tmp_path / "fake-crontab"
    monkeypatch.setenv("FAKE_CRONTAB_FILE", str(store))
    return store


@pytest.mark.parametrize("kind", ["system", "file"])
def test_both_backends_keep_the_same_contract(kind, fake_crontab, repo, tmp_path):
    backend = SystemCrontab() if kind == "system" else FileCrontab(tmp_path / "file-crontab")
    store = fake_crontab if kind == "system" else tmp_path / "file-crontab"
    assert backend.read() == ""  # "no crontab for tester" is an empty crontab
    project = open_project(repo)
    assert not cron_status(project, backend).installed
    store.write_text(OTHER_LINES)
    state = install_cron(project, backend=backend)
    assert store.read_text() == OTHER_LINES + "\n" + state.line + "\n"
    assert cron_status(project, backend) == state
    uninstall_cron(project, backend)
    assert store.read_text() == OTHER_LINES + "\n"


def test_system_crontab_reports_a_refusal(tmp_path, monkeypatch):
    refusing = tmp_path / "refusing-bin"
    refusing.mkdir()
    program = refusing / "crontab"
    program.write_text("#!/bin/sh\necho 'You (tester) are not allowed to use this program' >&2\n"
                       "exit 1\n")
    program.chmod(0o755)
    monkeypatch.setenv("PATH", f"{refusing}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(CodelearnError, match="not allowed"):
        SystemCrontab().read()  # a refusal is not an empty crontab
    with pytest.raises(CodelearnError, match="not allowed"):
        SystemCrontab().write("# x\n")


@pytest.mark.parametrize("name", ["two\nlines", "back\\%slash"])
def test_paths_cron_cannot_run_are_refused(crontab, tmp_path, name):
    folder = tmp_path / name
    folder.mkdir()
    with pytest.raises(CodelearnError):
        install_cron(open_project(folder))
    assert not crontab.exists()
