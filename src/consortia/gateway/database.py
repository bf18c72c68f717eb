"""The datasets a gateway serves: one SQL query each, run read-only in the owner's PostgreSQL.

The owner describes its datasets in a JSON file (`--queries FILE`):

    {"firm-credit": {"sql": "SELECT ... FROM credit_file WHERE firm = %(firm)s",
                     "parameters": ["firm"], "rows_max": 1000}}

A request must bring exactly the declared parameters; they reach PostgreSQL only as bound
parameters (`%(name)s`), never spliced into the text. Each fetch runs in its own read-only
transaction with a statement timeout and reads at most `rows_max` + 1 rows (one more than
allowed means the answer is refused, not cut short).

Owns the queries and turning rows into JSON-like values (integers, text, booleans, None;
decimals, times and the rest as text). Must never log or put in an error a row, a parameter,
the DSN or the database's own error text (which may quote a parameter): a failure is named by
its SQLSTATE class only.
"""

from __future__ import annotations

import datetime
import json
import re
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import psycopg

from consortia.errors import InvalidArgumentError
from consortia.gateway.errors import BAD_REQUEST, BUSY, TOO_LARGE, RefusedError
from consortia.gateway.protocol import (
    ID_PATTERN,
    PARAMETER_NAME,
    PARAMETERS_MAX,
    integer_within,
)
from consortia.identity.files import read_bounded

APPLICATION_NAME: Final = "consortia-gateway"
CONNECT_TIMEOUT_S: Final = 10
STATEMENT_TIMEOUT_MS: Final = 10_000
ROWS_MAX: Final = 10_000  # the most rows any dataset may answer with
QUERIES_FILE_BYTES_MAX: Final = 256 * 1024
SQL_LENGTH_MAX: Final = 8192
INTEGER_MIN, INTEGER_MAX = -(2**63), 2**63 - 1
_PLACEHOLDER: Final = re.compile(r"%\((\w+)\)s")


@dataclass(frozen=True, slots=True)
class DatasetQuery:
    dataset: str
    sql: str
    parameters: tuple[str, ...]
    rows_max: int

    def bind(self, params: dict[str, str | int]) -> dict[str, str | int]:
        """The request's parameters, when they are exactly the declared ones."""
        if set(params) != set(self.parameters):
            wanted = ", ".join(self.parameters) or "none"
            raise RefusedError(
                "bad_parameters", f"{self.dataset} takes the parameters {wanted}", 400
            )
        return dict(params)


def load_queries(path: Path, datasets: list[str]) -> dict[str, DatasetQuery]:
    """The queries of `datasets` from the JSON file at `path` (every one must be there)."""
    raw = read_bounded(path, QUERIES_FILE_BYTES_MAX, InvalidArgumentError, "--queries")
    try:
        document = json.loads(raw)
    except ValueError:
        raise InvalidArgumentError(f"--queries {path} is not JSON") from None
    if not isinstance(document, dict):
        raise InvalidArgumentError(f"--queries {path}: expected a map of dataset ids")
    queries = {}
    for dataset in datasets:
        if dataset not in document:
            raise InvalidArgumentError(f"--queries {path} has no query for dataset {dataset!r}")
        queries[dataset] = parse_query(dataset, document[dataset])
    return queries


def parse_query(dataset: str, entry: Any) -> DatasetQuery:
    where = f"dataset {dataset}"
    if not ID_PATTERN.match(dataset):
        raise InvalidArgumentError(f"{where}: not a dataset id")
    if not isinstance(entry, dict):
        raise InvalidArgumentError(f"{where}: expected {{'sql', 'parameters', 'rows_max'}}")
    sql, parameters = entry.get("sql"), entry.get("parameters", [])
    rows_max = entry.get("rows_max", 1000)
    if not isinstance(sql, str) or not 0 < len(sql) <= SQL_LENGTH_MAX:
        raise InvalidArgumentError(f"{where}: sql is the query's text")
    if (
        not isinstance(parameters, list)
        or len(parameters) > PARAMETERS_MAX
        or not all(isinstance(p, str) and PARAMETER_NAME.match(p) for p in parameters)
        or len(set(parameters)) != len(parameters)
    ):
        raise InvalidArgumentError(f"{where}: parameters are distinct lowercase names")
    if set(_PLACEHOLDER.findall(sql)) != set(parameters):
        raise InvalidArgumentError(f"{where}: the sql's %(name)s placeholders are the parameters")
    if not integer_within(rows_max, 1, ROWS_MAX):
        raise InvalidArgumentError(f"{where}: rows_max is between 1 and {ROWS_MAX}")
    return DatasetQuery(dataset, sql, tuple(parameters), rows_max)


class Database:
    """The owner's database, reached through a DSN without a password (libpq finds it in a
    password file, a service file or PGPASSWORD)."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn

    def __repr__(self) -> str:
        return "<gateway database>"

    def fetch(self, query: DatasetQuery, params: dict[str, str | int]) -> list[dict[str, Any]]:
        """The query's rows as maps of column name to value, in one read-only transaction."""
        bound = query.bind(params)
        try:
            with psycopg.connect(
                self._dsn, application_name=APPLICATION_NAME, connect_timeout=CONNECT_TIMEOUT_S
            ) as connection:
                connection.read_only = True
                with connection.transaction(), connection.cursor() as cursor:
                    cursor.execute(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}")
                    cursor.execute(query.sql, bound)
                    names = [column.name for column in cursor.description or []]
                    rows = cursor.fetchmany(query.rows_max + 1)
        except psycopg.errors.DataError:
            raise RefusedError(
                "bad_parameters", "a parameter does not fit its column", BAD_REQUEST
            ) from None
        except psycopg.Error as error:
            sqlstate = getattr(error, "sqlstate", None) or type(error).__name__
            raise RefusedError(
                "database_unavailable", f"the query failed ({sqlstate})", BUSY
            ) from None
        if len(rows) > query.rows_max:
            raise RefusedError(
                "answer_too_large", f"the answer holds more than {query.rows_max} rows", TOO_LARGE
            )
        return [dict(zip(names, (plain(value) for value in row), strict=True)) for row in rows]


def plain(value: Any) -> Any:
    """A column's value as a JSON-like value a sealed record may hold (no floats)."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value if INTEGER_MIN <= value <= INTEGER_MAX else str(value)
    if isinstance(value, Decimal):
        return (
            int(value) if value == value.to_integral_value() and value.is_finite() else str(value)
        )
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    return str(value)
