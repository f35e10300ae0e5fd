"""Errors lawscreen raises on purpose. The CLI prints their message, without a traceback.

LawscreenError
├── ConfigError          settings or a config file are invalid
├── SchemaOutdatedError  the database is behind the code's migrations
├── ModelArtifactError   a model directory or tokenizer file is missing or invalid
├── TrainingDataError    too few labels, or a single class, to train and evaluate a model
├── BaseModelError       a base model is missing, corrupt or not a BERT-family checkpoint
└── RegistryError        an unknown model version, or nothing to promote or roll back to
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


class TrainingDataError(LawscreenError):
    pass


class BaseModelError(LawscreenError):
    pass


class RegistryError(LawscreenError):
    pass
