"""Errors raised by the load balancer; one base class, blame made explicit."""

from __future__ import annotations


class LBError(Exception):
    """Base class of every error ``lb`` raises on purpose."""


class ConfigError(LBError, ValueError):
    """A listener spec or the LB configuration is wrong; the message names the field and the fix."""


class ListenerError(LBError):
    """A listener cannot be created, replaced or removed (address in use, unknown name...).

    ``status`` is the HTTP status an API should answer with (400 for the caller's mistake,
    404 for an unknown listener).
    """

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
