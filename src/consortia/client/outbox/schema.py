"""The outbox's schema: `migrations/NNNN_name.sql` in this package, applied in order, each
exactly once, recorded in `outbox_schema_migrations` (a name of its own, so the outbox may
share a schema with the mirror's tables; consortia.postgres says how and what is
refused: an applied file edited since, or a schema newer than this build knows, is
`OutboxDatabaseError`, never "fixed").

Owns the outbox's migration set. Must never change a table outside a migration file.
"""

from __future__ import annotations

from typing import Any, Final

import psycopg

from consortia.client.outbox.errors import OutboxDatabaseError, database_errors
from consortia.postgres import Migration, MigrationSet

# The advisory lock migrations run under, with the schema's hash ("cobx").
MIGRATION_LOCK: Final = 0x636F6278
OUTBOX_MIGRATIONS: Final = MigrationSet(
    "outbox",
    "consortia.client.outbox",
    "outbox_schema_migrations",
    MIGRATION_LOCK,
    OutboxDatabaseError,
)


def bundled() -> list[Migration]:
    """The migration files shipped with this build, in version order (no gap)."""
    return OUTBOX_MIGRATIONS.bundled()


def migrate(connection: psycopg.Connection[Any]) -> list[int]:
    """Bring the outbox's tables to the latest version (in the connection's current schema);
    the versions applied now. The connection must not be inside a transaction."""
    with database_errors():
        return OUTBOX_MIGRATIONS.migrate(connection)
