"""A validator added by governance joins a running network (in-process nodes over the hub):
it syncs from genesis across the epoch change and its vote is needed for commits after it.
Also who may link to a node: validators only, and no member whose certificate is revoked."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import msgspec

from consortia.execution.contracts import asset, governance_state
from consortia.node.driver import Driver
from consortia.types.encoding import encode
from consortia.types.genesis import Genesis, GenesisAccount, Member
from tests.node_helpers import (
    SUITE,
    Hub,
    account_key,
    call,
    make_driver,
    make_genesis,
    transfer,
    validator_keys,
    wait_for,
)

TREASURIES = [f"bank-{i}.treasury" for i in range(4)]


def consortium() -> Genesis:
    genesis = make_genesis(4)
    treasuries = [
        GenesisAccount(id=name, sponsor=f"bank-{i}", public_key=account_key(name)[1].hex())
        for i, name in enumerate(TREASURIES)
    ]
    members = [*genesis.members, Member(name="bank-4", roles=["validator_operator", "member"])]
    return msgspec.structs.replace(
        genesis, accounts=[*genesis.accounts, *treasuries], members=members
    )


def joining_key() -> tuple[bytes, bytes, bytes]:
    private = SUITE.hash(b"consortia/node-test-key\x00joining")
    public = SUITE.public_key(private)
    return SUITE.hash(public), public, private


def epoch_of(driver: Driver) -> int:
    tip = driver.chain.store.tip()
    return 0 if tip is None else tip.epoch_config.epoch


def balance(driver: Driver, account: str) -> int:
    value = driver.chain.query(asset.CONTRACT, asset.balance_key("CNY", account))
    return int(value or 0)


def test_a_validator_added_by_governance_syncs_and_its_vote_counts(tmp_path: Path) -> None:
    async def scenario() -> None:
        hub = Hub(asyncio.get_running_loop(), random.Random(5))
        genesis = consortium()
        keys = validator_keys(4)
        drivers = [make_driver(hub, genesis, tmp_path, key) for key in keys]
        for driver in drivers:
            driver.start()
        new_id, new_public, _ = joining = joining_key()
        # A random id holding a CA certificate is still no peer: only validators link.
        assert not drivers[0].chain.peer_allowed(new_id)
        proposal = {
            "kind": "add_validator",
            "node_id": new_id.hex(),
            "public_key": new_public.hex(),
            "voting_power": 1,
            "member": "bank-4",
        }
        drivers[0].submit(call(genesis, TREASURIES[0], "governance", "propose", proposal, 0))
        await wait_for(lambda: drivers[0].chain.query("governance", "proposal/1") is not None)
        for voter in TREASURIES[:3]:
            nonce = 1 if voter == TREASURIES[0] else 0
            vote = {"proposal": 1, "approve": True}
            drivers[1].submit(call(genesis, voter, "governance", "vote", vote, nonce))
        await wait_for(lambda: all(epoch_of(d) == 1 for d in drivers), timeout_s=30)
        members = governance_state.validator_members(drivers[2].chain.engine.query)
        assert members[new_id] == "bank-4"
        assert all(d.chain.peer_allowed(new_id) for d in drivers)
        # The new node starts from nothing and syncs across the epoch change.
        newcomer = make_driver(hub, genesis, tmp_path, joining)
        newcomer.start()
        await wait_for(lambda: epoch_of(newcomer) == 1, timeout_s=30)
        # With one founder down, 4 of 5 is a quorum only with the newcomer's vote.
        down = keys[3][0]
        hub.down.add(down)
        running = [*drivers[:3], newcomer]
        for nonce in range(3):
            drivers[0].submit(transfer(genesis, "carol", "dave", 1, nonce))
        await wait_for(lambda: all(balance(d, "dave") == 1_000_003 for d in running), 30)
        # Every certificate formed once node 3 is down needs the newcomer's vote.
        after = max(d.chain.height for d in running) + 2
        await wait_for(lambda: min(d.chain.height for d in running) >= after + 2, 30)
        assert len({encode(d.chain.store.block(after + 2)) for d in running}) == 1
        for height in (after + 1, after + 2):
            assert new_id in _signers(newcomer, height), height
        # Revoking bank-4's certificate cuts its node off at every founder.
        revoke = {"kind": "revoke_certificate", "member": "bank-4"}
        drivers[0].submit(call(genesis, TREASURIES[0], "governance", "propose", revoke, 2))
        await wait_for(lambda: drivers[0].chain.query("governance", "proposal/2") is not None)
        for index, voter in enumerate(TREASURIES[:3]):
            nonce = 3 if index == 0 else 1
            vote = {"proposal": 2, "approve": True}
            drivers[0].submit(call(genesis, voter, "governance", "vote", vote, nonce))
        await wait_for(lambda: not drivers[0].chain.peer_allowed(new_id), timeout_s=30)
        assert drivers[0].chain.peer_allowed(keys[1][0])
        for driver in running:
            driver.close()
        drivers[3].close()

    asyncio.run(scenario())


def _signers(driver: Driver, height: int) -> set[bytes]:
    """Who signed the certificate that block `height` carries (for its parent)."""
    store = driver.chain.store
    tip = store.tip()
    assert tip is not None and tip.epoch_config.epoch == 1
    block = store.block(height)
    assert block is not None and block.header.justify.epoch == 1
    validators = tip.epoch_config.validators
    return {validators[entry.index].node_id for entry in block.header.justify.signatures}
