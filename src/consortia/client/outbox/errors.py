"""The outbox's failures, each a `ConsortiaError` with a stable code, and psycopg's failures
mapped onto them.

Owns these classes. Must never carry a password or a whole DSN in a message (the database's
messages pass through `consortia.postgres.error_message` first).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from consortia.errors import ConsortiaError
from consortia.postgres import error_message


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


@contextmanager
def database_errors() -> Iterator[None]:
    """psycopg's failures as the outbox's: a lost or refused connection is
    OutboxDatabaseUnavailableError, anything else OutboxDatabaseError. A business key
    already present is DuplicateIntentError."""
    try:
        yield
    except psycopg.errors.UniqueViolation as error:
        if "business_key" in str(error):
            raise DuplicateIntentError(error_message(error)) from None
        raise OutboxDatabaseError(error_message(error)) from None
    except psycopg.OperationalError as error:
        raise OutboxDatabaseUnavailableError(error_message(error)) from None
    except psycopg.Error as error:
        raise OutboxDatabaseError(error_message(error)) from None


class RelayVerificationError(OutboxError):
    """The nodes kept answering what failed verification against the validators: the relay
    stopped, having recorded nothing from those answers."""

    code = "verification_failed"


class AbsenceUnprovenError(OutboxError):
    """`--until-idle` found only intents whose transaction's nonce the chain spent and whose
    receipt (or absence) no node proved: an operator decides (docs/outbox.md)."""

    code = "absence_unproven"
