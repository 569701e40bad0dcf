"""The one jieba cut a report gets, shared by the keyword tagger and the learned model."""

from __future__ import annotations

from typing import Any


def word_tokens(tokenizer: Any, text: str) -> list[str]:
    """jieba's cut without its HMM new-word guessing: that costs a third of the time and
    finds words no vocabulary or keyword list has (the model's character n-grams and the
    tagger's substring matching cover those)."""
    return tokenizer.lcut(text, HMM=False)
