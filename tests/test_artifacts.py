from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from lawscreen.artifacts import META_FILE, ModelMeta, read_meta, write_meta
from lawscreen.errors import ModelArtifactError


def test_meta_round_trip(tmp_path: Path) -> None:
    meta = ModelMeta(
        version="m1",
        base="bert-base-chinese",
        threshold=0.42,
        max_length=256,
        created_at=datetime(2026, 11, 22, tzinfo=UTC),
        data_snapshot={"label_revision": 7},
    )
    write_meta(tmp_path, meta)
    assert read_meta(tmp_path) == meta
    assert [p.name for p in tmp_path.iterdir()] == [META_FILE]  # no partial file left behind


def test_missing_or_corrupt_meta_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelArtifactError, match="not a model directory"):
        read_meta(tmp_path)
    (tmp_path / META_FILE).write_text('{"version": "m1", "threshold": 3}')
    with pytest.raises(ModelArtifactError, match=r"meta\.json is invalid"):
        read_meta(tmp_path)
