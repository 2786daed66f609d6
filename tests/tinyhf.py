"""A tiny Hugging Face Llama (random weights, SentencePiece tokenizer), built offline in ~1 s.

    model_dir = build_tiny_hf_llama(tmp_path / "tiny-hf")
    AutoModelForCausalLM.from_pretrained(model_dir); AutoTokenizer.from_pretrained(model_dir)

The tokenizer is a 512-piece BPE SentencePiece model trained on a few stdlib modules, with byte
fallback (any text round-trips) and ChatML markers as single tokens. Its `tokenizer.model` is what
llama.cpp's converter reads (no hub access); the `tokenizer.json` beside it is what transformers
loads. No dummy-prefix space: code starts where it starts, in both tokenizers.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

VOCAB_SIZE = 512
SPECIALS = ("<|im_start|>", "<|im_end|>")
CORPUS_MODULES = ("textwrap", "shlex", "fnmatch", "glob", "bisect", "heapq")
CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SAMPLE = textwrap.dedent("""\
    def greet(name: str) -> str:
        return f"hello, {name}!"  # ünïcode 😀
""")  # code, a non-ASCII letter and an emoji (byte fallback)
UNK, BOS, EOS = 0, 1, 2  # SentencePiece's own control tokens
IM_START, IM_END = 3, 4  # the user-defined symbols follow them; <|im_end|> ends a chat turn


PRETRAIN_MODULES = ("os", "json.decoder", "argparse", "pathlib", "inspect", "shutil", "tempfile",
                    "csv", "string", "difflib")


def build_tiny_hf_llama(dest: Path, seed: int = 0, pretrain_steps: int = 0) -> Path:
    """Write a tiny Llama with its tokenizer into `dest` (save_pretrained layout): random weights,
    or with `pretrain_steps`, weights that have seen some stdlib code (so that training on junk
    can make it measurably worse, as training on junk makes a real model worse)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    vocab = train_tokenizer(dest / "tokenizer.model")
    _write_tokenizer_files(dest)
    config = LlamaConfig(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=4, vocab_size=vocab, max_position_embeddings=512,
        bos_token_id=BOS, eos_token_id=IM_END, tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    if pretrain_steps:
        _pretrain(model, dest, pretrain_steps, seed)
    model.save_pretrained(dest)  # safetensors
    return dest


def _pretrain(model, dest: Path, steps: int, seed: int) -> None:
    """A few hundred full-model steps on stdlib modules the repo fixtures do not use."""
    import importlib
    import random

    import torch
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(dest)
    ids: list[int] = []
    for name in PRETRAIN_MODULES:
        ids += tokenizer(Path(importlib.import_module(name).__file__).read_text(encoding="utf-8"))["input_ids"]
    rng = random.Random(seed)
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        starts = [rng.randrange(0, len(ids) - 129) for _ in range(8)]
        batch = torch.tensor([ids[s:s + 128] for s in starts])
        model(input_ids=batch, labels=batch).loss.backward()
        optimiser.step()
        optimiser.zero_grad()
    model.eval()


def train_tokenizer(path: Path) -> int:
    """Train the SentencePiece model into `path` (same bytes on a given Python); returns its size."""
    import sentencepiece as spm

    lines = [line for text in _corpus() for line in text.splitlines() if line.strip()]
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_prefix=str(path.with_suffix("")),
        vocab_size=VOCAB_SIZE, model_type="bpe", byte_fallback=True, character_coverage=1.0,
        user_defined_symbols=list(SPECIALS), unk_id=UNK, bos_id=BOS, eos_id=EOS, pad_id=-1,
        # Code keeps its spaces: no NFKC, no collapsing, no invented leading space.
        normalization_rule_name="identity", remove_extra_whitespaces=False,
        add_dummy_prefix=False, allow_whitespace_only_pieces=True, split_digits=True,
        num_threads=1, shuffle_input_sentence=False, minloglevel=2)
    path.with_suffix(".vocab").unlink(missing_ok=True)
    return VOCAB_SIZE


def _corpus() -> list[str]:
    """A few stdlib modules' source: always on disk, no download."""
    import importlib

    return [Path(importlib.import_module(name).__file__).read_text(encoding="utf-8")
            for name in CORPUS_MODULES]


def _write_tokenizer_files(dest: Path) -> None:
    """tokenizer_config.json for the converter, and transformers' own files (tokenizer.json)."""
    from transformers import AutoTokenizer

    added = {str(i): {"content": text, "lstrip": False, "normalized": False, "rstrip": False,
                      "single_word": False, "special": True}
             for i, text in enumerate(SPECIALS, start=IM_START)}
    path = dest / "tokenizer_config.json"
    path.write_text(json.dumps({
        "tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "<|im_end|>",
        "unk_token": "<unk>", "add_bos_token": False, "add_eos_token": False,
        "add_prefix_space": False, "legacy": False, "model_max_length": 512,
        "added_tokens_decoder": added, "chat_template": CHATML_TEMPLATE,
    }, indent=2))
    AutoTokenizer.from_pretrained(dest).save_pretrained(dest)
    # transformers 5 rewrites the file without added_tokens_decoder, and that is the only place
    # llama.cpp's converter learns that a tokenizer.model piece is a control token.
    saved = json.loads(path.read_text())
    saved["added_tokens_decoder"] = added
    path.write_text(json.dumps(saved, indent=2))
