"""Questions about held-out code whose answers are literal facts a string match can check.

"What does X do?" cannot be judged without a person; "Which exception does X raise?" can:
the answer is right when it names `ValueError`. From each held-out Python definition this
reads (with `ast`, never a model) the facts a user asks about and the code states outright:

- the exception it raises (`raise NotFound(...)` → `NotFound`);
- a parameter's default (`def f(x, retries=3)` → `3`);
- a helper it calls by name that the repo defines (`_normalise(...)` → `_normalise`);
- the string constant it returns (`return "v1/"` → `v1/`);
- the file it lives in, and for a method its class.

Each question is asked through the real `ask` pipeline (retrieval included) with every model
being compared, and judged by whether the answer holds the fact. Where the code states
several right answers (a function that raises two exceptions, calls two helpers), naming
any of them is right; naming a wrong one besides is not: an answer that lists every repo
function in sight, or every exception it can think of, states no fact.
"""

from __future__ import annotations

import ast
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

from codelearn.corpus.units import Unit
from codelearn.evaluate.answering import bare_name

MAX_PER_UNIT = 2  # facts asked per definition, so that one long function does not dominate
MIN_LITERAL = 2  # shorter returned strings ("", "x") match by accident
MIN_NAME = 4  # shorter helper names ("f", "run") match by accident
DEFINITIONS = ("function", "method", "class")


@dataclass(frozen=True)
class Fact:
    """One question and the literal its answer must contain."""

    kind: str  # raises | default | calls | returns | file | class
    question: str
    answer: str  # the literal fact
    key: str  # the unit asked about
    path: str
    others: tuple[str, ...] = ()  # further right answers (a second exception it raises...)
    # names of the same kind that make an answer wrong (the repo's other functions, for `calls`)
    rivals: frozenset[str] = field(default=frozenset(), repr=False, compare=False)

    @property
    def answers(self) -> tuple[str, ...]:
        return (self.answer, *self.others)

    def as_json(self) -> dict:
        data = asdict(self)
        del data["rivals"]
        return data


def _name(unit: Unit) -> str:
    return bare_name(unit.symbol)


def _function(unit: Unit) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    import textwrap

    try:
        tree = ast.parse(textwrap.dedent(unit.text))
    except SyntaxError:
        return None
    node = tree.body[0] if tree.body else None
    return node if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) else None


def _raised(fn) -> list[str]:
    names = []
    for node in ast.walk(fn):
        if isinstance(node, ast.Raise) and node.exc is not None:
            target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(target, ast.Name) and target.id[:1].isupper():
                names.append(target.id)
            elif isinstance(target, ast.Attribute) and target.attr[:1].isupper():
                names.append(target.attr)
    return list(dict.fromkeys(names))


def _defaults(fn) -> list[tuple[str, str]]:
    args = fn.args.posonlyargs + fn.args.args
    pairs = list(zip([a.arg for a in args[len(args) - len(fn.args.defaults):]], fn.args.defaults))
    pairs += [(a.arg, d) for a, d in zip(fn.args.kwonlyargs, fn.args.kw_defaults) if d is not None]
    out = []
    for name, node in pairs:
        if isinstance(node, ast.Constant) and node.value is not None and not isinstance(node.value, bool) \
                and len(repr(node.value)) >= 1:
            out.append((name, ast.unparse(node)))
    return out


def _calls(fn, defined: set[str]) -> list[str]:
    """Repo functions called by plain name: `obj.get(...)` may be any object's method (a dict's
    `get`), so attribute calls are no fact."""
    names = []
    for node in ast.walk(fn):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id in defined and node.func.id != fn.name and len(node.func.id) >= MIN_NAME:
                names.append(node.func.id)
    return list(dict.fromkeys(names))


def _returned_strings(fn) -> list[str]:
    out = []
    for node in ast.walk(fn):
        if isinstance(node, ast.Return) and isinstance(node.value, ast.Constant) \
                and isinstance(node.value.value, str) and len(node.value.value.strip()) >= MIN_LITERAL:
            out.append(node.value.value)
    return list(dict.fromkeys(out))


def facts_for(unit: Unit, defined: set[str]) -> list[Fact]:
    """The checkable facts of one held-out Python definition, most specific first."""
    name, facts = _name(unit), []

    def add(kind: str, question: str, answers: list[str], rivals: frozenset[str] = frozenset()) -> None:
        if answers:
            facts.append(Fact(kind, question, answers[0], unit.key, unit.path, tuple(answers[1:]), rivals))

    fn = _function(unit) if unit.language == "python" else None
    if fn is not None:
        add("raises", f"Which exception does `{name}` raise?", _raised(fn))
        for param, value in _defaults(fn)[:1]:
            add("default", f"What is the default value of the `{param}` parameter of `{name}`?", [value])
        add("returns", f"What string does `{name}` return?", _returned_strings(fn))
        called = _calls(fn, defined)
        add("calls", f"Which function defined in this repo does `{name}` call?", called,
            frozenset(defined - {*called, name}))
    if "." in unit.symbol and unit.kind == "method":
        add("class", f"Which class defines the method `{name}`?", [unit.symbol.rsplit(".", 2)[-2]])
    add("file", f"In which file is `{name}` defined?", [unit.path.rsplit("/", 1)[-1]])
    return facts[:MAX_PER_UNIT]


def holds(answer_text: str, fact: Fact) -> bool:
    """Does the answer state the fact (any of its right answers) and no wrong one of its kind?
    Identifiers as whole words (an exception may be qualified, `typer.Exit`); literals verbatim."""
    stated = any(_states(answer_text, fact.kind, answer) for answer in fact.answers)
    return stated and not _wrong_named(answer_text, fact)


# an exception's name as answers write it, qualified or not: `ValueError`, `errors.NotFound`
EXCEPTION = re.compile(r"(?<![\w.])(?:\w+\.)*([A-Z]\w*(?:Error|Exception|Exit|Warning|Interrupt|Abort))(?!\w)")
# what names the right exception's base class rather than a second answer: "a subclass of ValueError"
BASE_CLASS = re.compile(r"(?:subclass(?:es)? of|inherit(?:s|ing)? from|deriv(?:ed|es|ing) from|base class(?:es)?"
                        r"(?: is| are)?)\s*[`'\"]?$", re.IGNORECASE)


def _wrong_named(answer_text: str, fact: Fact) -> bool:
    """Whether the answer also puts forward a wrong exception (`raises`: not one named as the right
    one's base class) or another repo function (`calls`: named as code, in backticks or called, or a
    name no English word has, with `_`)."""
    if fact.kind == "raises":
        return any(m.group(1) not in fact.answers and not BASE_CLASS.search(answer_text[:m.start()])
                   for m in EXCEPTION.finditer(answer_text))
    if fact.kind == "calls" and fact.rivals:
        named = set(re.findall(r"`([A-Za-z_]\w*)[`(]", answer_text))
        named |= set(re.findall(r"(?<![\w.])([A-Za-z_]\w*)\(", answer_text))
        named |= set(re.findall(r"(?<![\w./])(\w*_\w*)(?!\w|\.\w)", answer_text))  # not a file's name
        return bool(named & fact.rivals)
    return False


def _states(answer_text: str, kind: str, answer: str) -> bool:
    if kind == "raises":
        return re.search(rf"(?<![\w.])(?:\w+\.)*{re.escape(answer)}(?!\w)", answer_text) is not None
    if kind in ("calls", "class", "file"):
        return re.search(rf"(?<![\w.]){re.escape(answer)}(?!\w)", answer_text) is not None
    wanted = answer.strip("'\"") if kind == "default" else answer
    return wanted in answer_text


def _defined_twice(units: list[Unit]) -> set[str]:
    """Names the repo defines more than once: "which class defines `__call__`?" or "what does
    `__init__` raise?" has no single answer when several classes define one."""
    keys: dict[str, set[str]] = {}
    for unit in units:
        if unit.symbol and unit.kind in DEFINITIONS:
            keys.setdefault(_name(unit), set()).add(unit.key)
    return {name for name, where in keys.items() if len(where) > 1}


def build_facts(units: list[Unit], everything: list[Unit], limit: int) -> list[Fact]:
    """Up to `limit` facts about `units` (held-out code), spread over as many definitions as
    possible; `everything` names the repo's own functions (what counts as a helper)."""
    defined = {_name(u) for u in everything if u.symbol and u.kind in ("function", "method")}
    ambiguous = _defined_twice([*everything, *units])
    per_unit = [facts_for(u, defined) for u in sorted(units, key=lambda u: u.key)
                if u.symbol and u.kind in DEFINITIONS and _name(u) not in ambiguous]
    out: list[Fact] = []
    for round_ in range(MAX_PER_UNIT):  # first fact of every definition, then the second ones
        out += [facts[round_] for facts in per_unit if len(facts) > round_]
    return out[:limit]


def ask_facts(project, facts: list[Fact], models: dict[str, str], *, max_tokens: int = 96,
              progress: Callable[[str, int, int], None] | None = None) -> dict:
    """Each fact's question to each model through `ask` (retrieval included); the answers and
    how many facts each model got right."""
    from codelearn.ask.pipeline import AskOptions, open_conversation

    options = AskOptions.from_settings(project.settings, answer_tokens=max_tokens, temperature=0.0)
    items = [{**f.as_json(), "answers": {}} for f in facts]
    right: dict[str, int] = {}
    seconds: dict[str, float] = {}
    for label, model in models.items():
        started = time.perf_counter()
        with open_conversation(project, options, model) as conversation:
            for done, (fact, item) in enumerate(zip(facts, items), 1):
                conversation.reset()
                text = conversation.ask(fact.question).text
                item["answers"][label] = {"text": text, "right": holds(text, fact)}
                right[label] = right.get(label, 0) + holds(text, fact)
                if progress:
                    progress(f"facts ({label})", done, len(facts))
        seconds[label] = round(time.perf_counter() - started, 1)
    return {"questions": len(facts), "right": right,
            "share_right": {m: round(n / len(facts), 4) for m, n in right.items()} if facts else {},
            "seconds": seconds, "items": items}
