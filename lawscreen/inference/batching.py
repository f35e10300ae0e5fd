"""How encoded posts become model inputs: sorted by length, batched under a token budget.

A batch costs ``rows × padded length`` tokens of compute whatever the posts' real lengths, so
posts of similar length go together: sorting by length first leaves at most a few padding tokens
per post. The padded length is rounded up to a multiple of 8, which keeps the matrix shapes
aligned for the GEMM kernels and limits the number of distinct shapes ONNX Runtime sees.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

PAD_MULTIPLE = 8


@dataclass(frozen=True, slots=True)
class Batch:
    """Rows of ``input_ids`` right-padded with the [PAD] id, and which inputs they are."""

    indices: NDArray[np.intp]  # position of each row in the caller's list of texts
    input_ids: NDArray[np.int64]  # (rows, padded length)
    attention_mask: NDArray[np.int64]  # 1 on real tokens, 0 on padding

    @property
    def tokens(self) -> int:
        """What the batch costs: rows × padded length."""
        return int(self.input_ids.size)


def padded_length(length: int, *, multiple: int = PAD_MULTIPLE, cap: int | None = None) -> int:
    """``length`` rounded up to ``multiple``, but never past ``cap`` (the model's position table)."""
    rounded = -(-length // multiple) * multiple
    if cap is not None and rounded > cap:
        return max(length, cap)
    return rounded


def plan_batches(
    lengths: Sequence[int],
    *,
    max_tokens: int,
    multiple: int = PAD_MULTIPLE,
    cap: int | None = None,
) -> list[NDArray[np.intp]]:
    """Group positions into batches whose ``rows × padded length`` stays within ``max_tokens``.

    Longest posts first: each batch's first row sets its padded length, so the budget check is
    exact, and the largest batch shape is met at once rather than at the end of a long run. A post
    longer than the budget on its own still gets a batch of one (``max_tokens`` is meant to be at
    least the padded ``max_length``; ``Classifier`` checks it).
    """
    order = np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable").astype(np.intp)
    batches: list[NDArray[np.intp]] = []
    start = 0
    while start < order.size:
        width = padded_length(int(lengths[order[start]]), multiple=multiple, cap=cap)
        rows = max(1, max_tokens // width)
        batches.append(order[start : start + rows])
        start += rows
    return batches


def make_batch(
    ids: Sequence[Sequence[int]],
    indices: NDArray[np.intp],
    *,
    pad_id: int,
    multiple: int = PAD_MULTIPLE,
    cap: int | None = None,
) -> Batch:
    """Pack the encoded posts at ``indices`` into padded arrays."""
    longest = max(len(ids[i]) for i in indices)
    width = padded_length(longest, multiple=multiple, cap=cap)
    input_ids = np.full((indices.size, width), pad_id, dtype=np.int64)
    attention_mask = np.zeros((indices.size, width), dtype=np.int64)
    for row, index in enumerate(indices):
        sequence = ids[index]
        input_ids[row, : len(sequence)] = sequence
        attention_mask[row, : len(sequence)] = 1
    return Batch(indices=indices, input_ids=input_ids, attention_mask=attention_mask)
