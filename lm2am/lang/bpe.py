"""The BPE model (sentencepiece) of the lang dir, trained on the LM text pool."""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Optional

from lm2am.errors import Lm2amError
from lm2am.lang.config import LangConfig


def train_bpe(text_path: Path | str, lang_dir: Path | str, cfg: LangConfig,
              source: Optional[str] = None) -> int:
    """Train ``lang_dir/bpe.model`` + ``bpe.vocab`` on ``text_path`` (one sentence per line).

    Deterministic: one thread, every sentence used in file order, fixed seed. Returns the
    vocabulary size. A text too small for ``cfg.bpe_vocab_size`` (or a size too small for the
    text's characters) raises :class:`Lm2amError` naming the size allowed. ``source`` names the
    text in messages (default: ``text_path``).
    """
    import sentencepiece as spm

    source = source or str(text_path)
    lang_dir = Path(lang_dir)
    lang_dir.mkdir(parents=True, exist_ok=True)
    # A fixed temp name in lang_dir: same filesystem, so the renames are atomic, and the same
    # model bytes every run (sentencepiece stores the model prefix and input path in the model).
    tmp = lang_dir / ".bpe.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        spm.set_random_generator_seed(1)
        try:
            spm.SentencePieceTrainer.train(
                input=str(text_path), model_prefix=str(tmp / "bpe"), vocab_size=cfg.bpe_vocab_size,
                model_type=cfg.bpe_model_type, character_coverage=1.0, num_threads=1,
                input_sentence_size=0, shuffle_input_sentence=False,  # all lines, no sampling
                max_sentence_length=1 << 16, minloglevel=2)
        except RuntimeError as e:
            msg = str(e)
            high = re.search(r"Vocabulary size too high \(\d+\)\. Please set it to a value <= (\d+)", msg)
            low = re.search(r"Vocabulary size is smaller than required_chars\. \d+ vs (\d+)", msg)
            if high:
                raise Lm2amError(
                    f"{source}: text too small for lang.bpe_vocab_size={cfg.bpe_vocab_size}; "
                    f"set lang.bpe_vocab_size <= {high.group(1)} or use a larger LM text") from None
            if low:
                raise Lm2amError(
                    f"{source}: lang.bpe_vocab_size={cfg.bpe_vocab_size} is below the {low.group(1)} "
                    f"symbols the text needs (characters + <unk>, <s>, </s>); set lang.bpe_vocab_size "
                    f">= {low.group(1)}") from None
            raise Lm2amError(f"{source}: sentencepiece training failed ({msg.splitlines()[-1]}); "
                             "check lang.bpe_vocab_size and lang.bpe_model_type") from None
        for suffix in ("vocab", "model"):  # model last: its presence means both are there
            os.replace(tmp / f"bpe.{suffix}", lang_dir / f"bpe.{suffix}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return cfg.bpe_vocab_size
