from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import func
from sqlmodel import select
from typer.testing import CliRunner

from lawscreen.cli import app
from lawscreen.database import transaction
from lawscreen.importer import import_file
from lawscreen.models import Label, Post
from lawscreen.repo import labels


def _write_lines(path: Path, lines: list[str | bytes]) -> Path:
    path.write_bytes(b"".join((line if isinstance(line, bytes) else line.encode()) + b"\n" for line in lines))
    return path


def _counts() -> tuple[int, int]:
    with transaction() as session:
        posts = session.exec(select(func.count()).select_from(Post)).one()
        label_rows = session.exec(select(func.count()).select_from(Label)).one()
    return posts, label_rows


def test_bad_lines_are_reported_by_number_and_the_rest_imported(database: str, tmp_path: Path) -> None:
    path = _write_lines(
        tmp_path / "mixed.jsonl",
        [
            json.dumps({"text": "公司拖欠工资怎么办", "label": 1}),
            json.dumps({"content": "显卡推荐", "is_legal": False}),
            '{"text": "没有闭合的引号, "label": 1}',
            json.dumps(["not", "an", "object"]),
            json.dumps({"title": "只有标题", "label": 1}),
            json.dumps({"text": "没有标签"}),
            json.dumps({"text": "标签矛盾", "label": 1, "is_legal": False}),
            json.dumps({"text": "标签不是0或1", "label": 7}),
            "",
            b'{"text": "\xff\xfe broken bytes", "label": 0}',
            json.dumps({"text": "   \u200b ", "label": 0}),
            json.dumps({"title": "房东不退押金", "text": "押金三千，房东说墙脏了不退", "label": 1}),
        ],
    )
    report = import_file(path)

    assert report.lines == 12
    assert report.imported == 3
    reasons = dict(report.errors)
    assert sorted(reasons) == [3, 4, 5, 6, 7, 8, 10, 11]
    assert "not valid JSON" in reasons[3]
    assert "not a JSON object" in reasons[4]
    assert "no text" in reasons[5]
    assert "no label" in reasons[6]
    assert "disagree" in reasons[7]
    assert "label" in reasons[8]
    assert "not UTF-8" in reasons[10]
    assert "empty text" in reasons[11]
    with transaction() as session:
        assert labels.count_by_class(session) == {"legal": 2, "not_legal": 1}
        texts = set(session.exec(select(Post.text)).all())
    assert "房东不退押金\n押金三千,房东说墙脏了不退" in texts


def test_importing_2000_lines_twice_leaves_2000_labels(database: str, tmp_path: Path) -> None:
    path = _write_lines(
        tmp_path / "big.jsonl",
        [
            json.dumps({"text": f"第{i}个帖子：押金问题", "label": i % 2}, ensure_ascii=False)
            for i in range(2000)
        ],
    )
    first = import_file(path)
    second = import_file(path)

    assert (first.imported, first.new_posts, first.labels_changed) == (2000, 2000, 2000)
    assert (second.imported, second.new_posts, second.labels_changed) == (2000, 0, 0)
    assert _counts() == (2000, 2000)


def test_label_option_covers_files_holding_one_class(database: str, tmp_path: Path) -> None:
    # The original blog kept one file per class, one {"content": ...} object per line.
    legal = _write_lines(
        tmp_path / "legal.jsonl", [json.dumps({"content": f"借钱不还怎么起诉 {i}"}) for i in range(3)]
    )
    other = _write_lines(
        tmp_path / "other.jsonl", [json.dumps({"content": f"周末去哪玩 {i}"}) for i in range(2)]
    )
    import_file(legal, default_label=True)
    import_file(other, default_label=False)
    with transaction() as session:
        assert labels.count_by_class(session) == {"legal": 3, "not_legal": 2}


def test_a_changed_label_replaces_the_old_one_and_counts_as_new(database: str, tmp_path: Path) -> None:
    path = tmp_path / "one.jsonl"
    _write_lines(path, [json.dumps({"text": "朋友问我借钱，要不要借？", "label": 1})])
    import_file(path)
    with transaction() as session:
        snapshot = labels.latest_revision(session)

    _write_lines(path, [json.dumps({"text": "朋友问我借钱，要不要借？", "label": 0})])
    report = import_file(path)

    assert report.labels_changed == 1
    assert _counts() == (1, 1)
    with transaction() as session:
        assert labels.count_by_class(session) == {"legal": 0, "not_legal": 1}
        assert labels.count_since(session, snapshot) == 1


def test_cli_import_prints_a_summary_and_the_bad_lines(database: str, tmp_path: Path) -> None:
    path = _write_lines(tmp_path / "cli.jsonl", [json.dumps({"text": "工伤怎么认定", "label": 1}), "{broken"])
    result = CliRunner().invoke(app, ["import", str(path)])
    assert result.exit_code == 0, result.output
    assert "2 lines, 1 imported" in result.output
    assert "line 2: not valid JSON" in result.output
