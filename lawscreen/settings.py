"""All configuration, read once from ``LAWSCREEN_*`` environment variables and an optional ``.env``.

Invalid values fail at start-up with pydantic's message naming the variable, never half-way
through a run. Secrets are ``SecretStr``: their ``repr`` and ``str`` print stars, so logging a
``Settings`` object cannot leak them.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

import platformdirs
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

POSTGRES_DRIVERS = ("postgresql", "postgres", "postgresql+psycopg")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LAWSCREEN_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )

    database_url: SecretStr | None = Field(
        default=None,
        description="PostgreSQL server URL. Unset: an embedded server under data_dir is started and reused.",
    )
    data_dir: Path = Field(
        default_factory=lambda: Path(platformdirs.user_data_dir("lawscreen")),
        description="Embedded database, model artifacts and caches live here.",
    )
    sources: Path = Field(default=Path("sources.toml"), description="TOML file listing the forums to crawl.")

    telegram_token: SecretStr | None = None
    telegram_base_url: str | None = Field(
        default=None,
        pattern=r"^https?://",
        description="Bot API server URL ending before the token, e.g. http://127.0.0.1:8081/bot.",
    )
    telegram_chat_ids: Annotated[list[int], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated numeric chat ids allowed to use the bot. Empty serves nobody.",
    )
    alert_threshold: float = Field(
        default=0.95,
        ge=0.0,
        le=1.0,
        description="Scores at or above this are alerted at once; lower hits wait for the digest.",
    )

    # --- inference ---
    inference_max_batch_tokens: int = Field(
        default=8192,
        ge=64,
        description="Padded tokens per ONNX Runtime call (rows x padded length); see docs/inference.md.",
    )
    inference_max_length: int | None = Field(
        default=None,
        ge=3,
        description="Tokens read per post, head and tail kept. Unset: the model's own (meta.json).",
    )
    inference_threads: int | None = Field(
        default=None, ge=1, description="ONNX Runtime intra-op threads. Unset: the physical cores."
    )
    inference_int8: bool = Field(
        default=False,
        description="Score with model.int8.onnx, which export keeps only when it agrees with fp32.",
    )
    classify_chunk_size: int = Field(
        default=256, ge=1, description="Posts claimed, scored and committed per transaction."
    )

    @field_validator("database_url")
    @classmethod
    def _database_url_is_postgres(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        try:
            driver = make_url(value.get_secret_value()).drivername
        except ArgumentError:
            # The URL may hold a password: name the problem, never echo the value.
            raise ValueError("is not a database URL (expected postgresql://user:pass@host/db)") from None
        if driver not in POSTGRES_DRIVERS:
            raise ValueError(f"must be a PostgreSQL URL, got driver {driver!r}")
        return value

    @field_validator("telegram_chat_ids", mode="before")
    @classmethod
    def _split_chat_ids(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("data_dir", "sources")
    @classmethod
    def _expand_user(cls, value: Path) -> Path:
        return value.expanduser()

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings. Tests that change the environment call ``get_settings.cache_clear()``."""
    return Settings()
