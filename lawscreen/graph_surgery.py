"""One exact rewrite of a fused BERT classifier graph: the last layer runs for [CLS] only.

The classifier reads the last layer at position 0 (BERT's pooler gathers the [CLS] row), and
after the last self-attention nothing mixes positions: the output projection, the residual
additions, the layer norms and the feed-forward network are all computed row by row. So those
ops are needed for the [CLS] row alone. The rewrite slices the last Attention's output and its
residual input to position 0, and everything up to the pooler then works on one row per post
instead of the post's length: about 9/12 of one layer's matrix multiplies (output projection and
FFN; the attention still needs every position's keys and values), 1/16 of bert-base's encoder.

The function computed is unchanged, up to float summation order; export's parity check against
PyTorch runs on the rewritten graph, so a graph where the rewrite would be wrong cannot ship.
A graph that does not have the expected shape (fused Attention ops, one position-0 Gather on
axis 1 after them, the residual input used only inside the last layer) is left as it is.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper
from onnxruntime.transformers.onnx_model import OnnxModel

ATTENTION_OPS = ("Attention", "MultiHeadAttention")
_SLICE_BOUNDS = {"starts": 0, "ends": 1, "axes": 1}  # rows [0, 1) of axis 1: the [CLS] position


def keep_cls_only_in_last_layer(model: OnnxModel) -> bool:
    """Rewrite ``model`` in place as the module docstring says; return whether it was rewritten."""
    graph = model.graph()
    nodes = list(graph.node)
    attentions = [i for i, node in enumerate(nodes) if node.op_type in ATTENTION_OPS]
    gathers = [i for i, node in enumerate(nodes) if _is_cls_gather(model, node)]
    if not attentions or len(gathers) != 1 or gathers[0] < attentions[-1]:
        return False
    at, gather_at = attentions[-1], gathers[0]
    attention = nodes[at]
    hidden, attended = attention.input[0], attention.output[0]
    tail = nodes[at + 1 : gather_at]
    # Every use of the last layer's input besides the attention must be a residual inside the tail.
    outside = [n for i, n in enumerate(nodes) if hidden in n.input and i != at and not at < i < gather_at]
    if outside or not any(attended in node.input for node in tail):
        return False

    renamed = {name: f"{name}/cls" for name in (hidden, attended)}
    for name, value in _SLICE_BOUNDS.items():
        graph.initializer.append(
            numpy_helper.from_array(np.array([value], dtype=np.int64), f"cls_slice_{name}")
        )
    slices = [
        onnx.helper.make_node(
            "Slice",
            [name, "cls_slice_starts", "cls_slice_ends", "cls_slice_axes"],
            [sliced],
            name=f"ClsOnly_{index}",
        )
        for index, (name, sliced) in enumerate(renamed.items())
    ]
    for node in tail:
        for position, name in enumerate(node.input):
            if name in renamed:
                node.input[position] = renamed[name]
    # The tail's tensors are now one row long: drop any shape recorded for the longer ones.
    tail_outputs = {output for node in tail for output in node.output}
    kept = [info for info in graph.value_info if info.name not in tail_outputs]
    del graph.value_info[:]
    graph.value_info.extend(kept)
    del graph.node[:]
    graph.node.extend([*nodes[: at + 1], *slices, *nodes[at + 1 :]])
    return True


def _is_cls_gather(model: OnnxModel, node: onnx.NodeProto) -> bool:
    """A Gather of the scalar index 0 on axis 1: the pooler taking each post's [CLS] row."""
    if node.op_type != "Gather" or len(node.input) != 2:
        return False
    axis = next((onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == "axis"), 0)
    index = model.get_constant_value(node.input[1])
    return axis == 1 and index is not None and index.ndim == 0 and int(index) == 0
