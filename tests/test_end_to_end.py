"""The product end to end, on real parts: Prefect's test harness (a temporary API server), the
embedded PostgreSQL, the fake forum and the fake Telegram Bot API, and tiny models trained for
real on the CPU.

One scenario follows the loop the lawyer lives in: the hourly flow stores, scores and delivers;
button presses become labels; crossing the label threshold starts exactly one retrain, which the
bot's /retrain and `lawscreen retrain` then find instead of starting another; a better
candidate is promoted and the backlog re-scored; a worse one is not. Another kills the database
connection in the middle of a run and checks that the retry loses no post and sends nothing twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
from prefect.client.schemas.objects import FlowRun
from prefect.deployments.runner import RunnerDeployment
from prefect.flow_engine import run_flow
from prefect.testing.utilities import prefect_test_harness
from sqlalchemy import func, text
from sqlmodel import Session, col, select
from typer.testing import CliRunner

import flows.screening as screening
from flows.retraining import rescore, retrain, retrain_check
from lawscreen import classify
from lawscreen.cli import app
from lawscreen.database import transaction
from lawscreen.models import (
    Label,
    ModelStatus,
    ModelVersion,
    Notification,
    NotificationStatus,
    Post,
    Prediction,
)
from lawscreen.notify import outbox, ratelimit
from lawscreen.repo.registry import production_model
from tests.fake_forum import FakeForum, Topic, crawl_settings, source_toml
from tests.fake_telegram import FakeTelegram, configure, run_bot, telegram_fixture  # noqa: F401
from tests.train_fixtures import import_posts, make_tiny_base, separable_posts, tiny_train_config

CHAT = 1  # on the telegram fixture's allow-list
# A first model that has barely started learning: easy for the next one to beat.
# One short epoch, and a threshold for precision 0.5: a model that flags generously, so the first
# hourly run has alerts to press, and that a properly trained candidate beats.
WEAK = {"max_epochs": 1, "learning_rate": 1e-4, "target_precision": 0.5}


@pytest.fixture(scope="module", autouse=True)
def prefect_api() -> Iterator[None]:
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def world(telegram: FakeTelegram, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    """Labeled posts, a tiny base, a forum with new questions, the settings pointing at all of it."""
    labeled = separable_posts(per_class=30, seed=1)
    import_posts(tmp_path, labeled)
    base = make_tiny_base(tmp_path / "base", [post for post, _ in labeled])
    crawl_settings(monkeypatch)
    configure(monkeypatch, base_model=str(base), alert_threshold="0", gate_min_f1="0")
    # Thirty messages to one chat would take 36 s under Telegram's limits (tested in test_notify_relay).
    monkeypatch.setattr(
        ratelimit, "LIMITER", ratelimit.RateLimiter(per_chat_interval=0.01, global_interval=0.01)
    )
    monkeypatch.setattr(
        screening, "deliver_alerts", screening.deliver_alerts.with_options(retry_delay_seconds=0)
    )
    with FakeForum() as forum:
        forum.add(*_topics(separable_posts(per_class=6, seed=2), first_id=1))
        sources = tmp_path / "sources.toml"
        sources.write_text(source_toml("forum", "discourse", url=forum.url), encoding="utf-8")
        yield World(forum=forum, telegram=telegram, sources=str(sources))


@dataclass(frozen=True)
class World:
    forum: FakeForum
    telegram: FakeTelegram
    sources: str  # the sources file, pointing at the fake forum


def _topics(posts: list[tuple[str, int]], first_id: int) -> list[Topic]:
    return [
        # A title in the training posts' words: an unseen one would shift a tiny model's scores.
        Topic(id=first_id + i, title=body[:4], content=body)
        for i, (body, _) in enumerate(posts)
    ]


def _tiny_train(**overrides: Any) -> dict[str, Any]:
    config = tiny_train_config("unused", **overrides).model_dump(mode="json", exclude={"base"})
    return {key: value for key, value in config.items() if value is not None}


def _count(session: Session, model: type[Any], *where: Any) -> int:
    return session.exec(select(func.count()).select_from(model).where(*where)).one()


def _deploy_retraining() -> None:
    # The deployments the retrain check and the retrain flow start, with tiny training settings.
    for deployment in (
        retrain.to_deployment(name="retrain", parameters={"train": _tiny_train()}),
        rescore.to_deployment(name="rescore", parameters={"shards": 2}),
    ):
        assert isinstance(deployment, RunnerDeployment)
        deployment.apply()


def _runs_of(deployment_name: str) -> list[FlowRun]:
    async def read() -> list[FlowRun]:
        async with get_client() as client:
            return await client.read_flow_runs(
                deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[deployment_name]))
            )

    return asyncio.run(read())


def _execute(flow: Any, flow_run_id: str | UUID) -> Any:
    """Run a created deployment run here, as a worker of its pool would."""
    # Not prefect.flow_engine.load_flow_run: it leaves its sync client (and a socket) open.
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(UUID(str(flow_run_id)))
    return run_flow(flow, flow_run=flow_run)


def test_screening_feedback_and_the_retraining_loop(world: World) -> None:
    # A first, weak production model.
    first = retrain(train=_tiny_train(**WEAK))
    assert first.promoted

    # The hourly flow stores the forum's posts, scores them and delivers the alerts.
    summary = screening.hourly_screening(sources_file=world.sources)
    assert not summary.failed_sources
    assert summary.sources[0]["new"] == 12
    with transaction() as session:
        model = production_model(session)
        assert model is not None
        forum_posts = session.exec(select(Post.id).where(col(Post.url).is_not(None))).all()
        assert len(forum_posts) == 12
        assert _count(session, Prediction, col(Prediction.model_version_id) == model.id) == _count(
            session, Post
        )
        alerts = session.exec(select(Notification).where(Notification.chat_id == CHAT)).all()
    assert alerts, "the weak model still flags some posts"
    assert all(row.status == NotificationStatus.SENT for row in alerts)
    assert len(world.telegram.sent(CHAT)) == len(alerts)  # one message per row

    # The lawyer presses a button under every alert: each press becomes a feedback label.
    legal_texts = {body for body, label in separable_posts(per_class=6, seed=2) if label}
    with transaction() as session:
        texts = dict(session.exec(select(Post.id, Post.text)).all())
    presses = {row.post_id: int(texts[row.post_id].split("\n", 1)[1] in legal_texts) for row in alerts}

    async def press_all() -> None:
        for row in alerts:
            assert row.post_id is not None
            assert row.telegram_message_id is not None
            world.telegram.press(CHAT, row.telegram_message_id, f"fb:{row.post_id}:{presses[row.post_id]}")
        await asyncio.to_thread(
            world.telegram.wait_for, lambda: len(world.telegram.called("answerCallbackQuery")) == len(alerts)
        )

    run_bot(world.telegram, press_all)
    with transaction() as session:
        feedback = session.exec(select(Label.post_id, Label.is_legal).where(Label.origin == "feedback")).all()
    assert dict(feedback) == {post: bool(label) for post, label in presses.items()}

    # Crossing the label threshold starts one retrain, however often the check runs.
    _deploy_retraining()
    below = retrain_check(min_new_labels=len(presses) + 1)
    assert below["started"] is None
    started = retrain_check(min_new_labels=len(presses))
    again = retrain_check(min_new_labels=len(presses))
    assert started["started"]["flow_run_id"] == again["started"]["flow_run_id"]
    assert len(_runs_of("retrain")) == 1

    # The lawyer's /retrain and `lawscreen retrain` on the same snapshot find that same run.
    replies_before = len(world.telegram.sent(CHAT))

    async def ask_for_a_retrain() -> None:
        world.telegram.command(CHAT, "/retrain")
        await asyncio.to_thread(
            world.telegram.wait_for, lambda: len(world.telegram.sent(CHAT)) > replies_before
        )

    run_bot(world.telegram, ask_for_a_retrain)
    run_id = started["started"]["flow_run_id"]
    assert run_id in world.telegram.sent(CHAT)[-1].params["text"]
    command = CliRunner().invoke(app, ["retrain"])
    assert command.exit_code == 0, command.output
    assert run_id in command.output
    assert len(_runs_of("retrain")) == 1

    # The gpu worker runs it: a better candidate, promoted; the rescore it starts re-scores the backlog.
    outcome = _execute(retrain, started["started"]["flow_run_id"])
    assert outcome.promoted, outcome.reason
    (rescore_run,) = _runs_of("rescore")
    _execute(rescore, rescore_run.id)
    with transaction() as session:
        promoted = production_model(session)
        assert promoted is not None
        assert promoted.version == outcome.version
        assert _count(session, Prediction, col(Prediction.model_version_id) == promoted.id) == _count(
            session, Post
        )

    # A worse candidate stays a candidate, with the reason recorded.
    worse = retrain(train=_tiny_train(**WEAK))
    assert not worse.promoted
    with transaction() as session:
        row = session.exec(select(ModelVersion).where(ModelVersion.version == worse.version)).one()
        assert row.status == ModelStatus.CANDIDATE
        assert row.gate_reason == worse.reason
        assert "does not beat production" in worse.reason or "hard negatives" in worse.reason


def test_a_connection_killed_mid_flow_loses_no_post_and_sends_nothing_twice(
    world: World, database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert retrain(train=_tiny_train()).promoted
    real_enqueue = outbox.enqueue_hits
    killed: list[int] = []

    def enqueue_after_a_crash(session: Session, *args: Any, **kwargs: Any) -> int:
        if not killed:
            # The scoring transaction's connection dies, as in a database failover.
            pid = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
            with psycopg.connect(database, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            killed.append(pid)
        return real_enqueue(session, *args, **kwargs)

    monkeypatch.setattr(classify, "enqueue_hits", enqueue_after_a_crash)
    monkeypatch.setattr(
        screening, "classify_new_posts", screening.classify_new_posts.with_options(retry_delay_seconds=0)
    )

    summary = screening.hourly_screening(sources_file=world.sources)

    assert killed, "the connection was killed once"
    assert summary.classified is not None
    with transaction() as session:
        model = production_model(session)
        assert model is not None
        assert _count(session, Post) - 60 == 12  # every forum post stored (60 were imported)
        assert _count(session, Prediction, col(Prediction.model_version_id) == model.id) == _count(
            session, Post
        )
        rows = session.exec(select(Notification).where(Notification.chat_id == CHAT)).all()
    assert rows
    assert all(row.status == NotificationStatus.SENT for row in rows)
    sent_posts = [call.params["text"] for call in world.telegram.sent(CHAT)]
    assert len(sent_posts) == len(rows) == len(set(sent_posts))  # each alert exactly once
