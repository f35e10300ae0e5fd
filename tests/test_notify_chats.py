"""The allow-list made rows (sync_chats), and the notification settings."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError
from sqlmodel import col, select

from lawscreen.database import transaction
from lawscreen.models import Chat, Notification, NotificationKind
from lawscreen.notify import served_chat_ids, sync_chats
from lawscreen.notify.bot import COMMANDS
from lawscreen.notify.chats import CONSOLE_CHAT_ID, NOT_ALLOWED, ChatSync
from lawscreen.settings import Settings, get_settings
from tests.conftest import REPO_ROOT
from tests.fake_telegram import add_chats, add_posts, configure, queue


def _chats() -> dict[int, tuple[bool, str | None]]:
    with transaction() as session:
        rows = session.scalars(select(Chat).order_by(col(Chat.chat_id))).all()
        return {chat.chat_id: (chat.enabled, chat.disabled_reason) for chat in rows}


def test_sync_adds_disables_and_brings_back(database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    configure(
        monkeypatch,
        notify_timezone="Europe/Berlin",
        notify_digest_times="20:00,07:30",
        notify_digest_limit="5",
    )
    with transaction() as session:
        add_chats(session, 3)
        queue(session, 3, add_posts(session, 2), kind=NotificationKind.DIGEST_ITEM)
        assert sync_chats(session, [1, 2]) == ChatSync(added=[1, 2], disabled=[3])
    assert _chats() == {1: (True, None), 2: (True, None), 3: (False, NOT_ALLOWED)}
    with transaction() as session:
        new = session.get(Chat, 1)
        assert new is not None
        assert (new.timezone, new.digest_times, new.digest_limit) == ("Europe/Berlin", ["07:30", "20:00"], 5)
        assert sync_chats(session, [1, 2]) == ChatSync()  # in sync: nothing written
        blocked = session.get(Chat, 2)
        assert blocked is not None
        blocked.enabled, blocked.disabled_reason = False, "Forbidden: bot was blocked by the user"
    with transaction() as session:
        assert sync_chats(session, [1, 2, 3]) == ChatSync(enabled=[3])
    # Back on the list: served again. Blocked the bot: stays off until its lawyer sends /start.
    assert _chats() == {
        1: (True, None),
        2: (False, "Forbidden: bot was blocked by the user"),
        3: (True, None),
    }


def test_a_removed_chats_waiting_messages_are_cancelled(database: str) -> None:
    with transaction() as session:
        add_chats(session, 1)
        queue(session, 1, add_posts(session, 2))
        sync_chats(session, [])
    with transaction() as session:
        rows = session.scalars(select(Notification)).all()
        assert {(row.status, row.last_error) for row in rows} == {
            ("cancelled", f"chat disabled: {NOT_ALLOWED}")
        }


def test_served_chats(monkeypatch: pytest.MonkeyPatch) -> None:
    assert served_chat_ids(get_settings()) == [CONSOLE_CHAT_ID]  # the demo: no token, no allow-list
    configure(monkeypatch, telegram_token="1:x")
    assert served_chat_ids(get_settings()) == []  # a bot with an empty allow-list serves nobody
    configure(monkeypatch, telegram_chat_ids="5,-1001")
    assert served_chat_ids(get_settings()) == [5, -1001]


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("NOTIFY_TIMEZONE", "Mars/Olympus", "unknown timezone"),
        ("NOTIFY_DIGEST_TIMES", "9:00", "not a time of day"),
        ("NOTIFY_DIGEST_TIMES", "24:00", "not a time of day"),
        ("NOTIFY_DIGEST_LIMIT", "0", "greater than or equal to 1"),
        ("NOTIFY_SEND_TIMEOUT_S", "0", "greater than 0"),
    ],
)
def test_invalid_notification_settings_fail_fast(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(f"LAWSCREEN_{name}", value)
    with pytest.raises(ValidationError, match=message):
        Settings()


def test_the_documented_settings_and_commands_are_the_real_ones() -> None:
    docs = (REPO_ROOT / "docs" / "notifications.md").read_text()
    documented = set(re.findall(r"`LAWSCREEN_(NOTIFY_\w+|TELEGRAM_\w+|ALERT_\w+)`", docs))
    fields = {
        name.upper() for name in Settings.model_fields if name.startswith(("notify_", "telegram_", "alert_"))
    }
    assert documented == fields
    commands = set(re.findall(r"^\| `/(\w+)`(?:, `/(\w+)`)?", docs, flags=re.MULTILINE))
    assert {name for row in commands for name in row if name} == {command.command for command in COMMANDS}
