"""The graph rewrites (last layer for [CLS] only, padding rows dropped between attentions): same
logits as the full graph, and only where they apply."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnxruntime.transformers.onnx_model import OnnxModel

from lawscreen.encoding import SpecialIds
from lawscreen.export import _load_checkpoint, _torch_export
from lawscreen.graph_surgery import drop_padding_rows, keep_cls_only_in_last_layer
from lawscreen.inference import Classifier
from lawscreen.inference.batching import make_batch
from tests.model_fixtures import shared_model, synthetic_posts


@pytest.fixture(scope="module")
def graphs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, onnx.ModelProto]:
    """The trained tiny model's raw export, and the same graph fused by onnxruntime's optimizer."""
    from onnxruntime.transformers import optimizer

    model_dir = shared_model(tmp_path_factory, exported=False)
    raw = tmp_path_factory.mktemp("surgery") / "raw.onnx"
    model = _load_checkpoint(model_dir)
    _torch_export(model, raw)
    fused = optimizer.optimize_model(
        str(raw),
        model_type="bert",
        num_heads=model.config.num_attention_heads,
        hidden_size=model.config.hidden_size,
        opt_level=0,
    ).model
    return raw, fused


def _copy(graph: onnx.ModelProto) -> onnx.ModelProto:
    copied = onnx.ModelProto()
    copied.CopyFrom(graph)
    return copied


def _assert_left_unchanged(rewrite: Callable[[OnnxModel], bool], graph: onnx.ModelProto) -> None:
    before = graph.SerializeToString()
    assert not rewrite(OnnxModel(graph))
    assert graph.SerializeToString() == before


def _output(
    graph: onnx.ModelProto, batch_ids: np.ndarray, mask: np.ndarray, output: str = "logits"
) -> np.ndarray:
    """``output`` (by default the logits) of ``graph`` run on one batch."""
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = {"input_ids": batch_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(batch_ids)}
    return np.asarray(session.run([output], feed)[0])


def test_the_rewritten_graph_gives_the_full_graphs_logits_on_padded_batches(
    graphs: tuple[Path, onnx.ModelProto], tmp_path_factory: pytest.TempPathFactory
) -> None:
    _, fused = graphs
    rewritten = _copy(fused)
    assert keep_cls_only_in_last_layer(OnnxModel(rewritten))

    # The last layer's attention computes the [CLS] query alone: a MatMul of the sliced row.
    ops = [node.op_type for node in rewritten.graph.node]
    assert ops.count("Attention") == [node.op_type for node in fused.graph.node].count("Attention") - 1
    assert ops.count("MultiHeadAttention") == 1
    producers = {output: node for node in rewritten.graph.node for output in node.output}
    combine = next(node for node in rewritten.graph.node if node.op_type == "MultiHeadAttention")
    query = producers[combine.input[0]]
    assert query.op_type == "MatMul"
    assert producers[query.input[0]].op_type == "Slice"
    # The packed Q/K/V weights are replaced by the three parts (plus the slice bounds), not kept dead.
    assert len(rewritten.graph.initializer) == len(fused.graph.initializer) - 1 + 3 + 3

    _assert_same_logits(fused, rewritten, tmp_path_factory)


def test_an_attention_of_another_form_gets_its_output_sliced_instead(
    graphs: tuple[Path, onnx.ModelProto], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """An attribute the query-only form does not carry over (here unidirectional=0, which changes
    nothing) keeps the last Attention whole; its output and residual are sliced to [CLS]."""
    _, fused = graphs
    rewritten = _copy(fused)
    last = [node for node in rewritten.graph.node if node.op_type == "Attention"][-1]
    last.attribute.append(onnx.helper.make_attribute("unidirectional", 0))
    reference = _copy(rewritten)
    assert keep_cls_only_in_last_layer(OnnxModel(rewritten))

    ops = [node.op_type for node in rewritten.graph.node]
    last_attention = max(i for i, op in enumerate(ops) if op == "Attention")
    assert ops[last_attention + 1 : last_attention + 3] == ["Slice", "Slice"]
    assert "MultiHeadAttention" not in ops
    _assert_same_logits(reference, rewritten, tmp_path_factory)


def _assert_same_logits(
    full_graph: onnx.ModelProto, rewritten: onnx.ModelProto, tmp_path_factory: pytest.TempPathFactory
) -> None:
    classifier = Classifier.load(shared_model(tmp_path_factory))
    texts, _ = synthetic_posts(40, seed=3)
    ids = classifier.encode(texts)
    pad = SpecialIds.of(classifier.tokenizer).pad
    # One batch padding short posts a lot, then each post alone: both must match the full graph.
    batch = make_batch(ids, np.arange(len(ids)), pad_id=pad)
    full = _output(full_graph, batch.input_ids, batch.attention_mask)
    cut = _output(rewritten, batch.input_ids, batch.attention_mask)
    assert full.shape == cut.shape == (40, 2)
    assert np.max(np.abs(full - cut)) <= 1e-5
    alone = make_batch(ids, np.array([0]), pad_id=pad, multiple=1)
    assert np.allclose(_output(rewritten, alone.input_ids, alone.attention_mask), full[:1], atol=1e-5)


@pytest.mark.parametrize("rewrite", [keep_cls_only_in_last_layer, drop_padding_rows])
def test_a_graph_without_fused_attention_is_left_unchanged(
    graphs: tuple[Path, onnx.ModelProto], rewrite: Callable[[OnnxModel], bool]
) -> None:
    raw, _ = graphs
    _assert_left_unchanged(rewrite, onnx.load(raw))


def test_a_graph_that_reads_more_than_the_cls_row_is_left_unchanged(
    graphs: tuple[Path, onnx.ModelProto],
) -> None:
    """If the last layer's input also feeds something after the pooler's gather (another head
    reading every position, say), cutting it to one row would be wrong: no rewrite."""
    _, fused = graphs
    graph = _copy(fused)
    last_attention = [node for node in graph.graph.node if node.op_type == "Attention"][-1]
    extra = onnx.helper.make_node("Identity", [last_attention.input[0]], ["every_position"])
    graph.graph.node.append(extra)
    graph.graph.output.append(
        onnx.helper.make_tensor_value_info("every_position", onnx.TensorProto.FLOAT, None)
    )
    _assert_left_unchanged(keep_cls_only_in_last_layer, graph)


def test_row_wise_ops_run_on_the_real_tokens_only_with_the_same_logits(
    graphs: tuple[Path, onnx.ModelProto], tmp_path_factory: pytest.TempPathFactory
) -> None:
    _, fused = graphs
    reference = _copy(fused)
    assert keep_cls_only_in_last_layer(OnnxModel(reference))  # as export applies them: this one first
    rewritten = _copy(reference)
    assert drop_padding_rows(OnnxModel(rewritten))
    _assert_same_logits(reference, rewritten, tmp_path_factory)

    # The first feed-forward MatMul now gets one row per real token, not batch × padded length.
    first_ffn = next(
        node
        for node in rewritten.graph.node
        if node.op_type == "MatMul"
        and any(n.op_type == "BiasGelu" and node.output[0] in n.input for n in rewritten.graph.node)
    )
    rewritten.graph.output.append(
        onnx.helper.make_tensor_value_info(first_ffn.output[0], onnx.TensorProto.FLOAT, None)
    )
    classifier = Classifier.load(shared_model(tmp_path_factory))
    texts, _ = synthetic_posts(12, seed=5)
    ids = classifier.encode(texts)
    batch = make_batch(ids, np.arange(len(ids)), pad_id=SpecialIds.of(classifier.tokenizer).pad)
    ffn_rows = _output(rewritten, batch.input_ids, batch.attention_mask, output=first_ffn.output[0])
    real_tokens = int(batch.attention_mask.sum())
    assert real_tokens < batch.attention_mask.size  # the batch has padding to drop
    assert ffn_rows.shape[0] == real_tokens == sum(len(sequence) for sequence in ids)


def test_padding_rows_stay_in_a_graph_without_an_attention_mask_input(
    graphs: tuple[Path, onnx.ModelProto],
) -> None:
    _, fused = graphs
    no_mask = _copy(fused)
    next(value for value in no_mask.graph.input if value.name == "attention_mask").name = "mask"
    _assert_left_unchanged(drop_padding_rows, no_mask)


def test_a_graph_that_outputs_a_row_wise_tensor_keeps_its_padding_rows(
    graphs: tuple[Path, onnx.ModelProto],
) -> None:
    """A graph output must keep the (batch, length, hidden) layout its readers expect."""
    _, fused = graphs
    graph = _copy(fused)
    attention_output_projection = next(node for node in graph.graph.node if node.op_type == "MatMul")
    graph.graph.output.append(
        onnx.helper.make_tensor_value_info(
            attention_output_projection.output[0], onnx.TensorProto.FLOAT, None
        )
    )
    _assert_left_unchanged(drop_padding_rows, graph)
