"""`regulator` v1: supervision of the ledger (JR/T 0184 §15).

The regulator watches every asset transfer against rules it sets (a single-transfer maximum,
a velocity limit, a list of watched counterparties) and raises alerts; it answers supervision
queries (an account, the alerts, the oracles' conflicting attestations, the data-sharing
grants and accesses); and it may freeze
an account for a bounded number of blocks while the committee decides. An emergency freeze
lapses by itself unless the committee ratifies it through a governance `freeze_account`
proposal, which makes the freeze permanent (identity then drops `frozen_until`).

The regulator also holds the escrow key of sealed records (regulator_state.py): every sealed
record in the `vault` wraps its data key to it, so supervision never depends on a party's
cooperation. Only a passed governance proposal (`set_escrow_key`) sets or rotates it.

Who may call: `observe_transfer` only the asset contract ("contract:asset"); `set_escrow_key`
only governance ("contract:governance"); everything else only regulator accounts, i.e.
accounts whose sponsor member has the role "regulator" and an unrevoked certificate.

This module owns the `regulator/` namespace below. It must never refuse or alter a transfer
(observing only records), never write outside its own namespace (a freeze goes through
identity), never read another contract's state but through that contract's accessors, and
never read a clock: heights come from the context.

State (namespace `regulator/`):
    rules                 {"single_transfer_max": int|None,
                           "velocity": {"count": int, "window_blocks": int}|None,
                           "listed": [account ids]}
    limits                the rules without "listed" (what every transfer reads: kept small,
                           so observing costs the same however long the list is)
    listed/<id>           True for each listed account
    next_alert            int, the number the next alert gets
    alert/<n>             {"kind", "account", "details", "height"}
    account_alerts/<id>   the numbers of the account's latest alerts (at most 32)
    recent/<id>           heights of the account's latest outgoing transfers (velocity rule)
    freeze/<id>           {"until_height", "by", "height"}: the latest emergency freeze
    escrow_key            {"current", "keys": [{"version", "public_key", "height"}]}: the
                           escrow key's versions (regulator_state.py owns this key)
"""

from __future__ import annotations

from typing import Any, Final

from consortia.execution.contract import (
    CURRENCY_DEFAULT,
    Context,
    Contract,
    arg_int,
    arg_list,
    arg_str,
    contract_caller,
    is_currency,
    method,
)
from consortia.execution.contracts import (
    asset,
    datashare_state,
    governance_state,
    identity_state,
    oracle_state,
    regulator_state,
)
from consortia.types.genesis import Genesis

CONTRACT: Final = regulator_state.CONTRACT
ASSET_CALLER: Final = contract_caller(asset.CONTRACT)  # the one caller observe_transfer hears
REGULATOR_ROLE: Final = "regulator"

ALERT_LARGE = "large_transfer"
ALERT_VELOCITY = "velocity"
ALERT_LISTED = "listed_party"

AMOUNT_MAX = 2**62
VELOCITY_COUNT_MAX = 100
VELOCITY_WINDOW_MAX = 1_000_000
LISTED_MAX = 256
ACCOUNT_ALERTS_KEPT = 32
LIST_ALERTS_MAX = 100
CURRENCIES_MAX = 16
FREEZE_BLOCKS_MAX = 1_000
ACCOUNT_ID_MAX = identity_state.ACCOUNT_ID_LENGTH_MAX


# Keys of the `regulator/` namespace (the module docstring says what each holds).
RULES: Final = "rules"
LIMITS: Final = "limits"
NEXT_ALERT: Final = "next_alert"


def listed_key(account: str) -> str:
    return f"listed/{account}"


def alert_key(number: int) -> str:
    return f"alert/{number}"


def account_alerts_key(account: str) -> str:
    return f"account_alerts/{account}"


def recent_key(account: str) -> str:
    return f"recent/{account}"


def freeze_key(account: str) -> str:
    return f"freeze/{account}"


def no_rules() -> dict[str, Any]:
    return {"single_transfer_max": None, "velocity": None, "listed": []}


class Regulator(Contract):
    name = CONTRACT
    version = 1

    @classmethod
    def genesis_state(cls, genesis: Genesis) -> dict[str, Any]:
        del genesis
        return {RULES: no_rules(), LIMITS: _limits(no_rules()), NEXT_ALERT: 0}

    # ------------------------------------------------------------------ rules

    @method("set_rules")
    def set_rules(self, ctx: Context, args: dict[str, Any]) -> None:
        """Replace the whole rule set; an absent argument switches that rule off."""
        require_regulator(ctx)
        rules: dict[str, Any] = {
            "single_transfer_max": _optional_max(args),
            "velocity": _optional_velocity(args),
            "listed": _listed(ctx, args),
        }
        for account in (ctx.get(RULES) or no_rules())["listed"]:
            ctx.delete(listed_key(account))
        for account in rules["listed"]:
            ctx.put(listed_key(account), True)
        ctx.put(RULES, rules)
        ctx.put(LIMITS, _limits(rules))
        ctx.emit("rules_set", by=ctx.caller, **rules)

    # ------------------------------------------------------------------ escrow key

    @method("set_escrow_key")
    def set_escrow_key(self, ctx: Context, args: dict[str, Any]) -> int:
        """Set or rotate the escrow key to its next version (a passed governance proposal
        only); returns the version. Records sealed before keep their wrap to the older key
        until a regulator account rewraps them (`vault.rewrap`)."""
        ctx.require(
            ctx.caller == governance_state.CALLER,
            "not_authorised",
            "only a passed governance proposal sets the escrow key",
        )
        public_key = regulator_state.escrow_key_arg(ctx, args)["public_key"]
        record = regulator_state.read_escrow_keys(ctx.read_other)
        updated = regulator_state.with_escrow_key(record, public_key, ctx.height)
        ctx.put(regulator_state.ESCROW_KEY, updated)
        version = int(updated["current"])
        ctx.emit("escrow_key_set", version=version, public_key=public_key)
        return version

    # ------------------------------------------------------------------ observation

    @method("observe_transfer")
    def observe_transfer(self, ctx: Context, args: dict[str, Any]) -> None:
        """Check one transfer against the rules; raise alerts; never refuse it."""
        if ctx.caller != ASSET_CALLER:  # (not `require`: one call fewer, every transfer)
            ctx.fail("not_authorised", "only the asset contract reports")
        source = arg_str(args, "source", max_length=ACCOUNT_ID_MAX)
        target = arg_str(args, "target", max_length=ACCOUNT_ID_MAX)
        details: dict[str, Any] = {
            "source": source,
            "target": target,
            "currency": arg_str(args, "currency", max_length=8),
            "amount": arg_int(args, "amount", minimum=1),
        }
        limits = ctx.get(LIMITS) or _limits(no_rules())
        limit = limits["single_transfer_max"]
        if limit is not None and details["amount"] > limit:
            raise_alert(ctx, ALERT_LARGE, source, {**details, "limit": limit})
        if limits["velocity"] is not None:
            _observe_velocity(ctx, limits["velocity"], details)
        if ctx.has(listed_key(source)):
            raise_alert(ctx, ALERT_LISTED, source, details)
        if target != source and ctx.has(listed_key(target)):
            raise_alert(ctx, ALERT_LISTED, target, details)

    # ------------------------------------------------------------------ supervision queries

    @method("supervise_account")
    def supervise_account(self, ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
        """An account's record, balances and latest alerts (read-only)."""
        require_regulator(ctx)
        account = arg_str(args, "account", max_length=ACCOUNT_ID_MAX)
        numbers = ctx.get(account_alerts_key(account), [])
        return {
            "account": account,
            "record": identity_state.account_record(ctx, account),
            "balances": {c: asset.balance(ctx, account, c) for c in _currencies(ctx, args)},
            "alerts": [_numbered(ctx, n) for n in numbers],
            "freeze": ctx.get(freeze_key(account)),
        }

    @method("list_alerts")
    def list_alerts(self, ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
        """Alerts numbered from `from_n` (default 0), at most `limit` (default and max 100)."""
        require_regulator(ctx)
        start = arg_int(args, "from_n", minimum=0) if "from_n" in args else 0
        limit = arg_int(args, "limit", minimum=1) if "limit" in args else LIST_ALERTS_MAX
        end = min(int(ctx.get(NEXT_ALERT, 0)), start + min(limit, LIST_ALERTS_MAX))
        return {
            "alerts": [_numbered(ctx, n) for n in range(start, end)],
            "next": max(start, end),
        }

    @method("list_conflicts")
    def list_conflicts(self, ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
        """The oracles' conflicting attestations (oracle contract), numbered from `from_n`
        (default 0), at most `limit` (default and max 100)."""
        require_regulator(ctx)
        start = arg_int(args, "from_n", minimum=0) if "from_n" in args else 0
        limit = arg_int(args, "limit", minimum=1) if "limit" in args else LIST_ALERTS_MAX
        end = min(oracle_state.conflict_count(ctx.read_other), start + min(limit, LIST_ALERTS_MAX))
        conflicts = [
            {"n": n, **(oracle_state.read_conflict(ctx.read_other, n) or {})}
            for n in range(start, end)
        ]
        return {"conflicts": conflicts, "next": max(start, end)}

    @method("list_data_grants")
    def list_data_grants(self, ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
        """Every data-sharing grant (datashare contract), numbered from `from_n` (default 0),
        at most `limit` (default and max 100), with its consent and revocation."""
        require_regulator(ctx)
        count = datashare_state.grant_count(ctx.read_other)
        grants, following = datashare_state.page(ctx.read_other, args, count, "grant")
        return {"grants": grants, "next": following}

    @method("list_data_accesses")
    def list_data_accesses(self, ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
        """Every logged access to shared data (datashare contract), numbered from `from_n`
        (default 0), at most `limit` (default and max 100)."""
        require_regulator(ctx)
        count = datashare_state.access_count(ctx.read_other)
        accesses, following = datashare_state.page(ctx.read_other, args, count, "access")
        return {"accesses": accesses, "next": following}

    # ------------------------------------------------------------------ emergency freeze

    @method("emergency_freeze")
    def emergency_freeze(self, ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
        """Freeze `account` for `blocks` heights after this one (1..1000), through identity."""
        require_regulator(ctx)
        account = arg_str(args, "account", max_length=ACCOUNT_ID_MAX)
        blocks = arg_int(args, "blocks", minimum=1)
        ctx.require(
            blocks <= FREEZE_BLOCKS_MAX,
            "freeze_too_long",
            f"an emergency freeze lasts at most {FREEZE_BLOCKS_MAX} blocks; "
            "longer needs the committee",
        )
        record = identity_state.account_record(ctx, account)
        ctx.require(record is not None, "unknown_account", f"no account {account!r}")
        assert record is not None
        ctx.require(
            not identity_state.permanently_frozen(record),
            "already_frozen",
            f"{account} is frozen by the committee",
        )
        freeze = {"until_height": ctx.height + blocks, "by": ctx.caller, "height": ctx.height}
        ctx.invoke(
            identity_state.CONTRACT,
            "freeze_account",
            {"account": account, "until_height": freeze["until_height"]},
        )
        ctx.put(freeze_key(account), freeze)
        ctx.emit("emergency_freeze", account=account, **freeze)
        return freeze

    @method("lift_freeze")
    def lift_freeze(self, ctx: Context, args: dict[str, Any]) -> None:
        """End this contract's own emergency freeze of `account` early."""
        require_regulator(ctx)
        account = arg_str(args, "account", max_length=ACCOUNT_ID_MAX)
        freeze = ctx.get(freeze_key(account))
        record = identity_state.account_record(ctx, account) or {}
        ctx.require(
            freeze is not None
            and ctx.height <= freeze["until_height"]
            and identity_state.emergency_freeze_until(record) == freeze["until_height"],
            "no_emergency_freeze",
            f"{account} has no emergency freeze of the regulator's in force",
        )
        ctx.invoke(identity_state.CONTRACT, "unfreeze_account", {"account": account})
        ctx.delete(freeze_key(account))
        ctx.emit("freeze_lifted", account=account, by=ctx.caller)


# ---------------------------------------------------------------------- helpers


def is_regulator(ctx: Context, account: str) -> bool:
    """An account whose sponsor member has the role "regulator" and an unrevoked certificate."""
    sponsor = identity_state.member_of(ctx, account)
    member = None if sponsor is None else identity_state.member_record(ctx, sponsor)
    if member is None or member["certificate_revoked"]:
        return False
    return REGULATOR_ROLE in member["roles"]


def require_regulator(ctx: Context) -> None:
    ctx.require(
        is_regulator(ctx, ctx.caller), "not_authorised", "only regulator accounts may do this"
    )


def raise_alert(ctx: Context, kind: str, account: str, details: dict[str, Any]) -> int:
    number = int(ctx.get(NEXT_ALERT, 0))
    alert = {"kind": kind, "account": account, "details": details, "height": ctx.height}
    ctx.put(alert_key(number), alert)
    ctx.put(NEXT_ALERT, number + 1)
    latest = [*ctx.get(account_alerts_key(account), []), number]
    ctx.put(account_alerts_key(account), latest[-ACCOUNT_ALERTS_KEPT:])
    ctx.emit("alert", n=number, **alert)
    return number


def _observe_velocity(ctx: Context, velocity: dict[str, int], details: dict[str, Any]) -> None:
    """Keep the source's latest transfer heights; alert when the window holds too many."""
    source = details["source"]
    count, window = velocity["count"], velocity["window_blocks"]
    earliest = ctx.height - window + 1
    heights = [h for h in ctx.get(recent_key(source), []) if h >= earliest]
    heights = [*heights, ctx.height][-(count + 1) :]
    ctx.put(recent_key(source), heights)
    if len(heights) > count:
        raise_alert(ctx, ALERT_VELOCITY, source, {**details, **velocity})


def _limits(rules: dict[str, Any]) -> dict[str, Any]:
    return {key: rules[key] for key in ("single_transfer_max", "velocity")}


def _optional_max(args: dict[str, Any]) -> int | None:
    if args.get("single_transfer_max") is None:
        return None
    return _bounded(args, "single_transfer_max", AMOUNT_MAX)


def _optional_velocity(args: dict[str, Any]) -> dict[str, int] | None:
    if args.get("velocity_count") is None and args.get("velocity_window_blocks") is None:
        return None
    return {
        "count": _bounded(args, "velocity_count", VELOCITY_COUNT_MAX),
        "window_blocks": _bounded(args, "velocity_window_blocks", VELOCITY_WINDOW_MAX),
    }


def _bounded(args: dict[str, Any], name: str, maximum: int) -> int:
    return arg_int(args, name, minimum=1, maximum=maximum)


def _listed(ctx: Context, args: dict[str, Any]) -> list[str]:
    if args.get("listed") is None:
        return []
    listed = arg_list(args, "listed", max_length=LISTED_MAX)
    ctx.require(
        all(isinstance(a, str) and 0 < len(a) <= ACCOUNT_ID_MAX for a in listed),
        "bad_argument",
        "listed is a list of account ids",
    )
    return sorted(set(listed))


def _currencies(ctx: Context, args: dict[str, Any]) -> list[str]:
    if args.get("currencies") is None:
        return [CURRENCY_DEFAULT]
    currencies = arg_list(args, "currencies", max_length=CURRENCIES_MAX)
    ctx.require(
        all(is_currency(c) for c in currencies),
        "bad_argument",
        "currencies is a list of three-letter codes",
    )
    return list(dict.fromkeys(currencies))


def _numbered(ctx: Context, number: int) -> dict[str, Any]:
    return {"n": number, **ctx.get(alert_key(number), {})}
