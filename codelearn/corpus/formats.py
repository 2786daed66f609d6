"""How code, repos, fill-in-the-middle and chats are written for one model.

Samples are built as *pieces* (text plus whether the loss counts it and whether
special tokens in it are real control tokens), then encoded to token ids with
the model's own vocabulary. Where the vocabulary has Qwen-style repo tokens
(`<|repo_name|>`, `<|file_sep|>`) and FIM tokens, they are used as single
control ids, as in the model's pretraining; other models get plain headers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

REPO_NAME, FILE_SEP = "<|repo_name|>", "<|file_sep|>"
FIM_TOKENS = ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>")
END_OF_TEXT = ("<|endoftext|>", "</s>", "<eos>")


class Vocab(Protocol):
    """What sample building needs from a tokenizer."""

    def tokenize(self, text: str, special: bool = False) -> list[int]: ...

    def special_id(self, piece: str) -> int | None: ...

    def render_chat(self, messages: list[dict[str, str]]) -> str: ...

    @property
    def chat_end(self) -> str: ...


@dataclass(frozen=True)
class Piece:
    """A run of sample text: `train` when the loss counts its tokens."""

    text: str
    train: bool = False
    special: bool = False


@dataclass(frozen=True)
class Encoded:
    """Token ids and, per id, whether the loss counts it."""

    ids: list[int]
    train: list[bool]

    @property
    def trained_tokens(self) -> int:
        return sum(self.train)


@dataclass(frozen=True)
class TextFormat:
    """The writing conventions one vocabulary supports."""

    repo_tokens: bool
    fim: bool
    end_of_text: str | None

    @classmethod
    def for_vocab(cls, vocab: Vocab) -> TextFormat:
        repo = all(vocab.special_id(t) is not None for t in (REPO_NAME, FILE_SEP))
        fim = all(vocab.special_id(t) is not None for t in FIM_TOKENS)
        end = next((t for t in END_OF_TEXT if vocab.special_id(t) is not None), None)
        return cls(repo, fim, end)

    def repo_header(self, name: str) -> list[Piece]:
        return [Piece(REPO_NAME, special=True), Piece(f"{name}\n")] if self.repo_tokens else []

    def file_header(self, path: str) -> list[Piece]:
        if self.repo_tokens:
            return [Piece(FILE_SEP, special=True), Piece(f"{path}\n")]
        return [Piece(f"--- {path}\n")]

    def code_block(self, path: str, text: str, *, train: bool, context: str = "") -> list[Piece]:
        """One file's excerpt: its header, the enclosing scopes (never trained), the code."""
        pieces = self.file_header(path)
        if context:
            pieces.append(Piece(context.rstrip("\n") + "\n"))
        pieces.append(Piece(text.rstrip("\n") + "\n", train=train))
        return pieces

    def fim_sample(self, path: str, prefix: str, middle: str, suffix: str) -> list[Piece]:
        """Prefix-suffix-middle order; the loss is on the middle and the end marker."""
        start, hole, fill = FIM_TOKENS
        pieces = self.file_header(path) if self.repo_tokens else []
        pieces += [Piece(start, special=True), Piece(prefix), Piece(hole, special=True),
                   Piece(suffix), Piece(fill, special=True), Piece(middle, train=True)]
        if self.end_of_text:
            pieces.append(Piece(self.end_of_text, train=True, special=True))
        return pieces


def chat_pieces(vocab: Vocab, messages: list[dict[str, str]], answer: str) -> list[Piece]:
    """A chat turn in the model's own template: prompt untrained, answer and end trained."""
    return [Piece(vocab.render_chat(messages), special=True), Piece(answer, train=True),
            Piece(vocab.chat_end, train=True, special=True)]


def encode(pieces: list[Piece], vocab: Vocab, max_tokens: int) -> Encoded:
    """Token ids for `pieces`; too long, the untrained start goes first, then the end."""
    ids: list[int] = []
    train: list[bool] = []
    for piece in pieces:
        if not piece.text:
            continue
        got = vocab.tokenize(piece.text, special=piece.special)
        ids += got
        train += [piece.train] * len(got)
    if len(ids) > max_tokens:
        first_trained = train.index(True) if True in train else len(ids)
        drop = min(len(ids) - max_tokens, first_trained)
        ids, train = ids[drop:], train[drop:]
        ids, train = ids[:max_tokens], train[:max_tokens]
    return Encoded(ids, train)
