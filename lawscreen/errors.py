"""Errors lawscreen raises on purpose. The CLI prints their message, without a traceback.

LawscreenError
├── ConfigError          settings or a config file are invalid
├── SchemaOutdatedError  the database is behind the code's migrations
├── ModelArtifactError   a model directory or one of its files is missing, corrupt or not a classifier
│   └── ExportParityError  the exported ONNX graph does not compute what the PyTorch checkpoint does
└── ModelNotFoundError   no production model, or no model version of that name
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


class ExportParityError(ModelArtifactError):
    pass


class ModelNotFoundError(LawscreenError):
    pass
