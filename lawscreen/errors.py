"""Errors lawscreen raises on purpose. The CLI prints their message, without a traceback.

LawscreenError
├── ConfigError              settings or a config file are invalid
│   └── TelegramTokenError   no bot token where one is needed, or the Bot API refused it
├── SchemaOutdatedError      the database is behind the code's migrations
├── ModelArtifactError       a model directory or one of its files is missing, corrupt or not a classifier
│   └── ExportParityError    the exported ONNX graph does not compute what the PyTorch checkpoint does
├── TrainingDataError        too few labels, or a single class, to train and evaluate a model
├── BaseModelError           a base model is missing, corrupt or not a BERT-family checkpoint
├── RegistryError            nothing to promote or roll back to, or a model in the wrong state
│   └── ModelNotFoundError   no production model, or no model version of that name
├── ChatNotServedError       a digest was asked for a chat that is not served
├── NotUncertainError        only an ``uncertain`` notification can be settled by hand
└── CrawlError               one source could not be crawled (fully); its run records it, others go on
    ├── FetchError           no usable response: an HTTP error status, a timeout, a connection error,
    │   │                    too many redirects (``status``, ``retryable`` and ``retry_after`` say more)
    │   └── RobotsDisallowed robots.txt forbids the URL
    └── InputRejected        bad input, skipped with a reason: a response (malformed, too large, wrong
                             content type, bad encoding) or one item (missing fields, too long)
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


class TrainingDataError(LawscreenError):
    pass


class BaseModelError(LawscreenError):
    pass


class RegistryError(LawscreenError):
    pass


class ModelNotFoundError(RegistryError):
    pass


class TelegramTokenError(ConfigError):
    pass


class ChatNotServedError(LawscreenError):
    pass


class NotUncertainError(LawscreenError):
    pass


class CrawlError(LawscreenError):
    pass


class FetchError(CrawlError):
    """A request that produced no usable response.

    ``retryable`` marks the transient cases (429, 5xx, timeouts, connection errors); ``retry_after``
    is the server's ``Retry-After`` in seconds, when it sent one.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after


class RobotsDisallowed(FetchError):
    pass


class InputRejected(CrawlError):
    """Input refused with a short machine-readable ``reason`` and a human ``detail``."""

    def __init__(
        self, reason: str, detail: str, *, url: str | None = None, external_id: str | None = None
    ) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.url = url
        self.external_id = external_id
