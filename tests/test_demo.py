from __future__ import annotations

import json

from typer.testing import CliRunner

from lawscreen.cli import app


def test_demo_imports_the_sample_labels_and_status_shows_them(database: str) -> None:
    runner = CliRunner()
    demo = runner.invoke(app, ["demo"])
    assert demo.exit_code == 0, demo.output
    assert "0 rejected" in demo.output

    status = json.loads(runner.invoke(app, ["status", "--json"]).output)
    assert status["labels"]["legal"] == 200
    assert status["labels"]["not_legal"] == 220
    assert status["posts"] == 420
