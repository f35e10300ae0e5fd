"""The ONNX runtime: torch-free import, batching, order, odd inputs, broken model files."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lawscreen.artifacts import ONNX_FILE, TOKENIZER_FILE
from lawscreen.errors import ModelArtifactError
from lawscreen.inference import (
    PAD_MULTIPLE,
    Classifier,
    padded_length,
    physical_cores,
    plan_batches,
    probabilities,
)
from tests.conftest import REPO_ROOT
from tests.model_fixtures import copy_model, shared_model, synthetic_posts


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_model(tmp_path_factory)


@pytest.fixture(scope="module")
def classifier(model_dir: Path) -> Classifier:
    return Classifier.load(model_dir)


def test_importing_the_runtime_and_the_stage_leaves_torch_and_transformers_out() -> None:
    code = (
        "import sys, json\n"
        "import lawscreen.inference, lawscreen.classify, lawscreen.cli.inference\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers'))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(result.stdout) == []


def test_session_uses_one_thread_per_physical_core_and_all_optimizations(classifier: Classifier) -> None:
    options = classifier.session.get_session_options()
    assert options.intra_op_num_threads == physical_cores()
    assert options.graph_optimization_level.name == "ORT_ENABLE_ALL"
    assert classifier.session.get_providers() == ["CPUExecutionProvider"]


def test_scores_come_back_in_input_order_whatever_the_batching(model_dir: Path) -> None:
    texts, _ = synthetic_posts(60, seed=3)
    texts = [*texts, "短", "押金" * 40]  # very short and long ones, so sorting really reorders
    one_by_one = Classifier.load(model_dir)
    expected = np.array([one_by_one.score([text])[0] for text in texts])  # each alone, unsorted

    small_batches = Classifier.load(model_dir, max_batch_tokens=128)
    assert len(small_batches.batches(small_batches.encode(texts))) > 3
    np.testing.assert_allclose(small_batches.score(texts), expected, atol=1e-6)

    shuffled = list(range(len(texts)))
    random.Random(0).shuffle(shuffled)
    scores = Classifier.load(model_dir).score([texts[i] for i in shuffled])
    np.testing.assert_allclose(scores, expected[shuffled], atol=1e-6)


def test_batches_are_sorted_padded_to_a_multiple_of_8_and_within_the_token_budget(model_dir: Path) -> None:
    budget = 256
    classifier = Classifier.load(model_dir, max_batch_tokens=budget)
    texts, _ = synthetic_posts(50, seed=4)
    ids = classifier.encode(texts)
    batches = classifier.batches(ids)
    pad = classifier.tokenizer.token_to_id("[PAD]")

    seen = np.concatenate([batch.indices for batch in batches])
    assert sorted(seen.tolist()) == list(range(len(texts)))  # every post exactly once
    widths = [batch.input_ids.shape[1] for batch in batches]
    assert widths == sorted(widths, reverse=True)  # longest first
    for batch in batches:
        assert batch.input_ids.shape[1] % PAD_MULTIPLE == 0
        assert batch.tokens <= budget
        for row, index in enumerate(batch.indices):
            length = len(ids[index])
            assert batch.input_ids[row, :length].tolist() == ids[index]
            assert (batch.input_ids[row, length:] == pad).all()
            padding = batch.input_ids.shape[1] - length
            assert batch.attention_mask[row].tolist() == [1] * length + [0] * padding
        # Sorting keeps the padding small: under 8 tokens beyond the batch's longest post.
        assert batch.input_ids.shape[1] - max(len(ids[i]) for i in batch.indices) < PAD_MULTIPLE


def test_plan_batches_fills_the_budget_and_gives_an_oversized_post_its_own_batch() -> None:
    lengths = [5, 17, 9, 64, 3, 30]
    plan = plan_batches(lengths, max_tokens=64)
    assert [list(batch) for batch in plan] == [[3], [5, 1], [2, 0, 4]]  # 64; 32+32 rows 2; 16 x 3
    assert [list(batch) for batch in plan_batches([100, 10], max_tokens=64)] == [[0], [1]]
    assert padded_length(13) == 16
    assert padded_length(13, cap=14) == 14  # never past the position table
    assert padded_length(126, cap=128) == 128


def test_plan_batches_cuts_a_batch_short_where_the_padded_length_steps_down() -> None:
    """Filling the budget greedily would pad an 8-token post to 16 in the first batch; ending that
    batch early saves the padding, at the price of one more call."""
    lengths = [16] * 3 + [8] * 9

    def padded(plan: list[np.ndarray]) -> int:
        return sum(len(batch) * padded_length(max(lengths[i] for i in batch)) for batch in plan)

    cheap_calls = plan_batches(lengths, max_tokens=64, overhead_tokens=4)
    assert list(cheap_calls[0]) == [0, 1, 2]
    assert (len(cheap_calls), padded(cheap_calls)) == (3, 120)  # greedy: 2 batches, 128 tokens
    # When a call costs more than the padding it saves, the two full batches stay.
    costly_calls = plan_batches(lengths, max_tokens=64, overhead_tokens=100)
    assert (len(costly_calls), padded(costly_calls)) == (2, 128)


def _greedy_cost(lengths: list[int], max_tokens: int, overhead: int) -> int:
    """Cost of filling each batch to the budget, longest first: the plan must never do worse."""
    widths = sorted((padded_length(n) for n in lengths), reverse=True)
    cost, start = 0, 0
    while start < len(widths):
        rows = max(1, max_tokens // widths[start])
        cost += rows * widths[start] if start + rows <= len(widths) else (len(widths) - start) * widths[start]
        cost += overhead
        start += rows
    return cost


@settings(max_examples=300, deadline=None)
@given(
    lengths=st.lists(st.integers(min_value=1, max_value=300), max_size=60),
    max_tokens=st.integers(min_value=8, max_value=2048),
    overhead=st.integers(min_value=0, max_value=64),
)
def test_plan_batches_covers_every_post_once_within_budget_at_no_more_than_greedy_cost(
    lengths: list[int], max_tokens: int, overhead: int
) -> None:
    plan = plan_batches(lengths, max_tokens=max_tokens, overhead_tokens=overhead)
    assert sorted(i for batch in plan for i in batch) == list(range(len(lengths)))
    cost = 0
    for batch in plan:
        width = padded_length(max(lengths[i] for i in batch))
        assert len(batch) == 1 or len(batch) * width <= max_tokens
        assert [lengths[i] for i in batch] == sorted((lengths[i] for i in batch), reverse=True)
        cost += len(batch) * width + overhead
    assert cost <= _greedy_cost(lengths, max_tokens, overhead)


def test_long_posts_keep_head_and_tail_and_max_length_is_configurable(model_dir: Path) -> None:
    default = Classifier.load(model_dir)
    assert default.max_length == default.meta.max_length == 64
    short = Classifier.load(model_dir, max_length=16)
    text = "房东" + "的" * 500 + "押金"
    [ids] = short.encode([text])
    tokens = [short.tokenizer.id_to_token(i) for i in ids]
    assert len(ids) == 16
    assert tokens[:3] == ["[CLS]", "房", "东"]
    assert tokens[-3:] == ["押", "金", "[SEP]"]
    with pytest.raises(ModelArtifactError, match="exceeds the model's 128 positions"):
        Classifier.load(model_dir, max_length=1000)


def test_odd_texts_are_scored_without_crashing(classifier: Classifier) -> None:
    texts = [
        "",
        "   \n\t ",
        "\x00\x01\x07\x1b[31m控制字符\x7f\u200b\ufeff",
        "房东不退押金😡😡🙏🏻👨‍👩‍👧 怎么办？",
        "工资" * 50_000,  # 100k characters
        "Mixed 混合 русский العربية 日本語のテキスト 한국어 ελληνικά ﷽ 𠀀𪚥",
        "\u0301\u0301\u0301" * 10,  # lone combining marks
        "a" * 5000,  # one very long word: a single [UNK] or word pieces
    ]
    scores = classifier.score(texts)
    assert scores.shape == (len(texts),)
    assert np.isfinite(scores).all()
    assert ((scores >= 0) & (scores <= 1)).all()
    assert all(len(ids) <= classifier.max_length for ids in classifier.encode(texts))


def test_probabilities_never_overflow() -> None:
    logits = np.array([[0.0, 0.0], [-1000.0, 1000.0], [1000.0, -1000.0], [3.0, 1.0]], dtype=np.float32)
    np.testing.assert_allclose(probabilities(logits), [0.5, 1.0, 0.0, 1 / (1 + np.exp(2.0))], rtol=1e-12)


def test_a_missing_model_file_is_a_clear_error(model_dir: Path, tmp_path: Path) -> None:
    broken = copy_model(model_dir, tmp_path / "m")
    (broken / ONNX_FILE).unlink()
    with pytest.raises(ModelArtifactError, match=r"model\.onnx is missing: run `lawscreen model export"):
        Classifier.load(broken)
    with pytest.raises(ModelArtifactError, match=r"model\.int8\.onnx is missing"):
        Classifier.load(broken, int8=True)
    with pytest.raises(ModelArtifactError, match="does not exist"):
        Classifier.load(tmp_path / "nowhere")


def test_a_corrupt_model_or_tokenizer_file_is_a_clear_error(model_dir: Path, tmp_path: Path) -> None:
    broken = copy_model(model_dir, tmp_path / "m")
    data = (broken / ONNX_FILE).read_bytes()
    (broken / ONNX_FILE).write_bytes(data[: len(data) // 3])  # truncated, as by a full disk
    with pytest.raises(ModelArtifactError, match=r"cannot load .*model\.onnx"):
        Classifier.load(broken)

    (broken / ONNX_FILE).write_bytes(data)
    (broken / TOKENIZER_FILE).write_text('{"model": ')
    with pytest.raises(ModelArtifactError, match="cannot load tokenizer"):
        Classifier.load(broken)
    (broken / TOKENIZER_FILE).unlink()
    with pytest.raises(ModelArtifactError, match=r"tokenizer\.json is missing"):
        Classifier.load(broken)


def test_an_onnx_graph_that_is_not_a_classifier_is_refused(model_dir: Path, tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    broken = copy_model(model_dir, tmp_path / "m")
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "identity",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10)
    onnx.save(model, broken / ONNX_FILE)
    with pytest.raises(ModelArtifactError, match="not a lawscreen classifier"):
        Classifier.load(broken)
