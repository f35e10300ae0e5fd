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
# What one more ONNX Runtime call costs beyond its tokens (the call, input copies, thread-pool
# wake-up), in tokens' worth of compute. On bert-base's shape a token costs more than a call, so
# the planner then minimizes padding; on the small default model a call costs about this much.
BATCH_OVERHEAD_TOKENS = 32


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
    overhead_tokens: int = BATCH_OVERHEAD_TOKENS,
) -> list[NDArray[np.intp]]:
    """Group positions into batches whose ``rows × padded length`` stays within ``max_tokens``.

    Posts are taken longest first and each batch is a run of consecutive posts in that order, so
    a batch's first row sets its padded length and the budget check is exact. Where the runs end
    is chosen to minimize the padded tokens plus ``overhead_tokens`` per batch (dynamic
    programming over the run ends): cutting a full batch short where the padded length steps
    down saves more padding than the extra call costs. A post longer than the budget on its own
    still gets a batch of one (``max_tokens`` is meant to be at least the padded ``max_length``;
    ``Classifier`` checks it).
    """
    order = np.argsort(-np.asarray(lengths, dtype=np.int64), kind="stable").astype(np.intp)
    widths = np.array(
        [padded_length(int(lengths[i]), multiple=multiple, cap=cap) for i in order], dtype=np.int64
    )
    most_rows = max(1, max_tokens // int(widths[-1])) if order.size else 1
    # cost[end]: the least cost of batching the first `end` posts; first[end]: where its last batch starts.
    cost = np.zeros(order.size + 1)
    first = np.zeros(order.size + 1, dtype=np.intp)
    for end in range(1, order.size + 1):
        starts = np.arange(max(0, end - most_rows), end)
        padded = (end - starts) * widths[starts]
        total = np.where(padded <= max_tokens, cost[starts] + padded + overhead_tokens, np.inf)
        total[-1] = cost[end - 1] + widths[end - 1] + overhead_tokens  # a post alone always fits
        best = int(np.argmin(total))  # the first minimum: the longest batch among equals
        cost[end], first[end] = total[best], starts[best]
    batches: list[NDArray[np.intp]] = []
    end = order.size
    while end:
        batches.append(order[first[end] : end])
        end = int(first[end])
    return batches[::-1]


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
