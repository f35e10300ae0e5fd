"""Export a trained model directory to ONNX, and prove the ONNX graph computes what PyTorch does.

``export_model(model_dir, eval_texts, eval_labels)`` adds ``model.onnx`` (and, with ``int8=True``,
possibly ``model.int8.onnx``) to a model directory written by training, and records every figure
in ``meta.json``'s ``export``:

1. **Export** the Hugging Face checkpoint with the TorchScript exporter (``dynamo=False``), opset
   17, dynamic batch and sequence axes, eager attention. Eager attention and this exporter give the
   graph pattern onnxruntime's BERT fusions recognize; SDPA attention or the dynamo exporter give
   a graph whose attention is left unfused (tests/test_export.py shows it).
2. **Optimize** with onnxruntime's transformer optimizer (``model_type="bert"``) and count the fused
   operators against what the architecture should give: one Attention and one Gelu per layer,
   two LayerNormalization per layer (their residual and bias Adds left unfused: ONNX Runtime's
   SkipLayerNormalization kernel is slower than the three ops), one EmbedLayerNormalization.
   A shortfall is reported (``fusion.complete = false`` and a warning), not refused: the parity
   check below runs on the graph actually written, so an unfused graph is still correct, only
   slower; refusing would stop training from shipping a model over a speed regression. Then two
   exact rewrites (``lawscreen.graph_surgery``): the last layer is cut down to the [CLS] row the
   classifier reads (``fusion.cls_only_last_layer``), and the row-wise ops between attentions
   skip the padding rows (``fusion.padding_rows_dropped``).
3. **Parity** against PyTorch on the evaluation texts, through the runtime's own batching (sorted,
   padded to 8, under the token budget): max |Δlogit| ≤ 1e-4, identical labels at the model's
   threshold, and batch invariance (each post scored alone and padded inside one batch with all
   the others differ by ≤ 1e-4). Any failure raises ExportParityError and leaves no new file.
4. **int8** (optional): dynamic quantization of the optimized graph, kept only if it agrees with
   fp32 on ≥ 99 % of the evaluation labels and loses ≤ 1 F1 point (needs ``eval_labels``).

This module needs torch and transformers (the ``train`` extra); the runtime never imports it.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from lawscreen.artifacts import ONNX_FILE, ONNX_INT8_FILE, TOKENIZER_FILE, ModelMeta, read_meta, write_meta
from lawscreen.encoding import SpecialIds, load_tokenizer
from lawscreen.errors import ExportParityError, ModelArtifactError
from lawscreen.graph_surgery import drop_padding_rows, keep_cls_only_in_last_layer
from lawscreen.inference import Classifier, probabilities
from lawscreen.metrics import binary_metrics

log = logging.getLogger(__name__)

OPSET = 17  # LayerNormalization is a single op from 17 on; onnxruntime's fusions handle it
MAX_LOGIT_DIFF = 1e-4
# A PyTorch score this close to the threshold may land on either side after any change of float
# summation order; such posts are reported as borderline instead of counting as label flips. It is
# the largest probability change a logit change within MAX_LOGIT_DIFF can cause (|dp| ≤ |dΔ| / 4).
BORDERLINE = MAX_LOGIT_DIFF / 2
INT8_MIN_AGREEMENT = 0.99
INT8_MAX_F1_LOSS = 0.01
BATCH_INVARIANCE_POSTS = 64  # posts scored one by one for the batch-invariance check
TORCH_BATCH = 16
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


@dataclass(frozen=True, slots=True)
class FusionReport:
    counts: dict[str, int]  # fused operators found, by kind
    expected: dict[str, int]  # what a fully fused graph of this architecture has
    missing: dict[str, int]  # kind -> how many short of expected
    # lawscreen.graph_surgery's rewrites, applied or not
    cls_only_last_layer: bool = False
    padding_rows_dropped: bool = False

    @property
    def complete(self) -> bool:
        return not self.missing

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "complete": self.complete}


@dataclass(frozen=True, slots=True)
class ParityReport:
    n: int
    max_abs_logit_diff: float  # PyTorch vs the ONNX runtime path
    label_flips: int  # labels that differ at the threshold, borderline posts excluded
    borderline: int  # posts whose PyTorch score is within BORDERLINE of the threshold
    batch_invariance_n: int
    batch_invariance_max_diff: float  # the same post alone vs padded inside a batch

    @property
    def passed(self) -> bool:
        return (
            self.max_abs_logit_diff <= MAX_LOGIT_DIFF
            and self.label_flips == 0
            and self.batch_invariance_max_diff <= MAX_LOGIT_DIFF
        )

    def problems(self) -> list[str]:
        found = []
        if self.max_abs_logit_diff > MAX_LOGIT_DIFF:
            found.append(f"max |Δlogit| {self.max_abs_logit_diff:.3g} > {MAX_LOGIT_DIFF:g}")
        if self.label_flips:
            found.append(f"{self.label_flips} of {self.n} labels differ from PyTorch")
        if self.batch_invariance_max_diff > MAX_LOGIT_DIFF:
            found.append(
                f"a post scores differently alone and in a padded batch "
                f"(max |Δlogit| {self.batch_invariance_max_diff:.3g})"
            )
        return found

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed, "max_allowed": MAX_LOGIT_DIFF}


@dataclass(frozen=True, slots=True)
class Int8Decision:
    accepted: bool
    reason: str
    n: int = 0
    agreement: float | None = None  # share of evaluation posts with the same label as fp32
    f1_fp32: float | None = None
    f1_int8: float | None = None
    size_mb: float | None = None

    @property
    def f1_loss(self) -> float | None:
        if self.f1_fp32 is None or self.f1_int8 is None:
            return None
        return self.f1_fp32 - self.f1_int8

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "f1_loss": self.f1_loss}

    def line(self) -> str:
        verdict = "kept" if self.accepted else "refused"
        if self.agreement is None:
            return f"int8: {verdict}: {self.reason}"
        return (
            f"int8: {verdict}: label agreement {self.agreement:.2%} (needs ≥ {INT8_MIN_AGREEMENT:.0%}), "
            f"F1 {self.f1_fp32:.4f} fp32 → {self.f1_int8:.4f} int8 "
            f"(loss {self.f1_loss:+.4f}, at most {INT8_MAX_F1_LOSS}) on {self.n} posts; {self.reason}"
        )


@dataclass
class ExportReport:
    model_dir: Path
    onnx_path: Path
    fusion: FusionReport
    parity: ParityReport
    int8: Int8Decision | None = None
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "onnx_file": self.onnx_path.name,
            "opset": OPSET,
            "fusion": self.fusion.as_dict(),
            "parity": self.parity.as_dict(),
            "int8": self.int8.as_dict() if self.int8 else None,
            "seconds": round(self.seconds, 2),
            "warnings": self.warnings,
        }

    def lines(self) -> list[str]:
        """A human summary, one fact per line (the CLI and training print it)."""
        expected = self.fusion.expected
        counts = ", ".join(f"{kind} {n}/{expected[kind]}" for kind, n in self.fusion.counts.items())
        p = self.parity
        out = [
            f"wrote {self.onnx_path} in {self.seconds:.1f}s",
            f"fusions: {counts}"
            + ("" if self.fusion.complete else " (INCOMPLETE)")
            + ("; last layer computed for [CLS] only" if self.fusion.cls_only_last_layer else "")
            + ("; padding rows dropped between attentions" if self.fusion.padding_rows_dropped else ""),
            f"parity on {p.n} posts: max |Δlogit| {p.max_abs_logit_diff:.2e}, "
            f"{p.label_flips} label flips, {p.borderline} borderline; batch invariance on "
            f"{p.batch_invariance_n} posts: max |Δlogit| {p.batch_invariance_max_diff:.2e}",
        ]
        if self.int8:
            out.append(self.int8.line())
        out.extend(f"warning: {warning}" for warning in self.warnings)
        return out


def export_model(
    model_dir: Path,
    eval_texts: Sequence[str],
    eval_labels: Sequence[int] | None = None,
    *,
    int8: bool = False,
) -> ExportReport:
    """Write ``model.onnx`` into ``model_dir`` after it passes parity; see the module docstring.

    Raises ModelArtifactError when the directory or its checkpoint cannot be read, and
    ExportParityError when the ONNX graph disagrees with PyTorch; neither leaves a new file
    behind. The int8 decision never raises: a refusal is in the report (and logged).
    """
    started = time.perf_counter()
    model_dir = Path(model_dir)
    if not eval_texts:
        raise ValueError("export needs evaluation texts for its parity check")
    if eval_labels is not None and len(eval_labels) != len(eval_texts):
        raise ValueError(f"{len(eval_texts)} evaluation texts but {len(eval_labels)} labels")
    meta = read_meta(model_dir)
    tokenizer_path = model_dir / TOKENIZER_FILE
    load_tokenizer(str(tokenizer_path))  # a clear error before the slow steps
    model = _load_checkpoint(model_dir)
    config = model.config
    texts = list(eval_texts)

    with tempfile.TemporaryDirectory(dir=model_dir, prefix=".export-") as work_dir:
        work = Path(work_dir)
        raw = work / "raw.onnx"
        _torch_export(model, raw)
        optimized = work / ONNX_FILE
        fusion = optimize(
            raw,
            optimized,
            num_heads=config.num_attention_heads,
            hidden_size=config.hidden_size,
            layers=config.num_hidden_layers,
        )
        runtime_meta = meta.model_copy(update={"export": {"max_positions": config.max_position_embeddings}})
        classifier = Classifier.from_files(optimized, tokenizer_path, runtime_meta)
        parity, fp32_logits = check_parity(model, classifier, texts)
        if not parity.passed:
            raise ExportParityError(f"refusing to export {model_dir.name}: " + "; ".join(parity.problems()))
        warnings_found = []
        if not fusion.complete:
            warnings_found.append(
                "fusion incomplete ("
                + ", ".join(f"{k} short by {n}" for k, n in fusion.missing.items())
                + "): the graph is correct (parity passed) but slower; check the torch/transformers "
                "export pattern against onnxruntime's fusions"
            )
            log.warning("%s: %s", model_dir.name, warnings_found[-1])

        decision = None
        if int8:
            decision = _quantize_and_decide(
                optimized,
                work / ONNX_INT8_FILE,
                tokenizer_path,
                runtime_meta,
                texts,
                eval_labels,
                fp32_logits,
            )
            (log.info if decision.accepted else log.warning)("%s: %s", model_dir.name, decision.line())

        os.replace(optimized, model_dir / ONNX_FILE)
        int8_path = model_dir / ONNX_INT8_FILE
        if decision is not None and decision.accepted:
            os.replace(work / ONNX_INT8_FILE, int8_path)
        else:
            # An int8 file from an earlier export must not outlive this export's decision.
            int8_path.unlink(missing_ok=True)

    report = ExportReport(
        model_dir=model_dir,
        onnx_path=model_dir / ONNX_FILE,
        fusion=fusion,
        parity=parity,
        int8=decision,
        seconds=time.perf_counter() - started,
        warnings=warnings_found,
    )
    export_record = {**report.as_dict(), "max_positions": config.max_position_embeddings}
    write_meta(model_dir, read_meta(model_dir).model_copy(update={"export": export_record}))
    return report


def _load_checkpoint(model_dir: Path) -> Any:
    from transformers import AutoConfig, AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # "Loading weights" bars would interleave with the report
    try:
        config = AutoConfig.from_pretrained(model_dir)
        if config.model_type != "bert":
            raise ModelArtifactError(
                f"{model_dir}: model type {config.model_type!r}; export supports BERT only "
                "(onnxruntime's BERT fusions)"
            )
        if config.num_labels != 2:
            raise ModelArtifactError(f"{model_dir}: {config.num_labels} labels, expected 2")
        # Eager attention: the pattern onnxruntime's attention fusion recognizes (SDPA's is not).
        model = AutoModelForSequenceClassification.from_pretrained(model_dir, attn_implementation="eager")
    except ModelArtifactError:
        raise
    except Exception as exc:  # transformers raises OSError, ValueError, safetensors errors...
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelArtifactError(f"cannot load the checkpoint in {model_dir}: {first_line}") from None
    finally:
        if bars:
            hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]
    return model.eval()


def _torch_export(model: Any, path: Path) -> None:
    import torch

    # Two rows of two tokens: no axis of the example input has size 1 (never specialized).
    example = torch.tensor([[2, 3], [2, 3]], dtype=torch.long)
    axes = {name: {0: "batch", 1: "sequence"} for name in INPUT_NAMES}
    with warnings.catch_warnings(), torch.inference_mode():
        # Known and harmless, each checked; matched by message and by the module the warning is
        # attributed to. The TorchScript exporter is deprecated in favour of the dynamo one (whose
        # graph onnxruntime cannot fuse, see the module docstring); torch's own exporter internals
        # use deprecated torch APIs; transformers' mask code tests `padding_length > 0`, always false
        # for a bidirectional mask whose length is the input's; aten::index is applied to mask
        # positions, never to negative indices.
        for message, module in (
            ("You are using the legacy TorchScript-based ONNX export", r"lawscreen\.export"),
            ("The feature will be removed", r"torch\.onnx\."),
            (r"`isinstance\(treespec, LeafSpec\)` is deprecated", r"torch\.utils\._pytree"),
            ("Converting a tensor to a Python boolean", r"transformers\.masking_utils"),
            ("Exporting aten::index operator of advanced indexing", r"torch\.onnx\."),
        ):
            warnings.filterwarnings("ignore", message=message, module=module)
        torch.onnx.export(
            model,
            (),
            str(path),
            kwargs={
                "input_ids": example,
                "attention_mask": torch.ones_like(example),
                "token_type_ids": torch.zeros_like(example),
            },
            input_names=list(INPUT_NAMES),
            output_names=["logits"],
            dynamic_axes={**axes, "logits": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )


def expected_fusions(layers: int) -> dict[str, int]:
    return {
        "Attention": layers,
        "LayerNormalization": 2 * layers,
        "EmbedLayerNormalization": 1,
        "Gelu": layers,
    }


# The optimizer's statistics names, grouped into the kinds we check.
_FUSED_KINDS = {
    "Attention": ("Attention", "MultiHeadAttention"),
    "LayerNormalization": ("LayerNormalization", "SkipLayerNormalization"),
    "EmbedLayerNormalization": ("EmbedLayerNormalization",),
    "Gelu": ("Gelu", "BiasGelu", "FastGelu", "GemmFastGelu"),
}


def fusion_report(statistics: dict[str, int], layers: int) -> FusionReport:
    counts = {kind: sum(int(statistics.get(n, 0)) for n in names) for kind, names in _FUSED_KINDS.items()}
    expected = expected_fusions(layers)
    missing = {kind: expected[kind] - counts[kind] for kind in expected if counts[kind] < expected[kind]}
    return FusionReport(counts=counts, expected=expected, missing=missing)


def optimize(raw: Path, output: Path, *, num_heads: int, hidden_size: int, layers: int) -> FusionReport:
    """Apply onnxruntime's BERT fusions to ``raw`` and write ``output``; count what was fused.

    ``opt_level=0``: the Python fusions only, no hardware-specific rewrites baked into the file,
    so the file runs on any CPU; the runtime session applies ORT's own optimizations at load.
    """
    from onnxruntime.transformers import optimizer
    from onnxruntime.transformers.fusion_options import FusionOptions

    options = FusionOptions("bert")
    # Residual and bias Adds stay beside LayerNormalization: SkipLayerNormalization is the slower
    # kernel (lawscreen.inference.classifier.DISABLED_OPTIMIZERS says by how much; the session keeps ORT
    # from re-fusing them at load).
    options.enable_skip_layer_norm = False
    model = optimizer.optimize_model(
        str(raw),
        model_type="bert",
        num_heads=num_heads,
        hidden_size=hidden_size,
        opt_level=0,
        optimization_options=options,
    )
    report = fusion_report(model.get_fused_operator_statistics(), layers)
    cls_only = keep_cls_only_in_last_layer(model)
    unpadded = drop_padding_rows(model)
    model.save_model_to_file(str(output))
    return replace(report, cls_only_last_layer=cls_only, padding_rows_dropped=unpadded)


def torch_logits(model: Any, ids: Sequence[Sequence[int]], pad_id: int) -> NDArray[np.float32]:
    """PyTorch's logits for encoded posts, in batches of similar length padded to the longest."""
    import torch

    out = np.empty((len(ids), 2), dtype=np.float32)
    order = np.argsort([len(sequence) for sequence in ids], kind="stable")
    with torch.inference_mode():
        for start in range(0, len(order), TORCH_BATCH):
            rows = order[start : start + TORCH_BATCH]
            width = max(len(ids[i]) for i in rows)
            input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
            mask = torch.zeros_like(input_ids)
            for r, i in enumerate(rows):
                input_ids[r, : len(ids[i])] = torch.tensor(ids[i])
                mask[r, : len(ids[i])] = 1
            output = model(
                input_ids=input_ids, attention_mask=mask, token_type_ids=torch.zeros_like(input_ids)
            )
            out[rows] = output.logits.float().numpy()
    return out


def check_parity(
    model: Any, classifier: Classifier, texts: Sequence[str]
) -> tuple[ParityReport, NDArray[np.float32]]:
    """Compare the runtime's logits with PyTorch's; return the report and the runtime's logits."""
    ids = classifier.encode(texts)
    reference = torch_logits(model, ids, SpecialIds.of(classifier.tokenizer).pad)
    onnx_logits = classifier.logits(texts)
    max_diff = float(np.max(np.abs(onnx_logits - reference)))
    threshold = classifier.threshold
    torch_scores, onnx_scores = probabilities(reference), probabilities(onnx_logits)
    borderline = np.abs(torch_scores - threshold) <= BORDERLINE
    flips = (torch_scores >= threshold) != (onnx_scores >= threshold)
    invariance_n, invariance = batch_invariance(classifier, ids)
    report = ParityReport(
        n=len(texts),
        max_abs_logit_diff=max_diff,
        label_flips=int(np.sum(flips & ~borderline)),
        borderline=int(np.sum(borderline)),
        batch_invariance_n=invariance_n,
        batch_invariance_max_diff=invariance,
    )
    return report, onnx_logits


def batch_invariance(classifier: Classifier, ids: Sequence[Sequence[int]]) -> tuple[int, float]:
    """Max |Δlogit| between posts run alone (no padding at all) and together in one padded batch.

    Takes the shortest and the longest posts first, so that the padded batch pads the short
    ones a lot: the case where a mask bug would show.
    """
    from lawscreen.inference.batching import make_batch

    by_length = np.argsort([len(sequence) for sequence in ids], kind="stable")
    half = BATCH_INVARIANCE_POSTS // 2
    chosen = np.unique(np.r_[by_length[:half], by_length[-half:]]).astype(np.intp)
    pad = SpecialIds.of(classifier.tokenizer).pad
    together = classifier.run(make_batch(ids, chosen, pad_id=pad, cap=classifier.max_positions))
    alone = np.stack(
        [
            classifier.run(make_batch(ids, np.array([i], dtype=np.intp), pad_id=pad, multiple=1))[0]
            for i in chosen
        ]
    )
    return int(chosen.size), float(np.max(np.abs(together - alone)))


def int8_decision(
    fp32_scores: NDArray[np.floating[Any]],
    int8_scores: NDArray[np.floating[Any]],
    labels: ArrayLike | None,
    threshold: float,
) -> Int8Decision:
    """The int8 gate as a pure function: keep int8 only if it agrees with fp32 on ≥ 99 % of the
    labels and loses at most 1 F1 point against the true labels."""
    if labels is None:
        return Int8Decision(accepted=False, reason="no evaluation labels: the F1 gate cannot be checked")
    fp32_labels = np.asarray(fp32_scores) >= threshold
    int8_labels = np.asarray(int8_scores) >= threshold
    agreement = float(np.mean(fp32_labels == int8_labels))
    f1_fp32 = binary_metrics(labels, fp32_scores, threshold).f1
    f1_int8 = binary_metrics(labels, int8_scores, threshold).f1
    problems = []
    if agreement < INT8_MIN_AGREEMENT:
        problems.append("label agreement below the minimum")
    if f1_fp32 - f1_int8 > INT8_MAX_F1_LOSS:
        problems.append("F1 loss above the maximum")
    return Int8Decision(
        accepted=not problems,
        reason="; ".join(problems) or "within both bounds",
        n=int(fp32_labels.size),
        agreement=agreement,
        f1_fp32=f1_fp32,
        f1_int8=f1_int8,
    )


def quantize(fp32: Path, output: Path) -> None:
    """Dynamic int8: int8 weights (per channel), activations quantized at run time.

    ``reduce_range``: 7-bit weights, so the u8×s8 products cannot saturate the 16-bit
    accumulators of AVX2 CPUs without VNNI (onnxruntime issues #6004, #5849); the file may run on
    such a CPU even when it was exported on one with VNNI.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Its advice to run pre-processing (shape inference) is for unoptimized graphs: ours is fused.
    with _root_log_filtered("Please consider to run pre-processing before quantization"):
        quantize_dynamic(
            fp32,
            output,
            per_channel=True,
            reduce_range=True,
            weight_type=QuantType.QInt8,
            # Fused contrib ops (Attention, BiasGelu) have no ONNX shape inference:
            # their outputs are float tensors.
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )


@contextmanager
def _root_log_filtered(message: str) -> Iterator[None]:
    """Drop one known message that onnxruntime logs on the root logger."""

    def keep(record: logging.LogRecord) -> bool:
        return message not in record.getMessage()

    root = logging.getLogger()
    root.addFilter(keep)
    try:
        yield
    finally:
        root.removeFilter(keep)


def _quantize_and_decide(
    fp32_path: Path,
    int8_path: Path,
    tokenizer_path: Path,
    meta: ModelMeta,
    texts: list[str],
    labels: Sequence[int] | None,
    fp32_logits: NDArray[np.float32],
) -> Int8Decision:
    if labels is None:
        return int8_decision(probabilities(fp32_logits), probabilities(fp32_logits), None, meta.threshold)
    quantize(fp32_path, int8_path)
    int8_classifier = Classifier.from_files(int8_path, tokenizer_path, meta)
    decision = int8_decision(probabilities(fp32_logits), int8_classifier.score(texts), labels, meta.threshold)
    size_mb = round(int8_path.stat().st_size / 2**20, 1)
    return Int8Decision(**{**asdict(decision), "size_mb": size_mb})
