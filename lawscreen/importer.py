"""Import labeled JSON lines as posts of an import source, with their labels.

Format, one object per line::

    {"text": "...", "label": 1}                # or "content" for the text
    {"title": "...", "text": "...", "is_legal": false}
    {"content": "..."}                         # label given by --label for the whole file

Each post's external id is the hash of its normalized text, so importing a file twice, or two
files that share texts, stores every text once. A bad line is reported with its number and the
others are imported.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, StrictBool, ValidationError

from lawscreen.database import transaction
from lawscreen.models import LabelOrigin, SourceKind
from lawscreen.repo.labels import NewLabel, upsert_labels
from lawscreen.repo.posts import NewPost, upsert_posts
from lawscreen.repo.sources import ensure_source
from lawscreen.text import content_hash

DEFAULT_SOURCE = "import"
# Lines per transaction: bounded memory on large files, and visible progress.
CHUNK_LINES = 1000


class _Line(BaseModel):
    model_config = ConfigDict(extra="ignore")

    text: str | None = None
    content: str | None = None
    title: str = ""
    label: Literal[0, 1] | None = None
    is_legal: StrictBool | None = None


@dataclass(frozen=True, slots=True)
class Record:
    post: NewPost
    is_legal: bool


@dataclass
class ImportReport:
    lines: int = 0
    imported: int = 0
    new_posts: int = 0
    labels_changed: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)


def parse_line(line: str, default_label: bool | None) -> Record:
    """One line to a record, or ValueError saying what is wrong with it."""
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg})") from None
    if not isinstance(raw, dict):
        raise ValueError("not a JSON object")
    try:
        parsed = _Line.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ValueError(problems) from None

    body = parsed.text if parsed.text is not None else parsed.content
    if body is None:
        raise ValueError("no text (expected a 'text' or 'content' field)")
    labels = {bool(v) for v in (parsed.label, parsed.is_legal) if v is not None}
    if len(labels) > 1:
        raise ValueError("'label' and 'is_legal' disagree")
    is_legal = labels.pop() if labels else default_label
    if is_legal is None:
        raise ValueError("no label (expected 'label' 0/1 or 'is_legal', or pass --label)")

    post = NewPost.build(external_id="", title=parsed.title, body_text=body)
    if not post.text:
        raise ValueError("empty text")
    return Record(post=_with_id(post), is_legal=is_legal)


def _with_id(post: NewPost) -> NewPost:
    # The content hash is the identity of an imported text: re-imports and overlaps collapse.
    return NewPost(
        external_id=content_hash(post.text), text=post.text, title=post.title, body_raw=post.body_raw
    )


def import_file(
    path: Path,
    *,
    default_label: bool | None = None,
    source_name: str = DEFAULT_SOURCE,
    on_progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Import ``path``; ``on_progress`` receives the bytes read so far after each chunk."""
    report = ImportReport()
    annotator = f"import:{path.name}"
    with transaction() as session:
        source_id = ensure_source(session, source_name, SourceKind.IMPORT).id
    assert source_id is not None

    for chunk, bytes_read in _chunks(path, report, default_label):
        with transaction() as session:
            stored = upsert_posts(session, source_id, [record.post for record in chunk])
            ids = stored.id_by_external_id
            report.new_posts += len(stored.new_ids)
            report.labels_changed += upsert_labels(
                session,
                [
                    NewLabel(
                        post_id=ids[record.post.external_id],
                        is_legal=record.is_legal,
                        origin=LabelOrigin.IMPORT,
                        annotator=annotator,
                    )
                    for record in chunk
                ],
            )
        report.imported += len(chunk)
        if on_progress:
            on_progress(bytes_read)
    return report


def _chunks(
    path: Path, report: ImportReport, default_label: bool | None
) -> Iterator[tuple[list[Record], int]]:
    chunk: list[Record] = []
    bytes_read = 0
    with path.open("rb") as handle:
        for number, raw_line in enumerate(handle, start=1):
            bytes_read += len(raw_line)
            report.lines = number
            try:
                line = raw_line.decode("utf-8").strip()
            except UnicodeDecodeError:
                report.errors.append((number, "not UTF-8"))
                continue
            if not line:
                continue
            try:
                chunk.append(parse_line(line, default_label))
            except ValueError as exc:
                report.errors.append((number, str(exc)))
                continue
            if len(chunk) >= CHUNK_LINES:
                yield chunk, bytes_read
                chunk = []
    if chunk:
        yield chunk, bytes_read
