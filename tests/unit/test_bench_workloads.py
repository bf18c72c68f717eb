"""The bench workloads: the same seed makes the same load, the hotspot skew is as documented,
the client signs valid transactions with consecutive nonces, and the SmallBank and receivable
calls run through the engine as the contracts expect (a whole receivable flow settles)."""

from __future__ import annotations

import queue
from collections import Counter
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest

from consortia.client import ChainInfo
from consortia.cluster.bench_client import ClientSpec, Sender
from consortia.cluster.bench_flows import FlowSender
from consortia.cluster.bench_workloads import (
    FACE_VALUE,
    HOT_ACCOUNTS_PERCENT,
    HOT_SHARE_PERCENT,
    RECEIVABLE_STEPS,
    SMALLBANK_MIX,
    WORKLOAD_RECEIVABLE,
    WORKLOAD_SMALLBANK,
    WORKLOAD_TRANSFER,
    Hotspot,
    by_role,
    client_rng,
    finance_price,
    flow_call,
    new_flow,
    smallbank_calls,
    split_amount,
)
from consortia.crypto import suite as get_suite
from consortia.execution.contracts.asset import Asset
from consortia.execution.contracts.receivable import Receivable
from consortia.execution.contracts.smallbank import SmallBank
from consortia.execution.genesis import engine_from_genesis
from consortia.identity.bench_accounts import (
    ROLE_BANK,
    ROLE_CORE,
    ROLE_SUPPLIER,
    account_name,
    bench_role,
    derive_private_key,
)
from consortia.types.genesis import GenesisAccount, genesis_hash
from tests.execution_helpers import CHAIN_ID, Ledger, make_ledger

MASTER = bytes(range(32))
ACCOUNTS = 20
BALANCE = 100_000_000


def bench_ledger() -> Ledger:
    """A chain whose accounts are ACCOUNTS benchmark accounts, keys derived from MASTER."""
    chain = make_ledger([Asset, Receivable, SmallBank], {"central": ("bank-0", 0)})
    suite = get_suite("intl")
    accounts = [
        GenesisAccount(
            id=account_name(index),
            sponsor=f"bank-{index % 4}",
            public_key=suite.public_key(derive_private_key("intl", MASTER, index)).hex(),
            balance=BALANCE,
        )
        for index in range(ACCOUNTS)
    ]
    genesis = msgspec.structs.replace(chain.genesis, accounts=[*chain.genesis.accounts, *accounts])
    engine = engine_from_genesis(genesis, [Asset, Receivable, SmallBank])
    return Ledger(engine, genesis, chain.keys)


@dataclass
class FakeShared:
    """What a Sender reads of `Shared` outside a run."""

    height: Any
    settlements: list[Any]


@dataclass
class Value:
    value: int


def spec_for(chain: Ledger, workload: str, index: int = 0, clients: int = 2) -> ClientSpec:
    info = ChainInfo(CHAIN_ID, "intl", genesis_hash(chain.genesis), {})
    return ClientSpec(
        index=index,
        clients=clients,
        workload=workload,
        seed=7,
        urls=("http://unused",),
        chain_id=info.chain_id,
        suite=info.suite,
        genesis_hash=info.genesis_hash,
        contract_versions=(),
        master=MASTER,
        account_count=ACCOUNTS,
        transactions=60,
        rate_per_s=None,
        duration_s=1.0,
        window=100,
        batch=10,
        expiry_height=1_000,
        maturity_blocks=8,
    )


def sender(chain: Ledger, workload: str, index: int = 0) -> Sender:
    shared: Any = FakeShared(Value(0), [queue.SimpleQueue()])
    client = Sender(spec_for(chain, workload, index), shared)
    client.nonces = dict.fromkeys(client.accounts, 0)
    return client


def test_the_same_seed_makes_the_same_smallbank_load() -> None:
    def load(seed: int) -> list[Any]:
        return list(smallbank_calls(range(0, 50, 2), 50, 300, client_rng(seed, 1)))

    assert load(3) == load(3)
    assert load(3) != load(4)
    assert list(smallbank_calls(range(5), 50, 20, client_rng(3, 0))) != load(3)[:20]


def test_the_hotspot_takes_the_documented_share_of_choices() -> None:
    hotspot = Hotspot(1000)
    assert hotspot.hot == 1000 * HOT_ACCOUNTS_PERCENT // 100
    rng = client_rng(0, 0)
    choices = [hotspot.choose(rng) for _ in range(20_000)]
    hot_share = sum(choice < hotspot.hot for choice in choices) / len(choices)
    assert abs(hot_share - HOT_SHARE_PERCENT / 100) < 0.01
    assert min(choices) == 0 and max(choices) == 999
    first, second = hotspot.pair(rng)
    assert first != second
    # Two accounts: one hot, one cold, and a pair is always both.
    assert sorted(Hotspot(2).pair(rng)) == [0, 1]


def test_the_smallbank_mix_follows_its_weights() -> None:
    kinds = Counter(call.kind for _, call in smallbank_calls([0], 100, 20_000, client_rng(1, 0)))
    for kind, weight in SMALLBANK_MIX:
        assert abs(kinds[kind] / 20_000 - weight / 100) < 0.015, kind
    assert sum(weight for _, weight in SMALLBANK_MIX) == 100


@pytest.mark.parametrize("workload", [WORKLOAD_TRANSFER, WORKLOAD_SMALLBANK])
def test_presigned_transactions_are_valid_and_run(workload: str) -> None:
    chain = bench_ledger()
    client = sender(chain, workload, index=1)
    client.plan()
    # Only the accounts that sign a planned transaction need their nonces read.
    signing = client.signing()
    assert signing and set(signing) <= set(client.accounts)
    client.prepare()
    assert len(client.raws) == 60 and len(set(client.hashes)) == 60
    assert client.accounts == list(range(1, ACCOUNTS, 2))
    receipts = chain.block(*client.raws)
    codes = Counter(receipt.code for receipt in receipts)
    # Every signature and nonce is accepted; only SmallBank's business rules may say no.
    assert set(codes) <= {"ok", "insufficient_funds"}, codes
    assert [receipt.tx_id.hex() for receipt in receipts] == client.hashes
    nonces = [
        chain.engine.query("identity", f"account/{account_name(a)}")["nonce"]
        for a in client.accounts
    ]
    assert nonces == [6] * 10  # 60 transactions, 10 signers in turn


def test_roles_are_fixed_by_account_number() -> None:
    assert [bench_role(index) for index in (0, 1, 2, 9, 10, 11, 25)] == [
        ROLE_CORE,
        ROLE_BANK,
        ROLE_SUPPLIER,
        ROLE_SUPPLIER,
        ROLE_CORE,
        ROLE_BANK,
        ROLE_SUPPLIER,
    ]
    roles = by_role(range(10, 20))
    assert (roles[ROLE_CORE], roles[ROLE_BANK]) == ([10], [11])
    assert len(roles[ROLE_SUPPLIER]) == 8


def test_a_receivable_flow_settles_through_the_contract() -> None:
    chain = bench_ledger()
    flow = new_flow(client_rng(0, 0), by_role(range(ACCOUNTS)))
    assert len({flow.debtor, flow.supplier, flow.second, flow.bank}) == 4
    assert bench_role(flow.debtor) == ROLE_CORE and bench_role(flow.bank) == ROLE_BANK
    flow.receivable_id, flow.maturity_height = f"{account_name(flow.debtor)}.0", 7
    nonces: Counter[int] = Counter()
    kinds = []
    while not flow.done:
        signer, call = flow_call(flow)
        kinds.append(call.kind)
        while flow.kind == "repay" and chain.height + 1 < flow.maturity_height:
            chain.block()
        key = derive_private_key("intl", MASTER, signer)
        chain.keys[account_name(signer)] = (key, get_suite("intl").public_key(key))
        raw = chain.tx(
            account_name(signer), call.contract, call.method, call.args, nonce=nonces[signer]
        )
        nonces[signer] += 1
        (receipt,) = chain.block(raw)
        assert receipt.ok, (call.kind, receipt)
        flow.step += 1
    assert tuple(kinds) == RECEIVABLE_STEPS

    def balance(index: int) -> int:
        return int(chain.engine.query("asset", f"balance/CNY/{account_name(index)}"))

    assert balance(flow.debtor) == BALANCE - FACE_VALUE
    assert balance(flow.supplier) == BALANCE + FACE_VALUE - split_amount()
    assert balance(flow.second) == BALANCE + finance_price()
    assert balance(flow.bank) == BALANCE - finance_price() + split_amount()


def test_the_flow_client_signs_a_step_only_after_the_previous_one_committed() -> None:
    chain = bench_ledger()
    shared: Any = FakeShared(Value(0), [queue.SimpleQueue()])
    client = FlowSender(spec_for(chain, WORKLOAD_RECEIVABLE), shared)
    client.nonces = dict.fromkeys(client.accounts, 0)
    assert client.accounts == list(range(10))  # a contiguous share: every role
    first = client.fresh(2)
    assert [client.kinds[i] for i in first] == ["issue", "issue"]
    # Nothing settled yet: more room means more flows, not the next steps.
    assert [client.kinds[i] for i in client.fresh(1)] == ["issue"]
    receipts = chain.block(*(client.raws[i] for i in range(3)))
    assert all(receipt.ok for receipt in receipts)
    shared.settlements[0].put([(client.hashes[0], True), (client.hashes[1], False)])
    client.tick()
    assert client.abandoned == 1
    (accept,) = client.fresh(1)
    assert client.kinds[accept] == "accept"
    (receipt,) = chain.block(client.raws[accept])
    assert receipt.ok
    # Through to the repayment, which waits for the height of maturity (8 blocks on).
    index = accept
    for kind in ("split_transfer", "offer_finance", "finance"):
        shared.settlements[0].put([(client.hashes[index], True)])
        client.tick()
        (index,) = [i for i in client.fresh(1) if client.kinds[i] == kind]
        (receipt,) = chain.block(client.raws[index])
        assert receipt.ok, receipt
    shared.settlements[0].put([(client.hashes[index], True)])
    client.tick()
    assert len(client.maturing) == 1
    (issue,) = client.fresh(1)  # the flow waits for maturity: another starts
    assert client.kinds[issue] == "issue"
    assert chain.block(client.raws[issue])[0].ok
    shared.height.value = 8
    client.tick()
    (repay,) = client.fresh(1)
    assert client.kinds[repay] == "repay"
    while chain.height + 1 < 8:
        chain.block()
    (receipt,) = chain.block(client.raws[repay])
    assert receipt.ok, receipt
    shared.settlements[0].put([(client.hashes[repay], True)])
    client.tick()
    assert (client.started, client.completed, client.abandoned) == (4, 1, 1)
