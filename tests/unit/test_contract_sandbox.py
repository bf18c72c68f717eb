"""A contract reaches the world only through its Context, and a Context only through its Host.

Contracts run in the node's own Python process, so this is a boundary of structure, not a
security boundary against hostile code (built-in contracts are reviewed code shipped with the
node). What it rules out is a contract, or a later change to the framework, reaching around
the gas meter, the call overlays and the import allow-list:

- walking every object reachable as data from a Context handed to a contract (attributes,
  container items, the object behind a bound method, closure cells) finds no Engine, no
  committed state or state tree (nor its node store) and no ContractRegistry: not for a
  transaction's call, not for a nested call, not
  for the context `sys` hands a contract's `migrate`;
- committed state is visible to a call only as a read-only view;
- only `sys` may run a contract's `migrate`;
- nothing a contract module may import (the allow-list of test_contract_imports.py) names the
  engine, the state tree, the registry or their modules, and no contract module binds the
  `consortia` package itself (`import consortia.x` would hand it every module).
"""

from __future__ import annotations

import ast
import importlib
import types
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from consortia.execution import committed as state_module
from consortia.execution import engine as engine_module
from consortia.execution import genesis as genesis_module
from consortia.execution import jmt as jmt_module
from consortia.execution import jmt_write as jmt_write_module
from consortia.execution import registry as registry_module
from consortia.execution.block_run import BlockRun
from consortia.execution.committed import CommittedState
from consortia.execution.contract import Context, Contract, Meter, method
from consortia.execution.contracts.system import System
from consortia.execution.engine import Engine
from consortia.execution.jmt import JellyfishTree, MemoryNodeStore
from consortia.execution.registry import ContractRegistry
from tests.execution_helpers import Ledger, make_ledger
from tests.unit.test_contract_imports import (
    ALLOWED,
    CONTRACTS_PACKAGE,
    contract_modules,
    violations,
)

SEALED = (Engine, CommittedState, JellyfishTree, MemoryNodeStore, ContractRegistry)
SEALED_MODULES = (
    engine_module,
    state_module,
    jmt_module,
    jmt_write_module,
    registry_module,
    genesis_module,
)
# Leaves of the walk: values, and shared code (a class or a module is not something a call was
# handed, and every Python object reaches its class).
LEAVES = (str, bytes, int, float, complex, bool, type(None), type, types.ModuleType, types.CodeType)

# What each probe saw: one list of reachable objects per Context it was handed.
SEEN: list[list[object]] = []


def reachable(root: object) -> list[object]:
    """Every object reachable from `root` as data.

    Follows instance attributes (`__dict__` and every `__slots__` of the class), the items of
    lists, tuples, sets and mappings (read-only views included), the object behind a bound
    method and a function's closure cells and defaults. Stops at classes, modules and code: a
    class or a module is shared code, not something a call was handed.
    """
    found: list[object] = []
    seen: set[int] = set()
    stack = [root]
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        found.append(item)
        if not isinstance(item, LEAVES):
            stack.extend(_children(item))
    return found


def _children(item: object) -> Iterator[object]:
    if isinstance(item, Mapping):
        for key, value in item.items():
            yield key
            yield value
    elif isinstance(item, list | tuple | set | frozenset):
        yield from item
    if isinstance(item, types.MethodType):
        yield item.__self__
        yield item.__func__
    if isinstance(item, types.FunctionType):
        yield from (cell.cell_contents for cell in item.__closure__ or ())
        yield from item.__defaults__ or ()
        yield from (item.__kwdefaults__ or {}).values()
    yield from getattr(item, "__dict__", {}).values()
    for klass in type(item).__mro__:
        for slot in getattr(klass, "__slots__", ()):
            if slot not in ("__dict__", "__weakref__") and hasattr(item, slot):
                yield getattr(item, slot)


class Probe(Contract):
    """Records what its Context reaches; optionally calls itself once more, nested."""

    name = "probe"
    version = 1

    @method("look")
    def look(self, ctx: Context, args: dict[str, Any]) -> None:
        SEEN.append(reachable(ctx))
        if args.get("nested"):
            ctx.invoke("probe", "look", {})

    @method("migrate_other")
    def migrate_other(self, ctx: Context, args: dict[str, Any]) -> None:
        """Not `sys`: asks to run another contract's migrate, which the host refuses."""
        ctx.migrate("late", 1, 0)

    @method("write_committed")
    def write_committed(self, ctx: Context, args: dict[str, Any]) -> None:
        """Tries to write committed state through what its Context reaches."""
        for item in reachable(ctx):
            if isinstance(item, Mapping) and not isinstance(item, dict):
                item[b"probe/forged"] = b"\x01"  # type: ignore[index]


class Late(Contract):
    """Shipped but not deployed at genesis: `sys` runs its migrate when it is deployed."""

    name = "late"
    version = 1

    def migrate(self, ctx: Context, from_version: int) -> None:
        SEEN.append(reachable(ctx))


class StandInGovernance(Contract):
    """Calls `sys` as "contract:governance" does, without a committee vote."""

    name = "governance"
    version = 1

    @method("deploy")
    def deploy(self, ctx: Context, args: dict[str, Any]) -> None:
        ctx.invoke("sys", "deploy", {"contract": "late", "version": 1})


@pytest.fixture
def chain() -> Ledger:
    SEEN.clear()
    ledger = make_ledger([System, StandInGovernance, Probe], {"alice": ("bank-0", 0)})
    ledger.engine.registry = ContractRegistry([System, StandInGovernance, Probe, Late])
    return ledger


def _sealed(objects: list[object]) -> list[str]:
    found = [type(item).__name__ for item in objects if isinstance(item, SEALED)]
    found += [item.__name__ for item in objects if item in SEALED_MODULES]
    return found


def test_the_walk_finds_what_an_engine_reaches(chain: Ledger) -> None:
    """The walk is not blind: from the engine itself it finds the state tree and registry."""
    found = reachable(chain.engine)
    assert any(isinstance(item, CommittedState) for item in found)
    assert any(isinstance(item, JellyfishTree) for item in found)
    assert any(isinstance(item, ContractRegistry) for item in found)


def test_a_call_and_a_nested_call_reach_nothing_but_their_host(chain: Ledger) -> None:
    (receipt,) = chain.block(chain.tx("alice", "probe", "look", {"nested": True}))
    assert receipt.ok, receipt
    assert len(SEEN) == 2  # the transaction's call and the nested one
    for objects in SEEN:
        assert _sealed(objects) == []
        assert any(isinstance(item, BlockRun) for item in objects)  # the Host
        assert any(isinstance(item, Meter) for item in objects)
        contexts = [item for item in objects if isinstance(item, Context)]
        assert {type(context.host) for context in contexts} == {BlockRun}


def test_a_migrate_reaches_nothing_but_its_host(chain: Ledger) -> None:
    (receipt,) = chain.block(chain.tx("alice", "governance", "deploy"))
    assert receipt.ok, receipt
    (objects,) = SEEN
    assert _sealed(objects) == []
    (context,) = [item for item in objects if isinstance(item, Context)]
    assert (context.contract, context.caller) == ("late", "contract:sys")


def test_only_sys_runs_a_migrate(chain: Ledger) -> None:
    (receipt,) = chain.block(chain.tx("alice", "probe", "migrate_other"))
    assert (receipt.ok, receipt.code) == (False, "not_authorised")
    assert SEEN == []


def test_committed_state_is_read_only_to_a_call(chain: Ledger) -> None:
    root = chain.engine.root
    (receipt,) = chain.block(chain.tx("alice", "probe", "write_committed"))
    assert (receipt.ok, receipt.code, receipt.message) == (False, "contract_fault", "TypeError")
    assert chain.engine.query("probe", "forged") is None
    assert chain.engine.root != root  # the nonce moved, and nothing else
    assert chain.engine.state.keys_with_prefix(b"probe/") == []


def _allowed_modules() -> list[types.ModuleType]:
    names = [name for name in ALLOWED if name.startswith("consortia.")]
    names += [
        ".".join(path.relative_to(path.parents[3]).with_suffix("").parts)
        for path in contract_modules()
    ]
    return [importlib.import_module(name.removesuffix(".__init__")) for name in sorted(names)]


@pytest.mark.parametrize("module", _allowed_modules(), ids=lambda m: m.__name__)
def test_no_allowed_module_names_the_engine_state_or_registry(module: types.ModuleType) -> None:
    exported = vars(module)
    leaks = [name for name, value in exported.items() if value in (*SEALED, BlockRun)]
    leaks += [name for name, value in exported.items() if value in SEALED_MODULES]
    assert leaks == []


@pytest.mark.parametrize(
    "source",
    [
        "from consortia.execution.engine import Engine",
        "from consortia.execution.engine import BlockRun",
        "from consortia.execution.block_run import BlockRun",
        "from .. import block_run",
        "from consortia.execution.committed import CommittedState",
        "from consortia.execution.jmt import JellyfishTree",
        "from consortia.execution.registry import ContractRegistry",
        "from consortia.execution import registry",
        "from consortia.execution.genesis import engine_from_genesis",
        "from ..registry import ContractRegistry",
        "from .. import committed",
        "from .. import jmt",
    ],
)
def test_the_allow_list_refuses_the_engine_state_and_registry(source: str) -> None:
    assert violations(source)


@pytest.mark.parametrize("path", contract_modules(), ids=lambda p: p.name)
def test_no_contract_module_binds_the_consortia_package(path: Any) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    bare = [
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
        if alias.name.startswith("consortia") and alias.asname is None
    ]
    assert bare == [], f"{path.name}: `import {bare[0]}` binds `consortia`; use `from ... import`"


def test_the_contracts_package_is_what_the_allow_list_names() -> None:
    assert CONTRACTS_PACKAGE == "consortia.execution.contracts"
