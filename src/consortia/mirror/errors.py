"""The mirror's failures, each a `ConsortiaError` with a stable code (what a supervisor or a
script matches on), and the exit status the `consortia mirror` command ends with for each.

Owns these classes and the exit statuses. Must never carry a password or a whole DSN in a
message (the database's messages are passed through `consortia.postgres.error_message` first).
"""

from __future__ import annotations

from typing import ClassVar, Final

from consortia.errors import ConsortiaError

# Exit statuses of `consortia mirror` (docs/mirror.md): 0 asked to stop; 1 a node's answer
# did not verify (nothing of that block was written); 2 it could not start or carry on
# (configuration, the database, a mirror of another chain); 3 the mirror's own execution
# could not run a block (a protocol or contract this build lacks).
EXIT_STOPPED: Final = 0
EXIT_VERIFICATION: Final = 1
EXIT_UNAVAILABLE: Final = 2
EXIT_EXECUTION: Final = 3


class MirrorError(ConsortiaError):
    """Base of the mirror's failures."""

    code: ClassVar[str] = "mirror_error"
    exit_status: ClassVar[int] = EXIT_UNAVAILABLE


class MirrorVerificationError(MirrorError):
    """A node's answer did not check out against the genesis and the validators' signatures:
    `what` names the check, `height` the block. The mirror stops; that block is not written."""

    code = "verification_failed"
    exit_status = EXIT_VERIFICATION

    def __init__(self, what: str, message: str, height: int | None = None) -> None:
        where = "" if height is None else f" at height {height}"
        super().__init__(f"{what}{where}: {message}")
        self.what, self.height = what, height


class MirrorExecutionError(MirrorError):
    """The mirror's engine could not execute a certified block (a protocol version or contract
    code this build does not have): upgrade the mirror as the validators were upgraded."""

    code = "execution_unsupported"
    exit_status = EXIT_EXECUTION


class DatabaseError(MirrorError):
    """The database refused or failed (message redacted of any password)."""

    code = "database_error"


class DatabaseUnavailableError(DatabaseError):
    """The database could not be reached, or stayed away through every retry."""

    code = "database_unavailable"


class PasswordInDsnError(MirrorError):
    """A password written in --dsn: it would sit on a command line and in the process list."""

    code = "password_in_dsn"


class WrongChainError(MirrorError):
    """The database mirrors another chain (another genesis) than the one asked for."""

    code = "wrong_chain"


class MirrorConflictError(MirrorError):
    """Another mirror writes into this database, or its progress moved under this one."""

    code = "mirror_conflict"


class MirrorCorruptError(MirrorError):
    """What the database holds does not match the state it says it reached (edited by hand,
    or restored from a backup of another moment): the mirror refuses to carry on from it."""

    code = "mirror_corrupt"
