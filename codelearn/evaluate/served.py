"""The context `ask` would really give a held-out target, for the "retrieved" probe condition.

The "relevant" condition puts the training chunks most similar to the target's own code before
it: an oracle, since it searches with the answer. Here a user's question about the target (its
docstring's first sentence, else its signature) goes through the product's own hybrid search
over the whole index, the target itself left out, and the hits are merged and packed best-first
into the token budget as `ask` packs them. Both are reported: the oracle is the upper bound,
this is what a user gets.
"""

from __future__ import annotations

from codelearn.ask.context import merge_hits, pack
from codelearn.index.doc import docstring, first_sentence
from codelearn.corpus.formats import Vocab
from codelearn.corpus.units import Unit, unit_key
from codelearn.evaluate.retrieval import MIN_SENTENCE_WORDS
from codelearn.project import Project

HEADER_TOKENS = 12  # what a file header costs in the probe's own format, beyond the code


def question_for(unit: Unit) -> str:
    """What a user might ask to find `unit`: its docstring's first sentence, else its first line."""
    sentence = first_sentence(docstring(unit.text, unit.language))
    if len(sentence.split()) >= MIN_SENTENCE_WORDS:  # shorter: the signature is asked instead
        return sentence
    return next((line.strip() for line in unit.text.splitlines() if line.strip()), unit.symbol)


def _overlaps(hit, unit: Unit) -> bool:
    return (hit.source, hit.path) == (unit.source, unit.path) and \
        hit.start_line <= unit.end_line and unit.start_line <= hit.end_line


class SearchNeighbours:
    """`retrieve(unit, budget)`: the packed search results for a question about `unit`.
    `only`: the unit keys a hit may be (training samples search the code trained on, never
    held-out code); the search then looks further down its ranking to find k of them."""

    def __init__(self, project: Project, vocab: Vocab, k: int | None = None,
                 only: frozenset[str] | None = None) -> None:
        from codelearn.index.search import Searcher

        self.searcher = Searcher(project)
        self.vocab = vocab
        self.k = k or project.settings.ask_k
        self.only = only

    def _allowed(self, hit) -> bool:
        return self.only is None or unit_key(hit.source, hit.path, hit.start_line) in self.only

    def __call__(self, unit: Unit, budget: int) -> list[Unit]:
        depth = self.k + 2 if self.only is None else 3 * (self.k + 2)
        hits = [h for h in self.searcher.search(question_for(unit), k=depth)
                if not _overlaps(h, unit) and self._allowed(h)]
        packed = pack(merge_hits(hits[: self.k]), budget,
                      lambda text: len(self.vocab.tokenize(text)) + HEADER_TOKENS)
        return [Unit(0, e.source, e.path, e.language, "excerpt", ", ".join(e.symbols), e.start_line, e.end_line,
                     "\n".join(e.lines), "", False, None) for e in packed.excerpts]

    def close(self) -> None:
        self.searcher.close()
