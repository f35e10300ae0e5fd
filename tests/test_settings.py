from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from lawscreen.settings import Settings
from tests.conftest import run_cli

SECRET = "hunter2-very-secret"


def test_reads_prefixed_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LAWSCREEN_DATABASE_URL", f"postgresql://app:{SECRET}@db.internal:5432/lawscreen")
    monkeypatch.setenv("LAWSCREEN_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("LAWSCREEN_SOURCES", "/etc/lawscreen/sources.toml")
    monkeypatch.setenv("LAWSCREEN_TELEGRAM_TOKEN", "123:ABC")
    monkeypatch.setenv("LAWSCREEN_TELEGRAM_BASE_URL", "http://127.0.0.1:8081/bot")
    monkeypatch.setenv("LAWSCREEN_TELEGRAM_CHAT_IDS", "42, -1001234567890")

    settings = Settings()

    assert settings.database_url is not None
    assert settings.database_url.get_secret_value().endswith("@db.internal:5432/lawscreen")
    assert settings.data_dir == tmp_path
    assert settings.sources == Path("/etc/lawscreen/sources.toml")
    assert settings.telegram_token is not None
    assert settings.telegram_token.get_secret_value() == "123:ABC"
    assert settings.telegram_base_url == "http://127.0.0.1:8081/bot"
    assert settings.telegram_chat_ids == [42, -1001234567890]


def test_defaults_need_no_environment() -> None:
    settings = Settings()
    assert settings.database_url is None  # the embedded server
    assert settings.telegram_chat_ids == []  # serves nobody
    assert settings.sources == Path("sources.toml")


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("LAWSCREEN_TELEGRAM_CHAT_IDS=7,8\n")  # tests run in tmp_path
    assert Settings().telegram_chat_ids == [7, 8]


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("DATABASE_URL", "mysql://u:p@h/db", "must be a PostgreSQL URL"),
        ("DATABASE_URL", "not a url", "is not a database URL"),
        ("TELEGRAM_CHAT_IDS", "42,alice", "valid integer"),
        ("TELEGRAM_BASE_URL", "ftp://example/bot", "should match pattern"),
    ],
)
def test_invalid_values_fail_fast(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(f"LAWSCREEN_{name}", value)
    with pytest.raises(ValidationError, match=message):
        Settings()


def test_secrets_never_appear_in_repr_or_dump(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAWSCREEN_DATABASE_URL", f"postgresql://app:{SECRET}@db/lawscreen")
    monkeypatch.setenv("LAWSCREEN_TELEGRAM_TOKEN", SECRET)
    settings = Settings()
    for rendering in (repr(settings), str(settings), settings.model_dump_json()):
        assert SECRET not in rendering


def test_cli_names_the_bad_variable_and_hides_its_value(tmp_path: Path) -> None:
    result = run_cli("status", env={"LAWSCREEN_DATABASE_URL": f"mysql://app:{SECRET}@db/x"}, cwd=tmp_path)
    assert result.returncode == 2
    assert "LAWSCREEN_DATABASE_URL" in result.stderr
    assert SECRET not in result.stderr + result.stdout
