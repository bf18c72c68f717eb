"""`identity` v1: member institutions and the accounts they sponsor (JR/T 0184-2020 §13).

What it is for. Every transaction is signed by an account, and the engine admits it only if
`identity/account/<id>` exists, is neither cancelled nor frozen, and names the signing key.
This contract is the only code that creates and changes those records, and it keeps the member
institutions' records (roles, certificate status) that other contracts consult:

- A member institution's own account (an *institution* account; every genesis account is one)
  opens accounts for its customers, or further institution accounts of its own; the new
  account's sponsor is the opener's member. The member holds the real-name (KYC) record off
  the chain; the chain keeps only its digest.
- An account rotates its own key; its id never changes.
- An account registers its encryption public key (`set_encryption_key`), to which others wrap
  the data keys of sealed records it may read (the `vault`); each registration is the next
  version, and the history is kept (bounded), so records wrapped to an older key stay
  readable with the older private key until they are rewrapped.
- When a key is lost, an institution account of the sponsor requests a reset to a new key. The
  reset takes effect only once the governance lock window (`key_reset_lock_blocks`) has passed,
  and until it is completed the old key may cancel it.
- Freezing and unfreezing belong to governance (permanent until unfrozen) and to the
  regulator's emergency freeze, which names its last height and lapses after it.
- Cancelled accounts are listed (`cancelled/<id>`) and never revived; no id is ever reused.

This module owns identity's methods: the only code that writes `identity/`. The layout of
that state and every read of it (by this contract, other contracts, the engine, genesis and
the simulator) is in identity_state.py.

What it must never do: reuse an account id; revive a cancelled account; change a key except by
the account's own key or by a reset whose lock window has passed; let two resets of one account
be pending at once; freeze, unfreeze or change members for any caller but governance (and the
regulator's bounded emergency freeze); change an account's `nonce` (the engine owns it); store
anything of a customer's identity but a digest. A frozen account is held as it is: only
governance and the regulator change it.

docs/identity.md describes every method, who may call it, its error codes and its events.
"""

from __future__ import annotations

from typing import Any, Final

from consortia.execution.contract import (
    HASH_HEX_LENGTH,
    PUBLIC_KEY_HEX_LENGTHS,
    Context,
    Contract,
    arg_hex,
    arg_int,
    arg_str,
    is_account_id,
    method,
)
from consortia.execution.contracts import governance_state, regulator_state
from consortia.execution.contracts.identity_state import (
    ACCOUNT_ID_LENGTH_MAX,
    ACCOUNT_KINDS,
    ACTIVE,
    CANCELLED,
    CONTRACT,
    CUSTOMER,
    FROZEN,
    GOVERNANCE,
    INSTITUTION,
    MEMBER_NAME_LENGTH_MAX,
    PARAMS,
    SPONSOR_ROLES,
    account_key,
    account_record,
    cancelled_key,
    effective_status,
    encryption_key_arg,
    encryption_key_key,
    has_role,
    load_member,
    member_key,
    member_record,
    new_member,
    roles_arg,
    used_id_key,
    with_encryption_key,
)
from consortia.types.genesis import Genesis

# The regulator's emergency freeze holds at most this many blocks; longer needs governance.
EMERGENCY_FREEZE_BLOCKS_MAX: Final = 1_000
KEY_RESET_LOCK_BLOCKS_DEFAULT: Final = 1_000  # only if the chain started without identity params


class Identity(Contract):
    name = CONTRACT
    version = 1

    @classmethod
    def genesis_state(cls, genesis: Genesis) -> dict[str, Any]:
        """Member records, used ids and the genesis lock window; never account records
        (execution/genesis.py writes those, from `identity_state.genesis_accounts`)."""
        state: dict[str, Any] = {
            PARAMS: {"key_reset_lock_blocks": genesis.governance.key_reset_lock_blocks}
        }
        for member in genesis.members:
            state[member_key(member.name)] = new_member(list(member.roles))
        for account in genesis.accounts:
            state[used_id_key(account.id)] = True
        return state

    # ------------------------------------------------------------------ accounts

    @method("open_account")
    def open_account(self, ctx: Context, args: dict[str, Any]) -> None:
        """An institution account of a sponsoring member opens an account for that member."""
        sponsor = _acting_member(ctx)
        ctx.require(
            any(has_role(ctx, sponsor, role) for role in SPONSOR_ROLES),
            "not_authorised",
            f"member {sponsor!r} has no role that sponsors accounts",
        )
        account_id = _account_id_arg(ctx, args)
        public_key = _public_key_arg(args)
        kyc_digest = arg_hex(args, "kyc_digest", (HASH_HEX_LENGTH,))
        kind = args.get("kind", CUSTOMER)
        ctx.require(
            kind in ACCOUNT_KINDS, "bad_argument", f"kind is one of {', '.join(ACCOUNT_KINDS)}"
        )
        existing = _record(ctx, account_id)
        if existing is not None:
            ctx.require(
                existing.get("status") != CANCELLED,
                "id_reused",
                f"account {account_id!r} was cancelled; ids are never reused",
            )
            ctx.fail("account_exists", f"account {account_id!r} exists")
        ctx.require(
            not ctx.has(used_id_key(account_id)),
            "id_reused",
            f"id {account_id!r} was used before; ids are never reused",
        )
        ctx.put(
            account_key(account_id),
            {
                "public_key": public_key,
                "sponsor": sponsor,
                "status": ACTIVE,
                "nonce": 0,
                "kyc_digest": kyc_digest,
                "kind": kind,
            },
        )
        ctx.put(used_id_key(account_id), True)
        ctx.emit(
            "account_opened",
            account=account_id,
            sponsor=sponsor,
            kind=kind,
            public_key=public_key,
            kyc_digest=kyc_digest,
            by=ctx.caller,
        )

    @method("rotate_key")
    def rotate_key(self, ctx: Context, args: dict[str, Any]) -> None:
        """The account replaces its own key; the transaction is signed with the current one."""
        account_id, record = _own_account(ctx, "only an account rotates its own key")
        ctx.require(
            "pending_reset" not in record,
            "reset_pending",
            "a key reset is pending: cancel it (cancel_reset) before rotating",
        )
        public_key = _public_key_arg(args)
        ctx.require(
            public_key != record["public_key"], "bad_argument", "that is the current key already"
        )
        record["public_key"] = public_key
        _store(ctx, account_id, record)
        ctx.emit("key_rotated", account=account_id, public_key=public_key)

    @method("set_encryption_key")
    def set_encryption_key(self, ctx: Context, args: dict[str, Any]) -> int:
        """The account registers its encryption public key (the chain suite's: X25519 on intl,
        SM2 on gm) as its next version; returns the version. A key is never registered twice."""
        account_id, _ = _own_account(ctx, "only an account registers its own encryption key")
        record = ctx.get(encryption_key_key(account_id))
        assert record is None or isinstance(record, dict)
        reused = "that encryption key was registered before; register a new one"
        public_key = encryption_key_arg(ctx, args, record, reused)
        updated = with_encryption_key(record, public_key, ctx.height)
        ctx.put(encryption_key_key(account_id), updated)
        version = int(updated["current"])
        ctx.emit("encryption_key_set", account=account_id, version=version, public_key=public_key)
        return version

    @method("request_reset")
    def request_reset(self, ctx: Context, args: dict[str, Any]) -> None:
        """The sponsor asks to replace a lost key once the lock window has passed."""
        member = _acting_member(ctx)
        account_id, record = _named_account(ctx, args)
        ctx.require(
            record["sponsor"] == member,
            "not_sponsor",
            f"account {account_id!r} is sponsored by {record['sponsor']!r}, not {member!r}",
        )
        _require_held_as_is(ctx, account_id, record)
        ctx.require(
            "pending_reset" not in record,
            "reset_pending",
            f"account {account_id!r} already has a key reset pending",
        )
        public_key = _public_key_arg(args)
        ctx.require(
            public_key != record["public_key"], "bad_argument", "that is the current key already"
        )
        effective_height = ctx.height + _reset_lock_blocks(ctx)
        record["pending_reset"] = {"public_key": public_key, "effective_height": effective_height}
        _store(ctx, account_id, record)
        ctx.emit(
            "reset_requested",
            account=account_id,
            public_key=public_key,
            effective_height=effective_height,
            by=ctx.caller,
        )

    @method("cancel_reset")
    def cancel_reset(self, ctx: Context, args: dict[str, Any]) -> None:
        """The account, signing with its current (old) key, cancels a pending reset."""
        del args
        account_id, record = _own_account(ctx, "only the account cancels its reset")
        ctx.require(
            "pending_reset" in record, "no_reset_pending", f"{account_id!r} has no reset pending"
        )
        del record["pending_reset"]
        _store(ctx, account_id, record)
        ctx.emit("reset_cancelled", account=account_id, by=ctx.caller)

    @method("complete_reset")
    def complete_reset(self, ctx: Context, args: dict[str, Any]) -> None:
        """Anyone swaps in the reset key once the lock window has passed."""
        account_id, record = _named_account(ctx, args)
        _require_held_as_is(ctx, account_id, record)
        pending = record.get("pending_reset")
        ctx.require(pending is not None, "no_reset_pending", f"{account_id!r} has no reset pending")
        assert isinstance(pending, dict)
        effective_height = pending["effective_height"]
        ctx.require(
            ctx.height >= effective_height,
            "reset_not_due",
            f"the reset of {account_id!r} takes effect at height {effective_height}",
        )
        record["public_key"] = pending["public_key"]
        del record["pending_reset"]
        _store(ctx, account_id, record)
        ctx.emit(
            "reset_completed", account=account_id, public_key=pending["public_key"], by=ctx.caller
        )

    @method("cancel_account")
    def cancel_account(self, ctx: Context, args: dict[str, Any]) -> None:
        """The sponsor (an institution account) or governance cancels an account for good."""
        by_governance = ctx.caller == GOVERNANCE
        member = None if by_governance else _acting_member(ctx)
        account_id, record = _named_account(ctx, args)
        if member is not None:
            ctx.require(
                record["sponsor"] == member,
                "not_sponsor",
                f"account {account_id!r} is sponsored by {record['sponsor']!r}, not {member!r}",
            )
        if by_governance:
            _require_not_cancelled(ctx, account_id, record)
        else:
            _require_held_as_is(ctx, account_id, record)
        if "pending_reset" in record:
            del record["pending_reset"]
            ctx.emit("reset_cancelled", account=account_id, by=ctx.caller)
        record["status"] = CANCELLED
        record.pop("frozen_until", None)
        _store(ctx, account_id, record)
        ctx.put(cancelled_key(account_id), {"height": ctx.height, "by": ctx.caller})
        ctx.emit("account_cancelled", account=account_id, by=ctx.caller)

    @method("freeze_account")
    def freeze_account(self, ctx: Context, args: dict[str, Any]) -> None:
        """Governance freezes until unfrozen; the regulator until a height it names (bounded)."""
        until_height: int | None = None
        if ctx.caller == GOVERNANCE:
            ctx.require(
                "until_height" not in args,
                "bad_argument",
                "a governance freeze holds until unfrozen: no until_height",
            )
        elif ctx.caller == regulator_state.CALLER:
            until_height = arg_int(args, "until_height", minimum=ctx.height)
            ctx.require(
                until_height <= ctx.height + EMERGENCY_FREEZE_BLOCKS_MAX,
                "bad_argument",
                f"an emergency freeze holds at most {EMERGENCY_FREEZE_BLOCKS_MAX} blocks",
            )
        else:
            ctx.fail("not_authorised", "only governance or the regulator freezes accounts")
        account_id, record = _named_account(ctx, args)
        _require_not_cancelled(ctx, account_id, record)
        if record["status"] == FROZEN:
            current = record.get("frozen_until")
            ctx.require(
                isinstance(current, int) and (until_height is None or until_height > current),
                "already_frozen",
                f"account {account_id!r} is frozen already",
            )
        record["status"] = FROZEN
        if until_height is None:
            record.pop("frozen_until", None)
        else:
            record["frozen_until"] = until_height
        _store(ctx, account_id, record)
        ctx.emit("account_frozen", account=account_id, by=ctx.caller, until_height=until_height)

    @method("unfreeze_account")
    def unfreeze_account(self, ctx: Context, args: dict[str, Any]) -> None:
        """Governance lifts any freeze; the regulator only its own emergency freeze."""
        ctx.require(
            ctx.caller in (GOVERNANCE, regulator_state.CALLER),
            "not_authorised",
            "only governance or the regulator unfreezes accounts",
        )
        account_id, record = _named_account(ctx, args)
        _require_not_cancelled(ctx, account_id, record)
        ctx.require(
            record["status"] == FROZEN, "not_frozen", f"account {account_id!r} is not frozen"
        )
        ctx.require(
            ctx.caller == GOVERNANCE or "frozen_until" in record,
            "not_authorised",
            "the regulator lifts only its own emergency freeze; this one is governance's",
        )
        record["status"] = ACTIVE
        record.pop("frozen_until", None)
        _store(ctx, account_id, record)
        ctx.emit("account_unfrozen", account=account_id, by=ctx.caller)

    # ------------------------------------------------------------------ members (governance)

    @method("add_member")
    def add_member(self, ctx: Context, args: dict[str, Any]) -> None:
        _require_governance(ctx)
        member = arg_str(args, "name", max_length=MEMBER_NAME_LENGTH_MAX)
        roles = roles_arg(ctx, args)
        ctx.require(not ctx.has(member_key(member)), "member_exists", f"member {member!r} exists")
        ctx.put(member_key(member), new_member(roles))
        ctx.emit("member_added", member=member, roles=roles)

    @method("set_roles")
    def set_roles(self, ctx: Context, args: dict[str, Any]) -> None:
        _require_governance(ctx)
        member, record = load_member(ctx, args)
        roles = roles_arg(ctx, args)
        previous = record["roles"]
        record["roles"] = roles
        ctx.put(member_key(member), record)
        ctx.emit("roles_changed", member=member, roles=roles, previous=previous)

    @method("revoke_certificate")
    def revoke_certificate(self, ctx: Context, args: dict[str, Any]) -> None:
        _require_governance(ctx)
        member, record = load_member(ctx, args)
        ctx.require(
            not record["certificate_revoked"],
            "already_revoked",
            f"the certificate of {member!r} is revoked already",
        )
        record["certificate_revoked"] = True
        ctx.put(member_key(member), record)
        ctx.emit("certificate_revoked", member=member)

    @method("restore_certificate")
    def restore_certificate(self, ctx: Context, args: dict[str, Any]) -> None:
        """Governance reinstates a member, typically once its new certificate is issued."""
        _require_governance(ctx)
        member, record = load_member(ctx, args)
        ctx.require(
            bool(record["certificate_revoked"]),
            "not_revoked",
            f"the certificate of {member!r} is not revoked",
        )
        record["certificate_revoked"] = False
        ctx.put(member_key(member), record)
        ctx.emit("certificate_restored", member=member)


# ---------------------------------------------------------------------- internals


def _record(ctx: Context, account_id: str) -> dict[str, Any] | None:
    """The account's record with a lapsed emergency freeze already lifted, or None."""
    record = account_record(ctx, account_id)
    if record is not None and record["status"] != effective_status(record, ctx.height):
        record["status"] = ACTIVE
        del record["frozen_until"]
    return record


def _load(ctx: Context, account_id: str) -> dict[str, Any]:
    record = _record(ctx, account_id)
    if record is None:
        ctx.fail("unknown_account", f"no account {account_id!r}")
    return record


def _named_account(ctx: Context, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The account the `account` argument names, and its record, or `unknown_account`."""
    account_id = arg_str(args, "account", max_length=ACCOUNT_ID_LENGTH_MAX)
    return account_id, _load(ctx, account_id)


def _own_account(ctx: Context, refusal: str) -> tuple[str, dict[str, Any]]:
    """The calling account and its record, held as it is; `refusal` for any other caller."""
    account_id = ctx.caller
    record = _record(ctx, account_id)
    ctx.require(record is not None, "not_authorised", refusal)
    assert record is not None
    _require_held_as_is(ctx, account_id, record)
    return account_id, record


def _store(ctx: Context, account_id: str, record: dict[str, Any]) -> None:
    previous = account_record(ctx, account_id)
    assert previous is not None and previous["nonce"] == record["nonce"], "the engine owns nonces"
    assert previous["status"] != CANCELLED, "a cancelled account is never changed"
    ctx.put(account_key(account_id), record)


def _require_not_cancelled(ctx: Context, account_id: str, record: dict[str, Any]) -> None:
    ctx.require(
        record["status"] != CANCELLED,
        "account_cancelled",
        f"account {account_id!r} is cancelled",
    )


def _require_held_as_is(ctx: Context, account_id: str, record: dict[str, Any]) -> None:
    """Neither cancelled nor frozen: a frozen account changes only through governance."""
    _require_not_cancelled(ctx, account_id, record)
    ctx.require(record["status"] != FROZEN, "account_frozen", f"account {account_id!r} is frozen")


def _acting_member(ctx: Context) -> str:
    """The member the caller acts for, or a refusal: the caller must be an active institution
    account of a member whose certificate stands."""
    record = account_record(ctx, ctx.caller)
    ctx.require(
        record is not None and record.get("kind", INSTITUTION) == INSTITUTION,
        "not_authorised",
        "only a member institution's own account may do this",
    )
    assert record is not None
    ctx.require(
        effective_status(record, ctx.height) == ACTIVE,
        "not_authorised",
        f"account {ctx.caller!r} is not active",
    )
    member = str(record["sponsor"])
    standing = member_record(ctx, member)
    ctx.require(standing is not None, "not_authorised", f"{member!r} is not a member")
    assert standing is not None
    ctx.require(
        not standing["certificate_revoked"],
        "member_revoked",
        f"the certificate of member {member!r} is revoked",
    )
    return member


def _require_governance(ctx: Context) -> None:
    ctx.require(ctx.caller == GOVERNANCE, "not_authorised", "only governance changes members")


def _reset_lock_blocks(ctx: Context) -> int:
    """Governance's current lock window, else the one the chain started with."""
    blocks = governance_state.key_reset_lock_blocks(ctx.read_other)
    if blocks is not None:
        return blocks
    own = ctx.get(PARAMS, {})
    assert isinstance(own, dict)
    window = own.get("key_reset_lock_blocks", KEY_RESET_LOCK_BLOCKS_DEFAULT)
    assert isinstance(window, int) and window >= 1
    return window


def _account_id_arg(ctx: Context, args: dict[str, Any]) -> str:
    account_id = args.get("id")
    if not is_account_id(account_id):
        # No colon: a transaction's sender cannot hold one, so such an account could never
        # sign (and "contract:<name>" is how contracts appear as callers).
        ctx.fail("bad_argument", "an account id is 1 to 64 letters, digits and _ . -")
    return account_id


def _public_key_arg(args: dict[str, Any]) -> str:
    return arg_hex(args, "public_key", PUBLIC_KEY_HEX_LENGTHS)
