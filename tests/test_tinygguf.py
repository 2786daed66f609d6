"""The tiny test model: quantized, tokenizes like its trained tokenizer, generates."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import jinja2
import llama_cpp
import numpy as np
import pytest

from tinygguf import (CHATML_TEMPLATE, MODEL_NAME, SPECIAL_TOKENS, TinyShape,
                      build_tiny_gguf, is_quantized, train_tokenizer, weight_types)

TEXTS = [
    "def add(a, b):\n    return a + b\n",
    "Where is the index built?  It's in codelearn/index/builder.py, line 42.",
    "    \tmixed   whitespace\n\n\n  and trailing spaces   ",
    "naïve café, Grüße, 日本語のテキスト, emoji 🙂🚀, math ∑ x² ≤ 10",
    "<|im_start|> looks special but is plain text here <|im_end|>",
]


def load(path: Path, **options) -> llama_cpp.Llama:
    """The way the app loads models, kept small and single-threaded."""
    return llama_cpp.Llama(model_path=str(path), n_ctx=512, n_threads=1,
                           n_threads_batch=1, verbose=False, **options)


def greedy(llm: llama_cpp.Llama, prompt: str, n: int = 16) -> dict:
    return llm.create_completion(prompt, max_tokens=n, temperature=0.0, top_k=1, seed=0)


@pytest.fixture(scope="module")
def llm(tiny_model):
    return load(tiny_model)


def test_weights_are_quantized(tiny_model):
    types = weight_types(tiny_model)
    assert is_quantized(tiny_model)
    assert sum(t == "Q4_0" for t in types.values()) >= len(types) - 1
    assert tiny_model.stat().st_size < 2_000_000


@pytest.mark.parametrize(("quant", "expected"), [("Q8_0", "Q8_0"), ("Q4_K_M", "Q4_K")])
def test_other_quant_types(tmp_path, quant, expected):
    path = build_tiny_gguf(tmp_path / f"{quant}.gguf", quant=quant)
    types = weight_types(path)
    assert sum(t == expected for t in types.values()) * 2 > len(types)
    assert not list(tmp_path.glob("*.tmp")), "the unquantized intermediate is left behind"


def test_unknown_quant_is_refused(tmp_path):
    with pytest.raises(ValueError, match="quant"):
        build_tiny_gguf(tmp_path / "x.gguf", quant="Q3_X")


def test_metadata(llm):
    meta = llm.metadata
    assert meta["general.name"] == MODEL_NAME
    assert meta["general.architecture"] == "llama"
    assert meta["tokenizer.ggml.model"] == "gpt2"
    assert meta["llama.context_length"] == "2048"
    assert llm.n_vocab() == TinyShape.vocab_size


def test_context_length_is_configurable(tmp_path):
    path = build_tiny_gguf(tmp_path / "ctx.gguf", n_ctx_train=4096, chat_template=None)
    assert load(path).metadata["llama.context_length"] == "4096"


def test_chat_template_present(llm):
    assert llm.metadata["tokenizer.chat_template"] == CHATML_TEMPLATE
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    rendered = jinja2.Template(CHATML_TEMPLATE).render(messages=messages, add_generation_prompt=True)
    assert rendered == ("<|im_start|>system\nBe brief.<|im_end|>\n"
                        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")


def test_chat_template_absent(tiny_model_no_template):
    llm = load(tiny_model_no_template)
    assert "tokenizer.chat_template" not in llm.metadata
    assert is_quantized(tiny_model_no_template)


def test_special_tokens_are_single_ids(llm):
    ids = {tok: llm.tokenize(tok.encode(), add_bos=False, special=True) for tok in SPECIAL_TOKENS}
    assert all(len(found) == 1 for found in ids.values()), ids
    assert len({found[0] for found in ids.values()}) == len(SPECIAL_TOKENS)
    assert llm.token_bos() == ids["<|endoftext|>"][0]
    assert llm.token_eos() == ids["<|im_end|>"][0]
    # without special=True they are ordinary text
    assert len(llm.tokenize(b"<|im_start|>", add_bos=False, special=False)) > 1
    prompt = "<|im_start|>user\nhi<|im_end|>\n"
    tokens = llm.tokenize(prompt.encode(), add_bos=False, special=True)
    assert tokens[0] == ids["<|im_start|>"][0] and ids["<|im_end|>"][0] in tokens


@pytest.mark.parametrize("text", TEXTS)
def test_text_round_trips(llm, text):
    tokens = llm.tokenize(text.encode(), add_bos=False, special=False)
    assert llm.detokenize(tokens).decode() == text


def test_tokenization_matches_trained_tokenizer(llm):
    """The "gpt-2" pre-tokenizer makes llama.cpp split text as training did."""
    tokenizer = train_tokenizer(TinyShape.vocab_size)
    source = (Path(sysconfig.get_paths()["stdlib"]) / "difflib.py").read_text()[:20_000]
    plain = [text for text in TEXTS if not any(tok in text for tok in SPECIAL_TOKENS)]
    for text in [*plain, source]:
        assert llm.tokenize(text.encode(), add_bos=False, special=False) == tokenizer.encode(text).ids


def test_code_is_compressed(llm):
    source = (Path(sysconfig.get_paths()["stdlib"]) / "textwrap.py").read_text()
    assert len(llm.tokenize(source.encode(), add_bos=False)) < len(source.encode()) / 2


def test_same_seed_same_bytes_other_seed_differs(tmp_path, tiny_model):
    again = build_tiny_gguf(tmp_path / "again.gguf")
    other = build_tiny_gguf(tmp_path / "other.gguf", seed=1)
    assert again.read_bytes() == tiny_model.read_bytes()
    assert other.read_bytes() != tiny_model.read_bytes()


def test_greedy_generation_is_deterministic_and_finite(tmp_path, tiny_model, llm):
    prompt = "<|im_start|>user\nWhat does add do?<|im_end|>\n<|im_start|>assistant\n"
    first = greedy(llm, prompt)
    llm.reset()
    second = greedy(llm, prompt)
    rebuilt = greedy(load(build_tiny_gguf(tmp_path / "rebuilt.gguf")), prompt)
    text = first["choices"][0]["text"]
    assert isinstance(text, str)
    assert first["usage"]["completion_tokens"] > 0
    assert text == second["choices"][0]["text"] == rebuilt["choices"][0]["text"]

    scorer = load(tiny_model, logits_all=True)
    tokens = scorer.tokenize(prompt.encode(), add_bos=False, special=True)
    scorer.eval(tokens)
    logits = np.asarray(scorer.scores[: len(tokens)])
    assert logits.shape == (len(tokens), scorer.n_vocab())
    assert np.isfinite(logits).all()
    assert float(logits[-1].std()) > 0


def test_chat_completion_runs(llm):
    reply = llm.create_chat_completion(
        messages=[{"role": "user", "content": "hello"}], max_tokens=8, temperature=0.0)
    assert isinstance(reply["choices"][0]["message"]["content"], str)
