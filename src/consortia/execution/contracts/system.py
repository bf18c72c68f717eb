"""`sys` v1: which contract code runs on this chain, and which protocol version is in force.

Owns the `sys/` namespace and the only accessors for it: `contract/<name>` deployment records
(`deployment_key`, `new_deployment`, `read_deployment`, `deployment`, `live_deployment`,
`deployment_runs`; genesis writes one per built-in contract through `new_deployment`, and the
engine admits a transaction only when its contract's record is active and names the
transaction's contract version) and `protocol` = {"version", "next_version",
"activation_height"} (`read_protocol`, `protocol_in_force`, `protocol_check`).

Every method that changes state is callable ONLY by "contract:governance": an intervention
happens after a committee vote, never on an account's say-so. `protocol` is a read-only query.

This module must never drop a version from a record's `versions` (the chain's history names
them), never revive a retired contract, never freeze or retire `sys` or `governance` (nothing
could unfreeze them), and never read anything but the context: `protocol_check` is pure.
"""

from __future__ import annotations

from typing import Any, Final

from consortia.execution.contract import (
    Context,
    Contract,
    StateReader,
    arg_int,
    arg_str,
    contract_caller,
    frozen_now,
    method,
    read_record,
)
from consortia.execution.contracts import governance_state
from consortia.types.genesis import Genesis

CONTRACT: Final = "sys"
CALLER: Final = contract_caller(CONTRACT)
PROTECTED_CONTRACTS: Final = frozenset({CONTRACT, governance_state.CONTRACT})
CONTRACT_NAME_LENGTH_MAX: Final = 64
PROTOCOL_VERSION_MAX: Final = 2**16
PROTOCOL_KEY: Final = "protocol"
ACTIVE: Final = "active"
FROZEN: Final = "frozen"
RETIRED: Final = "retired"

Versions = list[int] | tuple[int, ...] | set[int] | frozenset[int]


class System(Contract):
    name = CONTRACT
    version = 1

    @classmethod
    def genesis_state(cls, genesis: Genesis) -> dict[str, Any]:
        # The deployment records (`contract/<name>`) come from consortia.execution.genesis.
        return {
            PROTOCOL_KEY: {
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
        name = contract_name_arg(args)
        version = arg_int(args, "version", minimum=1)
        ctx.require(not ctx.has(deployment_key(name)), "already_deployed", f"{name} exists")
        _require_code(ctx, name, version)
        ctx.put(deployment_key(name), new_deployment(version))
        ctx.migrate(name, version, 0)
        ctx.emit("contract_deployed", contract=name, version=version)

    @method("upgrade")
    def upgrade(self, ctx: Context, args: dict[str, Any]) -> None:
        """Activate a newer version (earlier ones stay listed) and run its `migrate`."""
        _require_governance(ctx)
        name = contract_name_arg(args)
        version = arg_int(args, "version", minimum=1)
        record = live_deployment(ctx, name)
        previous = int(record["active_version"])
        ctx.require(
            version > previous, "version_not_newer", f"{name} already runs version {previous}"
        )
        _require_code(ctx, name, version)
        record["versions"] = [*record["versions"], version]
        record["active_version"] = version
        ctx.put(deployment_key(name), record)
        ctx.migrate(name, version, previous)
        ctx.emit("contract_upgraded", contract=name, version=version, from_version=previous)

    @method("freeze")
    def freeze(self, ctx: Context, args: dict[str, Any]) -> None:
        """Refuse every call into a contract, for good or through `until_height` inclusive."""
        _require_governance(ctx)
        name = require_unprotected(ctx, contract_name_arg(args))
        record = live_deployment(ctx, name)
        until = None
        if "until_height" in args:
            until = arg_int(args, "until_height", minimum=ctx.height)
        _store_status(ctx, name, record, FROZEN, until)
        ctx.emit("contract_frozen", contract=name, until_height=until)

    @method("unfreeze")
    def unfreeze(self, ctx: Context, args: dict[str, Any]) -> None:
        _require_governance(ctx)
        name = contract_name_arg(args)
        record = live_deployment(ctx, name)
        ctx.require(record["status"] == FROZEN, "not_frozen", f"{name} is not frozen")
        _store_status(ctx, name, record, ACTIVE)
        ctx.emit("contract_unfrozen", contract=name)

    @method("retire")
    def retire(self, ctx: Context, args: dict[str, Any]) -> None:
        """Retire a contract for good: no call into it is ever accepted again."""
        _require_governance(ctx)
        name = require_unprotected(ctx, contract_name_arg(args))
        _store_status(ctx, name, live_deployment(ctx, name), RETIRED)
        ctx.emit("contract_retired", contract=name)

    @method("schedule_protocol_upgrade")
    def schedule_protocol_upgrade(self, ctx: Context, args: dict[str, Any]) -> None:
        """Schedule (or reschedule) the switch to a newer protocol version at a future height."""
        _require_governance(ctx)
        version = arg_int(args, "version", minimum=1)
        activation = arg_int(args, "activation_height", minimum=ctx.height + 1)
        ctx.require(version <= PROTOCOL_VERSION_MAX, "bad_argument", "version is too large")
        record = protocol_in_force(ctx)
        ctx.require(
            version > record["version"],
            "version_not_newer",
            f"the chain already runs protocol version {record['version']}",
        )
        record["next_version"] = version
        record["activation_height"] = activation
        ctx.put(PROTOCOL_KEY, record)
        ctx.emit("protocol_upgrade_scheduled", version=version, activation_height=activation)

    @method("protocol")
    def protocol(self, ctx: Context, args: dict[str, Any]) -> dict[str, Any]:
        """The protocol record, and the version in force at this height."""
        del args
        record: dict[str, Any] = dict(ctx.get(PROTOCOL_KEY))
        record["version_in_force"] = settled_protocol(record, ctx.height)["version"]
        return record


# ---------------------------------------------------------------------- deployment records


def deployment_key(name: str) -> str:
    """The key of `name`'s deployment record in the `sys` namespace."""
    return f"contract/{name}"


def new_deployment(version: int) -> dict[str, Any]:
    """The record of a contract just deployed at `version` (at genesis or by `deploy`)."""
    return {"versions": [version], "active_version": version, "status": ACTIVE}


def read_deployment(read: StateReader, name: str) -> dict[str, Any] | None:
    """`name`'s deployment record, or None when the chain never deployed it."""
    return read_record(read, CONTRACT, deployment_key(name))


def deployment(ctx: Context, name: str) -> dict[str, Any] | None:
    """`read_deployment` from inside a call (written out: every transfer asks it, for the
    regulator)."""
    record = ctx.read_other(CONTRACT, deployment_key(name))
    assert record is None or isinstance(record, dict), f"{CONTRACT}/{name} holds a map"
    return record


def live_deployment(ctx: Context, name: str) -> dict[str, Any]:
    """The deployment record of a contract that exists and is not retired, or a refusal."""
    record = deployment(ctx, name)
    ctx.require(record is not None, "unknown_contract", f"no contract {name!r}")
    assert record is not None
    ctx.require(record["status"] != RETIRED, "contract_retired", f"{name} is retired")
    return record


def deployment_runs(record: dict[str, Any], height: int) -> bool:
    """Whether calls into the contract run at `height`: not retired, and no freeze holds."""
    status: str = record["status"]
    if status == FROZEN:
        return not frozen_now(record, height)
    return status != RETIRED


def require_unprotected(ctx: Context, name: str) -> str:
    """Refuse to freeze or retire `sys` or `governance`: nothing could undo it."""
    ctx.require(
        name not in PROTECTED_CONTRACTS,
        "protected_contract",
        f"{name} cannot be frozen or retired: nothing could undo it",
    )
    return name


# ---------------------------------------------------------------------- protocol version


def read_protocol(read: StateReader) -> dict[str, Any] | None:
    """The `protocol` record, or None on a chain without `sys`."""
    record = read(CONTRACT, PROTOCOL_KEY)
    return record if isinstance(record, dict) else None


def protocol_in_force(ctx: Context) -> dict[str, Any]:
    """The `protocol` record as it stands at this call's height."""
    return settled_protocol(ctx.read_other(CONTRACT, PROTOCOL_KEY), ctx.height)


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
    record = read_protocol(state_reader)
    if record is None:
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
        ctx.caller == governance_state.CALLER,
        "not_authorised",
        "only governance changes deployments and the protocol version",
    )


def _require_code(ctx: Context, name: str, version: int) -> None:
    ctx.require(
        ctx.has_code(name, version),
        "unknown_contract_code",
        f"this build has no code for {name} version {version}",
    )


def contract_name_arg(args: dict[str, Any]) -> str:
    """The `contract` argument: a contract name."""
    return arg_str(args, "contract", max_length=CONTRACT_NAME_LENGTH_MAX)


def _store_status(
    ctx: Context, name: str, record: dict[str, Any], status: str, until: int | None = None
) -> None:
    """Write `name`'s record with `status`; a freeze through a height keeps `frozen_until`."""
    record["status"] = status
    record.pop("frozen_until", None)
    if until is not None:
        record["frozen_until"] = until
    ctx.put(deployment_key(name), record)
