"""Export: parity with PyTorch, batch invariance, fusions, refusals, the int8 gate."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from lawscreen import export
from lawscreen.artifacts import ONNX_FILE, ONNX_INT8_FILE, read_meta
from lawscreen.cli import app
from lawscreen.encoding import SpecialIds
from lawscreen.errors import ExportParityError, ModelArtifactError
from lawscreen.export import (
    INT8_MAX_F1_LOSS,
    MAX_LOGIT_DIFF,
    export_model,
    fusion_report,
    int8_decision,
)
from lawscreen.inference import Classifier
from lawscreen.inference.batching import make_batch
from lawscreen.inference.classifier import open_session, session_options
from tests.model_fixtures import build_model_dir, copy_model, shared_model, synthetic_posts


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_model(tmp_path_factory)


@pytest.fixture
def checkpoint(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Path:
    """A fresh copy of a trained, not yet exported, model directory."""
    return copy_model(shared_model(tmp_path_factory, exported=False), tmp_path / "model")


def test_export_records_parity_and_fusions_within_bounds(exported: Path) -> None:
    record = read_meta(exported).export
    parity = record["parity"]
    assert parity["passed"]
    assert parity["n"] == 64
    assert parity["max_abs_logit_diff"] <= MAX_LOGIT_DIFF
    assert parity["label_flips"] == 0
    assert parity["batch_invariance_max_diff"] <= MAX_LOGIT_DIFF
    assert record["fusion"]["complete"]
    assert record["fusion"]["cls_only_last_layer"]
    assert record["fusion"]["padding_rows_dropped"]
    assert record["fusion"]["counts"] == {
        "Attention": 2,
        "LayerNormalization": 4,
        "EmbedLayerNormalization": 1,
        "Gelu": 2,
    }
    assert record["max_positions"] == 128


def test_the_graph_has_dynamic_batch_and_sequence_axes(exported: Path) -> None:
    graph = onnx.load(exported / ONNX_FILE).graph
    for graph_input in graph.input:
        dims = graph_input.type.tensor_type.shape.dim
        assert [dim.dim_param for dim in dims] == ["batch", "sequence"], graph_input.name
    fused = {node.op_type for node in graph.node}
    assert {"Attention", "LayerNormalization", "EmbedLayerNormalization", "BiasGelu"} <= fused
    assert "SkipLayerNormalization" not in fused


def test_the_runtime_session_keeps_layer_norms_unfused(exported: Path, tmp_path: Path) -> None:
    """ONNX Runtime would merge the residual Adds and LayerNormalization back into its slower
    SkipLayerNormalization at load; the graph it actually runs must not have one."""
    options = session_options(threads=1)
    options.optimized_model_filepath = str(tmp_path / "as_run.onnx")
    open_session(exported / ONNX_FILE, options)
    as_run = [node.op_type for node in onnx.load(tmp_path / "as_run.onnx").graph.node]
    assert as_run.count("LayerNormalization") == 4
    assert "SkipLayerNormalization" not in as_run


def test_a_post_scores_the_same_alone_and_padded_in_a_batch(exported: Path) -> None:
    classifier = Classifier.load(exported)
    texts, _ = synthetic_posts(20, seed=7)
    texts = ["押金", *texts, "工资" * 40]
    ids = classifier.encode(texts)
    pad = SpecialIds.of(classifier.tokenizer).pad
    together = classifier.run(make_batch(ids, np.arange(len(ids)), pad_id=pad))
    assert together.shape[0] == len(texts)
    for i in range(len(ids)):
        alone = classifier.run(make_batch(ids, np.array([i]), pad_id=pad, multiple=1))
        assert alone.shape == (1, 2)
        np.testing.assert_allclose(together[i], alone[0], atol=MAX_LOGIT_DIFF)


def test_a_corrupted_checkpoint_is_a_clear_error_and_writes_nothing(checkpoint: Path) -> None:
    weights = checkpoint / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    before = sorted(p.name for p in checkpoint.iterdir())
    with pytest.raises(ModelArtifactError, match="cannot load the checkpoint"):
        export_model(checkpoint, ["房东不退押金"])
    assert sorted(p.name for p in checkpoint.iterdir()) == before  # no model.onnx, no temp dir
    assert read_meta(checkpoint).export == {}


def test_a_parity_failure_refuses_the_export_and_leaves_no_model_onnx(
    checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = export.torch_logits

    def off_by_a_little(*args: Any) -> Any:
        return real(*args) + 2 * MAX_LOGIT_DIFF

    monkeypatch.setattr(export, "torch_logits", off_by_a_little)
    texts, labels = synthetic_posts(16)
    with pytest.raises(ExportParityError, match=r"refusing to export .*max \|Δlogit\| 0\.0002"):
        export_model(checkpoint, texts, labels, int8=True)
    assert not (checkpoint / ONNX_FILE).exists()
    assert not (checkpoint / ONNX_INT8_FILE).exists()
    assert not list(checkpoint.glob(".export-*"))


# SDPA's code path warns while traced (export's filters cover only the eager path it uses).
@pytest.mark.filterwarnings("ignore:Converting a tensor to a Python boolean:torch.jit.TracerWarning")
def test_an_sdpa_export_is_reported_unfused_but_still_correct(
    checkpoint: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The trap the fusion count catches: with SDPA attention the export is correct but the
    attention fusion silently does not happen."""
    from transformers import AutoModelForSequenceClassification

    def load_with_sdpa(model_dir: Path) -> Any:
        model = AutoModelForSequenceClassification.from_pretrained(model_dir, attn_implementation="sdpa")
        return model.eval()

    monkeypatch.setattr(export, "_load_checkpoint", load_with_sdpa)
    texts, _ = synthetic_posts(16)
    report = export_model(checkpoint, texts)
    assert report.parity.passed
    assert not report.fusion.complete
    assert report.fusion.missing["Attention"] == 2
    assert not report.fusion.cls_only_last_layer  # no fused Attention to cut after
    assert not report.fusion.padding_rows_dropped  # nor to pack rows between
    assert "fusion incomplete" in report.warnings[0]
    assert "fusion incomplete" in caplog.text
    assert read_meta(checkpoint).export["fusion"]["complete"] is False
    assert any("(INCOMPLETE)" in line for line in report.lines())


def test_fusion_report_counts_each_kind_against_the_architecture() -> None:
    stats = {"Attention": 12, "BiasGelu": 12, "LayerNormalization": 24, "EmbedLayerNormalization": 1}
    assert fusion_report(stats, layers=12).complete
    partial_stats = {"MultiHeadAttention": 12, "FastGelu": 12, "LayerNormalization": 20}
    partial = fusion_report(partial_stats, layers=12)
    assert partial.counts["Attention"] == 12
    assert partial.missing == {"LayerNormalization": 4, "EmbedLayerNormalization": 1}


def test_int8_decision_rule() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 1000)
    fp32 = np.where(labels == 1, 0.9, 0.1) + rng.normal(0, 0.01, 1000)
    assert int8_decision(fp32, fp32 + 0.001, labels, 0.5).accepted

    flipped = fp32.copy()
    flipped[:20] = 1 - flipped[:20]  # 2 % of labels flip: agreement 98 %
    refused = int8_decision(fp32, flipped, labels, 0.5)
    assert not refused.accepted
    assert refused.agreement == pytest.approx(0.98)
    assert "agreement" in refused.reason
    assert "refused: label agreement 98.00%" in refused.line()

    # Rare positives (10 %): 0.9 % of labels flip, so agreement passes, but they are all missed
    # positives and F1 drops by about 5 points.
    rare = (np.arange(1000) % 10 == 0).astype(int)
    rare_fp32 = np.where(rare == 1, 0.9, 0.1)
    rare_int8 = rare_fp32.copy()
    rare_int8[np.flatnonzero(rare)[:9]] = 0.1
    losing = int8_decision(rare_fp32, rare_int8, rare, 0.5)
    assert losing.agreement == pytest.approx(0.991)
    assert losing.f1_loss is not None
    assert losing.f1_loss > INT8_MAX_F1_LOSS
    assert not losing.accepted
    assert losing.reason == "F1 loss above the maximum"

    no_labels = int8_decision(fp32, fp32, None, 0.5)
    assert not no_labels.accepted
    assert "no evaluation labels" in no_labels.reason


def test_int8_is_kept_when_it_agrees_with_fp32(checkpoint: Path) -> None:
    texts, labels = synthetic_posts(64, seed=1)
    report = export_model(checkpoint, texts, labels, int8=True)
    assert report.int8 is not None
    assert report.int8.accepted, report.int8.line()
    assert report.int8.agreement is not None
    assert report.int8.agreement >= 0.99
    assert (checkpoint / ONNX_INT8_FILE).is_file()
    assert read_meta(checkpoint).export["int8"]["accepted"] is True
    fp32, int8 = Classifier.load(checkpoint), Classifier.load(checkpoint, int8=True)
    np.testing.assert_allclose(fp32.score(texts), int8.score(texts), atol=0.05)


def test_int8_that_disagrees_is_refused_and_its_figures_printed(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database: str
) -> None:
    """End to end through the command: the quantizer is made to produce a model that disagrees
    (an untrained one's graph), as a badly saturating int8 kernel would."""
    untrained = build_model_dir(tmp_path / "untrained", train_steps=0)
    export_model(untrained, ["押金"])

    def bad_quantize(fp32: Path, output: Path) -> None:
        shutil.copyfile(untrained / ONNX_FILE, output)

    monkeypatch.setattr(export, "quantize", bad_quantize)
    (checkpoint / ONNX_INT8_FILE).write_bytes(b"stale int8 from an earlier export")
    texts, labels = synthetic_posts(64, seed=1)
    data = tmp_path / "eval.jsonl"
    data.write_text("\n".join(f'{{"text": "{t}", "label": {y}}}' for t, y in zip(texts, labels, strict=True)))
    monkeypatch.setenv("LAWSCREEN_DATA_DIR", str(tmp_path))

    models_dir = tmp_path / "models"
    models_dir.mkdir()
    shutil.move(checkpoint, models_dir / "m1")
    from lawscreen.settings import get_settings

    get_settings.cache_clear()
    result = CliRunner().invoke(app, ["model", "export", "m1", "--int8", "--data", str(data)])
    assert result.exit_code == 0, result.output
    assert "int8: refused: label agreement" in result.output
    assert "F1" in result.output
    assert "parity on 64 posts" in result.output
    model_dir = models_dir / "m1"
    assert (model_dir / ONNX_FILE).is_file()  # fp32 is kept: it passed parity
    assert not (model_dir / ONNX_INT8_FILE).exists()  # the stale int8 is gone too
    decision = read_meta(model_dir).export["int8"]
    assert decision["accepted"] is False
    assert decision["agreement"] < 0.99
