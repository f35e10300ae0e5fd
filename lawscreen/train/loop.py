"""Fine-tuning: the training loop, in one function that reads top to bottom.

No trainer framework: the whole recipe (batches, loss, optimiser, schedule, clipping, early stopping,
mixed precision, accumulation) is visible here and easy to change, and nothing runs that we did not
ask for (no hub uploads, no logging integrations, no checkpoint rotation).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from transformers import BertForSequenceClassification

from lawscreen.encoding import SpecialIds, encode
from lawscreen.metrics import binary_metrics
from lawscreen.train.config import TrainConfig, default_learning_rate
from lawscreen.train.losses import make_loss
from lawscreen.train.modeling import MASK, Base, legal_probability, load_classifier, predict_logits, to_device
from lawscreen.train.pretrain import mask_tokens
from lawscreen.train.runtime import (
    Batch,
    autocast,
    micro_batches,
    optimizer_and_schedule,
    progress_bar,
    resolve_device,
    seed_everything,
    shuffled_batches,
)

# Early stopping reads F1 at this threshold; the deployed threshold is chosen afterwards, on the
# same validation scores, for the target precision.
SELECTION_THRESHOLD = 0.5


@dataclass(frozen=True, slots=True)
class Examples:
    texts: Sequence[str]
    labels: Sequence[int]

    def __post_init__(self) -> None:
        if len(self.texts) != len(self.labels):
            raise ValueError(f"{len(self.texts)} texts but {len(self.labels)} labels")


@dataclass(frozen=True, slots=True)
class Epoch:
    epoch: int
    steps: int
    train_loss: float
    validation_loss: float
    validation_f1: float


@dataclass
class FineTuned:
    model: BertForSequenceClassification  # the best epoch's weights, on the training device, eval mode
    device: str
    learning_rate: float  # the configured one, or the default for the base's width
    best_epoch: int
    steps: int
    seconds: float
    samples_per_second: float  # training examples through forward, backward and step, per second
    history: list[Epoch] = field(default_factory=list)

    @property
    def best_validation_f1(self) -> float:
        return next(epoch.validation_f1 for epoch in self.history if epoch.epoch == self.best_epoch)

    def summary(self) -> dict[str, object]:
        return {
            "device": self.device,
            "learning_rate": self.learning_rate,
            "best_epoch": self.best_epoch,
            "epochs": len(self.history),
            "steps": self.steps,
            "seconds": round(self.seconds, 1),
            "samples_per_second": round(self.samples_per_second, 1),
        }


def fine_tune(config: TrainConfig, base: Base, train: Examples, validation: Examples) -> FineTuned:
    """Fine-tune ``base`` on ``train``, keeping the epoch with the best validation F1."""
    device = resolve_device(config.device)
    seed_everything(config.seed, config.threads)
    model = to_device(load_classifier(base, config.dropout), device)
    learning_rate = config.learning_rate or default_learning_rate(model.config.hidden_size)
    pad_id = SpecialIds.of(base.tokenizer).pad
    train_ids = encode(base.tokenizer, train.texts, config.max_length)
    validation_ids = encode(base.tokenizer, validation.texts, config.max_length)
    train_labels = torch.tensor(list(train.labels))
    validation_labels = torch.tensor(list(validation.labels))

    # A GPU wants bigger steps; micro-batches bound the memory of one forward pass either way.
    batch_size = config.cuda_batch_size if device.type == "cuda" else config.batch_size
    micro_batch_size = min(config.micro_batch_size or batch_size, batch_size)
    total_steps = min(config.max_steps, config.max_epochs * math.ceil(len(train_ids) / batch_size))
    optimizer, schedule = optimizer_and_schedule(
        model, learning_rate, config.weight_decay, total_steps, config.warmup_ratio
    )
    loss_fn = make_loss(config, train.labels).to(device)
    # Batch order has its own generator: the same seed gives the same batches whatever else draws.
    order = torch.Generator().manual_seed(config.seed)

    history: list[Epoch] = []
    best_key: tuple[float, float] = (-math.inf, -math.inf)
    best_state: dict[str, torch.Tensor] = {}
    best_epoch, steps, samples, stale = 0, 0, 0, 0
    started = time.perf_counter()
    training_seconds = 0.0  # without the validation passes
    with progress_bar(config.progress) as progress:
        task = progress.add_task("fine-tuning", total=total_steps, status="")
        for epoch in range(1, config.max_epochs + 1):
            model.train()
            epoch_loss = 0.0
            batches = shuffled_batches(train_ids, batch_size, pad_id, order)
            epoch_started = time.perf_counter()
            for batch in batches:
                if config.token_mask_probability:
                    batch = _masked(batch, base, config.token_mask_probability, order)
                optimizer.zero_grad(set_to_none=True)
                for part in micro_batches(batch, micro_batch_size):
                    on_device = part.to(device)
                    with autocast(device, config.bf16):
                        logits = model(
                            input_ids=on_device.input_ids, attention_mask=on_device.attention_mask
                        ).logits
                    # Each part's mean loss is weighted by its share of the batch, so the accumulated
                    # gradient equals that of the whole batch at once.
                    share = len(part.index) / len(batch.index)
                    loss = loss_fn(logits.float(), train_labels[part.index].to(device)) * share
                    loss.backward()
                    epoch_loss += loss.item()
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                optimizer.step()
                schedule.step()
                steps += 1
                samples += len(batch.index)
                progress.advance(task)
                if steps >= total_steps:
                    break
            training_seconds += time.perf_counter() - epoch_started

            logits = predict_logits(model, validation_ids, pad_id, device)
            validation_loss = float(loss_fn(logits.to(device), validation_labels.to(device)))
            f1 = binary_metrics(validation.labels, legal_probability(logits), SELECTION_THRESHOLD).f1
            history.append(Epoch(epoch, steps, epoch_loss / len(batches), validation_loss, f1))
            progress.update(task, status=f"epoch {epoch}  val F1 {f1:.3f}  val loss {validation_loss:.3f}")
            # Small validation sets tie on F1 often; the lower validation loss breaks the tie.
            if (f1, -validation_loss) > best_key:
                best_key, best_epoch, stale = (f1, -validation_loss), epoch, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                stale += 1
            if stale >= config.patience or steps >= total_steps:
                break

    model.load_state_dict(best_state)
    model.train(False)  # evaluation mode: no dropout
    return FineTuned(
        model=model,
        device=str(device),
        learning_rate=learning_rate,
        best_epoch=best_epoch,
        steps=steps,
        seconds=time.perf_counter() - started,
        samples_per_second=samples / training_seconds,
        history=history,
    )


def _masked(batch: Batch, base: Base, probability: float, generator: torch.Generator) -> Batch:
    """The batch with some tokens hidden as in MLM pre-training: the classifier cannot lean on any
    single character, and it sees inputs like those it was pre-trained on."""
    mask_id = base.tokenizer.token_to_id(MASK)
    if mask_id is None:
        return batch
    special = SpecialIds.of(base.tokenizer)
    vocab_size = base.config.vocab_size
    inputs, _ = mask_tokens(batch, special, mask_id, vocab_size, probability, 1, generator)
    return dataclasses.replace(batch, input_ids=inputs)
