"""`sys` v1: which contract code runs on this chain, and which protocol version is in force.

State: `contract/<name>` deployment records (written for every built-in contract at genesis by
consortia.execution.genesis; the engine admits a transaction only when its contract's record is
active and names the transaction's contract version) and `protocol` =
{"version", "next_version", "activation_height"}.

Every method that changes state is callable ONLY by "contract:governance": an intervention
happens after a committee vote, never on an account's say-so. `protocol` is a read-only query.

This module must never drop a version from a record's `versions` (the chain's history names
them), never revive a retired contract, never freeze or retire `sys` or `governance` (nothing
could unfreeze them), and never read anything but the context: `protocol_check` is pure.
"""

from __future__ import annotations

from typing import Any, Protocol

from consortia.execution.contract import (
    CALL_DEPTH_MAX,
    Context,
    Contract,
    arg_int,
    arg_str,
    method,
)
from consortia.types.genesis import Genesis

GOVERNANCE_CALLER = "contract:governance"
SYSTEM_CALLER = "contract:sys"
PROTECTED_CONTRACTS = frozenset({"sys", "governance"})
CONTRACT_NAME_LENGTH_MAX = 64
PROTOCOL_VERSION_MAX = 2**16

Versions = list[int] | tuple[int, ...] | set[int] | frozenset[int]


class StateReader(Protocol):
    """Reads committed state: (contract, key) -> value, or None when absent. `Engine.query`."""

    def __call__(self, contract: str, key: str, /) -> Any: ...


class System(Contract):
    name = "sys"
    version = 1

    @classmethod
    def genesis_state(cls, genesis: Genesis) -> dict[str, Any]:
        # The deployment records (`contract/<name>`) come from consortia.execution.genesis.
        return {
            "protocol": {
                "version": genesis.protocol_version,
                "next_version": None,
                "activation_height": None,
            }
        }

    @method("deploy")
    def deploy(self, ctx: Context, args: dict[str, Any]) -> None:
        """Deploy code this build ships, for a contract the chain has never had.

        The new code's `migrate(ctx, 0)` runs once, in its own namespace: version 0 stands for
        "nothing yet", so a contract deployed after genesis can write its initial state.
        """
        _require_governance(ctx)
        name = _contract_name(args)
        version = arg_int(args, "version", minimum=1)
        ctx.require(not ctx.has(f"contract/{name}"), "already_deployed", f"{name} exists")
        _require_code(ctx, name, version)
        record = {"versions": [version], "active_version": version, "status": "active"}
        ctx.put(f"contract/{name}", record)
        _migrate(ctx, name, version, 0)
        ctx.emit("contract_deployed", contract=name, version=version)

    @method("upgrade")
    def upgrade(self, ctx: Context, args: dict[str, Any]) -> None:
        """Activate a newer version (earlier ones stay listed) and run its `migrate`."""
        _require_governance(ctx)
        name = _contract_name(args)
        version = arg_int(args, "version", minimum=1)
        record = _live_record(ctx, name)
        previous = int(record["active_version"])
        ctx.require(
            version > previous, "version_not_newer", f"{name} already runs version {previous}"
        )
        _require_code(ctx, name, version)
        record["versions"] = [*record["versions"], version]
        record["active_version"] = version
        ctx.put(f"contract/{name}", record)
        _migrate(ctx, name, version, previous)
        ctx.emit("contract_upgraded", contract=name, version=version, from_version=previous)

    @method("freeze")
    def freeze(self, ctx: Context, args: dict[str, Any]) -> None:
        """Refuse every call into a contract, for good or through `until_height` inclusive."""
        _require_governance(ctx)
        name = _contract_name(args)
        _require_unprotected(ctx, name)
        record = _live_record(ctx, name)
        record["status"] = "frozen"
        record.pop("frozen_until", None)
        if "until_height" in args:
            until = arg_int(args, "until_height", minimum=ctx.height)
            record["frozen_until"] = until
        ctx.put(f"contract/{name}", record)
        ctx.emit("contract_frozen", contract=name, until_height=record.get("frozen_until"))

    @method("unfreeze")
    def unfreeze(self, ctx: Context, args: dict[str, Any]) -> None:
        _require_governance(ctx)
        name = _contract_name(args)
        record = _live_record(ctx, name)
        ctx.require(record["status"] == "frozen", "not_frozen", f"{name} is not frozen")
        record["status"] = "active"
        record.pop("frozen_until", None)
        ctx.put(f"contract/{name}", record)
        ctx.emit("contract_unfrozen", contract=name)

    @method("retire")
    def retire(self, ctx: Context, args: dict[str, Any]) -> None:
        """Retire a contract for good: no call into it is ever accepted again."""
        _require_governance(ctx)
        name = _contract_name(args)
        _require_unprotected(ctx, name)
        record = _live_record(ctx, name)
        record["status"] = "retired"
        record.pop("frozen_until", None)
        ctx.put(f"contract/{name}", record)
        ctx.emit("contract_retired", contract=name)

    @method("schedule_protocol_upgrade")
    def schedule_protocol_upgrade(self, ctx: Context, args: dict[str, Any]) -> None:
        """Schedule (or reschedule) the switch to a newer protocol version at a future height."""
        _require_governance(ctx)
        version = arg_int(args, "version", minimum=1)
        activation = arg_int(args, "activation_height", minimum=ctx.height + 1)
        ctx.require(version <= PROTOCOL_VERSION_MAX, "bad_argument", "version is too large")
        record = settled_protocol(ctx.get("protocol"), ctx.height)
        ctx.require(
            version > record["version"],
            "version_not_newer",
            f"the chain already runs protocol version {record['version']}",
        )
        record["next_version"] = version
        record["activation_height"] = activation
        ctx.put("protocol", record)
        ctx.emit("protocol_upgrade_scheduled", version=version, activation_height=activation)

    @method("protocol")
    def protocol(self, ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
        """The protocol record, and the version in force at this height."""
        del args
        record: dict[str, Any] = dict(ctx.get("protocol"))
        record["version_in_force"] = settled_protocol(record, ctx.height)["version"]
        return record


# ---------------------------------------------------------------------- pure helpers


def settled_protocol(record: dict[str, Any], height: int) -> dict[str, Any]:
    """The protocol record as it stands at `height`: a reached activation becomes current."""
    activation = record.get("activation_height")
    if activation is not None and height >= activation:
        return {"version": record["next_version"], "next_version": None, "activation_height": None}
    return dict(record)


def protocol_check(
    state_reader: StateReader, height: int, supported_versions: Versions
) -> str | None:
    """Why a node supporting `supported_versions` must not execute the block at `height`.

    None when it may. The node calls this before executing each block and stops on a message.
    """
    supported = sorted(set(supported_versions))
    record = state_reader("sys", "protocol")
    if not isinstance(record, dict):
        return None
    activation = record.get("activation_height")
    upcoming = record.get("next_version")
    if activation is not None and height >= activation and upcoming not in supported:
        if height == activation:
            return (
                f"this node supports protocol versions {supported}; the chain switches to "
                f"version {upcoming} at height {activation}: upgrade before then"
            )
        return (
            f"this node supports protocol versions {supported}; the chain switched to "
            f"version {upcoming} at height {activation}: upgrade the node"
        )
    current = record.get("version")
    if (activation is None or height < activation) and current not in supported:
        return (
            f"this node supports protocol versions {supported}; the chain runs protocol "
            f"version {current}: upgrade the node"
        )
    return None


# ---------------------------------------------------------------------- checks


def _require_governance(ctx: Context) -> None:
    ctx.require(
        ctx.caller == GOVERNANCE_CALLER,
        "not_authorised",
        "only governance changes deployments and the protocol version",
    )


def _require_unprotected(ctx: Context, name: str) -> None:
    ctx.require(
        name not in PROTECTED_CONTRACTS,
        "protected_contract",
        f"{name} cannot be frozen or retired: nothing could undo it",
    )


def _require_code(ctx: Context, name: str, version: int) -> None:
    ctx.require(
        ctx.run.engine.registry.has(name, version),
        "unknown_contract_code",
        f"this build has no code for {name} version {version}",
    )


def _contract_name(args: dict[str, Any]) -> str:
    return arg_str(args, "contract", max_length=CONTRACT_NAME_LENGTH_MAX)


def _live_record(ctx: Context, name: str) -> dict[str, Any]:
    """The deployment record of a contract that exists and is not retired."""
    record = ctx.get(f"contract/{name}")
    ctx.require(isinstance(record, dict), "unknown_contract", f"no contract {name!r}")
    assert isinstance(record, dict)
    ctx.require(record["status"] != "retired", "contract_retired", f"{name} is retired")
    return record


def _migrate(ctx: Context, name: str, version: int, from_version: int) -> None:
    """Run the new code's `migrate` in the upgraded contract's namespace, as "contract:sys".

    Its writes join this call's: if it fails, the whole upgrade changes nothing.
    """
    ctx.require(ctx.depth < CALL_DEPTH_MAX, "call_too_deep", "the upgrade nests too deep")
    inner = Context(
        run=ctx.run,
        contract=name,
        caller=SYSTEM_CALLER,
        origin=ctx.origin,
        height=ctx.height,
        time_ms=ctx.time_ms,
        meter=ctx.meter,
        depth=ctx.depth + 1,
        events=ctx.events,
    )
    ctx.run.engine.registry.instance(name, version).migrate(inner, from_version)
