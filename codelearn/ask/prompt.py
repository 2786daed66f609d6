"""The words sent to the model: system rules, the context block, the question.

Kept soft on purpose: on the 0.5B default a strict "reply exactly: not found"
rule made the model refuse every question, even answerable ones
(benchmarks/MODELS.md, 4b).
"""

from __future__ import annotations

from codelearn.ask.context import Excerpt

SYSTEM = (
    "You are codelearn, a careful assistant for one software repository. Answer the question "
    "using the code excerpts in the message. Each excerpt starts with its path and line range; "
    "when you rely on one, cite it as path:line (for example src/app.py:42). If the excerpts do "
    "not contain the answer, say so briefly, then answer from general knowledge and say that you "
    "did. Be concise. Use Markdown, with code in fenced blocks."
)
NO_CONTEXT = "No code in the repository matched this question."

QUERY_WRITER = (
    "Write up to 3 short search queries, one per line and nothing else, that would find the "
    "code answering this question in a repository. Use likely function, class or file names.\n\n"
    "Question: {question}"
)


CONTEXT_LEAD = "Code from the repository:\n\n"
NOTES_LEAD = "Notes taken from more of the repository's code, each with its source:\n"

DEEP_ANSWER = ("Answer step by step from the notes and the code, one step per line, each ending "
               "with the path:line it comes from.")
NOTE_TAKER = (
    "You read code excerpts from one software repository and take notes for a question. "
    "Write only facts from these excerpts that help answer it: one short line each, starting "
    "with '- ' and ending with the location it comes from as path:line, for example:\n"
    "- `save_order` writes the order to the database (shop/orders.py:42)\n"
    "If no excerpt helps, write NONE."
)


def prompt_head() -> tuple[list[dict[str, str]], str]:
    """Messages whose rendering begins like every first-turn prompt, and the marker
    where the part that varies starts (see `LlamaModel.warm`)."""
    marker = "\x00codelearn-varies\x00"
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": CONTEXT_LEAD + marker}], marker


def user_message(question: str, excerpts: list[Excerpt]) -> str:
    if not excerpts:
        return f"{NO_CONTEXT}\n\nQuestion: {question}"
    context = "\n\n".join(excerpt.render() for excerpt in excerpts)
    return f"{CONTEXT_LEAD}{context}\n\nQuestion: {question}"


def note_messages(question: str, excerpts: list[Excerpt]) -> list[dict[str, str]]:
    """Deep mode's prompt for one batch of excerpts (ask/deep.py)."""
    context = "\n\n".join(excerpt.render() for excerpt in excerpts)
    return [{"role": "system", "content": NOTE_TAKER},
            {"role": "user", "content": f"{CONTEXT_LEAD}{context}\n\nQuestion: {question}\n\nNotes:"}]


def deep_user_message(question: str, notes: list, excerpts: list[Excerpt]) -> str:
    """The answer's message in deep mode: the notes, then the best excerpts that fit."""
    if not notes:
        return user_message(question, excerpts)
    lines = "\n".join(note.render() for note in notes)
    code = "\n\n".join(excerpt.render() for excerpt in excerpts)
    code = f"\n\n{CONTEXT_LEAD}{code}" if excerpts else ""
    return f"{NOTES_LEAD}{lines}{code}\n\nQuestion: {question}\n\n{DEEP_ANSWER}"


def parse_queries(text: str, limit: int = 3) -> list[str]:
    """The model's suggested queries, one per line, without bullets or numbering."""
    queries = []
    for line in text.splitlines():
        line = line.strip().lstrip("-*0123456789.) ").strip().strip("`\"'")
        if 2 < len(line) <= 200 and line not in queries:
            queries.append(line)
    return queries[:limit]
