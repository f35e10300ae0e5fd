"""The last-layer [CLS]-only rewrite: same logits as the full graph, and only where it applies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnxruntime.transformers.onnx_model import OnnxModel

from lawscreen.encoding import SpecialIds
from lawscreen.export import _load_checkpoint, _torch_export
from lawscreen.graph_surgery import keep_cls_only_in_last_layer
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


def _logits(graph: onnx.ModelProto, batch_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = {"input_ids": batch_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(batch_ids)}
    return np.asarray(session.run(["logits"], feed)[0])


def test_the_rewritten_graph_gives_the_full_graphs_logits_on_padded_batches(
    graphs: tuple[Path, onnx.ModelProto], tmp_path_factory: pytest.TempPathFactory
) -> None:
    _, fused = graphs
    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(fused)
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
    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(fused)
    last = [node for node in rewritten.graph.node if node.op_type == "Attention"][-1]
    last.attribute.append(onnx.helper.make_attribute("unidirectional", 0))
    reference = onnx.ModelProto()
    reference.CopyFrom(rewritten)
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
    full = _logits(full_graph, batch.input_ids, batch.attention_mask)
    cut = _logits(rewritten, batch.input_ids, batch.attention_mask)
    assert full.shape == cut.shape == (40, 2)
    assert np.max(np.abs(full - cut)) <= 1e-5
    alone = make_batch(ids, np.array([0]), pad_id=pad, multiple=1)
    assert np.allclose(_logits(rewritten, alone.input_ids, alone.attention_mask), full[:1], atol=1e-5)


def test_a_graph_without_fused_attention_is_left_unchanged(graphs: tuple[Path, onnx.ModelProto]) -> None:
    raw, _ = graphs
    graph = onnx.load(raw)
    before = graph.SerializeToString()
    assert not keep_cls_only_in_last_layer(OnnxModel(graph))
    assert graph.SerializeToString() == before


def test_a_graph_that_reads_more_than_the_cls_row_is_left_unchanged(
    graphs: tuple[Path, onnx.ModelProto],
) -> None:
    """If the last layer's input also feeds something after the pooler's gather (another head
    reading every position, say), cutting it to one row would be wrong: no rewrite."""
    _, fused = graphs
    graph = onnx.ModelProto()
    graph.CopyFrom(fused)
    last_attention = [node for node in graph.graph.node if node.op_type == "Attention"][-1]
    extra = onnx.helper.make_node("Identity", [last_attention.input[0]], ["every_position"])
    graph.graph.node.append(extra)
    graph.graph.output.append(
        onnx.helper.make_tensor_value_info("every_position", onnx.TensorProto.FLOAT, None)
    )
    before = graph.SerializeToString()
    assert not keep_cls_only_in_last_layer(OnnxModel(graph))
    assert graph.SerializeToString() == before
