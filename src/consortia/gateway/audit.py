"""The supervisor's view of data sharing, read from the chain with certified reads.

Every grant (with its purpose, period, consent and revocation) and every access record is
state of the `datashare` contract, numbered from 0 (docs/datashare.md, *State*). A regulator
account lists them with `regulator.list_data_grants` / `list_data_accesses`; anyone holding
the genesis can also read them here, each value proven under a state root certified by the
validators, without trusting the node that answers and without an account on chain.

Owns these reads (pages of at most `datashare_state.LIST_MAX`). Must never return a record it
did not prove.
"""

from __future__ import annotations

from typing import Any

from consortia.client import Client
from consortia.execution.contracts import datashare_state

CONTRACT = datashare_state.CONTRACT


def grants(client: Client, from_n: int = 0, limit: int = datashare_state.LIST_MAX) -> list[Any]:
    """Grants numbered from `from_n`, at most `limit` (and LIST_MAX), each proven."""
    count = client.state(CONTRACT, datashare_state.GRANT_COUNT, verify=True) or 0
    return _page(client, datashare_state.grant_key, int(count), from_n, limit)


def accesses(client: Client, from_n: int = 0, limit: int = datashare_state.LIST_MAX) -> list[Any]:
    """Access records numbered from `from_n`, at most `limit` (and LIST_MAX), each proven."""
    count = client.state(CONTRACT, datashare_state.ACCESS_COUNT, verify=True) or 0
    return _page(client, datashare_state.access_key, int(count), from_n, limit)


def _page(client: Client, key: Any, count: int, from_n: int, limit: int) -> list[Any]:
    end = min(count, from_n + min(limit, datashare_state.LIST_MAX))
    return [client.state(CONTRACT, key(number), verify=True) for number in range(from_n, end)]
