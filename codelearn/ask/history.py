"""Every answered question, kept per repo with the user's feedback, on the user's own disk.

One SQLite file, `.codelearn/history.db`: each `ask`, `chat` and MCP turn (question, the sources
the model was shown, which model answered, the answer, when) is one row, written in one
transaction once the answer is complete, so a turn killed mid-answer is not stored at all and a
stored one is whole. Feedback (good, bad, the correct answer, the correct location) is kept on
the turn. Secrets are redacted from everything stored, as in the index. Nothing leaves the
machine; `clear` deletes the file.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from codelearn.errors import CodelearnError
from codelearn.sources.secrets import redact_secrets

SCHEMA = 1
FILE = "history.db"
ORIGINS = ("ask", "chat", "mcp", "api")
_REF = re.compile(r"^(?:last|LAST)(?:~(\d+))?$")
_LOCATION = re.compile(r"^(\S+):(\d+)(?:-(\d+))?$")


def parse_location(where: str) -> tuple[str, int, int | None]:
    """`path:line` or `path:start-end` as (path, start, end or None); refused with the fix otherwise."""
    match = _LOCATION.match(where)
    if not match:
        raise CodelearnError(f"{where!r} is not a location.", "Give it as path:line or path:start-end.")
    path, start, end = match.groups()
    return path, int(start), int(end) if end else None


@dataclass(frozen=True)
class Turn:
    id: int
    time: float
    origin: str
    question: str
    answer: str
    model: str
    sources: list[dict]
    feedback: str = ""  # "good", "bad" or ""
    correction: str = ""  # the answer the user says is right
    correct_source: str = ""  # path:line the user says holds the answer

    def as_json(self) -> dict:
        return {"id": self.id, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.time)),
                "origin": self.origin, "question": self.question, "answer": self.answer, "model": self.model,
                "sources": self.sources, "feedback": self.feedback or None,
                "correction": self.correction or None, "correct_source": self.correct_source or None}


def _clean(text: str) -> str:
    return redact_secrets(text, "history")[0]


class History:
    """The repo's question history (see the module doc)."""

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / FILE
        self._db: sqlite3.Connection | None = None

    def __enter__(self) -> History:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _open(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=10)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            db.execute("""CREATE TABLE IF NOT EXISTS turns (
                id INTEGER PRIMARY KEY AUTOINCREMENT, time REAL NOT NULL, origin TEXT NOT NULL,
                question TEXT NOT NULL, answer TEXT NOT NULL, model TEXT NOT NULL, sources TEXT NOT NULL,
                feedback TEXT NOT NULL DEFAULT '', correction TEXT NOT NULL DEFAULT '',
                correct_source TEXT NOT NULL DEFAULT '')""")
            row = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA),))
                db.commit()
            elif int(row[0]) != SCHEMA:
                db.close()
                raise CodelearnError(f"{self.path} was written by another codelearn version (schema {row[0]}).",
                                     "Upgrade codelearn, or run `codelearn history clear` to start over.")
            self._db = db
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def record(self, answer: dict, origin: str) -> int:
        """Store one answered turn (`Answer.as_json()`); returns its id."""
        if origin not in ORIGINS:
            raise ValueError(f"origin must be one of {ORIGINS}")
        sources = [{key: s.get(key) for key in ("path", "source", "start_line", "end_line", "used")}
                   for s in answer.get("sources", [])]
        db = self._open()
        with db:  # one transaction: the turn is stored whole or not at all
            cursor = db.execute(
                "INSERT INTO turns (time, origin, question, answer, model, sources) VALUES (?, ?, ?, ?, ?, ?)",
                (time.time(), origin, _clean(answer["question"]), _clean(answer["answer"]),
                 (answer.get("model") or {}).get("name", ""), json.dumps(sources)))
        return int(cursor.lastrowid)

    def turns(self, limit: int = 20, search: str = "") -> list[Turn]:
        """The newest turns first; `search` keeps those whose question or answer holds it."""
        if not self.path.exists():
            return []
        query, args = "SELECT * FROM turns", []
        if search:
            query += " WHERE instr(lower(question), lower(?)) OR instr(lower(answer), lower(?))"
            args += [search, search]
        query += " ORDER BY id DESC LIMIT ?"
        rows = self._open().execute(query, [*args, limit]).fetchall()
        return [_turn(row) for row in rows]

    def get(self, ref: str) -> Turn:
        """A turn by id, or `last` (`last~1` the one before it...)."""
        db = self._open()
        match = _REF.match(ref.strip())
        if match:
            row = db.execute("SELECT * FROM turns ORDER BY id DESC LIMIT 1 OFFSET ?",
                             (int(match.group(1) or 0),)).fetchone()
        elif ref.strip().isdigit():
            row = db.execute("SELECT * FROM turns WHERE id = ?", (int(ref),)).fetchone()
        else:
            raise CodelearnError(f"{ref!r} names no turn.", "Use a turn id from `codelearn history`, or LAST.")
        if row is None:
            raise CodelearnError(f"No turn {ref} in this repo's history.",
                                 "`codelearn history` lists the turns kept; ask something first.")
        return _turn(row)

    def feedback(self, ref: str, *, good: bool | None = None, answer: str = "", source: str = "") -> Turn:
        """Mark a turn good or bad, or give the correct answer or location (a correction marks it bad)."""
        turn = self.get(ref)
        if source:
            parse_location(source)
        verdict = "good" if good else "bad" if (good is False or answer or source) else turn.feedback
        db = self._open()
        with db:
            db.execute("UPDATE turns SET feedback = ?, correction = ?, correct_source = ? WHERE id = ?",
                       (verdict, _clean(answer) or turn.correction, source or turn.correct_source, turn.id))
        return self.get(str(turn.id))

    def feedback_digest(self) -> str:
        """Changes when any feedback changes (what `train --nightly` learns from use)."""
        import hashlib

        if not self.path.exists():
            return ""
        rows = self._open().execute("SELECT id, feedback, correction, correct_source FROM turns "
                                    "WHERE feedback != '' ORDER BY id").fetchall()
        return hashlib.sha256(json.dumps(rows).encode()).hexdigest()

    def clear(self) -> int:
        """Delete the history file (and SQLite's side files); returns how many turns it held."""
        count = self._open().execute("SELECT count(*) FROM turns").fetchone()[0] if self.path.exists() else 0
        self.close()
        for suffix in ("", "-wal", "-shm"):
            Path(str(self.path) + suffix).unlink(missing_ok=True)
        return count


def _turn(row) -> Turn:
    (id_, when, origin, question, answer, model, sources, feedback, correction, correct_source) = row
    return Turn(id_, when, origin, question, answer, model, json.loads(sources), feedback, correction,
                correct_source)
