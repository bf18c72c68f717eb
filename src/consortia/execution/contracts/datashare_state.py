"""The `datashare/` namespace: its keys, its records, its argument rules and every read of them.

Owns the layout of the datashare contract's state (docs/datashare.md):

    dataset/<id>            {"id", "name", "owner": member, "registered_by": account,
                             "schema_digest": hex, "location", "classification",
                             "gateways": [account ids, sorted], "subject": account id or None,
                             "status": "active"|"retired", "height", "time_ms"}
    owner_datasets/<member> the ids of the member's datasets, in order (at most 64)
    dataset_grants/<id>     the numbers of the dataset's grants, in order (at most 256)
    grant_count             int, the number the next grant gets (numbered from 0)
    grant/<n>               {"n", "dataset", "owner", "consumer": member, "purpose",
                             "granted_by", "height", "time_ms", "from_height",
                             "until_height": int|None, "from_ms": int|None,
                             "until_ms": int|None, "consent_required": bool,
                             "subject": account id or None,
                             "consent": {"height", "time_ms"}|None,
                             "consent_withdrawn": {"height", "time_ms"}|None,
                             "status": "active"|"revoked",
                             "revoked": {"by", "height", "time_ms"}|None,
                             "accesses": int, "accesses_max": int|None}
    access_count            int, the number the next access record gets (numbered from 0)
    access/<n>              {"n", "grant", "dataset", "owner", "consumer", "consumer_account",
                             "gateway", "query_digest", "answer_digest", "rows", "height",
                             "time_ms"}
    logged/<query digest>   the number of the access that logged this query digest (a query
                            is logged once: the gateway's replay guard survives its restarts)

It also owns the one rule of whether a grant is live (`grant_problem`), which the contract
applies to every access and the data gateway applies to its certified reads, so both refuse
for the same reasons with the same codes.

Must never write state (only the `datashare` contract, datashare.py, changes it); never import
a contract module but identity_state; never read but through a `StateReader`
(`ctx.read_other` inside a call), so reads are metered alike from any contract; never read a
clock: "now" is always a block's height and agreed time, handed in.
"""

from __future__ import annotations

from typing import Any, Final

from consortia.execution.contract import (
    HASH_HEX_LENGTH,
    ID_CHARACTERS,
    Context,
    ContractError,
    StateReader,
    arg_hex,
    arg_int,
    arg_list,
    arg_str,
    read_record,
)
from consortia.execution.contracts import identity_state

CONTRACT: Final = "datashare"

DATASET_ID_LENGTH_MAX: Final = 64
NAME_LENGTH_MAX: Final = 128
LOCATION_LENGTH_MAX: Final = 256
PURPOSE_LENGTH_MAX: Final = 256
GATEWAYS_MAX: Final = 8  # gateway accounts of one dataset
DATASETS_PER_OWNER_MAX: Final = 64
GRANTS_PER_DATASET_MAX: Final = 256
ROWS_PER_ACCESS_MAX: Final = 1_000_000
SIGNATURE_HEX_LENGTHS: Final = (128,)  # Ed25519 and SM2 (r || s) signatures: 64 bytes
ACCESSES_PER_GRANT_MAX: Final = 1_000_000
GRANT_BLOCKS_MAX: Final = 100_000_000  # the longest a grant may last, in blocks
GRANT_MS_MAX: Final = 5 * 366 * 24 * 3600 * 1000  # and in block time: five years
LIST_MAX: Final = 100  # records one list call returns

CLASSIFICATIONS: Final = ("public", "internal", "confidential", "restricted")
ACTIVE: Final = "active"
RETIRED: Final = "retired"
REVOKED: Final = "revoked"

# Text that is shown, never parsed (names, locations, purposes): printable ASCII.
TEXT_CHARACTERS: Final = frozenset(chr(code) for code in range(0x20, 0x7F))

GRANT_COUNT: Final = "grant_count"
ACCESS_COUNT: Final = "access_count"


def dataset_key(dataset_id: str) -> str:
    return f"dataset/{dataset_id}"


def owner_datasets_key(member: str) -> str:
    return f"owner_datasets/{member}"


def dataset_grants_key(dataset_id: str) -> str:
    return f"dataset_grants/{dataset_id}"


def grant_key(number: int) -> str:
    return f"grant/{number}"


def access_key(number: int) -> str:
    return f"access/{number}"


def logged_key(query_digest: str) -> str:
    return f"logged/{query_digest}"


# ---------------------------------------------------------------------- the liveness rule


def grant_problem(
    grant: dict[str, Any], dataset: dict[str, Any], height: int, time_ms: int
) -> tuple[str, str] | None:
    """Why `grant` gives no access at (`height`, `time_ms`) as (code, message), or None when
    it is live: its dataset active, not revoked, inside its period in blocks and in block time,
    consented when consent is required, and under its access limit."""
    number = grant["n"]
    if dataset["status"] != ACTIVE:
        return "dataset_retired", f"dataset {dataset['id']} is retired"
    if grant["status"] == REVOKED:
        return "grant_revoked", f"grant {number} was revoked"
    if height < grant["from_height"]:
        return "grant_not_started", f"grant {number} starts at height {grant['from_height']}"
    if grant["from_ms"] is not None and time_ms < grant["from_ms"]:
        return "grant_not_started", f"grant {number} starts at time {grant['from_ms']} ms"
    if grant["until_height"] is not None and height > grant["until_height"]:
        return "grant_expired", f"grant {number} ended at height {grant['until_height']}"
    if grant["until_ms"] is not None and time_ms > grant["until_ms"]:
        return "grant_expired", f"grant {number} ended at time {grant['until_ms']} ms"
    if grant["consent_required"] and grant["consent"] is None:
        if grant["consent_withdrawn"] is not None:
            return "consent_withdrawn", f"the data subject withdrew consent to grant {number}"
        return "consent_missing", f"grant {number} waits for the data subject's consent"
    limit = grant["accesses_max"]
    if limit is not None and grant["accesses"] >= limit:
        return "access_limit_reached", f"grant {number} allowed {limit} accesses"
    return None


# ---------------------------------------------------------------------- arguments


def dataset_id_arg(args: dict[str, Any], name: str = "dataset") -> str:
    value = arg_str(args, name, max_length=DATASET_ID_LENGTH_MAX)
    if not set(value) <= ID_CHARACTERS:
        raise ContractError("bad_argument", f"{name} uses only letters, digits and _ . : -")
    return value


def text_arg(args: dict[str, Any], name: str, max_length: int) -> str:
    value = arg_str(args, name, max_length=max_length)
    if not set(value) <= TEXT_CHARACTERS:
        raise ContractError("bad_argument", f"{name} is printable ASCII")
    return value


def classification_arg(args: dict[str, Any]) -> str:
    value = args.get("classification")
    if value not in CLASSIFICATIONS:
        raise ContractError(
            "bad_argument", f"classification is one of {', '.join(CLASSIFICATIONS)}"
        )
    return str(value)


def digest_arg(args: dict[str, Any], name: str) -> str:
    return arg_hex(args, name, (HASH_HEX_LENGTH,))


def optional_int(
    args: dict[str, Any], name: str, *, minimum: int = 0, maximum: int | None = None
) -> int | None:
    if args.get(name) is None:
        return None
    return arg_int(args, name, minimum=minimum, maximum=maximum)


def flag_arg(args: dict[str, Any], name: str) -> bool:
    value = args.get(name, False)
    if not isinstance(value, bool):
        raise ContractError("bad_argument", f"{name} must be true or false")
    return value


def gateways_arg(ctx: Context, args: dict[str, Any], owner: str) -> list[str]:
    """The `gateways` argument: 1..GATEWAYS_MAX distinct accounts sponsored by `owner`, not
    cancelled, sorted."""
    gateways = arg_list(args, "gateways", max_length=GATEWAYS_MAX)
    ctx.require(
        bool(gateways)
        and all(isinstance(account, str) and account for account in gateways)
        and len(set(gateways)) == len(gateways),
        "bad_argument",
        f"gateways is a list of 1 to {GATEWAYS_MAX} distinct account ids",
    )
    for account in gateways:
        status = identity_state.account_status(ctx, account)
        ctx.require(status is not None, "unknown_account", f"no account {account!r}")
        ctx.require(
            status != identity_state.CANCELLED, "account_cancelled", f"{account} is cancelled"
        )
        ctx.require(
            identity_state.member_of(ctx, account) == owner,
            "bad_gateway",
            f"gateway {account} is not an account of the owner {owner}",
        )
    return sorted(gateways)


def subject_arg(ctx: Context, args: dict[str, Any], owner: str) -> str | None:
    """The optional `subject` argument: an account that exists, is not cancelled and is no
    institution account of `owner` (the owner, or its gateway, would consent for itself)."""
    if args.get("subject") is None:
        return None
    subject = arg_str(args, "subject", max_length=identity_state.ACCOUNT_ID_LENGTH_MAX)
    record = identity_state.account_record(ctx, subject)
    ctx.require(record is not None, "unknown_account", f"no account {subject!r}")
    assert record is not None
    status = identity_state.effective_status(record, ctx.height)
    ctx.require(status != identity_state.CANCELLED, "account_cancelled", f"{subject} is cancelled")
    ctx.require(
        not (
            record.get("kind", identity_state.INSTITUTION) == identity_state.INSTITUTION
            and record["sponsor"] == owner
        ),
        "bad_subject",
        f"{subject} is an account of the owner {owner}: the data subject consents, not the owner",
    )
    return subject


# ---------------------------------------------------------------------- reads


def read_dataset(read: StateReader, dataset_id: str) -> dict[str, Any] | None:
    return read_record(read, CONTRACT, dataset_key(dataset_id))


def read_grant(read: StateReader, number: int) -> dict[str, Any] | None:
    return read_record(read, CONTRACT, grant_key(number))


def read_access(read: StateReader, number: int) -> dict[str, Any] | None:
    return read_record(read, CONTRACT, access_key(number))


def _count(read: StateReader, key: str) -> int:
    value = read(CONTRACT, key)
    return value if isinstance(value, int) else 0


def grant_count(read: StateReader) -> int:
    return _count(read, GRANT_COUNT)


def access_count(read: StateReader) -> int:
    return _count(read, ACCESS_COUNT)


def _list(read: StateReader, key: str) -> list[Any]:
    value = read(CONTRACT, key)
    return list(value) if isinstance(value, list) else []


def owner_datasets(read: StateReader, member: str) -> list[str]:
    return [str(item) for item in _list(read, owner_datasets_key(member))]


def dataset_grants(read: StateReader, dataset_id: str) -> list[int]:
    return [int(item) for item in _list(read, dataset_grants_key(dataset_id))]


def logged_access(read: StateReader, query_digest: str) -> int | None:
    """The number of the access that logged `query_digest`, or None."""
    value = read(CONTRACT, logged_key(query_digest))
    return value if isinstance(value, int) else None


def page(
    read: StateReader, args: dict[str, Any], count: int, reader: str
) -> tuple[list[dict[str, Any]], int]:
    """Records numbered from `from_n` (default 0), at most `limit` (default and max
    LIST_MAX), of grants (`reader` "grant") or accesses ("access"); and the next number."""
    start = arg_int(args, "from_n", minimum=0) if args.get("from_n") is not None else 0
    limit = arg_int(args, "limit", minimum=1) if args.get("limit") is not None else LIST_MAX
    end = min(count, start + min(limit, LIST_MAX))
    load = read_grant if reader == "grant" else read_access
    records = [record for n in range(start, end) if (record := load(read, n)) is not None]
    return records, max(start, end)
