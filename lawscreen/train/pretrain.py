"""Making a base without a pretrained checkpoint: a WordPiece tokenizer and masked-language modelling.

With a few hundred labeled posts a transformer learns little from the labels alone; masked-language
modelling on every stored post (labeled or not) first teaches it which characters go together and
how forum questions are built, from text that costs nothing to label.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, models, trainers
from torch.nn import functional
from transformers import BertConfig, BertForMaskedLM

from lawscreen.artifacts import TOKENIZER_FILE
from lawscreen.encoding import SpecialIds, encode
from lawscreen.train.config import SMALL_MODEL_LEARNING_RATE, BootstrapConfig, default_learning_rate
from lawscreen.train.modeling import MASK, SPECIAL_TOKENS, UNK, bert_tokenizer, quiet_transformers, to_device
from lawscreen.train.runtime import (
    Batch,
    autocast,
    optimizer_and_schedule,
    progress_bar,
    resolve_device,
    shuffled_batches,
)

# BERT's recipe for the selected tokens: 80 % become [MASK], 10 % a random token, 10 % stay.
MASK_SHARE, RANDOM_SHARE = 0.8, 0.1
GRAD_CLIP = 1.0
IGNORE = -100  # target of the tokens that are not predicted


def train_tokenizer(texts: Sequence[str], vocab_size: int, min_frequency: int) -> Tokenizer:
    """A WordPiece vocabulary of ``texts``; the same texts give the same vocabulary in every process.

    The trainer numbers the word-piece continuations ("##c") as it meets them in a hash map, whose
    order changes from one process to the next, and those numbers break ties between equally
    frequent merges: two bootstraps on the same posts got different vocabularies, and so different
    models (huggingface/tokenizers#1794). Handing it every continuation first, sorted, as reserved
    tokens fixes the numbering. They are the tokens it would have added anyway; the rebuilt
    tokenizer keeps them as ordinary vocabulary entries.
    """
    tokenizer = bert_tokenizer(models.WordPiece(unk_token=UNK), lowercase=True)
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[*SPECIAL_TOKENS, *continuation_pieces(tokenizer, texts)],
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer, length=len(texts))
    return bert_tokenizer(tokenizer.model, lowercase=True)


def continuation_pieces(tokenizer: Tokenizer, texts: Sequence[str]) -> list[str]:
    """ "##c" for every character c that follows another one inside a pre-tokenized word, sorted
    (the prefix is the WordPiece model's own)."""
    normalizer, pre_tokenizer = tokenizer.normalizer, tokenizer.pre_tokenizer
    assert normalizer is not None
    assert pre_tokenizer is not None
    followers: set[str] = set()
    for text in texts:
        for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)):
            followers.update(word[1:])
    prefix = tokenizer.model.continuing_subword_prefix
    return [prefix + char for char in sorted(followers)]


def new_masked_lm(config: BootstrapConfig, vocab_size: int) -> BertForMaskedLM:
    return BertForMaskedLM(
        BertConfig(
            vocab_size=vocab_size,
            hidden_size=config.hidden_size,
            num_hidden_layers=config.num_layers,
            num_attention_heads=config.num_heads,
            intermediate_size=config.intermediate_size,
            hidden_dropout_prob=config.dropout,
            attention_probs_dropout_prob=config.dropout,
            max_position_embeddings=config.max_length,
        )
    )


@dataclass(frozen=True, slots=True)
class Pretrained:
    posts: int
    epochs: int
    steps: int
    learning_rate: float  # the configured one, or the default (by width when continuing a base)
    seconds: float
    first_loss: float  # mean MLM loss of the first and the last epoch: did it learn?
    last_loss: float

    def summary(self) -> dict[str, object]:
        return {
            "posts": self.posts,
            "epochs": self.epochs,
            "steps": self.steps,
            "learning_rate": self.learning_rate,
            "seconds": round(self.seconds, 1),
            "first_epoch_loss": round(self.first_loss, 4),
            "last_epoch_loss": round(self.last_loss, 4),
        }


def pretrain(
    model: BertForMaskedLM, tokenizer: Tokenizer, texts: Sequence[str], config: BootstrapConfig
) -> Pretrained:
    """Masked-language modelling on ``texts``; ``model`` is trained in place."""
    device = resolve_device(config.device)
    to_device(model, device).train()
    special = SpecialIds.of(tokenizer)
    mask_id = tokenizer.token_to_id(MASK)
    if mask_id is None:
        raise ValueError(f"the tokenizer has no {MASK} token")
    max_length = min(config.max_length, model.config.max_position_embeddings)
    encoded = encode(tokenizer, texts, max_length)
    total_steps = min(config.max_steps, config.epochs * math.ceil(len(encoded) / config.batch_size))
    learning_rate = config.learning_rate or (
        default_learning_rate(model.config.hidden_size) if config.from_base else SMALL_MODEL_LEARNING_RATE
    )
    optimizer, schedule = optimizer_and_schedule(
        model, learning_rate, config.weight_decay, total_steps, config.warmup_ratio
    )
    generator = torch.Generator().manual_seed(config.seed)
    vocab_size = model.config.vocab_size
    epoch_losses: list[float] = []
    steps = 0
    started = time.perf_counter()
    with progress_bar(config.progress) as progress:
        task = progress.add_task("pre-training (MLM)", total=total_steps, status="")
        while steps < total_steps:
            batches = shuffled_batches(encoded, config.batch_size, special.pad, generator)
            total = 0.0
            for batch in batches:
                inputs, targets = mask_tokens(
                    batch, special, mask_id, vocab_size, config.mlm_probability, config.mask_span, generator
                )
                inputs, targets = inputs.to(device), targets.to(device)
                with autocast(device, config.bf16):
                    hidden = model.bert(
                        input_ids=inputs, attention_mask=batch.attention_mask.to(device)
                    ).last_hidden_state
                    # The vocabulary projection only for the masked positions: on a small model it
                    # would otherwise cost more than the whole encoder.
                    predicted = targets != IGNORE
                    logits = model.cls(hidden[predicted])
                loss = functional.cross_entropy(logits.float(), targets[predicted])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]  # torch leaves Tensor.backward unannotated
                torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
                optimizer.step()
                schedule.step()
                total += loss.item()
                steps += 1
                progress.advance(task)
                if steps >= total_steps:
                    break
            epoch_losses.append(total / len(batches))
            progress.update(task, status=f"epoch {len(epoch_losses)}  loss {epoch_losses[-1]:.3f}")
    model.train(False)  # evaluation mode: no dropout
    return Pretrained(
        posts=len(encoded),
        epochs=len(epoch_losses),
        steps=steps,
        learning_rate=learning_rate,
        seconds=time.perf_counter() - started,
        first_loss=epoch_losses[0],
        last_loss=epoch_losses[-1],
    )


def mask_tokens(
    batch: Batch,
    special: SpecialIds,
    mask_id: int,
    vocab_size: int,
    probability: float,
    max_span: int,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs with spans of tokens masked, and targets holding the original ids there (IGNORE elsewhere).

    Spans of 1 to ``max_span`` tokens start at random; start probability ``probability / mean span``
    masks about ``probability`` of the tokens. Every row gets at least one masked token.
    """
    ids = batch.input_ids
    maskable = (batch.attention_mask == 1) & (ids != special.cls) & (ids != special.sep)
    mean_span = (1 + max_span) / 2
    starts = torch.rand(ids.shape, generator=generator) < probability / mean_span
    lengths = torch.randint(1, max_span + 1, ids.shape, generator=generator)
    chosen = torch.zeros_like(maskable)
    for offset in range(max_span):
        # Position t is covered by a span that started at t - offset and is longer than offset.
        covered = starts[:, : ids.shape[1] - offset] & (lengths[:, : ids.shape[1] - offset] > offset)
        chosen[:, offset:] |= covered
    chosen &= maskable
    # A row with nothing chosen (a very short post) gets its first maskable token.
    empty = ~chosen.any(dim=1) & maskable.any(dim=1)
    first = maskable.int().argmax(dim=1)
    chosen[empty, first[empty]] = True

    targets = torch.where(chosen, ids, torch.full_like(ids, IGNORE))
    draw = torch.rand(ids.shape, generator=generator)
    inputs = ids.clone()
    inputs[chosen & (draw < MASK_SHARE)] = mask_id
    randomised = chosen & (draw >= MASK_SHARE) & (draw < MASK_SHARE + RANDOM_SHARE)
    inputs[randomised] = torch.randint(vocab_size, ids.shape, generator=generator)[randomised]
    return inputs, targets


def save_base(directory: Path, model: BertForMaskedLM, tokenizer: Tokenizer) -> None:
    """A base directory as ``load_base`` reads it: the checkpoint and ``tokenizer.json``."""
    with quiet_transformers():
        model.save_pretrained(directory)
    tokenizer.save(str(directory / TOKENIZER_FILE))
