"""`lawscreen model ...`: the registry (list, show, promote, rollback), the offline bootstrap and
the ONNX export.

list/show/promote/rollback need only the database. bootstrap and export need the ``train`` extra;
torch is imported inside those commands so that the registry commands work on an inference-only
install.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, TypeVar

import typer
from pydantic import BaseModel, ValidationError
from rich.table import Table

from lawscreen import migrate
from lawscreen.cli._output import console
from lawscreen.cli.export import export_command
from lawscreen.database import transaction
from lawscreen.errors import RegistryError
from lawscreen.repo import registry

app = typer.Typer(
    help="The model registry, the offline bootstrap of a base and the ONNX export.", no_args_is_help=True
)

app.command("export")(export_command)

ConfigT = TypeVar("ConfigT", bound=BaseModel)
# The metrics shown side by side for the model and the baseline.
METRIC_ROWS = ("f1", "precision", "recall", "accuracy", "roc_auc", "pr_auc", "brier")


@app.command("list")
def list_command() -> None:
    """Every model version, newest first."""
    migrate.ensure_schema()
    with transaction() as session:
        models = registry.list_models(session)
    if not models:
        console.print("no models yet: `lawscreen train` makes one")
        return
    table = Table("version", "status", "created", "threshold", "eval F1", "baseline F1", "labels", "gate")
    for model in models:
        table.add_row(
            model.version,
            _styled_status(model.status),
            f"{model.created_at:%Y-%m-%d %H:%M}" if model.created_at else "",
            f"{model.threshold:.3f}",
            _fmt(_evaluation(model.metrics, "model").get("f1")),
            _fmt(_evaluation(model.metrics, "baseline").get("f1")),
            str(model.label_revision),
            model.gate_reason or "",
        )
    console.print(table)


@app.command()
def show(
    version: Annotated[
        str | None, typer.Argument(help="Model version; default the production model.")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the registry row as one JSON object.")
    ] = False,
) -> None:
    """A model's metrics beside the baseline's, its data snapshot and where it lies."""
    migrate.ensure_schema()
    with transaction() as session:
        model = registry.get_model(session, version) if version else registry.production_model(session)
    if model is None:
        raise RegistryError("there is no production model; name a version (lawscreen model list)")
    if as_json:
        typer.echo(json.dumps(model.model_dump(mode="json"), ensure_ascii=False))
        return
    console.print(f"[bold]{model.version}[/]  {_styled_status(model.status)}")
    console.print(f"  base: {model.base}")
    console.print(f"  directory: {model.artifact_path}")
    console.print(f"  threshold: {model.threshold:.4f}   label revision: {model.label_revision}")
    if model.promoted_at:
        console.print(f"  promoted: {model.promoted_at:%Y-%m-%d %H:%M:%S %Z}")
    if model.gate_reason:
        console.print(f"  gate: {model.gate_reason}")
    counts = model.data_snapshot.get("counts", {})
    for part, by_class in counts.items():
        console.print(
            f"  {part}: {by_class.get('legal', 0)} legal / {by_class.get('not_legal', 0)} not legal"
        )
    print_metrics(model.metrics)


@app.command()
def promote(version: Annotated[str, typer.Argument(help="The version to put in production.")]) -> None:
    """Put VERSION in production now (no gate) and retire the current production model."""
    migrate.ensure_schema()
    with transaction() as session:
        previous = registry.production_model(session)
        model = registry.promote(session, version)
    replaced = f" (retired {previous.version})" if previous and previous.version != version else ""
    console.print(f"production: [bold]{model.version}[/]{replaced}")


@app.command()
def rollback() -> None:
    """Retire the production model and restore the one promoted before it."""
    migrate.ensure_schema()
    with transaction() as session:
        current = registry.production_model(session)
        restored = registry.rollback(session)
    console.print(
        f"production: [bold]{restored.version}[/] (rolled back from {current.version if current else '?'})"
    )


@app.command()
def bootstrap(
    name: Annotated[str, typer.Option(help="Base name, under LAWSCREEN_DATA_DIR/bases.")] = "bootstrap",
    from_base: Annotated[
        str | None,
        typer.Option("--from", help="Continue MLM pre-training of this base (directory or cached HF id)."),
    ] = None,
    vocab_size: Annotated[int | None, typer.Option(help="WordPiece vocabulary size.")] = None,
    hidden_size: Annotated[int | None, typer.Option(help="Hidden size of the new BERT.")] = None,
    layers: Annotated[int | None, typer.Option(help="Transformer layers.")] = None,
    heads: Annotated[int | None, typer.Option(help="Attention heads.")] = None,
    intermediate_size: Annotated[int | None, typer.Option(help="Feed-forward size.")] = None,
    max_length: Annotated[int | None, typer.Option(help="Tokens per post (and positions).")] = None,
    mlm_probability: Annotated[float | None, typer.Option(help="Share of the tokens masked (0.15).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Passes over the corpus.")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Cap on optimiser steps.")] = None,
    learning_rate: Annotated[
        float | None,
        typer.Option(help="Peak AdamW learning rate. Default 1e-3; 3e-5 to continue a full-size BERT."),
    ] = None,
    batch_size: Annotated[int | None, typer.Option(help="Posts per step.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu or cuda.")] = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads for torch.")] = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Pre-train a base with masked-language modelling on the stored posts (no pretrained checkpoint)."""
    # torch is imported only when this command runs
    from lawscreen.train import BootstrapConfig, bootstrap_base
    from lawscreen.train.bootstrap import read_bootstrap_record

    migrate.ensure_schema()
    options = {
        "name": name,
        "from_base": from_base,
        "vocab_size": vocab_size,
        "hidden_size": hidden_size,
        "num_layers": layers,
        "num_heads": heads,
        "intermediate_size": intermediate_size,
        "max_length": max_length,
        "mlm_probability": mlm_probability,
        "epochs": epochs,
        "max_steps": max_steps,
        "learning_rate": learning_rate,
        "batch_size": batch_size,
        "seed": seed,
        "device": device,
        "threads": threads,
        "progress": progress,
    }
    path = bootstrap_base(build_config(BootstrapConfig, options))
    made = read_bootstrap_record(path)
    mlm = made["pretraining"]
    console.print(
        f"base [bold]{name}[/] at {path}: {made['parameters']:,} parameters, "
        f"vocabulary {made['vocab_size']:,}; {mlm['posts']} posts, {mlm['steps']} steps "
        f"in {mlm['seconds']} s, "
        f"MLM loss {mlm['first_epoch_loss']} -> {mlm['last_epoch_loss']}"
    )
    console.print(f"next: lawscreen train --base {name}")


def build_config(cls: type[ConfigT], options: dict[str, Any]) -> ConfigT:
    """The config from the options the user set (the rest keep their defaults), or a usage error."""
    try:
        return cls(**{key: value for key, value in options.items() if value is not None})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'options'}: {e['msg']}" for e in exc.errors())
        raise typer.BadParameter(problems) from None


def print_metrics(metrics: dict[str, Any]) -> None:
    """The model beside the TF-IDF baseline on validation and on the frozen evaluation set."""
    model, baseline = metrics.get("model", {}), metrics.get("baseline", {})
    if not model:
        return
    table = Table(
        "",
        "model val",
        "model eval",
        "baseline val",
        "baseline eval",
        title=f"model vs {baseline.get('name', 'baseline')} (val: validation, eval: frozen evaluation set)",
    )
    for key in ("n", *METRIC_ROWS):
        table.add_row(
            key,
            *(
                _fmt(part.get(key))
                for who in (model, baseline)
                for part in (who.get("validation", {}), who.get("evaluation", {}))
            ),
        )
    table.add_row(
        "hard neg. flagged",
        "",
        _hard_negatives(model),
        "",
        _hard_negatives(baseline),
    )
    table.add_row(
        "threshold",
        _fmt(model.get("threshold", {}).get("value")),
        "",
        _fmt(baseline.get("threshold", {}).get("value")),
        "",
    )
    console.print(table)
    calibration = model.get("calibration")
    if calibration:
        console.print(
            f"scores calibrated on {calibration['fitted_on']} validation posts (Platt: "
            f"σ({calibration['slope']:.3g}·margin {calibration['intercept']:+.3g})); evaluation Brier "
            f"{_fmt(calibration['evaluation_brier_before'])} before, "
            f"{_fmt(calibration['evaluation_brier_after'])} after"
        )
    if not model.get("threshold", {}).get("reached_target", True):
        console.print(
            f"[yellow]no threshold reached precision {model['threshold']['target_precision']} on validation; "
            "the best-F1 threshold is used[/]"
        )
    sources = model.get("evaluation", {}).get("by_source", {})
    if sources:
        by_source = Table(
            "source", "n", "precision", "recall", "F1", title="model on the evaluation set, per source"
        )
        for name, figures in sources.items():
            by_source.add_row(
                name,
                str(figures["n"]),
                _fmt(figures["precision"]),
                _fmt(figures["recall"]),
                _fmt(figures["f1"]),
            )
        console.print(by_source)


def _hard_negatives(who: dict[str, Any]) -> str:
    hard = who.get("hard_negatives")
    return f"{hard['flagged']}/{hard['n']}" if hard else ""


def _evaluation(metrics: dict[str, Any], who: str) -> dict[str, Any]:
    part = metrics.get(who, {}).get("evaluation", {})
    return part if isinstance(part, dict) else {}


def _styled_status(status: str) -> str:
    return {"production": "[bold green]production[/]", "retired": "[dim]retired[/]"}.get(status, status)


def _fmt(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else ("n/a" if value is None else str(value))
