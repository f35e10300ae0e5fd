"""`lawscreen model export VERSION [--int8]`: the command function, attached to the `model` group.

Export needs torch and transformers (the ``train`` extra); they are imported when it runs.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Annotated

import typer
from sqlmodel import select

from lawscreen import migrate
from lawscreen.cli._output import console, err_console
from lawscreen.database import transaction
from lawscreen.errors import LawscreenError, ModelNotFoundError
from lawscreen.models import EvaluationPost, ModelVersion, Post
from lawscreen.repo.labels import effective_labels
from lawscreen.settings import get_settings


def export_command(
    version: Annotated[str, typer.Argument(help="Model version (registry name or directory under models/).")],
    int8: Annotated[
        bool, typer.Option("--int8", help="Also write model.int8.onnx, kept only if it agrees with fp32.")
    ] = False,
    data: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="Labeled JSON lines (import format) for the parity and int8 checks. "
            "Default: the evaluation set in the database.",
        ),
    ] = None,
) -> None:
    """Export a model to ONNX, check parity with PyTorch, optionally quantize to int8."""
    missing = [name for name in ("torch", "transformers", "onnx") if importlib.util.find_spec(name) is None]
    if missing:
        raise LawscreenError(
            f"export needs the training extra ({', '.join(missing)} missing): pip install 'lawscreen[train]'"
        )
    from lawscreen.export import export_model

    model_dir = _model_dir(version)
    texts, labels = _from_file(data) if data else _evaluation_set()
    if not texts:
        raise LawscreenError("no evaluation texts for the parity check: pass --data FILE.jsonl")
    with err_console.status(f"exporting {version} ({len(texts)} evaluation posts)"):
        report = export_model(model_dir, texts, labels, int8=int8)
    for line in report.lines():
        style = "yellow" if line.startswith("warning") or "refused" in line else None
        console.print(line, style=style, markup=False, highlight=False)


def _model_dir(version: str) -> Path:
    """The registry's artifact path for ``version``, else ``<data dir>/models/<version>``."""
    migrate.ensure_schema()
    with transaction() as session:
        row = session.exec(select(ModelVersion).where(ModelVersion.version == version)).first()
    if row is not None:
        return Path(row.artifact_path)
    candidate = get_settings().models_dir / version
    if candidate.is_dir():
        return candidate
    raise ModelNotFoundError(f"no model version {version!r} in the registry, and no directory {candidate}")


def _evaluation_set() -> tuple[list[str], list[int]]:
    """Texts and labels of the frozen evaluation set (evaluation_posts with their effective label)."""
    labels = effective_labels().subquery()
    with transaction() as session:
        rows = session.execute(
            select(Post.text, labels.c.is_legal)
            .join(EvaluationPost, EvaluationPost.post_id == Post.id)  # type: ignore[arg-type]
            .join(labels, labels.c.post_id == Post.id)
            .order_by(Post.id)  # type: ignore[arg-type]
        ).all()
    kept = [(str(text), bool(is_legal)) for text, is_legal in rows if str(text).strip()]
    return [text for text, _ in kept], [int(is_legal) for _, is_legal in kept]


def _from_file(path: Path) -> tuple[list[str], list[int]]:
    from lawscreen.importer import parse_line

    texts: list[str] = []
    labels: list[int] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = parse_line(line, None)
        except ValueError as exc:
            err_console.print(f"  line {number}: {exc}", style="yellow", markup=False)
            continue
        texts.append(record.post.text)
        labels.append(int(record.is_legal))
    return texts, labels
