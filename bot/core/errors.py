"""Two kinds of failure, so that a caller asks one question: would trying again help?

* :class:`UserError`: retrying cannot fix it, and its message is written for the user (a file
  that is not valid, a command lemi refuses, an input GitHub or AWS will not take);
* :class:`Transient`: it may pass (GitHub's 5xx and rate limits, AWS throttling and service
  errors, a network error or timeout, the queue being unavailable).

The adapters (``bot.github``, ``bot.aws``, ``bot.store``) translate their library's exceptions
into subclasses of these two, so the worker and the CLI check two classes, never a list of
library types. Any other exception is a bug in lemi (:func:`classify`).
"""

from __future__ import annotations

from typing import Literal

Kind = Literal["user", "transient", "bug"]


class UserError(Exception):
    """A failure that retrying cannot fix; ``str(exc)`` is shown to the user as it is."""


class Transient(Exception):
    """A failure that may pass: try again later.

    ``retry_after`` is how long the service asked to be left alone, in seconds, when it said
    (a rate limit's ``Retry-After``); None otherwise."""

    retry_after: float | None = None


def classify(exc: BaseException) -> Kind:
    """``"user"``, ``"transient"`` or ``"bug"`` (an exception no adapter translated). A class
    that is both a :class:`UserError` and :class:`Transient` is a user error: retrying it
    would only repeat what the user has to fix."""
    if isinstance(exc, UserError):
        return "user"
    if isinstance(exc, Transient):
        return "transient"
    return "bug"
