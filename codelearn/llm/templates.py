"""Chat prompt formats: the model's own template, or a known one by family.

A wrong template silently ruins answers, so the order is: the Jinja template
embedded in the GGUF; else the format the catalogue names for the model; else
one recognised from the special tokens in the vocabulary. A file that matches
none of them is refused with a fix rather than guessed.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

from codelearn.errors import CodelearnError

Message = dict[str, str]


def _chatml(messages: list[Message], bos: str) -> str:
    body = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return body + "<|im_start|>assistant\n"


def _llama3(messages: list[Message], bos: str) -> str:
    body = "".join(f"<|start_header_id|>{m['role']}<|end_header_id|>\n\n{m['content']}<|eot_id|>"
                   for m in messages)
    return bos + body + "<|start_header_id|>assistant<|end_header_id|>\n\n"


def _gemma(messages: list[Message], bos: str) -> str:
    system = "".join(m["content"] + "\n\n" for m in messages if m["role"] == "system")
    turns = []
    for m in (m for m in messages if m["role"] != "system"):
        role = "model" if m["role"] == "assistant" else "user"
        text = m["content"]
        if role == "user" and system:
            text, system = system + text, ""
        turns.append(f"<start_of_turn>{role}\n{text}<end_of_turn>\n")
    return bos + "".join(turns) + "<start_of_turn>model\n"


def _phi3(messages: list[Message], bos: str) -> str:
    body = "".join(f"<|{m['role']}|>\n{m['content']}<|end|>\n" for m in messages)
    return body + "<|assistant|>\n"


def _llama2(messages: list[Message], bos: str) -> str:
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    out, pending_system = "", system
    for m in (m for m in messages if m["role"] != "system"):
        if m["role"] == "user":
            text = f"<<SYS>>\n{pending_system}\n<</SYS>>\n\n{m['content']}" if pending_system else m["content"]
            pending_system = ""
            out += f"{bos}[INST] {text} [/INST]"
        else:
            out += f" {m['content']} </s>"
    return out


BUILTIN: dict[str, Callable[[list[Message], str], str]] = {
    "chatml": _chatml, "llama3": _llama3, "gemma": _gemma, "phi3": _phi3, "llama2": _llama2,
}
MARKER_FAMILY = {
    "<|im_start|>": "chatml", "<|start_header_id|>": "llama3", "<start_of_turn>": "gemma",
    "<|user|>": "phi3", "[INST]": "llama2",
}


@dataclass(frozen=True)
class ChatFormat:
    """Turns messages into the exact prompt text for one model."""

    name: str  # "embedded" or a builtin family
    source: str | None  # the Jinja text for "embedded"
    bos: str
    eos: str

    def render(self, messages: list[Message]) -> str:
        if self.source is None:
            return BUILTIN[self.name](messages, self.bos)
        return _render_jinja(self.source, messages, self.bos, self.eos)


@functools.lru_cache(maxsize=8)
def _compile(source: str):
    """The sandboxed Jinja template for `source`, compiled once per process.

    A prompt is rendered several times per question (budgeting, counting,
    generating); compiling Qwen's template costs ~15 ms each time.
    """
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise jinja2.TemplateError(message)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        loader=jinja2.BaseLoader())
    env.globals["raise_exception"] = raise_exception
    return env.from_string(source)


def _render_jinja(source: str, messages: list[Message], bos: str, eos: str) -> str:
    import jinja2

    try:
        return _compile(source).render(messages=messages, add_generation_prompt=True,
                                       bos_token=bos, eos_token=eos, tools=None)
    except jinja2.TemplateError as exc:
        raise CodelearnError(f"The model's chat template failed: {exc}.",
                             "Set a known format instead: the `chat_format` setting, "
                             "e.g. CODELEARN_CHAT_FORMAT=chatml.") from exc


def choose_format(embedded: str | None, declared: str, markers: tuple[str, ...], bos: str, eos: str,
                  override: str = "") -> ChatFormat:
    """The chat format for a model (see the module doc for the order)."""
    if override:
        if override not in BUILTIN:
            raise CodelearnError(f"Unknown chat format {override!r}.",
                                 f"Use one of: {', '.join(BUILTIN)}.")
        return ChatFormat(override, None, bos, eos)
    if embedded:
        return ChatFormat("embedded", embedded, bos, eos)
    if declared in BUILTIN:
        return ChatFormat(declared, None, bos, eos)
    for marker in markers:
        if marker in MARKER_FAMILY:
            return ChatFormat(MARKER_FAMILY[marker], None, bos, eos)
    raise CodelearnError(
        "The model file has no chat template and no chat tokens codelearn recognises.",
        f"Name its format with the `chat_format` setting ({', '.join(BUILTIN)}), "
        "or use an instruct model.")
