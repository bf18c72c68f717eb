"""The outbox's failures, each a `ConsortiaError` with a stable code, and psycopg's failures
mapped onto them.

Owns these classes. Must never carry a password or a whole DSN in a message (the database's
messages pass through `redact` first).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from consortia.errors import ConsortiaError


class OutboxError(ConsortiaError):
    """Base of the outbox's failures."""

    code = "outbox_error"


class InvalidIntentError(OutboxError):
    """An intent the outbox refuses (what is wrong is in the message); nothing was written."""

    code = "invalid_intent"


class DuplicateIntentError(OutboxError):
    """An intent with this business key is already in the outbox."""

    code = "duplicate_intent"


class OutboxDatabaseError(OutboxError):
    """The database refused or failed (message redacted of any password)."""

    code = "database_error"


class OutboxDatabaseUnavailableError(OutboxDatabaseError):
    """The database could not be reached, or the connection was lost: worth retrying."""

    code = "database_unavailable"


def redact(message: str) -> str:
    """A database message with PGPASSWORD's value (if set) blanked out (libpq does not echo
    passwords; this is a second guard)."""
    password = os.environ.get("PGPASSWORD")
    return message.replace(password, "***") if password else message


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


@contextmanager
def database_errors() -> Iterator[None]:
    """psycopg's failures as the outbox's: a lost or refused connection is
    OutboxDatabaseUnavailableError, anything else OutboxDatabaseError. A business key
    already present is DuplicateIntentError."""
    try:
        yield
    except psycopg.errors.UniqueViolation as error:
        if "business_key" in str(error):
            raise DuplicateIntentError(redact(first_line(error))) from None
        raise OutboxDatabaseError(redact(first_line(error))) from None
    except psycopg.OperationalError as error:
        raise OutboxDatabaseUnavailableError(redact(first_line(error))) from None
    except psycopg.Error as error:
        raise OutboxDatabaseError(redact(first_line(error))) from None
