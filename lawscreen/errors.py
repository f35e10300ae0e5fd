"""Errors lawscreen raises on purpose. The CLI prints their message, without a traceback.

LawscreenError
├── ConfigError          settings or a config file are invalid
└── SchemaOutdatedError  the database is behind the code's migrations
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
