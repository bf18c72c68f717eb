"""Reconciliation's failures, each a `ConsortiaError` with a stable code, and the exit statuses
of `consortia reconcile`.

Owns these classes and statuses. Must never carry a password or a whole DSN in a message.
"""

from __future__ import annotations

from typing import ClassVar, Final

from consortia.errors import ConsortiaError

# Exit statuses of `consortia reconcile` (docs/reconcile.md): 0 the books and the chain agree;
# 1 breaks were found (listed); 2 it could not run (bad input, the database, the node);
# 3 a node's answer failed verification (nothing is reported from a node that lies).
EXIT_AGREE: Final = 0
EXIT_BREAKS: Final = 1
EXIT_UNAVAILABLE: Final = 2
EXIT_VERIFICATION: Final = 3


class ReconcileError(ConsortiaError):
    """Base of reconciliation's failures."""

    code: ClassVar[str] = "reconcile_error"
    exit_status: ClassVar[int] = EXIT_UNAVAILABLE


class BooksError(ReconcileError):
    """The postings table could not be read as documented (a missing column, a value that is
    not an integer amount, too many rows)."""

    code = "books_invalid"


class DatabaseError(ReconcileError):
    """The database refused or could not be reached (message redacted of any password)."""

    code = "database_error"


class NotProvenError(ReconcileError):
    """An on-chain item could not be proven: the node holds no execution certificate for its
    block (ask another node)."""

    code = "not_proven"


class ChainVerificationError(ReconcileError):
    """A node's answer did not check out against the validators' signatures."""

    code = "verification_failed"
    exit_status = EXIT_VERIFICATION
