"""Two exact rewrites of a fused BERT classifier graph: no work for rows nobody needs.

**The last layer runs for [CLS] only** (``keep_cls_only_in_last_layer``). The classifier reads the
last layer at position 0 (BERT's pooler gathers the [CLS] row), and after the last self-attention
nothing mixes positions: the output projection, the residual additions, the layer norms and the
feed-forward network are all computed row by row. So those ops are needed for the [CLS] row alone,
and so is the last attention's query: the other positions' queries only produce rows nobody
reads. The rewrite slices the last layer's residual input to position 0; the last Attention
becomes key and value projections of every position, a query projection of the [CLS] row and a
MultiHeadAttention of that one query (or, for an Attention of another form, its output is sliced
instead). Everything up to the pooler then works on one row per post instead of the post's
length: 10/12 of one layer's matrix multiplies (query and output projections, FFN) and L − 1 of
its L rows of attention scores, 1/14 of bert-base's encoder.

**Padding rows skip the row-wise ops** (``drop_padding_rows``). Only self-attention needs the
padded (batch, length, hidden) layout, and it masks the padding keys out. Everything between two
attentions is row-wise, so it runs on the real tokens alone, packed into (tokens, hidden): each
attention's output is gathered down to the rows whose ``attention_mask`` is 1, and each input an
attention (or any op not known to be row-wise) reads is gathered back up to the padded layout.
The rows the padding gets back are copies of real rows (each padding position takes the row
before it): any finite values do, since masked keys get zero weight and padding queries are never
read. A batch padded to a multiple of 8 then spends its padding only inside the attentions.

The function computed is unchanged, up to float summation order; export's parity check against
PyTorch (with its batch-invariance check on heavily padded batches) runs on the rewritten graph,
so a graph where a rewrite would be wrong cannot ship. A graph that does not have the expected
shape is left as it is: for the first, fused Attention ops, one position-0 Gather on axis 1 after
them, the residual input used only inside the last layer; for the second, an ``attention_mask``
graph input and fused Attention ops.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import onnx
from onnx import numpy_helper
from onnxruntime.transformers.onnx_model import OnnxModel

ATTENTION_OPS = ("Attention", "MultiHeadAttention")
_SLICE_BOUNDS = {"starts": 0, "ends": 1, "axes": 1}  # rows [0, 1) of axis 1: the [CLS] position
# Attention attributes MultiHeadAttention has too, with the same meaning.
_ATTENTION_ATTRIBUTES_KEPT = {"num_heads", "mask_filter_value", "scale"}


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
    cls_query = _cls_query_attention(model, attention, renamed[hidden], renamed[attended])
    if cls_query is None:  # the attention computes every position: slice its output too
        rewritten = [*nodes[: at + 1], *slices, *nodes[at + 1 :]]
    else:  # the attention itself computes [CLS] only, in place of the Attention node
        rewritten = [*nodes[:at], slices[0], *cls_query, *nodes[at + 1 :]]
    # The tail's tensors are now one row long: drop any shape recorded for the longer ones.
    tail_outputs = {output for node in tail for output in node.output}
    kept = [info for info in graph.value_info if info.name not in tail_outputs]
    del graph.value_info[:]
    graph.value_info.extend(kept)
    del graph.node[:]
    graph.node.extend(rewritten)
    return True


def _cls_query_attention(
    model: OnnxModel, attention: onnx.NodeProto, hidden_cls: str, output: str
) -> list[onnx.NodeProto] | None:
    """The last fused Attention as nodes that compute the [CLS] query alone, writing ``output``.

    Keys and values still come from every position (two MatMuls on the layer's input), the query
    from the [CLS] row only (a MatMul on ``hidden_cls``), and MultiHeadAttention combines them
    with the same bias, mask and heads: the other L - 1 queries and their rows of attention
    scores are never computed. None, and nothing changed, unless ``attention`` is the plain
    packed form the BERT fusion writes (input, [D, 3D] weights, bias, mask; no past, no
    unidirectional or uneven Q/K/V sizes).
    """
    if attention.op_type != "Attention" or len(attention.input) != 4 or len(attention.output) != 1:
        return None
    attributes = {attribute.name for attribute in attention.attribute}
    if not attributes <= _ATTENTION_ATTRIBUTES_KEPT or "num_heads" not in attributes:
        return None
    hidden, weights_name, bias, mask = attention.input
    weights = model.get_initializer(weights_name)
    if weights is None or not bias or not mask:
        return None
    packed = numpy_helper.to_array(weights)
    if packed.ndim != 2 or packed.shape[1] != 3 * packed.shape[0]:
        return None
    graph = model.graph()
    parts = dict(zip(("query", "key", "value"), np.split(packed, 3, axis=1), strict=True))
    for part, matrix in parts.items():
        graph.initializer.append(
            numpy_helper.from_array(np.ascontiguousarray(matrix), f"{weights_name}/{part}")
        )
    if sum(weights_name in node.input for node in graph.node) == 1:  # this attention's alone
        graph.initializer.remove(weights)
    projections = [
        onnx.helper.make_node(
            "MatMul", [source, f"{weights_name}/{part}"], [f"{output}/{part}"], name=f"ClsOnly_{part}"
        )
        for part, source in (("query", hidden_cls), ("key", hidden), ("value", hidden))
    ]
    combine = onnx.helper.make_node(
        "MultiHeadAttention",
        [f"{output}/query", f"{output}/key", f"{output}/value", bias, mask],
        [output],
        name="ClsOnly_attention",
        domain="com.microsoft",
    )
    combine.attribute.extend(attention.attribute)
    return [*projections, combine]


def _is_cls_gather(model: OnnxModel, node: onnx.NodeProto) -> bool:
    """A Gather of the scalar index 0 on axis 1: the pooler taking each post's [CLS] row."""
    if node.op_type != "Gather" or len(node.input) != 2:
        return False
    axis = OnnxModel.get_node_attribute(node, "axis") or 0
    index = model.get_constant_value(node.input[1])
    return axis == 1 and index is not None and index.ndim == 0 and int(index) == 0


# Ops computed row by row on their last axis, when their other inputs are weights: they accept
# packed (tokens, hidden) rows in place of (batch, length, hidden) and give the same rows.
_ROW_WISE_OPS = frozenset(
    {"MatMul", "Add", "Sub", "Mul", "Div", "LayerNormalization", "SkipLayerNormalization"}
    | {"BiasGelu", "Gelu", "FastGelu", "Relu", "Tanh", "Erf"}
)
_MASK_INPUT = "attention_mask"
_PACKED_ROWS, _PADDED_SOURCE_ROWS = "real_token_rows", "padded_position_source_rows"


def drop_padding_rows(model: OnnxModel) -> bool:
    """Rewrite ``model`` in place as the module docstring says; return whether it was rewritten."""
    graph = model.graph()
    if _MASK_INPUT not in {value.name for value in graph.input}:
        return False
    nodes = [_copy(node) for node in graph.node]  # the graph is untouched until the end
    attentions = [node for node in nodes if node.op_type == "Attention"]
    if not attentions:
        return False
    # The attentions' inputs and outputs: (batch, length, hidden) tensors, packed where read row-wise.
    padded = {node.input[0] for node in attentions} | {node.output[0] for node in attentions}
    packed: set[str] = set()  # tensors computed on packed rows
    packed_copy: dict[str, str] = {}  # padded tensor -> its packed rows
    padded_copy: dict[str, str] = {}  # packed tensor -> its rows in the padded layout
    rewritten, constants = _row_index_nodes()

    def packed_name(name: str) -> str:
        if name not in packed_copy:
            flat, rows = f"{name}/flat", f"{name}/packed"
            rewritten.append(onnx.helper.make_node("Flatten", [name], [flat], axis=2))
            rewritten.append(onnx.helper.make_node("Gather", [flat, _PACKED_ROWS], [rows], axis=0))
            packed_copy[name] = rows
        return packed_copy[name]

    def padded_name(name: str) -> str:
        if name not in padded_copy:
            rows = f"{name}/padded"
            rewritten.append(onnx.helper.make_node("Gather", [name, _PADDED_SOURCE_ROWS], [rows], axis=0))
            padded_copy[name] = rows
        return padded_copy[name]

    for node in nodes:
        if node.op_type != "Attention" and _is_row_wise(model, node, packed | padded):
            for position, name in enumerate(node.input):
                if name in padded and name not in packed:
                    node.input[position] = packed_name(name)
            packed.update(node.output)
        else:
            for position, name in enumerate(node.input):
                if name in packed:
                    node.input[position] = padded_name(name)
        rewritten.append(node)
    if packed & {value.name for value in graph.output}:
        return False  # a graph output must keep its layout: not a graph this rewrite knows
    graph.initializer.extend(constants)
    kept = [info for info in graph.value_info if info.name not in packed]  # their shapes changed
    del graph.value_info[:]
    graph.value_info.extend(kept)
    del graph.node[:]
    graph.node.extend(rewritten)
    return True


def _copy(node: onnx.NodeProto) -> onnx.NodeProto:
    copied = onnx.NodeProto()
    copied.CopyFrom(node)
    return copied


def _row_index_nodes() -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Per batch, from the mask: the flat positions of real tokens, and for every position the
    packed row it reads back (its own, or for padding the real row before it); with the constants
    those nodes read."""
    make = onnx.helper.make_node
    constants = [
        numpy_helper.from_array(np.array(value, dtype=np.int64), name)
        for name, value in (("unpad_flat_shape", [-1]), ("unpad_one", [1]), ("unpad_first_axis", 0))
    ]
    nodes = [
        make("Reshape", [_MASK_INPUT, "unpad_flat_shape"], ["unpad_mask_flat"]),
        make("NonZero", ["unpad_mask_flat"], ["unpad_real_positions"]),
        make("Reshape", ["unpad_real_positions", "unpad_flat_shape"], [_PACKED_ROWS]),
        make("CumSum", ["unpad_mask_flat", "unpad_first_axis"], ["unpad_real_so_far"]),
        make("Sub", ["unpad_real_so_far", "unpad_one"], ["unpad_source_flat"]),
        make("Shape", [_MASK_INPUT], ["unpad_mask_shape"]),
        make("Reshape", ["unpad_source_flat", "unpad_mask_shape"], [_PADDED_SOURCE_ROWS]),
    ]
    return nodes, constants


def _is_row_wise(model: OnnxModel, node: onnx.NodeProto, rows: Collection[str]) -> bool:
    """Whether ``node`` can run on packed rows: a row-wise op reading at least one of the tensors
    ``rows`` (packed, or that can be packed) and otherwise only weights along the last axis (a
    matrix for MatMul's second input, else a vector)."""
    if node.op_type not in _ROW_WISE_OPS or node.domain not in ("", "com.microsoft"):
        return False
    if not any(name in rows for name in node.input):
        return False
    if node.op_type == "LayerNormalization" and OnnxModel.get_node_attribute(node, "axis") not in (None, -1):
        return False
    for position, name in enumerate(node.input):
        if not name or name in rows:
            continue
        weight = model.get_initializer(name)
        most_dims = 2 if node.op_type == "MatMul" and position == 1 else 1
        if weight is None or len(weight.dims) > most_dims:
            return False
    return node.op_type != "MatMul" or node.input[0] in rows
