"""General material the base model already knows: the running Python's standard
library, split into a replay half (trained on, against forgetting) and a probe
half (never trained on: the forgetting measure), plus generic coding prompts."""

from __future__ import annotations

import random
import sysconfig
from pathlib import Path

from codelearn.corpus.split import in_random_slice
from codelearn.corpus.units import Unit, keep, overlapping

_SKIP_PARTS = {"test", "tests", "idlelib", "lib2to3", "site-packages", "turtledemo", "__pycache__",
               "ensurepip", "pydoc_data", "encodings"}
STDLIB_SOURCE = "general:stdlib"

PROMPTS = (
    "Write a Python function that checks whether a string is a palindrome, ignoring case and punctuation.",
    "Explain the difference between a list and a tuple in Python.",
    "Write a function that merges two sorted lists into one sorted list.",
    "How do I read a CSV file and sum one column in Python?",
    "Write a JavaScript function that debounces another function.",
    "What does a SQL LEFT JOIN return? Give a short example.",
    "Write a Python class for a stack with push, pop and peek.",
    "Explain what a race condition is and how a lock prevents it.",
    "Write a binary search over a sorted list in Python.",
    "How do I parse command-line arguments in Python with argparse?",
    "Write a Go function that reverses a slice of integers in place.",
    "What is the time complexity of inserting into a Python dict, and why?",
    "Write a regular expression that matches an ISO date like 2024-01-31, and explain it.",
    "Write a Python generator that yields the Fibonacci numbers.",
    "How do I make an HTTP GET request in Python using only the standard library?",
    "Explain what a closure is, with a short Python example.",
    "Write a function that flattens a nested list of arbitrary depth.",
    "How should I handle exceptions when opening a file in Python?",
    "Write a Rust function that counts the words in a string.",
    "Explain the difference between git merge and git rebase.",
    "Write a Python decorator that measures how long a function takes.",
    "How do I remove duplicates from a list while keeping its order?",
    "Write a TypeScript interface for a user with an optional email.",
    "Explain what Big-O notation describes, in two sentences.",
)
# More breadth for the chat replay: everyday tasks in the languages people ask about most.
_TASKS = (
    "read a text file line by line and count the lines that contain a given word",
    "parse a date string like 2024-01-31 and return the day of the week",
    "remove the duplicates from a list of strings, keeping the first occurrence",
    "retry a function up to three times when it raises an error",
    "validate that a string is a well-formed email address",
    "merge two dictionaries or maps, the second one winning on conflicts",
    "compute the moving average of a list of numbers with a window of size k",
    "split a long text into chunks of at most n characters without breaking words",
)
_LANGUAGES = ("Python", "JavaScript", "Go", "Java", "Rust")
PROMPTS = PROMPTS + tuple(f"How would you {task} in {language}? Show the code and explain it briefly."
                          for task in _TASKS for language in _LANGUAGES)


def stdlib_files(root: Path | None = None) -> list[Path]:
    """The stdlib's own .py files, without tests and bundled tools, in a stable order."""
    root = root or Path(sysconfig.get_paths()["stdlib"])
    return sorted(p for p in root.rglob("*.py") if not _SKIP_PARTS & set(p.relative_to(root).parts))


def general_units(half: str, files: int, seed: int, root: Path | None = None,
                  exclude: list[Unit] = ()) -> list[Unit]:
    """Chunks of `files` stdlib modules from the `replay` or the `probe` half, leaving out any that
    hold the text of an `exclude` unit (a repo that vendors stdlib modules must not see its held-out
    code in the replay, nor its training code in the forgetting probes)."""
    from codelearn.index.chunker import chunk_file

    root = root or Path(sysconfig.get_paths()["stdlib"])
    pool = [p for p in stdlib_files(root)
            if in_random_slice(str(p.relative_to(root)), 0.5, seed) == (half == "probe")]
    chosen = random.Random(seed).sample(pool, min(files, len(pool)))
    units = []
    for path in sorted(chosen):
        rel = str(path.relative_to(root))
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        for n, chunk in enumerate(chunk_file(rel, text)):
            unit = Unit(-1, STDLIB_SOURCE, rel, chunk.language, chunk.kind, chunk.symbol, chunk.start_line,
                        chunk.end_line, chunk.text, chunk.context, False, None)
            if keep(unit):
                units.append(unit)
    clash = overlapping(units, list(exclude)) if exclude else set()
    return [unit for i, unit in enumerate(units) if i not in clash]


def prompt_halves(seed: int) -> tuple[list[str], list[str]]:
    """Generic prompts split into (replay, probe) halves."""
    order = list(PROMPTS)
    random.Random(seed).shuffle(order)
    middle = len(order) * 2 // 3
    return order[:middle], order[middle:]
