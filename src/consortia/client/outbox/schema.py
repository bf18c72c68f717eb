"""The outbox's schema: versioned SQL migration files applied in order, each exactly once.

`migrations/NNNN_name.sql` (in this package) are the schema's versions. `migrate` creates
`outbox_schema_migrations` if it is missing and applies every file not recorded there, in
order, each in its own transaction together with its record (version, name, SHA-256 of the
file), under a transaction-level advisory lock, so a business system's deployment and a
relay starting at once apply each file once. An applied file edited since, or a schema newer
than this build knows, is refused (`OutboxDatabaseError`), never "fixed". The bookkeeping
table has a name of its own, so the outbox may share a schema with the mirror's tables.

Owns the migration files and their bookkeeping. Must never change a table outside a
migration file, nor apply one outside a transaction.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final

import psycopg

from consortia.client.outbox.errors import OutboxDatabaseError, database_errors

# The advisory lock migrations run under, with the schema's hash ("cobx").
MIGRATION_LOCK: Final = 0x636F6278
_LOCK: Final = "SELECT pg_advisory_xact_lock(%s, hashtext(current_schema()))"
_FILE: Final = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql\Z")
_BOOKKEEPING: Final = """
CREATE TABLE IF NOT EXISTS outbox_schema_migrations (
    version integer PRIMARY KEY,
    name text NOT NULL,
    sha256 text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def bundled() -> list[Migration]:
    """The migration files shipped with this build, in version order (no gap)."""
    found = []
    for entry in (resources.files("consortia.client.outbox") / "migrations").iterdir():
        match = _FILE.match(entry.name)
        if match is not None:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda migration: migration.version)
    assert [m.version for m in found] == list(range(1, len(found) + 1)), "migrations numbered"
    return found


def migrate(connection: psycopg.Connection[Any]) -> list[int]:
    """Bring the outbox's tables to the latest version (in the connection's current schema);
    the versions applied now. The connection must not be inside a transaction."""
    wanted = bundled()
    known = {m.version for m in wanted}
    applied_now: list[int] = []
    with database_errors():
        with connection.transaction():
            connection.execute(_LOCK, (MIGRATION_LOCK,))
            connection.execute(_BOOKKEEPING)
        for migration in wanted:
            with connection.transaction():
                connection.execute(_LOCK, (MIGRATION_LOCK,))
                rows = connection.execute(
                    "SELECT version, sha256 FROM outbox_schema_migrations"
                ).fetchall()
                recorded = {int(version): str(digest) for version, digest in rows}
                newer = sorted(set(recorded) - known)
                if newer:
                    raise OutboxDatabaseError(
                        f"the outbox's schema has version {newer[-1]}, newer than this build "
                        f"knows ({len(wanted)}): run a newer consortia"
                    )
                if migration.version in recorded:
                    if recorded[migration.version] != migration.digest:
                        raise OutboxDatabaseError(
                            f"outbox migration {migration.version} ({migration.name}) was "
                            "applied from another text than this build's"
                        )
                    continue
                connection.execute(migration.sql.encode())
                connection.execute(
                    "INSERT INTO outbox_schema_migrations (version, name, sha256) "
                    "VALUES (%s, %s, %s)",
                    (migration.version, migration.name, migration.digest),
                )
                applied_now.append(migration.version)
    return applied_now
