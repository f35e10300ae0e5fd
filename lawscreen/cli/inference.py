"""`lawscreen classify-pending`, `lawscreen classify` and `lawscreen evaluate`.

The inference modules (onnxruntime) are imported inside the commands, so that the other
commands start without loading them.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from lawscreen import migrate
from lawscreen.cli._output import console, err_console
from lawscreen.database import transaction
from lawscreen.errors import ModelArtifactError

if TYPE_CHECKING:
    from lawscreen.inference import Classifier

# Texts scored per call when reading stdin: large enough to batch well, small enough to stream.
STDIN_CHUNK = 256
ERRORS_SHOWN = 20


def register(app: typer.Typer) -> None:
    app.command("classify-pending")(classify_pending_command)
    app.command("classify")(classify_command)
    app.command("evaluate")(evaluate_command)


ModelOption = Annotated[
    str | None,
    typer.Option(
        "--model",
        help="Model version from the registry, or a model directory path. Default: the production model.",
    ),
]


def classify_pending_command(
    chunk_size: Annotated[
        int | None, typer.Option(min=1, help="Posts per transaction. Default: LAWSCREEN_CLASSIFY_CHUNK_SIZE.")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Stop after this many posts.")] = None,
    model: Annotated[
        str | None, typer.Option("--model", help="Model version to score for. Default: the production model.")
    ] = None,
    shard: Annotated[
        str | None,
        typer.Option(help="INDEX/COUNT: only posts with id % COUNT == INDEX (parallel rescoring)."),
    ] = None,
) -> None:
    """Score every post that has no prediction for the production model."""
    from lawscreen.classify import ClassifyReport, classify_pending
    from lawscreen.repo.predictions import Shard

    try:
        parsed_shard = Shard.parse(shard) if shard else None
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--shard") from None
    migrate.ensure_schema()
    with Progress(
        TextColumn("classifying"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[hits]} hits"),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    ) as progress:
        task = progress.add_task("classify", total=None, hits=0)

        def update(report: ClassifyReport) -> None:
            total = report.pending_at_start if limit is None else min(limit, report.pending_at_start)
            progress.update(task, completed=report.processed, total=total, hits=report.hits)

        report = classify_pending(
            chunk_size=chunk_size, limit=limit, model_version=model, shard=parsed_shard, on_progress=update
        )
    rate = report.processed / report.seconds if report.seconds else 0.0
    console.print(
        f"model {report.model_version}: {report.scored} scored, {report.skipped_empty} skipped (empty), "
        f"{report.hits} hits, {report.notifications} notifications queued"
        + ("" if report.notify else " (notifications off: not the production model)")
        + f" in {report.seconds:.1f}s ({rate:.1f} posts/s)"
    )


def classify_command(
    text: Annotated[
        str | None, typer.Option("--text", help="Text to classify. Without it, each stdin line is a text.")
    ] = None,
    model: ModelOption = None,
) -> None:
    """Score texts: one JSON line per text, with its score and label (1 legal, 0 not)."""
    from lawscreen.text import post_text

    classifier, threshold, _ = _load(model)
    lines: Iterable[str] = [text] if text is not None else (line.rstrip("\n") for line in sys.stdin)
    for chunk in _chunks(lines, STDIN_CHUNK):
        # The text a post of this body gets in the database (lawscreen.text): same score.
        normalized = [post_text("", line) for line in chunk]
        present = [t for t in normalized if t]
        scores = iter(classifier.score(present)) if present else iter(())
        for item in normalized:
            if not item:
                typer.echo(json.dumps({"score": None, "label": None, "skipped": "empty"}))
                continue
            score = float(next(scores))
            typer.echo(json.dumps({"score": round(score, 6), "label": int(score >= threshold)}))


def evaluate_command(
    data: Annotated[
        Path, typer.Option(exists=True, dir_okay=False, help="Labeled JSON lines, the import format.")
    ],
    model: ModelOption = None,
) -> None:
    """Score a labeled file and print one JSON object of metrics (precision, recall, F1, ...)."""
    from lawscreen.importer import parse_line
    from lawscreen.metrics import binary_metrics

    texts: list[str] = []
    labels: list[int] = []
    errors: list[tuple[int, str]] = []
    with data.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8").strip()
            except UnicodeDecodeError:
                errors.append((number, "not UTF-8"))
                continue
            if not line:
                continue
            try:
                record = parse_line(line, None)
            except ValueError as exc:
                errors.append((number, str(exc)))
                continue
            texts.append(record.post.text)
            labels.append(int(record.is_legal))
    for number, reason in errors[:ERRORS_SHOWN]:
        err_console.print(f"  line {number}: {reason}", style="yellow", markup=False)
    if not texts:
        raise typer.BadParameter(f"{data} holds no labeled post", param_hint="--data")
    classifier, threshold, version = _load(model)
    scores = classifier.score(texts)
    metrics = binary_metrics(labels, scores, threshold).as_dict()
    result = {**metrics, "model": version, "data": str(data), "rejected_lines": len(errors)}
    typer.echo(json.dumps(result, ensure_ascii=False))


def _load(model: str | None) -> tuple[Classifier, float, str]:
    """(classifier, threshold, version) of a model directory path as given, else of a registry
    version (default: production). A registered model is judged at the registry's threshold, as
    the classification stage does."""
    from lawscreen.classify import load_classifier, resolve_model

    if model is not None and ("/" in model or Path(model).is_dir()):
        if not Path(model).is_dir():
            raise ModelArtifactError(f"model directory {model} does not exist")
        classifier = load_classifier(model)
        return classifier, classifier.threshold, classifier.version
    migrate.ensure_schema()
    with transaction() as session:
        row = resolve_model(session, model)
        path, threshold, version = row.artifact_path, row.threshold, row.version
    return load_classifier(path), threshold, version


def _chunks(items: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
