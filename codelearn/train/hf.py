"""The transformers adapter: base models as trainable Hugging Face folders, and merging.

The served model is a GGUF; transformers can load one as a training base
(dequantising it), which takes ~1 minute for the 0.5B default, so the result
is cached as safetensors once per base file (sha256) and reloads in seconds.
A Hugging Face model folder works as a base directly.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from codelearn.errors import CodelearnError, MissingExtraError
from codelearn.paths import user_cache_dir

log = logging.getLogger(__name__)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                   "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja")


def transformers():
    try:
        import torch  # noqa: F401
        import transformers as tf
    except ImportError as exc:
        raise MissingExtraError("torch/transformers", "train") from exc
    tf.utils.logging.disable_progress_bar()  # progress is ours to show, on stderr, once
    tf.utils.logging.set_verbosity_error()
    return tf


def is_hf_dir(path: Path) -> bool:
    return (path / "config.json").is_file()


def base_cache_dir(model_sha: str) -> Path:
    return user_cache_dir() / "bases" / model_sha[:16]


def prepare_base(source: Path, model_sha: str) -> Path:
    """A Hugging Face folder for `source` (a GGUF, or already such a folder)."""
    if source.is_dir():
        if not is_hf_dir(source):
            raise CodelearnError(f"{source} is not a Hugging Face model folder (no config.json).",
                                 "Point the base at a .gguf file or a model folder.")
        return source
    done = base_cache_dir(model_sha)
    if (done / "config.json").is_file():
        return done
    tf = transformers()
    import torch

    work = done.with_name(done.name + ".partial")
    shutil.rmtree(work, ignore_errors=True)
    log.info("dequantising %s into %s (once per base model)", source, done)
    try:
        tokenizer = tf.AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
        model = tf.AutoModelForCausalLM.from_pretrained(str(source.parent), gguf_file=source.name,
                                                        dtype=torch.float32)
    except Exception as exc:  # transformers raises many types for unsupported files
        raise CodelearnError(f"transformers could not load {source} as a training base ({exc}).",
                             "Use a model whose architecture transformers reads from GGUF (llama, qwen2, "
                             "gemma3, ...), or set train_base to a Hugging Face model folder.") from exc
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    model.save_pretrained(work, safe_serialization=True)
    tokenizer.save_pretrained(work)
    if done.exists():  # another run finished first
        shutil.rmtree(work)
    else:
        os.replace(work, done)
    return done


def copy_tokenizer(src: Path, dest: Path) -> None:
    """`save_pretrained` of a merged model does not write the tokenizer; the converter needs it."""
    for name in TOKENIZER_FILES:
        if (src / name).is_file():
            shutil.copy2(src / name, dest / name)


def merge_adapter(base_dir: Path, adapter_dir: Path, out_dir: Path) -> Path:
    """Base weights (fp32) + LoRA adapter → one merged Hugging Face folder with its tokenizer."""
    tf = transformers()
    import torch
    from peft import PeftModel

    model = tf.AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    shutil.rmtree(out_dir, ignore_errors=True)
    merged.save_pretrained(out_dir, safe_serialization=True)
    copy_tokenizer(base_dir, out_dir)
    return out_dir
