"""All configuration, read once from ``LAWSCREEN_*`` environment variables and an optional ``.env``.

Invalid values fail at start-up with pydantic's message naming the variable, never half-way
through a run. Secrets are ``SecretStr``: their ``repr`` and ``str`` print stars, so logging a
``Settings`` object cannot leak them.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import platformdirs
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from lawscreen import __version__

POSTGRES_DRIVERS = ("postgresql", "postgres", "postgresql+psycopg")
# A digest time of day, 24-hour HH:MM; also what /digest_time accepts.
DIGEST_TIME = re.compile(r"([01]\d|2[0-3]):[0-5]\d")


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

    # --- notifications ---
    notify_timezone: str = Field(default="Asia/Shanghai", description="Timezone of new chats' digest times.")
    notify_digest_times: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["09:00", "18:00"],
        description="Comma-separated HH:MM digest times of new chats; /digest_time changes a chat's own.",
    )
    notify_digest_limit: int = Field(
        default=10, ge=1, le=50, description="Posts shown per digest for new chats; the rest are counted."
    )
    notify_label_requests: int = Field(
        default=3,
        ge=0,
        le=10,
        description="Posts near the decision threshold in each digest's please-label section.",
    )
    notify_send_timeout_s: float = Field(
        default=10.0, gt=0, le=120, description="Connect, write and read timeout of one Bot API call."
    )
    notify_lease_s: float = Field(
        default=120.0, gt=0, description="How long a relay may hold claimed rows before they count as lost."
    )
    notify_max_attempts: int = Field(
        default=5, ge=1, description="Sends tried per row before a retryable error becomes a failure."
    )
    notify_relay_interval_s: float = Field(
        default=30.0, gt=0, description="How often `lawscreen bot` runs the relay."
    )
    notify_digest_check_s: float = Field(
        default=60.0, gt=0, description="How often `lawscreen bot` checks whether a chat's digest is due."
    )

    # --- crawling ---
    # The defaults are the crawler's timeouts and limits; tests shrink them, operators rarely need to.
    crawl_user_agent: str = Field(
        default=f"lawscreen/{__version__} (forum screening bot)",
        pattern=r"^[\x20-\x7e]+$",
        description="User-Agent of every crawler request. Keep it stable and add a contact URL or e-mail.",
    )
    crawl_connect_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    crawl_read_timeout_seconds: float = Field(
        default=30.0, gt=0, le=600, description="Longest wait for the next bytes of a response."
    )
    crawl_max_attempts: int = Field(
        default=4, ge=1, le=10, description="Tries per request, retries included."
    )
    crawl_backoff_seconds: float = Field(
        default=1.0, gt=0, description="First backoff step; each retry doubles it, with full jitter."
    )
    crawl_backoff_max_seconds: float = Field(default=60.0, gt=0, description="Longest backoff between tries.")
    crawl_retry_after_max_seconds: float = Field(
        default=120.0,
        ge=0,
        description="Longest Retry-After we wait; a server asking for more is left until the next run.",
    )
    crawl_host_concurrency: int = Field(default=2, ge=1, le=16, description="Requests in flight per host.")
    crawl_max_body_bytes: int = Field(
        default=10 * 1024 * 1024, ge=1024, description="Larger responses are aborted and recorded as rejects."
    )

    # --- inference ---
    inference_max_batch_tokens: int = Field(
        default=1024,
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

    @field_validator("telegram_chat_ids", "notify_digest_times", mode="before")
    @classmethod
    def _split_chat_ids(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("notify_timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown timezone {value!r} (expected an IANA name like Asia/Shanghai)"
            ) from None
        return value

    @field_validator("notify_digest_times")
    @classmethod
    def _valid_digest_times(cls, value: list[str]) -> list[str]:
        for item in value:
            if not DIGEST_TIME.fullmatch(item):
                raise ValueError(f"{item!r} is not a time of day as HH:MM")
        return sorted(set(value))

    @field_validator("data_dir", "sources")
    @classmethod
    def _expand_user(cls, value: Path) -> Path:
        return value.expanduser()

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def bases_dir(self) -> Path:
        """Bases made by `lawscreen model bootstrap`, one directory per name."""
        return self.data_dir / "bases"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings. Tests that change the environment call ``get_settings.cache_clear()``."""
    return Settings()
