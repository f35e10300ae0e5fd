"""Tiny data and tiny models for the training tests: each trains in a second or two on a CPU."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from lawscreen.importer import import_file
from lawscreen.train.config import BootstrapConfig, TrainConfig
from lawscreen.train.pretrain import new_masked_lm, save_base, train_tokenizer

# Two classes that share no content words: any working classifier separates them.
_LEGAL_WORDS = ("起诉", "赔偿", "律师", "合同", "仲裁", "违约", "诉讼", "判决")
_OTHER_WORDS = ("显卡", "路由", "键盘", "相机", "旅游", "火锅", "健身", "咖啡")
_FILLER = ("我", "的", "了", "吗", "怎么", "这个", "可以", "今天", "有人", "请问")

TINY_MAX_LENGTH = 64
# One thread: tiny matrices gain nothing from two, and on a busy machine idle-spinning OpenMP
# threads make a one-second training take ten.
THREADS = 1


def separable_posts(per_class: int, seed: int = 0) -> list[tuple[str, int]]:
    """``per_class`` posts of each class, built from disjoint vocabularies, shuffled."""
    rng = random.Random(seed)
    posts = []
    for label, words in ((1, _LEGAL_WORDS), (0, _OTHER_WORDS)):
        for _ in range(per_class):
            tokens = rng.choices(words, k=4) + rng.choices(_FILLER, k=4)
            rng.shuffle(tokens)
            posts.append(("".join(tokens) + f"{rng.randrange(1000)}", label))
    rng.shuffle(posts)
    return posts


def tiny_bootstrap_config(**overrides: Any) -> BootstrapConfig:
    values: dict[str, Any] = {
        "vocab_size": 300,
        "hidden_size": 32,
        "num_layers": 1,
        "num_heads": 2,
        "intermediate_size": 64,
        "max_length": TINY_MAX_LENGTH,
        "epochs": 2,
        "batch_size": 16,
        "threads": THREADS,
        "progress": False,
    }
    return BootstrapConfig(**(values | overrides))


def tiny_train_config(base: Path | str, **overrides: Any) -> TrainConfig:
    values: dict[str, Any] = {
        "base": str(base),
        "max_length": TINY_MAX_LENGTH,
        "learning_rate": 3e-3,
        "batch_size": 16,
        "cuda_batch_size": 16,  # the same steps on a GPU: the tests' expectations hold on either
        "max_epochs": 12,
        "patience": 4,
        "min_per_class": 5,
        "threads": THREADS,
        "progress": False,
    }
    return TrainConfig(**(values | overrides))


def make_tiny_base(directory: Path, texts: Sequence[str]) -> Path:
    """A base with a tokenizer trained on ``texts`` and random weights (no MLM: tests stay fast)."""
    config = tiny_bootstrap_config()
    tokenizer = train_tokenizer(texts, config.vocab_size, config.min_frequency)
    torch.manual_seed(0)
    directory.mkdir(parents=True, exist_ok=True)
    save_base(directory, new_masked_lm(config, tokenizer.get_vocab_size()), tokenizer)
    return directory


def write_jsonl(path: Path, posts: Sequence[tuple[str, int]]) -> Path:
    path.write_text(
        "\n".join(json.dumps({"text": text, "label": label}, ensure_ascii=False) for text, label in posts)
    )
    return path


def import_posts(directory: Path, posts: Sequence[tuple[str, int]], name: str = "posts.jsonl") -> None:
    report = import_file(write_jsonl(directory / name, posts))
    assert not report.errors
