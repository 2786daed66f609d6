"""Answering: ask the answer model about held-out code and check what can be checked cheaply.

Two questions per held-out definition, through the real `ask` pipeline: where
it is defined (right when the answer names its path, or a trailing part of it
such as the file name) and what it does (judged only on whether the answer
names the symbol and whether the definition's file was among the excerpts the
model was shown). Explanations themselves are not judged: that needs a person
or a stronger model, and a number pretending otherwise would mislead.
"""

from __future__ import annotations

import random
import re
import time
from typing import Callable

from codelearn.corpus.units import Unit

KINDS = ("function", "method", "class")
MIN_NAME = 3  # shorter names ("f", "id") match by accident; `used_excerpts` draws the same line
MAX_EXAMPLES = 4
EXAMPLE_CHARS = 300
PATH_TOKEN = re.compile(r"[\w./-]+")
NOTES = (
    "Explanations are not judged: only whether an answer names the right file, names the symbol, "
    "and cites code it was shown.",
    "Held-out code is still in the index, so answers can read it from retrieved excerpts: this "
    "measures retrieval and answering together, not what the model memorised.",
    "Naming the symbol is a weak signal: the question names it, so it mostly catches answers "
    "that wander off to other code.",
    "A `where` answer counts as right when it names the file's path or a trailing part of it "
    "(the file name alone counts).",
)


# -- judging (pure) ------------------------------------------------------------------

def bare_name(symbol: str) -> str:
    """`Cls.meth` → `meth`: the name a user would type."""
    return symbol.rsplit(".", 1)[-1]


def mentioned_paths(text: str) -> list[str]:
    """Path-like words of `text`, without a leading `./` or trailing punctuation."""
    paths = []
    for token in PATH_TOKEN.findall(text):
        token = token.rstrip("./-")
        while token.startswith("./"):
            token = token[2:]
        if token:
            paths.append(token)
    return paths


def names_path(text: str, path: str) -> bool:
    """True when `text` mentions `path` or a trailing part of it (`train/x.py`, `x.py`)."""
    parts = path.split("/")
    for mention in mentioned_paths(text):
        said = mention.split("/")
        # A mention with other leading folders (`lib/x.py` for `app/x.py`) names another file.
        if len(said) <= len(parts) and parts[-len(said):] == said:
            return True
    return False


def where_correct(answer_text: str, unit: Unit) -> bool:
    """Does a `where is it defined?` answer name the unit's file?"""
    return names_path(answer_text, unit.path)


def names_symbol(answer_text: str, unit: Unit) -> bool:
    """Does the answer mention the unit's bare name as a whole word (backticks or `Cls.` allowed)?"""
    name = re.escape(bare_name(unit.symbol))
    return re.search(rf"(?<!\w){name}(?!\w)", answer_text) is not None


def target_in_sources(answer: dict, unit: Unit) -> bool:
    """Was the unit's file among the excerpts shown to the model (`Answer.as_json()` form)?"""
    return any(s["path"] == unit.path and s["source"] == unit.source for s in answer["sources"])


def share(part: int, whole: int) -> float | None:
    """part / whole to 4 decimals; None when there is nothing to divide by."""
    return round(part / whole, 4) if whole else None


# -- choosing what to ask about ------------------------------------------------------

def askable(units: list[Unit]) -> list[Unit]:
    """One unit per unambiguous definition, in a stable order.

    A name defined twice (two `run` methods) has no single right `where`, and a
    long function split into several chunks is still one definition.
    """
    first: dict[tuple[str, str, str], Unit] = {}
    for unit in sorted(units, key=lambda u: (u.source, u.path, u.start_line)):
        if unit.symbol and unit.kind in KINDS and len(bare_name(unit.symbol)) >= MIN_NAME:
            first.setdefault((unit.source, unit.path, unit.symbol), unit)
    per_name: dict[str, list[Unit]] = {}
    for unit in first.values():
        per_name.setdefault(bare_name(unit.symbol), []).append(unit)
    return [group[0] for group in per_name.values() if len(group) == 1]


def pick_units(units: list[Unit], limit: int, seed: int) -> list[Unit]:
    """Up to `limit` askable units, the same ones for the same seed and units."""
    candidates = askable(units)
    return random.Random(seed).sample(candidates, min(max(limit, 0), len(candidates)))


def questions_for(unit: Unit) -> list[tuple[str, str]]:
    """(kind, question) pairs asked about one unit."""
    name = bare_name(unit.symbol)
    return [("where", f"Where is `{name}` defined?"), ("what", f"What does `{name}` do?")]


# -- asking --------------------------------------------------------------------------

def judged(kind: str, answer: dict, unit: Unit, seconds: float) -> dict:
    """One question's verdicts, from the answer's JSON."""
    verdict = where_correct if kind == "where" else names_symbol
    citations = answer["citations"]
    return {"kind": kind, "question": answer["question"], "expected_path": unit.path,
            "answer": answer["answer"][:EXAMPLE_CHARS], "verdict": verdict(answer["answer"], unit),
            "target_in_sources": target_in_sources(answer, unit), "seconds": seconds,
            "citations": len(citations), "verified": sum(bool(c["verified"]) for c in citations)}


def ask_all(project, picked: list[Unit], *, model: str, max_tokens: int,
            progress: Callable[[int, int], None] | None) -> tuple[list[dict], dict]:
    """Every question about `picked`, each on a fresh conversation turn; (results, model json)."""
    from codelearn.ask.pipeline import AskOptions, open_conversation

    options = AskOptions.from_settings(project.settings, answer_tokens=max_tokens, temperature=0.0)
    asks = [(kind, question, unit) for unit in picked for kind, question in questions_for(unit)]
    results, model_json = [], {}
    # One model load for all questions: loading per question would dominate the time.
    with open_conversation(project, options, model) as conversation:
        for done, (kind, question, unit) in enumerate(asks, 1):
            conversation.reset()  # answers must not lean on earlier ones
            started = time.perf_counter()
            answer = conversation.ask(question).as_json()
            # The first question also waits for the model to load; that is not an answer's cost.
            seconds = time.perf_counter() - started - answer["timings"].get("load_wait_s", 0.0)
            model_json = model_json or answer["model"]
            results.append(judged(kind, answer, unit, seconds))
            if progress:
                progress(done, len(asks))
    return results, model_json


def summary(results: list[dict], model_json: dict) -> dict:
    """The section's JSON from per-question results."""
    where = [r for r in results if r["kind"] == "where"]
    what = [r for r in results if r["kind"] == "what"]
    total = sum(r["citations"] for r in results)
    verified = sum(r["verified"] for r in results)
    return {
        "questions": len(results),
        "model": model_json,
        "where_correct": share(sum(r["verdict"] for r in where), len(where)),
        "names_symbol": share(sum(r["verdict"] for r in what), len(what)),
        "target_in_sources": share(sum(r["target_in_sources"] for r in results), len(results)),
        "citations": {"total": total, "verified": verified, "share_verified": share(verified, total)},
        "seconds_per_answer": round(sum(r["seconds"] for r in results) / len(results), 3),
        "examples": [example(r) for r in results[:MAX_EXAMPLES]],
        "notes": list(NOTES),
    }


def example(result: dict) -> dict:
    """A result as the report shows it: the verdict under its own name."""
    verdict = "where_correct" if result["kind"] == "where" else "names_symbol"
    return {"question": result["question"], "expected_path": result["expected_path"],
            "answer": result["answer"], verdict: result["verdict"],
            "target_in_sources": result["target_in_sources"]}


def answering_section(project, units: list, *, model: str = "", limit: int = 8, seed: int = 0,
                      max_tokens: int = 160, progress: Callable[[int, int], None] | None = None) -> dict:
    """Ask the answer model where held-out definitions live and what they do; judge names only."""
    picked = pick_units(units, limit, seed)
    if not picked:
        return {"questions": 0, "notes": ["no held-out code with symbols to ask about"]}
    results, model_json = ask_all(project, picked, model=model, max_tokens=max_tokens, progress=progress)
    section = summary(results, model_json)
    section["notes"].append(f"Asked about {len(picked)} of {len(askable(units))} held-out definitions; "
                            "names defined more than once were skipped (no single right `where`).")
    return section
