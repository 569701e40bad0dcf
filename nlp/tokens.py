"""The one jieba cut a report gets, shared by the keyword tagger and the learned model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

DEFAULT_USERDICT = Path(__file__).resolve().parent.parent / "config" / "jieba_userdict.txt"


def word_tokens(tokenizer: Any, text: str) -> list[str]:
    """jieba's cut without its HMM new-word guessing: that costs a third of the time and
    finds words no vocabulary or keyword list has (the model's character n-grams and the
    tagger's substring matching cover those)."""
    return tokenizer.lcut(text, HMM=False)


class JiebaWords:
    """Analyzer for TfidfVectorizer: the router's jieba tokens, punctuation and spaces dropped.

    Pickles without the tokenizer (a jieba dictionary is tens of MB); after loading, the
    router hands its own in with `bind`, or the default dictionary is built on first use.
    `hmm` is False for models trained since the router shares one jieba pass; models saved
    before that (pickled without it) keep jieba's default cut."""

    def __init__(self, tokenizer: Any = None, hmm: bool = False) -> None:
        self.tokenizer = tokenizer
        self.hmm = hmm

    def bind(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer

    def tokenizer_or_default(self) -> Any:
        if self.tokenizer is None:
            from nlp.tagger import new_tokenizer  # here: tagger imports this module

            self.tokenizer = new_tokenizer(DEFAULT_USERDICT)
        return self.tokenizer

    def cut(self, text: str) -> list[str]:
        tokenizer = self.tokenizer_or_default()
        return tokenizer.lcut(text) if self.hmm else word_tokens(tokenizer, text)

    def __call__(self, text: str) -> list[str]:
        return [t for t in self.cut(text) if t.strip() and any(ch.isalnum() for ch in t)]

    def __getstate__(self) -> dict[str, Any]:
        return {"hmm": self.hmm}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.tokenizer = None
        self.hmm = bool(state.get("hmm", True))


