"""What the project's PostgreSQL users (the mirror, the outbox, reconciliation) share: versioned
SQL migrations for their tables, and the one line of a database error they may show.

A `MigrationSet` names where its files live (`<package>/migrations/NNNN_name.sql`), the table
that records them, the advisory lock they run under, and the error to raise. `migrate` creates
the bookkeeping table if it is missing and applies every file not recorded there, in order,
each in its own transaction together with its record (version, name, SHA-256 of the file),
under a transaction-level advisory lock keyed by the current schema, so two processes starting
at once apply each file once. Applied files are checked against their recorded digests: an
applied migration edited since, or a schema newer than this build knows, is refused (the
set's error), never "fixed".

`error_message` is a database error's first line with PGPASSWORD's value (if set) blanked out
(libpq does not echo passwords; this is a second guard).

Owns applying migration files and their bookkeeping, and that message. Must never edit or drop
a table outside a migration file, nor apply one outside a transaction.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final

import psycopg
from psycopg import sql

from consortia.errors import ConsortiaError

_LOCK: Final = "SELECT pg_advisory_xact_lock(%s, hashtext(current_schema()))"
_FILE: Final = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql\Z")
_TABLE: Final = re.compile(r"^[a-z_][a-z0-9_]{0,62}\Z")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class MigrationSet:
    """One component's migrations: `package`/migrations, recorded in `table`."""

    what: str  # named in errors: "mirror", "outbox"
    package: str
    table: str
    lock: int
    error: type[ConsortiaError]

    def __post_init__(self) -> None:
        assert _TABLE.match(self.table), "a plain table name"

    def bundled(self) -> list[Migration]:
        """The migration files shipped with this build, in version order (1, 2, ... with no
        gap: a missing number is a packaging mistake)."""
        found = []
        for entry in (resources.files(self.package) / "migrations").iterdir():
            match = _FILE.match(entry.name)
            if match is not None:
                text = entry.read_text(encoding="utf-8")
                found.append(Migration(int(match[1]), match[2], text))
        found.sort(key=lambda migration: migration.version)
        assert [m.version for m in found] == list(range(1, len(found) + 1)), "numbered"
        return found

    def migrate(
        self, connection: psycopg.Connection[Any], migrations: list[Migration] | None = None
    ) -> list[int]:
        """Bring the schema to the latest version; the versions applied now. The connection
        must not be inside a transaction."""
        wanted = self.bundled() if migrations is None else migrations
        known = {m.version for m in wanted}
        table = sql.Identifier(self.table)
        applied_now: list[int] = []
        with connection.transaction():
            connection.execute(_LOCK, (self.lock,))
            connection.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {} (version integer PRIMARY KEY,"
                    " name text NOT NULL, sha256 text NOT NULL,"
                    " applied_at timestamptz NOT NULL DEFAULT now())"
                ).format(table)
            )
        for migration in wanted:
            with connection.transaction():
                connection.execute(_LOCK, (self.lock,))
                rows = connection.execute(
                    sql.SQL("SELECT version, sha256 FROM {}").format(table)
                ).fetchall()
                recorded = {int(str(version)): str(digest) for version, digest in rows}
                newer = sorted(set(recorded) - known)
                if newer:
                    raise self.error(
                        f"the database's {self.what} schema has version {newer[-1]}, newer "
                        f"than this build knows ({len(wanted)}): run a newer consortia"
                    )
                if migration.version in recorded:
                    if recorded[migration.version] != migration.digest:
                        raise self.error(
                            f"{self.what} migration {migration.version} ({migration.name}) "
                            "was applied from another text than this build's: the schema is "
                            "not the one expected"
                        )
                    continue
                connection.execute(migration.sql.encode())
                connection.execute(
                    sql.SQL("INSERT INTO {} (version, name, sha256) VALUES (%s, %s, %s)").format(
                        table
                    ),
                    (migration.version, migration.name, migration.digest),
                )
                applied_now.append(migration.version)
        return applied_now


def error_message(error: BaseException) -> str:
    """The first line of a database error, PGPASSWORD's value (if set) blanked out."""
    text = str(error).strip()
    line = text.splitlines()[0] if text else type(error).__name__
    password = os.environ.get("PGPASSWORD")
    return line.replace(password, "***") if password else line
