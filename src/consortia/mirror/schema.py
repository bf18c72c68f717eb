"""The mirror's schema: `migrations/NNNN_name.sql` in this package, applied in order, each
exactly once, recorded in `schema_migrations` (consortia.postgres says how and what is
refused).

Owns the mirror's migration set. Must never edit or drop a table outside a migration file.
"""

from __future__ import annotations

from typing import Any, Final

import psycopg

from consortia.mirror.errors import DatabaseError
from consortia.postgres import Migration, MigrationSet

# The advisory lock migrations run under, with the schema's hash ("cmig").
MIGRATION_LOCK: Final = 0x636D6967
MIRROR_MIGRATIONS: Final = MigrationSet(
    "mirror", "consortia.mirror", "schema_migrations", MIGRATION_LOCK, DatabaseError
)

__all__ = ["Migration", "bundled", "migrate"]


def bundled() -> list[Migration]:
    return MIRROR_MIGRATIONS.bundled()


def migrate(
    connection: psycopg.Connection[Any], migrations: list[Migration] | None = None
) -> list[int]:
    """Bring the mirror's schema to the latest version; the versions applied now."""
    return MIRROR_MIGRATIONS.migrate(connection, migrations)
