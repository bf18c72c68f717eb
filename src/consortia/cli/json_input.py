"""JSON a command reads from a file or standard input (`-`), never from its command line,
where other users of the machine would see it in the process list.

Owns reading and decoding that input within a size bound; must never print or log it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from consortia.errors import InvalidArgumentError
from consortia.identity.files import read_bounded


def read_json_input(
    path: Path,
    *,
    size_max: int,
    what: str,
    option: str,
    parse_float: Callable[[str], Any] | None = None,
) -> Any:
    """The JSON document in `path` (`-`: standard input), at most `size_max` characters;
    InvalidArgumentError, naming `what` and `option`, for anything else."""
    if str(path) == "-":
        text = sys.stdin.read(size_max + 1)
        if len(text) > size_max:
            raise InvalidArgumentError(f"{what}: over {size_max} bytes")
    else:
        raw = read_bounded(path, size_max, InvalidArgumentError, option)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidArgumentError(f"{option} {path} is not UTF-8 text") from None
    try:
        return json.loads(text, parse_float=parse_float)
    except json.JSONDecodeError as error:
        raise InvalidArgumentError(f"{what}: not JSON: {error}") from None
