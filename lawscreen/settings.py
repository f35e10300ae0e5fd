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

    # --- training ---
    base_model: str = Field(
        default="bert-base-chinese",
        description="Base for `lawscreen train`: a directory, a name under data_dir/bases, or a Hugging "
        "Face id already in the local cache (never downloaded).",
    )
    target_precision: float = Field(
        default=0.9,
        gt=0.0,
        le=1.0,
        description="The decision threshold is the one with the best validation recall at this precision.",
    )
    gate_margin: float = Field(
        default=0.01,
        ge=0.0,
        le=1.0,
        description="F1 a candidate must gain over production on the frozen evaluation set to be promoted.",
    )
    gate_min_f1: float = Field(
        default=0.7,
        ge=0.0,
        le=1.0,
        description="With no production model, a candidate is promoted only at this evaluation F1 or above.",
    )
    evaluation_share: float = Field(
        default=0.2,
        gt=0.0,
        lt=1.0,
        description="Share of the labeled posts frozen as the evaluation set the first time a model trains.",
    )

    @property
    def bases_dir(self) -> Path:
        """Bases made by `lawscreen model bootstrap`, one directory per name."""
        return self.data_dir / "bases"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings. Tests that change the environment call ``get_settings.cache_clear()``."""
    return Settings()
