"""Errors raised by the registry and the agent; one base class, blame made explicit."""

from __future__ import annotations


class RumorError(Exception):
    """Base class of every error the registry raises on purpose."""


class ConfigError(RumorError, ValueError):
    """The operator's configuration is wrong; the message names the setting and the fix."""


class DataDirError(RumorError, OSError):
    """The data directory cannot be used (permissions, corruption we cannot skip)."""


class RequestError(RumorError):
    """A client sent a request we refuse; ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class NotFound(RequestError):
    def __init__(self, message: str) -> None:
        super().__init__(message, 404)


class PermissionDenied(RequestError):
    def __init__(self, message: str = "Permission denied") -> None:
        super().__init__(message, 403)
