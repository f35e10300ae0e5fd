"""The sources file (``LAWSCREEN_SOURCES``): which forums to crawl and how politely.

The file is validated whole before anything runs, and an error names the file, the source and
the field. Secrets never live in it: a source names the environment variable holding its token.
What ``sync_sources`` stores in ``sources.config`` is this model as JSON, so a crawl can run from
the database alone (a Prefect task on another worker, say).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import httpx
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import ErrorDetails

from lawscreen.errors import ConfigError
from lawscreen.models import SourceKind

DEFAULT_V2EX_URL = "https://www.v2ex.com"
# Upper bounds that catch typos (an interval in seconds, a delay in milliseconds) before they hurt.
MAX_INTERVAL_MINUTES = 7 * 24 * 60
MAX_MIN_DELAY_SECONDS = 600.0
MAX_PAGES = 1000

_ENV_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _http_url(value: str) -> str:
    try:
        url = httpx.URL(value)
    except httpx.InvalidURL as exc:
        raise ValueError(f"is not a URL ({exc})") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError("must be an http:// or https:// URL")
    return value


def _base_url(value: str) -> str:
    value = _http_url(value).rstrip("/")
    if httpx.URL(value).query:
        raise ValueError("must be the forum's address, without a query")
    return value


def _env_var_name(value: str) -> str:
    # The message never repeats the value: it may be a token pasted by mistake.
    if not _ENV_VAR.match(value):
        raise ValueError(
            "must be the NAME of an environment variable holding the token (like V2EX_TOKEN), "
            "never the token itself"
        )
    return value


HttpUrl = Annotated[str, AfterValidator(_http_url)]
BaseUrl = Annotated[str, AfterValidator(_base_url)]
EnvVarName = Annotated[str, AfterValidator(_env_var_name)]
SourceName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=100)]
NodeName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]+$", max_length=100)]


class _Source(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: SourceName
    enabled: bool = True
    interval_minutes: int = Field(default=60, ge=1, le=MAX_INTERVAL_MINUTES)


class _HttpSource(_Source):
    min_delay_seconds: float = Field(default=1.0, ge=0, le=MAX_MIN_DELAY_SECONDS)
    max_pages: int = Field(default=5, ge=1, le=MAX_PAGES)
    # Only an explicit `respect_robots = false` turns robots.txt off.
    respect_robots: bool = True


class V2exSource(_HttpSource):
    """V2EX. ``nodes`` with ``token_env``: API v2, paged; ``nodes`` alone: public v1 per node;
    no ``nodes``: public v1 latest topics."""

    kind: Literal["v2ex"]
    url: BaseUrl = DEFAULT_V2EX_URL
    nodes: tuple[NodeName, ...] = ()
    token_env: EnvVarName | None = None


class DiscourseSource(_HttpSource):
    """A Discourse forum: its latest topics, and each topic's first post."""

    kind: Literal["discourse"]
    url: BaseUrl


class FeedSource(_HttpSource):
    """An RSS 2.0 or Atom feed, at ``url``."""

    kind: Literal["rss"]
    url: HttpUrl


class JsonlSource(_Source):
    """A local JSON lines file; a relative ``path`` is relative to the sources file."""

    kind: Literal["jsonl"]
    path: Path

    @field_validator("path")
    @classmethod
    def _resolve(cls, value: Path, info: ValidationInfo) -> Path:
        base = info.context.get("base_dir") if info.context else None
        value = value.expanduser()
        return (base / value).resolve() if base is not None and not value.is_absolute() else value


SourceConfig = Annotated[V2exSource | DiscourseSource | FeedSource | JsonlSource, Field(discriminator="kind")]
SOURCE_CONFIG: TypeAdapter[SourceConfig] = TypeAdapter(SourceConfig)
# Imported posts are a source too, but nothing crawls them.
CRAWLED_KINDS = tuple(kind.value for kind in SourceKind if kind is not SourceKind.IMPORT)


def load_sources(path: Path) -> list[SourceConfig]:
    """Every source in the TOML file at ``path``, validated; ConfigError says what is wrong and where."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: sources file not found (copy sources.example.toml there, or set LAWSCREEN_SOURCES)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the sources file ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML ({exc})") from None

    unknown = sorted(set(raw) - {"source"})
    if unknown:
        raise ConfigError(
            f"{path}: unknown top-level key(s) {', '.join(unknown)}; sources are [[source]] tables"
        )
    entries = raw.get("source", [])
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        raise ConfigError(f"{path}: 'source' must be an array of tables, written [[source]]")

    configs: list[SourceConfig] = []
    problems: list[str] = []
    for number, entry in enumerate(entries, start=1):
        label = f"'{entry['name']}'" if isinstance(entry.get("name"), str) else f"#{number}"
        try:
            configs.append(SOURCE_CONFIG.validate_python(entry, context={"base_dir": path.parent}))
        except ValidationError as exc:
            problems.extend(f"source {label}: {_describe(error)}" for error in exc.errors())
    seen: set[str] = set()
    for config in configs:
        if config.name in seen:
            problems.append(f"source '{config.name}': the name is used twice")
        seen.add(config.name)
    if problems:
        raise ConfigError(f"{path}: " + "; ".join(problems))
    return configs


def _describe(error: ErrorDetails) -> str:
    if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        return f"field 'kind': must be one of {', '.join(CRAWLED_KINDS)}"
    field = ".".join(str(part) for part in error["loc"][1:])  # loc[0] is the kind
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown field"
        if field in ("token", "api_key", "password"):
            message += " (put secrets in an environment variable and name it with token_env)"
    return f"field '{field}': {message}"


def parse_stored(config: dict[str, Any]) -> SourceConfig:
    """A source's config as ``sync_sources`` stored it."""
    return SOURCE_CONFIG.validate_python(config)
