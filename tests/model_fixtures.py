"""Tiny BERT classifiers in the model-directory layout (``lawscreen.artifacts``), built offline.

Anyone's tests can use them: a WordPiece tokenizer trained with ``tokenizers`` on a few synthetic
posts, and a BertForSequenceClassification with hidden size 32, trained for a few seconds on the
same synthetic task (a legal consultation mentions wages, deposits, lawsuits...), so scores and
metrics mean something. ``build_model_dir`` writes a directory; ``shared_model`` builds one per
test session and caches it (copy it before changing it).

torch and transformers are imported inside the builders only.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

from lawscreen.artifacts import TOKENIZER_FILE, ModelMeta, write_meta
from lawscreen.database import transaction
from lawscreen.encoding import SpecialIds, encode
from lawscreen.models import SourceKind
from lawscreen.repo.posts import NewPost, upsert_posts
from lawscreen.repo.sources import ensure_source

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

_LEGAL_SITUATIONS = [
    "公司拖欠工资三个月",
    "房东不退押金",
    "被公司违法辞退没有补偿",
    "朋友借钱不还还拉黑了我",
    "交通事故对方全责却不赔偿",
    "装修公司收了定金跑路",
    "离婚时孩子抚养权有争议",
    "网购买到假货商家拒绝退款",
    "加班费一直不给",
    "工伤住院公司不管",
]
_LEGAL_QUESTIONS = [
    "能起诉吗",
    "怎么申请劳动仲裁",
    "需要请律师吗",
    "可以要求赔偿多少",
    "法律上我该怎么维权",
    "合同里这条对我有效吗",
]
_OTHER_TOPICS = [
    "路由器刷机以后连不上网",
    "周末想去海边旅游",
    "推荐一款写代码用的电脑",
    "这家餐厅的红烧肉好吃吗",
    "猫咪最近不爱吃饭",
    "想学吉他从哪里开始",
    "显卡风扇声音很大",
    "春天适合种什么花",
    "跑步膝盖有点疼",
    "第一次做蛋糕失败了",
]
_OTHER_QUESTIONS = ["大家有什么建议", "有人遇到过吗", "求推荐", "怎么办比较好", "值得吗", "谢谢各位"]
_FILLER = ["说来话长", "心里很着急", "在线等", "先谢谢大家了", "情况是这样的", "补充一下细节", "Hi all"]


def synthetic_posts(n: int, seed: int = 0) -> tuple[list[str], list[int]]:
    """``n`` posts, half legal consultations (label 1), with lengths from a few to ~100 characters."""
    rng = random.Random(seed)
    texts: list[str] = []
    labels: list[int] = []
    for i in range(n):
        legal = i % 2 == 0
        situation = rng.choice(_LEGAL_SITUATIONS if legal else _OTHER_TOPICS)
        question = rng.choice(_LEGAL_QUESTIONS if legal else _OTHER_QUESTIONS)
        filler = "，".join(rng.choice(_FILLER) for _ in range(rng.randint(0, 6)))
        texts.append(f"{situation}，{filler}，{question}？" if filler else f"{situation}，{question}？")
        labels.append(int(legal))
    return texts, labels


def build_tokenizer(texts: Sequence[str], vocab_size: int = 600) -> Tokenizer:
    """BERT-style WordPiece: each CJK character its own token, as bert-base-chinese tokenizes."""
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(handle_chinese_chars=True, lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False
    )
    tokenizer.train_from_iterator(texts, trainer)
    return tokenizer


def build_model_dir(
    directory: Path,
    *,
    version: str = "tiny",
    threshold: float = 0.5,
    max_length: int = 64,
    max_positions: int = 128,
    hidden_size: int = 32,
    layers: int = 2,
    heads: int = 2,
    train_steps: int = 150,
    seed: int = 0,
) -> Path:
    """Write a model directory (checkpoint, tokenizer.json, meta.json), trained on synthetic posts.

    ``train_steps=0`` leaves the classifier at its random initialization.
    """
    import torch
    import transformers
    from transformers import BertConfig, BertForSequenceClassification

    directory.mkdir(parents=True, exist_ok=True)
    texts, labels = synthetic_posts(400, seed=seed)
    tokenizer = build_tokenizer(texts)
    tokenizer.save(str(directory / TOKENIZER_FILE))

    torch.manual_seed(seed)
    # One thread: a hidden-32 model gains nothing from more, and the machine is shared.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    config = BertConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=hidden_size * 4,
        max_position_embeddings=max_positions,
        num_labels=2,  # type: ignore[call-arg]  # a PretrainedConfig keyword, not in BertConfig's signature
        pad_token_id=SpecialIds.of(tokenizer).pad,
    )
    model = BertForSequenceClassification(config)
    try:
        if train_steps:
            _train(model, tokenizer, texts, labels, max_length=max_length, steps=train_steps, seed=seed)
    finally:
        torch.set_num_threads(threads)
    model.eval()  # type: ignore[no-untyped-call]
    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # no bars in tests
    model.save_pretrained(directory)
    write_meta(
        directory,
        ModelMeta(
            version=version,
            base="tests.model_fixtures",
            threshold=threshold,
            max_length=max_length,
            created_at=datetime.now(UTC),
        ),
    )
    return directory


def _train(
    model: object,
    tokenizer: Tokenizer,
    texts: list[str],
    labels: list[int],
    *,
    max_length: int,
    steps: int,
    seed: int,
) -> None:
    import torch

    assert isinstance(model, torch.nn.Module)
    ids = encode(tokenizer, texts, max_length)
    pad = SpecialIds.of(tokenizer).pad
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    generator = random.Random(seed)
    model.train()
    for _ in range(steps):
        rows = generator.sample(range(len(ids)), 32)
        width = max(len(ids[i]) for i in rows)
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        for r, i in enumerate(rows):
            input_ids[r, : len(ids[i])] = torch.tensor(ids[i])
        out = model(
            input_ids=input_ids,
            attention_mask=(input_ids != pad).long(),
            labels=torch.tensor([labels[i] for i in rows]),
        )
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()


_SHARED: dict[str, Path] = {}


def shared_model(tmp_path_factory: pytest.TempPathFactory, *, exported: bool = True) -> Path:
    """A trained tiny model directory built once per test session; ``exported`` adds model.onnx.

    Read it, never change it: copy it (``copy_model``) for a test that writes to the directory.
    """
    key = "exported" if exported else "checkpoint"
    if key not in _SHARED:
        directory = build_model_dir(tmp_path_factory.mktemp(f"tiny-{key}") / "tiny")
        if exported:
            from lawscreen.export import export_model

            texts, labels = synthetic_posts(64, seed=1)
            export_model(directory, texts, labels)
        _SHARED[key] = directory
    return _SHARED[key]


def copy_model(source: Path, destination: Path) -> Path:
    shutil.copytree(source, destination)
    return destination


def add_posts(texts: Sequence[str], source: str = "forum") -> list[int]:
    """Posts of ``texts`` as a crawl of ``source`` stores them (no labels); their ids, in order."""
    with transaction() as session:
        source_id = ensure_source(session, source, SourceKind.JSONL).id
        assert source_id is not None
        posts = [NewPost.build(external_id=str(i), title="", body_text=t) for i, t in enumerate(texts)]
        ids = upsert_posts(session, source_id, posts).id_by_external_id
    return [ids[str(i)] for i in range(len(texts))]
