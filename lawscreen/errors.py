"""Errors lawscreen raises on purpose. The CLI prints their message, without a traceback.

LawscreenError
├── ConfigError              settings or a config file are invalid
│   └── TelegramTokenError   no bot token where one is needed, or the Bot API refused it
├── SchemaOutdatedError      the database is behind the code's migrations
├── ModelArtifactError       a model directory is missing, incomplete or corrupt
└── ChatNotServedError       a digest was asked for a chat that is not served
"""

from __future__ import annotations


class LawscreenError(Exception):
    """Base class: an expected failure with a message meant for the user."""


class ConfigError(LawscreenError):
    pass


class SchemaOutdatedError(LawscreenError):
    pass


class ModelArtifactError(LawscreenError):
    pass


class TelegramTokenError(ConfigError):
    pass


class ChatNotServedError(LawscreenError):
    pass
