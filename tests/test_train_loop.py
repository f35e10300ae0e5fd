"""The training loop and its parts, on tiny models and synthetic data (no database)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lawscreen.encoding import SpecialIds, encode
from lawscreen.metrics import binary_metrics
from lawscreen.train.config import TrainConfig
from lawscreen.train.loop import Examples, fine_tune
from lawscreen.train.losses import FocalLoss, balanced_weights, make_loss
from lawscreen.train.modeling import load_base, score_texts
from lawscreen.train.pretrain import IGNORE, mask_tokens
from lawscreen.train.runtime import pad, shuffled_batches
from lawscreen.train.splits import stratified_folds, stratified_split
from tests.train_fixtures import make_tiny_base, separable_posts, tiny_train_config


@pytest.fixture(scope="module")
def corpus() -> list[tuple[str, int]]:
    return separable_posts(per_class=60)


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory: pytest.TempPathFactory, corpus: list[tuple[str, int]]) -> Path:
    return make_tiny_base(tmp_path_factory.mktemp("base"), [text for text, _ in corpus])


def _parts(corpus: list[tuple[str, int]]) -> tuple[Examples, Examples, Examples]:
    def examples(rows: list[tuple[str, int]]) -> Examples:
        return Examples([text for text, _ in rows], [label for _, label in rows])

    return examples(corpus[:80]), examples(corpus[80:100]), examples(corpus[100:])


def test_a_separable_dataset_is_learned(tiny_base: Path, corpus: list[tuple[str, int]]) -> None:
    train, validation, test = _parts(corpus)
    config = tiny_train_config(tiny_base)

    tuned = fine_tune(config, load_base(config.base, config.max_length), train, validation)

    base = load_base(config.base, config.max_length)
    scores = score_texts(tuned.model, base.tokenizer, test.texts, config.max_length)
    assert binary_metrics(test.labels, scores, 0.5).f1 >= 0.9
    assert 1 <= tuned.best_epoch <= len(tuned.history) <= config.max_epochs
    assert tuned.samples_per_second > 0


def test_the_same_seed_gives_the_same_result(tiny_base: Path, corpus: list[tuple[str, int]]) -> None:
    train, validation, test = _parts(corpus)
    config = tiny_train_config(tiny_base, max_epochs=3, seed=7)
    base = load_base(config.base, config.max_length)

    runs = [fine_tune(config, base, train, validation) for _ in range(2)]

    assert runs[0].history == runs[1].history
    first, second = (score_texts(run.model, base.tokenizer, test.texts, config.max_length) for run in runs)
    assert first.tolist() == second.tolist()
    other = fine_tune(config.model_copy(update={"seed": 8}), base, train, validation)
    assert other.history != runs[0].history


def test_micro_batches_accumulate_to_the_full_batch(tiny_base: Path, corpus: list[tuple[str, int]]) -> None:
    # Without dropout one step is deterministic, so splitting a batch of 16 into micro-batches of 4
    # must give the same update, up to float rounding. In fp32: on a GPU, bf16 rounding alone would
    # differ by more than that between batch shapes.
    train, validation, _ = _parts(corpus)
    config = tiny_train_config(tiny_base, max_steps=1, max_epochs=1, dropout=0.0, bf16=False)
    base = load_base(config.base, config.max_length)

    whole = fine_tune(config, base, train, validation).model.state_dict()
    split = fine_tune(
        config.model_copy(update={"micro_batch_size": 4}), base, train, validation
    ).model.state_dict()

    for name, tensor in whole.items():
        torch.testing.assert_close(split[name], tensor, rtol=1e-4, atol=1e-5)


def test_focal_loss_with_gamma_zero_is_weighted_cross_entropy() -> None:
    logits = torch.randn(12, 2, generator=torch.Generator().manual_seed(0))
    targets = torch.tensor([0, 1] * 6)
    weights = torch.tensor([0.5, 1.5])
    focal = FocalLoss(0.0, weights)(logits, targets)
    expected = (
        torch.nn.functional.cross_entropy(logits, targets, reduction="none") * weights[targets]
    ).mean()
    torch.testing.assert_close(focal, expected)
    # γ > 0 down-weights the examples the model already gets right.
    assert FocalLoss(2.0, weights)(logits, targets) < focal


def test_class_weights_balance_the_classes() -> None:
    weights = balanced_weights([0, 0, 0, 1])
    assert weights.tolist() == pytest.approx([4 / 6, 2.0])
    config = TrainConfig(base="unused", loss="focal", focal_alpha=0.25)
    loss = make_loss(config, [0, 1])
    assert isinstance(loss, FocalLoss)
    assert loss.class_weights is not None
    assert loss.class_weights.tolist() == pytest.approx([1.5, 0.5])


def test_batches_are_padded_to_their_longest_post_only(tiny_base: Path) -> None:
    tokenizer = load_base(str(tiny_base), None).tokenizer
    pad_id = SpecialIds.of(tokenizer).pad
    encoded = encode(tokenizer, ["起诉", "起诉赔偿律师合同仲裁", "显卡"], 64)
    batch = pad(encoded, [0, 2], pad_id)
    assert batch.input_ids.shape == (2, 4)  # [CLS] two characters [SEP]
    batches = shuffled_batches(encoded, 2, pad_id, torch.Generator().manual_seed(0))
    assert sorted(i for b in batches for i in b.index.tolist()) == [0, 1, 2]
    for b in batches:
        assert (b.attention_mask.sum(dim=1) == torch.tensor([len(encoded[i]) for i in b.index])).all()


@pytest.mark.parametrize("span", [1, 3])
def test_masking_spares_special_tokens_and_padding(tiny_base: Path, span: int) -> None:
    tokenizer = load_base(str(tiny_base), None).tokenizer
    special = SpecialIds.of(tokenizer)
    texts = [text for text, _ in separable_posts(per_class=20)]
    batch = pad(encode(tokenizer, texts, 64), range(len(texts)), special.pad)
    mask_id = tokenizer.token_to_id("[MASK]")
    assert mask_id is not None

    inputs, targets = mask_tokens(
        batch, special, mask_id, tokenizer.get_vocab_size(), 0.15, span, torch.Generator()
    )

    chosen = targets != IGNORE
    assert chosen.any(dim=1).all()  # every post has something to predict
    assert not chosen[batch.input_ids == special.cls].any()
    assert not chosen[batch.input_ids == special.sep].any()
    assert not chosen[batch.attention_mask == 0].any()
    assert (targets[chosen] == batch.input_ids[chosen]).all()
    assert (inputs[~chosen] == batch.input_ids[~chosen]).all()
    share = chosen.sum() / ((batch.attention_mask == 1).sum() - 2 * len(texts))
    assert 0.08 < float(share) < 0.25
    assert float((inputs[chosen] == mask_id).sum()) / float(chosen.sum()) > 0.6


@settings(max_examples=50, deadline=None)
@given(
    labels=st.lists(st.integers(0, 1), min_size=4, max_size=60).filter(
        lambda ls: min(ls.count(0), ls.count(1)) >= 2
    ),
    share=st.floats(0.05, 0.5),
    seed=st.integers(0, 1000),
)
def test_a_stratified_split_keeps_both_classes_on_both_sides(
    labels: list[int], share: float, seed: int
) -> None:
    rest, part = stratified_split(labels, share, seed)
    assert sorted(rest + part) == list(range(len(labels)))
    for side in (rest, part):
        assert {labels[i] for i in side} == {0, 1}
    assert stratified_split(labels, share, seed) == (rest, part)


def test_folds_partition_the_data_with_the_class_balance() -> None:
    labels = [0] * 30 + [1] * 20
    folds = stratified_folds(labels, 5, seed=0)
    assert sorted(i for fold in folds for i in fold) == list(range(50))
    assert [sum(labels[i] for i in fold) for fold in folds] == [4] * 5
