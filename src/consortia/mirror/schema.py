"""The mirror's schema: versioned SQL migration files applied in order, each exactly once.

`migrations/NNNN_name.sql` (in this package) are the schema's versions. `migrate` creates
`schema_migrations` if it is missing and applies every file not recorded there, in order,
each in its own transaction together with its record (version, name, SHA-256 of the file),
under a transaction-level advisory lock, so two mirrors starting at once apply each file
once. Applied files are checked against their recorded digests: an applied migration that
was edited since, or a database whose schema is newer than this build knows, is refused
(`DatabaseError`), never "fixed".

Owns the migration files and their bookkeeping. Must never edit or drop a table outside a
migration file, nor apply one outside a transaction.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources
from typing import Final

import psycopg

from consortia.mirror.errors import DatabaseError

# The advisory lock migrations run under, with the schema's hash ("cmig").
MIGRATION_LOCK: Final = 0x636D6967
_LOCK: Final = "SELECT pg_advisory_xact_lock(%s, hashtext(current_schema()))"
_FILE: Final = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql\Z")

SCHEMA_MIGRATIONS: Final = """
CREATE TABLE IF NOT EXISTS schema_migrations (
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
    """The migration files shipped with this build, in version order (1, 2, ... with no
    gap: a missing number is a packaging mistake)."""
    found = []
    for entry in (resources.files("consortia.mirror") / "migrations").iterdir():
        match = _FILE.match(entry.name)
        if match is not None:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda migration: migration.version)
    assert [m.version for m in found] == list(range(1, len(found) + 1)), "migrations numbered"
    return found


def migrate(
    connection: psycopg.Connection[tuple[object, ...]], migrations: list[Migration] | None = None
) -> list[int]:
    """Bring the database's schema to the latest version; the versions applied now."""
    wanted = bundled() if migrations is None else migrations
    known = {m.version: m for m in wanted}
    applied_now: list[int] = []
    with connection.transaction():
        connection.execute(_LOCK, (MIGRATION_LOCK,))
        connection.execute(SCHEMA_MIGRATIONS)
    for migration in wanted:
        with connection.transaction():
            connection.execute(_LOCK, (MIGRATION_LOCK,))
            recorded = _recorded(connection)
            newer = sorted(set(recorded) - set(known))
            if newer:
                raise DatabaseError(
                    f"the database's schema has version {newer[-1]}, newer than this mirror "
                    f"knows ({len(wanted)}): run a newer consortia"
                )
            if migration.version in recorded:
                if recorded[migration.version] != migration.digest:
                    raise DatabaseError(
                        f"migration {migration.version} ({migration.name}) was applied from "
                        "another text than this build's: the schema is not the one expected"
                    )
                continue
            connection.execute(migration.sql.encode())
            connection.execute(
                "INSERT INTO schema_migrations (version, name, sha256) VALUES (%s, %s, %s)",
                (migration.version, migration.name, migration.digest),
            )
            applied_now.append(migration.version)
    return applied_now


def _recorded(connection: psycopg.Connection[tuple[object, ...]]) -> dict[int, str]:
    rows = connection.execute("SELECT version, sha256 FROM schema_migrations").fetchall()
    return {int(str(version)): str(digest) for version, digest in rows}
