"""What every torch job here shares: device, seeding, batches, optimiser and progress bars.

Pre-training and fine-tuning build their batches and their optimiser the same way, so a change to
either (padding, weight decay groups, schedule) reaches both.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from lawscreen.train.config import Device

# Batches are formed among this many batches' worth of examples of similar length: little padding,
# yet each epoch still mixes lengths and classes.
BUCKET_BATCHES = 50
# Parameters that AdamW must not decay: biases and LayerNorm scales (as in BERT's recipe).
NO_DECAY = ("bias", "LayerNorm.weight")


def resolve_device(device: Device) -> torch.device:
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for, but torch sees no CUDA GPU")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def seed_everything(seed: int, threads: int | None) -> None:
    """Same seed, same machine, same thread count: the same weights and the same metrics."""
    if threads is not None:
        torch.set_num_threads(threads)
    # Weight initialisation and dropout draw from torch's global generator; batch order and masking
    # use generators of their own seeded from the same number.
    torch.manual_seed(seed)


def autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager[object]:
    """bfloat16 autocast on a GPU that has it: about twice the speed, and unlike fp16 it needs no
    loss scaling. CPU training stays in fp32 (bf16 matmuls are slow without AVX-512/AMX)."""
    if device.type == "cuda" and bf16 and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@dataclass(frozen=True, slots=True)
class Batch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    index: torch.Tensor  # positions of the batch's examples in the encoded list

    def to(self, device: torch.device) -> Batch:
        return Batch(self.input_ids.to(device), self.attention_mask.to(device), self.index)


def pad(encoded: Sequence[list[int]], indices: Sequence[int], pad_id: int) -> Batch:
    """Pad to the longest example of the batch, not to max_length: short posts stay cheap."""
    width = max(len(encoded[i]) for i in indices)
    ids = torch.full((len(indices), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(indices), width), dtype=torch.long)
    for row, i in enumerate(indices):
        ids[row, : len(encoded[i])] = torch.tensor(encoded[i])
        mask[row, : len(encoded[i])] = 1
    return Batch(ids, mask, torch.tensor(list(indices)))


def shuffled_batches(
    encoded: Sequence[list[int]], batch_size: int, pad_id: int, generator: torch.Generator
) -> list[Batch]:
    """One epoch: a random order, bucketed by length within windows, batches in random order."""
    order = torch.randperm(len(encoded), generator=generator).tolist()
    window = batch_size * BUCKET_BATCHES
    groups: list[list[int]] = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start : start + window], key=lambda i: len(encoded[i]))
        groups.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    permutation = torch.randperm(len(groups), generator=generator).tolist()
    return [pad(encoded, groups[i], pad_id) for i in permutation]


def sorted_batches(encoded: Sequence[list[int]], batch_size: int, pad_id: int) -> Iterator[Batch]:
    """For scoring: sorted by length, so a batch holds posts of nearly equal length."""
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    for start in range(0, len(order), batch_size):
        yield pad(encoded, order[start : start + batch_size], pad_id)


def micro_batches(batch: Batch, micro_batch_size: int) -> Iterator[Batch]:
    for start in range(0, batch.input_ids.shape[0], micro_batch_size):
        part = slice(start, start + micro_batch_size)
        # Trim the columns that are padding for every row of this part.
        width = int(batch.attention_mask[part].sum(dim=1).max())
        yield Batch(batch.input_ids[part, :width], batch.attention_mask[part, :width], batch.index[part])


def optimizer_and_schedule(
    model: torch.nn.Module, learning_rate: float, weight_decay: float, total_steps: int, warmup_ratio: float
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW, learning rate rising linearly over the warm-up, then falling linearly to zero."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            (no_decay if name.endswith(NO_DECAY) else decay).append(parameter)
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=learning_rate,
    )
    warmup = max(1, math.ceil(total_steps * warmup_ratio))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def progress_bar(enabled: bool) -> Progress:
    """Progress on stderr; ``enabled=False`` (tests, flows logging to files) prints nothing."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"),
        console=Console(stderr=True),
        disable=not enabled,
        transient=False,
    )
