"""Texts to token ids, exactly the same way for training and for inference.

A model sees what this module gives it: training and ONNX inference both call ``encode``, so a
post is truncated the same way in both. Long posts keep their head and their tail: a forum
question usually states the situation first and asks the actual question last.

The tokenizer is a ``tokenizers.Tokenizer`` (``tokenizer.json``) with BERT's special tokens
``[CLS]``, ``[SEP]`` and ``[PAD]``, as bert-base-chinese's and the ones ``lawscreen model
bootstrap`` trains. Only ``tokenizers`` is imported here: no torch, no transformers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tokenizers import Tokenizer

from lawscreen.errors import ModelArtifactError

CLS, SEP, PAD = "[CLS]", "[SEP]", "[PAD]"
# Share of the token budget given to the head of a long post; the tail gets the rest.
HEAD_SHARE = 0.5


@dataclass(frozen=True, slots=True)
class SpecialIds:
    cls: int
    sep: int
    pad: int

    @classmethod
    def of(cls, tokenizer: Tokenizer) -> SpecialIds:
        ids = [tokenizer.token_to_id(token) for token in (CLS, SEP, PAD)]
        missing = [token for token, token_id in zip((CLS, SEP, PAD), ids, strict=True) if token_id is None]
        if missing:
            raise ModelArtifactError(f"the tokenizer has no {', '.join(missing)} token: not a BERT tokenizer")
        cls_id, sep_id, pad_id = (token_id for token_id in ids if token_id is not None)
        return cls(cls=cls_id, sep=sep_id, pad=pad_id)


def load_tokenizer(path: str) -> Tokenizer:
    """A tokenizer ready for ``encode``: its own truncation and padding off (``encode`` does both)."""
    try:
        tokenizer = Tokenizer.from_file(path)
    except Exception as exc:  # tokenizers raises plain Exception subclasses for every parse error
        raise ModelArtifactError(f"cannot load tokenizer {path}: {exc}") from None
    tokenizer.no_truncation()
    tokenizer.no_padding()
    SpecialIds.of(tokenizer)
    return tokenizer


def encode(tokenizer: Tokenizer, texts: Sequence[str], max_length: int) -> list[list[int]]:
    """``[CLS] head … tail [SEP]`` ids for each text, at most ``max_length`` ids each, unpadded."""
    if max_length < 3:
        raise ValueError("max_length must leave room for [CLS], [SEP] and one token")
    special = SpecialIds.of(tokenizer)
    budget = max_length - 2
    encoded = tokenizer.encode_batch(list(texts), add_special_tokens=False)
    return [[special.cls, *_head_and_tail(item.ids, budget), special.sep] for item in encoded]


def _head_and_tail(ids: list[int], budget: int) -> list[int]:
    if len(ids) <= budget:
        return ids
    head = int(budget * HEAD_SHARE)
    return ids[:head] + ids[len(ids) - (budget - head) :]
