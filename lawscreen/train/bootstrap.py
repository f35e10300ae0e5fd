"""``lawscreen model bootstrap``: a base made from the stored posts, with no pretrained checkpoint.

Either from scratch (a WordPiece tokenizer trained on the posts, then a small BERT pre-trained with
masked-language modelling on them) or, with ``from_base``, an existing base such as
bert-base-chinese whose MLM pre-training continues on the posts (domain adaptation). Every stored
post counts, labeled or not: MLM needs no labels. The result is written to
``LAWSCREEN_DATA_DIR/bases/<name>/``, which ``lawscreen train --base <name>`` reads.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlmodel import Session, col, select

from lawscreen.database import transaction
from lawscreen.errors import TrainingDataError
from lawscreen.models import Post
from lawscreen.settings import get_settings
from lawscreen.train.config import BootstrapConfig
from lawscreen.train.modeling import load_base, load_masked_lm
from lawscreen.train.pretrain import new_masked_lm, pretrain, save_base, train_tokenizer
from lawscreen.train.runtime import seed_everything
from lawscreen.train.staging import staged_directory

BOOTSTRAP_FILE = "bootstrap.json"  # how the base was made: config, corpus size, MLM losses
# Below this many posts MLM learns nothing worth keeping, and a tokenizer misses most characters.
MIN_CORPUS_POSTS = 20
# Most recent posts read for pre-training: bounds memory on a large database (the step cap in
# BootstrapConfig bounds the time).
MAX_CORPUS_POSTS = 200_000


def bootstrap_base(config: BootstrapConfig) -> Path:
    """Make (or replace) the base ``config.name`` from the stored posts; return its directory."""
    with transaction() as session:
        texts = corpus(session, MAX_CORPUS_POSTS)
    if len(texts) < MIN_CORPUS_POSTS:
        raise TrainingDataError(
            f"bootstrap needs at least {MIN_CORPUS_POSTS} posts to pre-train on; the database has "
            f"{len(texts)}. Import or crawl posts first."
        )
    seed_everything(config.seed, config.threads)
    if config.from_base:
        base = load_base(config.from_base, max_length=None)
        tokenizer, model = base.tokenizer, load_masked_lm(base)
    else:
        tokenizer = train_tokenizer(texts, config.vocab_size, config.min_frequency)
        model = new_masked_lm(config, tokenizer.get_vocab_size())
    pretrained = pretrain(model, tokenizer, texts, config)

    target = get_settings().bases_dir / config.name
    with staged_directory(target) as staging:
        save_base(staging, model, tokenizer)
        record = {
            "created_at": datetime.now(UTC).isoformat(),
            "from_base": config.from_base,
            "vocab_size": tokenizer.get_vocab_size(),
            "parameters": sum(parameter.numel() for parameter in model.bert.parameters()),
            "pretraining": pretrained.summary(),
            "config": config.model_dump(mode="json", exclude={"progress"}),
        }
        (staging / BOOTSTRAP_FILE).write_text(json.dumps(record, indent=2, ensure_ascii=False))
    return target


def corpus(session: Session, limit: int) -> list[str]:
    """The distinct non-empty post texts, newest first (a cross-post counts once)."""
    latest = (
        select(Post.id, Post.text)
        .where(Post.text != "")
        .distinct(col(Post.content_hash))  # DISTINCT ON (content_hash)
        .order_by(col(Post.content_hash), col(Post.id).desc())
        .subquery()
    )
    return list(session.exec(select(latest.c.text).order_by(latest.c.id.desc()).limit(limit)).all())


def read_bootstrap_record(base_dir: Path) -> dict[str, Any]:
    """How a bootstrapped base was made; empty for a base made elsewhere (bert-base-chinese)."""
    path = base_dir / BOOTSTRAP_FILE
    if not path.is_file():
        return {}
    record = json.loads(path.read_text())
    return record if isinstance(record, dict) else {}
