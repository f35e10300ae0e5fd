"""`lawscreen demo`, the README's main job, on the bundled sample data.

The demo trains a model only when none is registered; that path (bootstrap and train with the
default settings, about eleven minutes on two cores) is what the README's first command runs and
what bench/quality.py measures. Here a tiny exported model is registered first, so the test covers
everything else: the import, the hourly flow on the sample forum, scoring, and the console
digest.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from prefect.testing.utilities import prefect_test_harness
from typer.testing import CliRunner

from lawscreen.cli import app
from lawscreen.database import transaction
from lawscreen.repo import registry
from tests.model_fixtures import shared_model

SAMPLE_POSTS, SAMPLE_FORUM_POSTS = 420, 246  # data/sample/posts.jsonl, data/sample/heldout.jsonl


@pytest.fixture(scope="module", autouse=True)
def prefect_api() -> Iterator[None]:
    with prefect_test_harness(server_startup_timeout=120):
        yield


def test_demo_imports_screens_the_sample_forum_and_prints_the_digest(
    database: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    with transaction() as session:
        registry.register_candidate(
            session,
            version="tiny",
            base="tiny",
            artifact_path=str(shared_model(tmp_path_factory)),
            threshold=0.5,
            metrics={},
            data_snapshot={},
            label_revision=0,
        )
        registry.promote(session, "tiny")
    runner = CliRunner()

    demo = runner.invoke(app, ["demo"])
    assert demo.exit_code == 0, demo.output
    assert "0 rejected" in demo.output
    assert "No production model yet" not in demo.output  # the registered one is used
    # The imported posts had no prediction either: the hourly flow scores every unscored post.
    assert f"classified with tiny: {SAMPLE_POSTS + SAMPLE_FORUM_POSTS} scored" in demo.output
    assert "法律咨询摘要" in demo.output  # the digest, on the console: no Telegram token

    status = json.loads(runner.invoke(app, ["status", "--json"]).output)
    assert status["labels"]["legal"] == 200
    assert status["labels"]["not_legal"] == 220
    assert status["posts"] == SAMPLE_POSTS + SAMPLE_FORUM_POSTS
    assert status["unscored_posts"] == 0
    assert status["production_model"]["version"] == "tiny"
    (forum,) = [source for source in status["sources"] if source["name"] == "sample-forum"]
    assert forum["last_success_at"] is not None

    # Run again: the labels are the same, the forum is not due for an hour, nothing is duplicated.
    again = runner.invoke(app, ["demo"])
    assert again.exit_code == 0, again.output
    assert json.loads(runner.invoke(app, ["status", "--json"]).output)["posts"] == status["posts"]
