"""The database's DSN: checked so that no password travels in it, and shown without secrets.

A password in `--dsn` would sit on the mirror's command line (visible to every user of the
machine in the process list) and in shell histories, so it is refused
(`PasswordInDsnError`); libpq's own ways remain: PGPASSWORD, a password file (PGPASSFILE or
~/.pgpass, or `passfile=` in the DSN), a service file (`service=`), or a client certificate.

Owns parsing the DSN (libpq's parser, through psycopg: key=value or postgresql:// URIs) and
its safe description for logs. Must never log, print or put in an error message a password
or the DSN as given.
"""

from __future__ import annotations

import re
from typing import Final

import psycopg
from psycopg.conninfo import conninfo_to_dict

from consortia.errors import InvalidArgumentError
from consortia.mirror.errors import PasswordInDsnError

# What a DSN's description shows (never the password; never the raw DSN).
SHOWN: Final = ("host", "hostaddr", "port", "dbname", "user", "service", "sslmode")
_QUOTED: Final = re.compile(r'"[^"]*"')


def checked(dsn: str) -> dict[str, str]:
    """The DSN's parameters; PasswordInDsnError when it holds a password,
    InvalidArgumentError when libpq cannot parse it (its message with every quoted part of
    the DSN left out, since that may be the password)."""
    try:
        parameters = {key: str(value) for key, value in conninfo_to_dict(dsn).items()}
    except psycopg.Error as error:
        reason = _QUOTED.sub('"…"', str(error).splitlines()[0] if str(error) else "")
        raise InvalidArgumentError(f"--dsn does not parse: {reason}") from None
    if "password" in parameters:
        raise PasswordInDsnError(
            "the DSN holds a password, which would show on the command line: remove it and use "
            "PGPASSWORD, a password file (PGPASSFILE, ~/.pgpass or passfile=) or a service "
            "file (service=)"
        )
    return parameters


def describe(parameters: dict[str, str]) -> str:
    """host, port, database, user (and service, sslmode): what logs may name."""
    return " ".join(f"{key}={parameters[key]}" for key in SHOWN if key in parameters)
