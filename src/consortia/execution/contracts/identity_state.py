"""The `identity/` namespace: its keys, its records and every read of them.

Owns the layout of identity's state (docs/identity.md), the roles and the account kinds:

    member/<name>     {"roles": [role, ...], "certificate_revoked": bool}
    account/<id>      {"public_key": hex, "sponsor": member, "status": "active"|"frozen"|
                       "cancelled", "nonce": int, "kyc_digest": hex or "",
                       "kind": "institution"|"customer" (absent: institution),
                       optional "frozen_until": int (an emergency freeze's last height),
                       optional "pending_reset": {"public_key": hex, "effective_height": int}}
    used_id/<id>      True for every id ever created, genesis accounts included
    cancelled/<id>    {"height": int, "by": caller}
    params            {"key_reset_lock_blocks": int} from genesis: the lock window used when
                      governance has not set `governance/params` "key_reset_lock_blocks"
    encryption_key/<id>
                      {"current": version, "keys": [{"version", "public_key": hex, "height"}]}:
                      the account's encryption public keys (the suite's: X25519 on intl, SM2 on
                      gm), versions 1, 2, ... in order; the latest ENCRYPTION_KEYS_KEPT kept

It also owns the questions other code asks of these records: does an account exist, whom
does it act for, does a member hold a role, is an account frozen. The engine (admission and
nonces), genesis (genesis accounts), the other contracts and the simulator read identity's
state only through these accessors; none of them spells an identity key.

Must never write state (only the `identity` contract, identity.py, changes it); never import
a contract module but governance_state (whose caller name identity obeys); never read but
through `ctx.read_other` or a `StateReader`, so a read is metered alike from any contract.
"""

from __future__ import annotations

from typing import Any, Final, get_args

from consortia.execution import contract
from consortia.execution.contract import (
    Context,
    StateReader,
    arg_list,
    arg_str,
    frozen_now,
    read_record,
)
from consortia.execution.contracts import governance_state
from consortia.types.genesis import Genesis, Role

CONTRACT: Final = "identity"
GOVERNANCE: Final = governance_state.CALLER

ROLES: Final[tuple[str, ...]] = get_args(Role)
SPONSOR_ROLES: Final = ("member", "validator_operator")
INSTITUTION: Final = "institution"
CUSTOMER: Final = "customer"
ACCOUNT_KINDS: Final = (INSTITUTION, CUSTOMER)

# An account id's length: the transaction format's bound (types.primitives), re-exported for
# the contracts that take account ids as arguments.
ACCOUNT_ID_LENGTH_MAX: Final = contract.ACCOUNT_ID_LENGTH_MAX
ACTIVE: Final = "active"
FROZEN: Final = "frozen"
CANCELLED: Final = "cancelled"

MEMBER_NAME_LENGTH_MAX: Final = 64
PARAMS: Final = "params"  # {"key_reset_lock_blocks": int}, from genesis
# Encryption public keys kept per account (the current one and the latest before it): a party
# opens an older record with its older private key; the chain keeps the public history only
# for as far as this many rotations.
ENCRYPTION_KEYS_KEPT: Final = 16
ENCRYPTION_KEY_HEX_MAX: Final = 256  # hex digits of an encryption public key, any suite


def account_key(account_id: str) -> str:
    return f"account/{account_id}"


def member_key(member: str) -> str:
    return f"member/{member}"


def used_id_key(account_id: str) -> str:
    return f"used_id/{account_id}"


def cancelled_key(account_id: str) -> str:
    return f"cancelled/{account_id}"


def encryption_key_key(account_id: str) -> str:
    return f"encryption_key/{account_id}"


# ---------------------------------------------------------------------- genesis records


def genesis_accounts(genesis: Genesis) -> dict[str, Any]:
    """The account records of the genesis accounts (key -> record): active, nonce 0."""
    accounts: dict[str, Any] = {}
    for account in genesis.accounts:
        accounts.setdefault(
            account_key(account.id),
            {
                "public_key": account.public_key,
                "sponsor": account.sponsor,
                "status": ACTIVE,
                "nonce": 0,
            },
        )
    return accounts


def new_member(roles: list[Any]) -> dict[str, Any]:
    """A member record, its roles in canonical order, its certificate standing."""
    return {"roles": canonical_roles(roles), "certificate_revoked": False}


def canonical_roles(roles: list[Any]) -> list[str]:
    """Roles in one fixed order, without repeats: one stored form per set of roles."""
    return [role for role in ROLES if role in roles]


def roles_arg(ctx: Context, args: dict[str, Any]) -> list[str]:
    """The `roles` argument: distinct roles, at least one, in canonical order."""
    roles = arg_list(args, "roles", max_length=len(ROLES))
    ctx.require(
        bool(roles) and all(role in ROLES for role in roles) and len(set(roles)) == len(roles),
        "bad_argument",
        f"roles are distinct, at least one, among {', '.join(ROLES)}",
    )
    return canonical_roles(roles)


# ---------------------------------------------------------------------- accounts


def read_account(read: StateReader, account_id: str) -> dict[str, Any] | None:
    """The account's stored record, whatever its status, or None."""
    if not isinstance(account_id, str) or not account_id:
        return None
    return read_record(read, CONTRACT, account_key(account_id))


def account_record(ctx: Context, account_id: str) -> dict[str, Any] | None:
    """`read_account` from inside a call."""
    return read_account(ctx.read_other, account_id)


def account_exists(ctx: Context, account_id: str) -> bool:
    """True when the id names an account, in any status (cancelled ones included). Charged
    as `account_record` is (one read, nothing for an id that is no string or empty)."""
    if not isinstance(account_id, str) or not account_id:
        return False
    return ctx.has_other(CONTRACT, account_key(account_id))


def effective_status(record: dict[str, Any], height: int) -> str:
    """The status the engine applies at `height`: a lapsed emergency freeze counts as active."""
    status = str(record["status"])
    if status == FROZEN and not frozen_now(record, height):
        return ACTIVE
    return status


def account_status(ctx: Context, account_id: str) -> str | None:
    """The status the engine applies now: active, frozen or cancelled (a lapsed emergency
    freeze counts as active); None for no account."""
    record = account_record(ctx, account_id)
    return None if record is None else effective_status(record, ctx.height)


def permanently_frozen(record: dict[str, Any]) -> bool:
    """Frozen by governance: a freeze without a last height, that only governance lifts."""
    return record.get("status") == FROZEN and not isinstance(record.get("frozen_until"), int)


def emergency_freeze_until(record: dict[str, Any]) -> int | None:
    """The last height of the emergency freeze the record holds, or None."""
    until = record.get("frozen_until")
    return until if record.get("status") == FROZEN and isinstance(until, int) else None


def member_of(ctx: Context, account_id: str) -> str | None:
    """The member that sponsors the account, or None for no account.

    Every customer of a member has that member as sponsor: to decide whether an account may
    act *for* a member (vote, supervise, sponsor), use `acts_for`.
    """
    record = account_record(ctx, account_id)
    return None if record is None else str(record["sponsor"])


def acts_for(ctx: Context, account_id: str) -> str | None:
    """The member this account may act for now: an active institution account of a member
    whose certificate is not revoked. None otherwise (customers, contracts, unknown ids)."""
    record = account_record(ctx, account_id)
    if record is None or record.get("kind", INSTITUTION) != INSTITUTION:
        return None
    if effective_status(record, ctx.height) != ACTIVE:
        return None
    member = str(record["sponsor"])
    standing = member_record(ctx, member)
    if standing is None or standing["certificate_revoked"]:
        return None
    return member


# ---------------------------------------------------------------------- members


def read_member(read: StateReader, member: str) -> dict[str, Any] | None:
    """The member's record (roles, certificate standing), or None for no such member."""
    if not isinstance(member, str) or not member:
        return None
    return read_record(read, CONTRACT, member_key(member))


def member_record(ctx: Context, member: str) -> dict[str, Any] | None:
    """`read_member` from inside a call."""
    return read_member(ctx.read_other, member)


def member_exists(ctx: Context, member: str) -> bool:
    return member_record(ctx, member) is not None


def has_role(ctx: Context, member: str, role: str) -> bool:
    record = member_record(ctx, member)
    return record is not None and role in record["roles"]


def certificate_revoked(ctx: Context, member: str) -> bool:
    record = member_record(ctx, member)
    return record is not None and bool(record["certificate_revoked"])


def load_member(ctx: Context, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The member named by the `member` argument and its record, or `unknown_member`."""
    member = arg_str(args, "member", max_length=MEMBER_NAME_LENGTH_MAX)
    record = member_record(ctx, member)
    if record is None:
        ctx.fail("unknown_member", f"no member {member!r}")
    return member, record


# ---------------------------------------------------------------------- encryption keys


def read_encryption_keys(read: StateReader, account_id: str) -> dict[str, Any] | None:
    """The account's encryption key record ({"current", "keys"}), or None when it registered
    none."""
    if not isinstance(account_id, str) or not account_id:
        return None
    return read_record(read, CONTRACT, encryption_key_key(account_id))


def read_encryption_key(
    read: StateReader, account_id: str, version: int | None = None
) -> tuple[int, str] | None:
    """(version, public key in hex) of the account's current encryption key, or of `version`
    when given; None when the account registered none, or that version is unknown or no
    longer kept."""
    return versioned_key(read_encryption_keys(read, account_id), version)


def encryption_key_arg(
    ctx: Context, args: dict[str, Any], record: dict[str, Any] | None, reused: str
) -> str:
    """`public_key`: an encryption public key of the chain's suite, in lowercase hex
    (`bad_encryption_key`), not among the versions of `record` (`key_reused`, `reused` says
    why). Accounts' keys and the regulator's escrow key follow this one rule."""
    public_key = args.get("public_key")
    ctx.require(
        isinstance(public_key, str)
        and len(public_key) <= ENCRYPTION_KEY_HEX_MAX
        and ctx.valid_encryption_key(public_key),
        "bad_encryption_key",
        f"public_key must be an encryption public key of the {ctx.suite} suite, in hex",
    )
    assert isinstance(public_key, str)
    ctx.require(
        record is None or all(k["public_key"] != public_key for k in record["keys"]),
        "key_reused",
        reused,
    )
    return public_key


def versioned_key(record: dict[str, Any] | None, version: int | None) -> tuple[int, str] | None:
    """(version, public key) in a versioned key record ({"current", "keys"}: an account's
    encryption keys, the regulator's escrow key): the current one, or `version`."""
    if record is None:
        return None
    wanted = record["current"] if version is None else version
    for entry in record["keys"]:
        if entry["version"] == wanted:
            return int(entry["version"]), str(entry["public_key"])
    return None


def with_encryption_key(
    record: dict[str, Any] | None,
    public_key: str,
    height: int,
    kept: int = ENCRYPTION_KEYS_KEPT,
) -> dict[str, Any]:
    """A versioned key record after registering `public_key` as the next version (the oldest
    dropped beyond `kept`)."""
    version = 1 if record is None else int(record["current"]) + 1
    keys = [] if record is None else list(record["keys"])
    keys.append({"version": version, "public_key": public_key, "height": height})
    return {"current": version, "keys": keys[-kept:]}
