"""`lawscreen train`: fine-tune the base on the labels and register the result as a candidate.

torch and transformers are imported when the command runs, not when the CLI starts, so the other
commands work on an inference-only install.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from lawscreen import migrate
from lawscreen.cli._output import console
from lawscreen.cli.model import build_config, print_metrics
from lawscreen.database import transaction
from lawscreen.repo import registry
from lawscreen.settings import get_settings


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)


def self_training_line(summary: dict[str, Any]) -> str:
    rounds = "".join(
        f"; round {number}: {r['pseudo_labeled']['legal']}+{r['pseudo_labeled']['not_legal']} pseudo-labels"
        + (
            ""
            if r["student_validation_f1"] is None
            else f", student validation F1 {r['student_validation_f1']:.3f}"
        )
        for number, r in enumerate(summary["rounds"], start=1)
    )
    stopped = f" ({summary['reason']})" if summary["reason"] else ""
    return (
        f"self-training on {summary['unlabeled']} unlabeled posts (teacher validation F1 "
        f"{summary['teacher_validation_f1']:.3f}){rounds}; kept the {summary['kept']}{stopped}"
    )


def train_command(
    base: Annotated[
        str | None,
        typer.Option(
            help="Directory, bootstrapped base name, or cached Hugging Face id. Default LAWSCREEN_BASE_MODEL."
        ),
    ] = None,
    max_length: Annotated[int | None, typer.Option(help="Tokens per post (head and tail kept).")] = None,
    max_epochs: Annotated[int | None, typer.Option(help="Most passes over the training posts.")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Cap on optimiser steps.")] = None,
    patience: Annotated[
        int | None, typer.Option(help="Epochs without a better validation F1 before stopping.")
    ] = None,
    learning_rate: Annotated[
        float | None,
        typer.Option(help="Peak AdamW learning rate. Default 1e-3 (small base), 3e-5 (full-size BERT)."),
    ] = None,
    batch_size: Annotated[int | None, typer.Option(help="Posts per optimiser step on CPU.")] = None,
    loss: Annotated[str | None, typer.Option(help="focal or cross_entropy.")] = None,
    focal_gamma: Annotated[float | None, typer.Option(help="Focal loss γ.")] = None,
    focal_alpha: Annotated[
        float | None, typer.Option(help="Focal loss α (positive class); default balanced.")
    ] = None,
    target_precision: Annotated[
        float | None, typer.Option(help="Precision the threshold must reach on validation.")
    ] = None,
    calibrate: Annotated[
        bool, typer.Option(help="Platt-scale the scores on validation, written into the model's head.")
    ] = True,
    self_training: Annotated[
        bool, typer.Option(help="Train a second model on the unlabeled posts' confident pseudo-labels.")
    ] = True,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda.")] = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads for torch.")] = None,
    export: Annotated[
        bool, typer.Option(help="Export model.onnx with its parity check, as the retrain flow does.")
    ] = True,
    gate: Annotated[
        bool, typer.Option(help="Run the promotion gate after registering: promote if it beats production.")
    ] = False,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Fine-tune a classifier on the labels, judge it beside the TF-IDF baseline, register a candidate."""
    from lawscreen.export import ExportReport, export_model
    from lawscreen.train import TrainConfig, evaluation_scorer, train_and_register  # torch: only here

    migrate.ensure_schema()
    config = build_config(
        TrainConfig,
        {
            "base": base,
            "max_length": max_length,
            "max_epochs": max_epochs,
            "max_steps": max_steps,
            "patience": patience,
            "learning_rate": learning_rate,
            "batch_size": batch_size,
            "loss": loss,
            "focal_gamma": focal_gamma,
            "focal_alpha": focal_alpha,
            "target_precision": target_precision,
            "calibrate": calibrate,
            "self_training": self_training,
            "seed": seed,
            "device": device,
            "threads": threads,
            "progress": progress,
        },
    )
    exported: list[ExportReport] = []

    def export_hook(model_dir: Path, texts: list[str], labels: list[int]) -> None:
        exported.append(export_model(model_dir, texts, labels))

    result = train_and_register(config, export=export_hook if export else None)
    snapshot = result.meta.data_snapshot
    counts = ", ".join(f"{part} {c['legal']}+{c['not_legal']}" for part, c in snapshot["counts"].items())
    console.print(f"trained on label revision {snapshot['label_revision']} ({counts}; legal+not legal)")
    if summary := result.metrics["training"]["self_training"]:
        console.print(self_training_line(summary))
    print_metrics(result.metrics)
    for report in exported:
        for line in report.lines():
            console.print(line, markup=False, highlight=False)
    console.print(f"candidate [bold]{result.version}[/] registered: {result.model_dir}")
    if gate:
        settings = get_settings()
        with transaction() as session:
            decision = registry.gate(
                session,
                result.version,
                evaluation_scorer(session),
                margin=settings.gate_margin,
                min_f1=settings.gate_min_f1,
            )
        verdict = "[bold green]promoted[/]" if decision.promote else "stays a candidate"
        console.print(f"gate: {verdict}: {decision.reason}")
