"""The legal-consultation classifier at inference time: ONNX Runtime, the Rust tokenizer, numpy.

Nothing here imports torch or transformers (a test checks), so a CPU worker installs the base
package only. A model directory is read through the contract in ``lawscreen.artifacts``:
``model.onnx`` (or ``model.int8.onnx``), ``tokenizer.json`` and ``meta.json``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import psutil
from numpy.typing import NDArray
from tokenizers import Tokenizer

from lawscreen.artifacts import ONNX_FILE, ONNX_INT8_FILE, TOKENIZER_FILE, ModelMeta, read_meta
from lawscreen.encoding import SpecialIds, encode, load_tokenizer
from lawscreen.errors import ModelArtifactError
from lawscreen.inference.batching import Batch, make_batch, padded_length, plan_batches

# Default compute per ONNX Runtime call, in (padded) tokens. Measured on bert-base's shape
# (2 cores, docs/inference.md): 256 to 1536 tokens within noise of each other (14.0 ± 0.2
# posts/s), 2048 and more slower (8192: -20 %). A few hundred rows already keep the GEMM kernels
# busy, and a batch whose activations fit in cache beats a large one. The same as
# LAWSCREEN_INFERENCE_MAX_BATCH_TOKENS's default.
DEFAULT_MAX_BATCH_TOKENS = 1024
# Texts tokenized at once. Bounds memory on a huge call; sorting by length happens within a window.
ENCODE_WINDOW = 4096
# ONNX Runtime's own graph optimizations that the session leaves out. SkipLayerNormFusion merges
# each residual Add, bias Add and LayerNormalization into one SkipLayerNormalization, whose CPU
# kernel (onnxruntime 1.31 and 1.32) is 5x slower than the three ops it replaces: 620 against
# 120 us on bert-base's (2, 160, 768), 2 threads; 5.5 % of the whole forward pass (docs/inference.md).
DISABLED_OPTIMIZERS = ("SkipLayerNormFusion",)
REQUIRED_INPUTS = ("input_ids", "attention_mask")
OPTIONAL_INPUTS = ("token_type_ids",)


def physical_cores() -> int:
    """Physical cores this process may run on: hyper-threads share a core's vector units."""
    physical = psutil.cpu_count(logical=False) or os.cpu_count() or 1
    try:
        allowed = len(os.sched_getaffinity(0))  # a container or taskset may allow fewer
    except AttributeError:  # pragma: no cover - not on Linux
        allowed = physical
    return max(1, min(physical, allowed))


def session_options(threads: int | None = None) -> ort.SessionOptions:
    """One intra-op thread per physical core, sequential execution, every graph optimization."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or physical_cores()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: ORT's warnings about unused initializers are noise
    return options


def open_session(onnx_path: Path, options: ort.SessionOptions) -> ort.InferenceSession:
    """An ONNX Runtime CPU session on ``onnx_path``, without ``DISABLED_OPTIMIZERS``."""
    return ort.InferenceSession(
        str(onnx_path),
        options,
        providers=["CPUExecutionProvider"],
        disabled_optimizers=list(DISABLED_OPTIMIZERS),
    )


class Classifier:
    """Scores texts with an exported model: probability of the legal class, in input order."""

    def __init__(
        self,
        session: ort.InferenceSession,
        tokenizer: Tokenizer,
        meta: ModelMeta,
        *,
        max_length: int | None = None,
        max_batch_tokens: int | None = None,
        onnx_path: Path | None = None,
    ) -> None:
        self.session = session
        self.tokenizer = tokenizer
        self.meta = meta
        self.onnx_path = onnx_path
        self._pad_id = SpecialIds.of(tokenizer).pad
        self._inputs = _check_graph(session, onnx_path)
        # The position table bounds padding; recorded by export, else the model's own max_length.
        positions = meta.export.get("max_positions")
        self.max_positions = int(positions) if positions else None
        self.max_length = max_length or meta.max_length
        if self.max_length < 3:
            raise ValueError("max_length must leave room for [CLS], [SEP] and one token")
        if self.max_positions is not None and self.max_length > self.max_positions:
            raise ModelArtifactError(
                f"max_length {self.max_length} exceeds the model's {self.max_positions} positions"
            )
        self._cap = self.max_positions or max(self.max_length, meta.max_length)
        widest = padded_length(self.max_length, cap=self._cap)
        self.max_batch_tokens = max(max_batch_tokens or DEFAULT_MAX_BATCH_TOKENS, widest)

    @classmethod
    def load(
        cls,
        model_dir: Path | str,
        *,
        int8: bool = False,
        max_length: int | None = None,
        max_batch_tokens: int | None = None,
        threads: int | None = None,
    ) -> Classifier:
        """The classifier in ``model_dir``; ``int8`` loads ``model.int8.onnx`` (kept by export only
        when it agreed with fp32). A missing or unreadable file raises ModelArtifactError."""
        directory = Path(model_dir)
        if not directory.is_dir():
            raise ModelArtifactError(f"model directory {directory} does not exist")
        meta = read_meta(directory)
        onnx_path = directory / (ONNX_INT8_FILE if int8 else ONNX_FILE)
        if not onnx_path.is_file():
            hint = (
                "run `lawscreen model export VERSION --int8` (kept only if it agrees with fp32)"
                if int8
                else "run `lawscreen model export VERSION`"
            )
            raise ModelArtifactError(f"{onnx_path} is missing: {hint}")
        return cls.from_files(
            onnx_path,
            directory / TOKENIZER_FILE,
            meta,
            max_length=max_length,
            max_batch_tokens=max_batch_tokens,
            threads=threads,
        )

    @classmethod
    def from_files(
        cls,
        onnx_path: Path,
        tokenizer_path: Path,
        meta: ModelMeta,
        *,
        max_length: int | None = None,
        max_batch_tokens: int | None = None,
        threads: int | None = None,
    ) -> Classifier:
        if not tokenizer_path.is_file():
            raise ModelArtifactError(f"{tokenizer_path} is missing: the model directory is incomplete")
        tokenizer = load_tokenizer(str(tokenizer_path))
        try:
            session = open_session(onnx_path, session_options(threads))
        except Exception as exc:  # ORT raises its own exception types (InvalidProtobuf, Fail, ...)
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelArtifactError(f"cannot load {onnx_path}: {message}") from None
        return cls(
            session,
            tokenizer,
            meta,
            max_length=max_length,
            max_batch_tokens=max_batch_tokens,
            onnx_path=onnx_path,
        )

    @property
    def threshold(self) -> float:
        """Decision threshold chosen by training: ``score >= threshold`` means legal consultation."""
        return self.meta.threshold

    @property
    def version(self) -> str:
        return self.meta.version

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids exactly as training encodes them (``lawscreen.encoding``), head and tail kept."""
        return encode(self.tokenizer, texts, self.max_length)

    def batches(self, ids: Sequence[Sequence[int]]) -> list[Batch]:
        """The batches ``ids`` is run in: longest first, under the token budget, padded to 8."""
        plan = plan_batches(
            [len(sequence) for sequence in ids], max_tokens=self.max_batch_tokens, cap=self._cap
        )
        return [make_batch(ids, indices, pad_id=self._pad_id, cap=self._cap) for indices in plan]

    def run(self, batch: Batch) -> NDArray[np.float32]:
        """Logits (rows, 2) of one batch."""
        feed: dict[str, Any] = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
        if "token_type_ids" in self._inputs:
            feed["token_type_ids"] = np.zeros_like(batch.input_ids)
        feed = {name: value.astype(self._inputs[name], copy=False) for name, value in feed.items()}
        (logits,) = self.session.run(["logits"], feed)
        return np.asarray(logits, dtype=np.float32)

    def iter_logits(self, texts: Sequence[str]) -> Iterator[tuple[int, NDArray[np.float32]]]:
        """(start, logits) per window of ``ENCODE_WINDOW`` texts, each window in input order."""
        for start in range(0, len(texts), ENCODE_WINDOW):
            window = texts[start : start + ENCODE_WINDOW]
            ids = self.encode(window)
            logits = np.empty((len(window), 2), dtype=np.float32)
            for batch in self.batches(ids):
                logits[batch.indices] = self.run(batch)
            yield start, logits

    def logits(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """Logits (n, 2) in input order. Index 1 is the legal class."""
        out = np.empty((len(texts), 2), dtype=np.float32)
        for start, logits in self.iter_logits(texts):
            out[start : start + len(logits)] = logits
        return out

    def score(self, texts: Sequence[str]) -> NDArray[np.float64]:
        """Probability of the legal class for each text, in input order."""
        return probabilities(self.logits(texts))

    def predict(self, texts: Sequence[str]) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
        """Scores and labels (``score >= threshold``)."""
        scores = self.score(texts)
        return scores, scores >= self.threshold


def probabilities(logits: NDArray[np.floating[Any]]) -> NDArray[np.float64]:
    """Softmax probability of class 1 from two-class logits, computed without overflow."""
    return margin_probabilities(logits[:, 1].astype(np.float64) - logits[:, 0].astype(np.float64))


def margin_probabilities(margin: NDArray[np.float64]) -> NDArray[np.float64]:
    """σ(margin), the probability of class 1 from the logit margin ``l1 - l0``, without overflow."""
    small = np.exp(-np.abs(margin))  # in (0, 1]: never overflows
    return np.where(margin >= 0, 1.0 / (1.0 + small), small / (1.0 + small))


_NUMPY_TYPES: dict[str, type[np.integer[Any]]] = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}


def _check_graph(session: ort.InferenceSession, path: Path | None) -> dict[str, type[np.integer[Any]]]:
    """The graph's inputs and their integer types; refuse a graph that is not a classifier."""
    where = path or "the ONNX model"
    inputs = {item.name: item.type for item in session.get_inputs()}
    missing = [name for name in REQUIRED_INPUTS if name not in inputs]
    unexpected = [name for name in inputs if name not in REQUIRED_INPUTS + OPTIONAL_INPUTS]
    if missing or unexpected:
        raise ModelArtifactError(
            f"{where} is not a lawscreen classifier: inputs {sorted(inputs)}, "
            f"expected input_ids, attention_mask and optionally token_type_ids"
        )
    outputs = {item.name: item.shape for item in session.get_outputs()}
    if "logits" not in outputs or outputs["logits"][-1] != 2:
        raise ModelArtifactError(f"{where} has no two-class 'logits' output: {outputs}")
    types: dict[str, type[np.integer[Any]]] = {}
    for name, type_name in inputs.items():
        if type_name not in _NUMPY_TYPES:
            raise ModelArtifactError(f"{where}: input {name} is {type_name}, expected int64 or int32")
        types[name] = _NUMPY_TYPES[type_name]
    return types
