"""The `datashare` contract: bank-0 owns a firm's credit data, grants bank-1 access for a stated
purpose and period with the firm's consent, its gateway logs every fetch, and the regulator
lists every grant and access (docs/datashare.md).

Every rule has a test that a refusal carries its code and changes nothing: a non-owner's
grant, the wrong gateway, a consumer account of another member, expiry in blocks and in block
time, a grant not started, revocation (refused from the next block, and later in the same
block), consent missing and withdrawn, a replayed query, a retired dataset, an access limit.
The mutation check at the end weakens the liveness rule one clause at a time and shows that
the scenarios notice each weakening.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from consortia.execution.contract import Contract
from consortia.execution.contracts import datashare_state
from consortia.execution.contracts.datashare import Datashare
from consortia.execution.contracts.identity import Identity
from consortia.execution.contracts.regulator import Regulator
from consortia.execution.contracts.system import System
from consortia.execution.engine import Receipt
from tests.datashare_helpers import log_args, signed_data_request
from tests.execution_helpers import Ledger, key_for, make_ledger
from tests.unit.test_contract_governance import snapshot

ACCOUNTS = {
    "ops0": ("bank-0", 0),  # bank-0's data office: registers, grants, revokes
    "gw0": ("bank-0", 0),  # bank-0's data gateway
    "clerk0": ("bank-0", 0),  # another bank-0 account, no gateway
    "credit1": ("bank-1", 0),  # bank-1's credit desk: the consumer
    "gw1": ("bank-1", 0),
    "credit2": ("bank-2", 0),
    "reg": ("regulator", 0),
}
CONTRACTS: list[type[Contract]] = [System, Identity, Regulator, Datashare]
SCHEMA = "5c" * 32
PURPOSE = "credit assessment of firm for a working-capital loan"


def ledger() -> Ledger:
    """The accounts above, and the firm: a customer of bank-0 (no institution account, so it
    acts for no member), the data subject."""
    chain = make_ledger(CONTRACTS, ACCOUNTS)
    chain.keys["firm"] = key_for("firm")
    args = {
        "id": "firm",
        "public_key": chain.keys["firm"][1].hex(),
        "kyc_digest": "4b" * 32,
        "kind": "customer",
    }
    ok(chain.block(chain.tx("ops0", "identity", "open_account", args))[0])
    return chain


def send(
    chain: Ledger, sender: str, method: str, args: dict[str, Any], *, time_ms: int | None = None
) -> Receipt:
    receipts: list[Receipt] = chain.block(
        chain.tx(sender, "datashare", method, args), time_ms=time_ms
    )
    (receipt,) = receipts
    return receipt


def ok(receipt: Receipt) -> Receipt:
    assert receipt.ok, receipt
    return receipt


def refused(chain: Ledger, sender: str, method: str, args: dict[str, Any], code: str) -> None:
    """`method` fails with `code` and changes nothing (but the sender's nonce)."""
    before = snapshot(chain)
    receipt = send(chain, sender, method, args)
    assert (receipt.ok, receipt.code) == (False, code), receipt
    assert snapshot(chain) == before


def dataset_args(**overrides: Any) -> dict[str, Any]:
    args = {
        "dataset": "firm-credit",
        "name": "Credit file of firm",
        "schema_digest": SCHEMA,
        "location": "postgresql://bank-0 datashare.credit_file",
        "classification": "confidential",
        "gateways": ["gw0"],
        "subject": "firm",
    }
    return _present({**args, **overrides})


def _present(args: dict[str, Any]) -> dict[str, Any]:
    """The arguments without those set to None (a transaction carries no None)."""
    return {name: value for name, value in args.items() if value is not None}


def grant_args(**overrides: Any) -> dict[str, Any]:
    args = {"dataset": "firm-credit", "consumer": "bank-1", "purpose": PURPOSE}
    return _present({**args, "until_height": 1000, **overrides})


def access_args(chain: Ledger, number: int, sequence: int = 0, **overrides: Any) -> dict[str, Any]:
    """`log_access` arguments for a request of `consumer_account` (default credit1, signing
    with its own key) numbered `sequence`; other overrides replace arguments after signing."""
    consumer = overrides.pop("consumer_account", "credit1")
    request = signed_data_request(chain, consumer, number, sequence=sequence)
    return _present({**log_args(chain, request), **overrides})


def registered(**overrides: Any) -> Ledger:
    chain = ledger()
    ok(send(chain, "ops0", "register_dataset", dataset_args(**overrides)))
    return chain


def granted(chain: Ledger, **overrides: Any) -> int:
    return int(ok(send(chain, "ops0", "grant", grant_args(**overrides))).result["n"])


# ---------------------------------------------------------------------- datasets


def test_an_owner_registers_a_dataset_and_its_record_names_the_owner_member() -> None:
    chain = ledger()
    receipt = ok(send(chain, "ops0", "register_dataset", dataset_args()))
    dataset = datashare_state.read_dataset(chain.engine.query, "firm-credit")
    assert dataset == receipt.result
    assert dataset is not None
    assert (dataset["owner"], dataset["registered_by"], dataset["gateways"]) == (
        "bank-0",
        "ops0",
        ["gw0"],
    )
    assert (dataset["subject"], dataset["status"], dataset["height"]) == ("firm", "active", 2)
    assert datashare_state.owner_datasets(chain.engine.query, "bank-0") == ["firm-credit"]
    (event,) = receipt.events
    assert event.name == "dataset_registered" and "location" not in event.fields


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"gateways": ["gw1"]}, "bad_gateway"),
        (
            {"gateways": ["ops0"]},
            "gateway_cannot_manage",
        ),  # who manages does not log  # bank-1's account serves no bank-0 data
        ({"gateways": ["nobody"]}, "unknown_account"),
        ({"gateways": ["gw0", "gw0"]}, "bad_argument"),
        ({"gateways": []}, "bad_argument"),
        ({"gateways": [f"g{i}" for i in range(9)]}, "bad_argument"),
        ({"subject": "nobody"}, "unknown_account"),
        ({"classification": "secret"}, "bad_argument"),
        ({"schema_digest": "XY" * 32}, "bad_argument"),
        ({"dataset": "firm/credit"}, "bad_argument"),
        ({"dataset": "d" * 65}, "bad_argument"),
        ({"name": "caf\u00e9"}, "bad_argument"),
        ({"location": "x" * 257}, "bad_argument"),
    ],
)
def test_a_malformed_dataset_is_refused(overrides: dict[str, Any], code: str) -> None:
    refused(ledger(), "ops0", "register_dataset", dataset_args(**overrides), code)


def test_a_dataset_id_is_registered_once_and_the_regulator_account_is_no_owner_of_it() -> None:
    chain = registered()
    refused(chain, "ops0", "register_dataset", dataset_args(), "dataset_exists")
    refused(chain, "credit1", "grant", grant_args(consumer="bank-2"), "not_owner")
    refused(chain, "ops0", "grant", grant_args(dataset="other"), "unknown_dataset")


def test_an_owner_owns_at_most_the_bound_of_datasets() -> None:
    chain = ledger()
    for index in range(datashare_state.DATASETS_PER_OWNER_MAX):
        ok(send(chain, "ops0", "register_dataset", dataset_args(dataset=f"d{index}")))
    refused(
        chain, "ops0", "register_dataset", dataset_args(dataset="one-more"), "too_many_datasets"
    )


# ---------------------------------------------------------------------- grants


def test_a_grant_records_its_purpose_period_and_consumer() -> None:
    chain = registered()
    receipt = ok(send(chain, "ops0", "grant", grant_args(consent_required=True, until_ms=90_000)))
    grant = datashare_state.read_grant(chain.engine.query, 0)
    assert grant == receipt.result
    assert grant is not None
    assert (grant["purpose"], grant["consumer"], grant["owner"]) == (PURPOSE, "bank-1", "bank-0")
    assert (grant["from_height"], grant["until_height"], grant["until_ms"]) == (3, 1000, 90_000)
    assert (grant["consent_required"], grant["subject"], grant["consent"]) == (True, "firm", None)
    assert datashare_state.dataset_grants(chain.engine.query, "firm-credit") == [0]
    (event,) = receipt.events
    assert event.name == "grant_issued" and event.fields["purpose"] == PURPOSE


@pytest.mark.parametrize(
    ("sender", "overrides", "code"),
    [
        ("credit1", {}, "not_owner"),  # the consumer grants itself nothing
        ("gw1", {}, "not_owner"),
        ("firm", {}, "not_owner"),  # the subject consents, it does not grant
        ("gw0", {}, "gateway_cannot_manage"),  # a stolen gateway key grants nothing
        ("ops0", {"consumer": "bank-0"}, "bad_argument"),
        ("ops0", {"consumer": "bank-9"}, "unknown_member"),
        ("ops0", {"until_height": None}, "unbounded_grant"),
        ("ops0", {"until_height": 1}, "bad_period"),  # before now
        ("ops0", {"from_height": 50, "until_height": 40}, "bad_period"),
        ("ops0", {"until_height": datashare_state.GRANT_BLOCKS_MAX + 10}, "bad_period"),
        ("ops0", {"until_ms": datashare_state.GRANT_MS_MAX + 10_000}, "bad_period"),
        ("ops0", {"purpose": ""}, "bad_argument"),
        ("ops0", {"purpose": "p" * 257}, "bad_argument"),
        ("ops0", {"consent_required": "yes"}, "bad_argument"),
        ("ops0", {"accesses_max": 0}, "bad_argument"),
    ],
)
def test_a_grant_is_refused(sender: str, overrides: dict[str, Any], code: str) -> None:
    refused(registered(), sender, "grant", grant_args(**overrides), code)


def test_consent_cannot_be_required_of_a_dataset_without_a_subject() -> None:
    chain = registered(subject=None)
    refused(chain, "ops0", "grant", grant_args(consent_required=True), "no_data_subject")


# ---------------------------------------------------------------------- the access log


def test_the_gateway_logs_an_access_under_a_live_grant() -> None:
    chain = registered()
    number = granted(chain)
    args = access_args(chain, number)
    receipt = ok(send(chain, "gw0", "log_access", args))
    access = datashare_state.read_access(chain.engine.query, 0)
    assert access == receipt.result
    assert access is not None
    assert access == {
        "n": 0,
        "grant": number,
        "dataset": "firm-credit",
        "owner": "bank-0",
        "consumer": "bank-1",
        "consumer_account": "credit1",
        "gateway": "gw0",
        "query_digest": args["query_digest"],
        "answer_digest": "b2" * 32,
        "rows": 3,
        "height": 4,
        "time_ms": 4000,
    }
    assert datashare_state.access_count(chain.engine.query) == 1
    assert datashare_state.logged_access(chain.engine.query, args["query_digest"]) == 0
    grant = datashare_state.read_grant(chain.engine.query, number)
    assert grant is not None and grant["accesses"] == 1
    assert [event.name for event in receipt.events] == ["access_logged"]


@pytest.mark.parametrize(
    ("sender", "overrides", "code"),
    [
        ("clerk0", {}, "not_gateway"),  # the owner's account, but not a gateway
        ("ops0", {}, "not_gateway"),
        ("gw1", {}, "not_gateway"),  # another member's gateway
        ("credit1", {}, "not_gateway"),  # the consumer logs nothing itself
        ("gw0", {"consumer_account": "credit2"}, "not_consumer"),  # bank-2 holds no grant
        ("gw0", {"consumer_account": "firm"}, "not_consumer"),
        ("gw0", {"grant": 7}, "unknown_grant"),
        ("gw0", {"rows": -1}, "bad_argument"),
        ("gw0", {"rows": datashare_state.ROWS_PER_ACCESS_MAX + 1}, "bad_argument"),
        ("gw0", {"query_digest": "short"}, "bad_argument"),
        ("gw0", {"answer_digest": None}, "bad_argument"),
    ],
)
def test_an_access_is_refused(sender: str, overrides: dict[str, Any], code: str) -> None:
    chain = registered()
    number = granted(chain)
    refused(chain, sender, "log_access", access_args(chain, number, **overrides), code)


def test_a_replayed_query_is_logged_once() -> None:
    chain = registered()
    number = granted(chain)
    args = access_args(chain, number)
    ok(send(chain, "gw0", "log_access", args))
    refused(chain, "gw0", "log_access", args, "already_logged")


def test_a_grant_expires_at_its_last_height() -> None:
    chain = registered()
    number = granted(chain, until_height=5)
    ok(send(chain, "gw0", "log_access", access_args(chain, number, 1)))  # height 4
    ok(send(chain, "gw0", "log_access", access_args(chain, number, 2)))  # height 5: the last
    refused(chain, "gw0", "log_access", access_args(chain, number, 3), "grant_expired")


def test_a_grant_expires_in_block_time() -> None:
    chain = registered()
    number = granted(chain, until_height=None, until_ms=10_000)
    assert ok(send(chain, "gw0", "log_access", access_args(chain, number, 1), time_ms=10_000))
    receipt = send(chain, "gw0", "log_access", access_args(chain, number, 2), time_ms=10_001)
    assert receipt.code == "grant_expired"


def test_a_grant_gives_nothing_before_it_starts() -> None:
    chain = registered()
    number = granted(chain, from_height=6, from_ms=7_000)
    refused(chain, "gw0", "log_access", access_args(chain, number, 1), "grant_not_started")
    chain.block()
    ok(send(chain, "gw0", "log_access", access_args(chain, number, 2), time_ms=7_000))


def test_a_revocation_holds_from_the_next_block() -> None:
    chain = registered()
    number = granted(chain)
    ok(send(chain, "gw0", "log_access", access_args(chain, number, 1)))
    refused(chain, "credit1", "revoke", {"grant": number}, "not_owner")
    refused(chain, "gw1", "revoke", {"grant": number}, "not_owner")
    refused(chain, "gw0", "revoke", {"grant": number}, "gateway_cannot_manage")
    receipt = ok(send(chain, "ops0", "revoke", {"grant": number}))
    assert [event.name for event in receipt.events] == ["grant_revoked"]
    grant = datashare_state.read_grant(chain.engine.query, number)
    assert grant is not None and grant["revoked"] == {"by": "ops0", "height": 8, "time_ms": 8000}
    refused(chain, "gw0", "log_access", access_args(chain, number, 2), "grant_revoked")
    refused(chain, "ops0", "revoke", {"grant": number}, "grant_revoked")


def test_an_access_after_the_revocation_in_the_same_block_is_refused_too() -> None:
    chain = registered()
    number = granted(chain)
    revoke = chain.tx("ops0", "datashare", "revoke", {"grant": number})
    access = chain.tx("gw0", "datashare", "log_access", access_args(chain, number))
    first, second = chain.block(revoke, access)
    assert first.ok and (second.ok, second.code) == (False, "grant_revoked")


def test_consent_is_needed_given_by_the_subject_only_and_may_be_withdrawn() -> None:
    chain = registered()
    number = granted(chain, consent_required=True)
    refused(chain, "gw0", "log_access", access_args(chain, number, 1), "consent_missing")
    refused(chain, "ops0", "consent", {"grant": number}, "not_subject")  # the owner cannot
    refused(chain, "credit1", "consent", {"grant": number}, "not_subject")
    refused(chain, "firm", "withdraw_consent", {"grant": number}, "consent_missing")
    receipt = ok(send(chain, "firm", "consent", {"grant": number}))
    assert [event.name for event in receipt.events] == ["consent_given"]
    refused(chain, "firm", "consent", {"grant": number}, "already_consented")
    ok(send(chain, "gw0", "log_access", access_args(chain, number, 2)))
    ok(send(chain, "firm", "withdraw_consent", {"grant": number}))
    refused(chain, "gw0", "log_access", access_args(chain, number, 3), "consent_withdrawn")
    ok(send(chain, "firm", "consent", {"grant": number}))  # given again
    ok(send(chain, "gw0", "log_access", access_args(chain, number, 4)))


def test_consent_to_a_grant_that_needs_none_or_is_revoked_is_refused() -> None:
    chain = registered()
    plain = granted(chain)
    refused(chain, "firm", "consent", {"grant": plain}, "consent_not_required")
    needing = granted(chain, consent_required=True)
    ok(send(chain, "ops0", "revoke", {"grant": needing}))
    refused(chain, "firm", "consent", {"grant": needing}, "grant_revoked")


def test_a_retired_dataset_and_a_spent_grant_give_no_access() -> None:
    chain = registered()
    limited = granted(chain, accesses_max=1)
    ok(send(chain, "gw0", "log_access", access_args(chain, limited, 1)))
    refused(chain, "gw0", "log_access", access_args(chain, limited, 2), "access_limit_reached")
    open_grant = granted(chain)
    refused(chain, "credit1", "retire_dataset", {"dataset": "firm-credit"}, "not_owner")
    ok(send(chain, "ops0", "retire_dataset", {"dataset": "firm-credit"}))
    refused(chain, "gw0", "log_access", access_args(chain, open_grant, 3), "dataset_retired")
    refused(chain, "ops0", "grant", grant_args(), "dataset_retired")


def test_a_dropped_gateway_logs_nothing_more() -> None:
    chain = registered()
    number = granted(chain)
    moved = {"dataset": "firm-credit", "gateways": ["clerk0"]}
    refused(chain, "gw0", "set_gateways", moved, "gateway_cannot_manage")
    refused(chain, "clerk0", "set_gateways", moved, "gateway_cannot_manage")  # not itself
    moved = {"dataset": "firm-credit", "gateways": ["clerk0"]}
    ok(send(chain, "ops0", "set_gateways", moved))
    refused(chain, "gw0", "log_access", access_args(chain, number, 1), "not_gateway")
    ok(send(chain, "clerk0", "log_access", access_args(chain, number, 2)))


# ---------------------------------------------------------------------- the regulator


def test_the_regulator_lists_every_grant_and_access() -> None:
    chain = registered()
    first = granted(chain, consent_required=True)
    second = granted(chain, consumer="bank-2", purpose="KYC refresh")
    ok(send(chain, "firm", "consent", {"grant": first}))
    ok(send(chain, "gw0", "log_access", access_args(chain, first, 1)))
    ok(send(chain, "gw0", "log_access", access_args(chain, second, 2, consumer_account="credit2")))
    ok(send(chain, "ops0", "revoke", {"grant": second}))

    def listed(method: str, args: dict[str, Any]) -> dict[str, Any]:
        (receipt,) = chain.block(chain.tx("reg", "regulator", method, args))
        assert receipt.ok, receipt
        result: dict[str, Any] = receipt.result
        return result

    grants = listed("list_data_grants", {})
    assert [(g["n"], g["consumer"], g["purpose"]) for g in grants["grants"]] == [
        (first, "bank-1", PURPOSE),
        (second, "bank-2", "KYC refresh"),
    ]
    assert grants["grants"][0]["consent"] is not None and grants["grants"][1]["status"] == "revoked"
    assert grants["next"] == 2
    accesses = listed("list_data_accesses", {})
    assert [(a["n"], a["grant"], a["consumer_account"]) for a in accesses["accesses"]] == [
        (0, first, "credit1"),
        (1, second, "credit2"),
    ]
    page = listed("list_data_accesses", {"from_n": 1, "limit": 1})
    assert [a["n"] for a in page["accesses"]] == [1] and page["next"] == 2
    assert listed("list_data_grants", {"from_n": 9}) == {"grants": [], "next": 9}
    for method in ("list_data_grants", "list_data_accesses"):
        (receipt,) = chain.block(chain.tx("ops0", "regulator", method, {}))
        assert receipt.code == "not_authorised"


# ---------------------------------------------------------------------- mutation check


def _scenario_codes() -> dict[str, str]:
    """The code of one log_access in each situation the liveness rule decides."""
    chain = registered()
    codes: dict[str, str] = {}

    def attempt(name: str, number: int, sequence: int) -> None:
        codes[name] = send(chain, "gw0", "log_access", access_args(chain, number, sequence)).code

    attempt("live", granted(chain), 1)
    revoked = granted(chain)
    ok(send(chain, "ops0", "revoke", {"grant": revoked}))
    attempt("revoked", revoked, 2)
    attempt("expired_height", granted(chain, until_height=chain.height + 1), 3)
    in_time = granted(chain, until_height=None, until_ms=chain.height * 1000 + 1000)
    attempt("expired_time", in_time, 4)
    attempt("not_started", granted(chain, from_height=900), 5)
    attempt("no_consent", granted(chain, consent_required=True), 6)
    withdrawn = granted(chain, consent_required=True)
    ok(send(chain, "firm", "consent", {"grant": withdrawn}))
    ok(send(chain, "firm", "withdraw_consent", {"grant": withdrawn}))
    attempt("withdrawn", withdrawn, 7)
    return codes


EXPECTED = {
    "live": "ok",
    "revoked": "grant_revoked",
    "expired_height": "grant_expired",
    "expired_time": "grant_expired",
    "not_started": "grant_not_started",
    "no_consent": "consent_missing",
    "withdrawn": "consent_withdrawn",
}
Weakening = Callable[[dict[str, Any]], dict[str, Any]]
WEAKENINGS: dict[str, Weakening] = {
    "ignore_revocation": lambda grant: {**grant, "status": "active"},
    "ignore_height_expiry": lambda grant: {**grant, "until_height": None},
    "ignore_time_expiry": lambda grant: {**grant, "until_ms": None},
    "ignore_start": lambda grant: {**grant, "from_height": 0},
    "ignore_consent": lambda grant: {**grant, "consent_required": False},
}


def test_the_scenarios_give_every_code_of_the_liveness_rule() -> None:
    assert _scenario_codes() == EXPECTED


@pytest.mark.parametrize("weakening", sorted(WEAKENINGS))
def test_each_weakened_liveness_rule_is_noticed(
    weakening: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rule = datashare_state.grant_problem
    weaken = WEAKENINGS[weakening]

    def weakened(
        grant: dict[str, Any], dataset: dict[str, Any], height: int, time_ms: int
    ) -> tuple[str, str] | None:
        return rule(weaken(dict(grant)), dataset, height, time_ms)

    monkeypatch.setattr(datashare_state, "grant_problem", weakened)
    assert _scenario_codes() != EXPECTED
