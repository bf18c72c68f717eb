"""`datashare.log_access` logs an access only for a request the consumer account signed with
its current signing key (docs/datashare.md, "The consumer's signature on chain").

What a compromised gateway (or anyone holding a gateway's key) would try, each refused with its
code and changing nothing: an access with a forged signature, none at all, one signed by
another account (another member's, another account of the consumer's member, the gateway's
own), the consumer's signature over other parameters (the gateway swaps the parameter digest,
with or without the query digest), a request moved to another grant or another account of the
same member, a query digest of nothing signed; a replay of a logged request (`already_logged`),
and an old or future-dated signed request never logged (`stale_request`); a request signed with
a key the account has since replaced. The mutation tests at the end weaken the contract's
checks one at a time and show that these scenarios notice.
"""

from __future__ import annotations

from typing import Any

import pytest

from consortia.execution import contract as contract_module
from consortia.execution.contract import Context, Meter
from consortia.execution.contracts import datashare_state
from consortia.types import datashare_request
from tests.datashare_helpers import log_args, signed_data_request
from tests.execution_helpers import SUITE, Ledger, key_for
from tests.unit.test_contract_datashare import (
    access_args,
    granted,
    ok,
    refused,
    registered,
    send,
)
from tests.unit.test_contract_governance import snapshot


def setup() -> tuple[Ledger, int]:
    chain = registered()
    return chain, granted(chain)


def test_an_access_the_consumer_signed_is_logged_and_names_no_parameter() -> None:
    chain, number = setup()
    request = signed_data_request(chain, "credit1", number, params={"firm": "firm-7"})
    args = log_args(chain, request)
    access = ok(send(chain, "gw0", "log_access", args)).result
    assert access["query_digest"] == args["query_digest"]
    # Nothing of the parameters reaches the chain: not in the arguments, not in state.
    assert b"firm-7" not in repr(args).encode()
    assert b"firm-7" not in b"".join(
        key + (chain.engine.state.get(key) or b"")
        for key in chain.engine.state.keys_with_prefix(b"")
    )


def test_the_parameter_digest_is_salted_with_the_nonce() -> None:
    """Two requests with the same parameters have unrelated parameter digests: a digest seen
    on chain confirms no guess of the parameters."""
    chain, number = setup()
    first = signed_data_request(chain, "credit1", number, sequence=1)
    second = signed_data_request(chain, "credit1", number, sequence=2)
    assert first.params == second.params
    assert first.params_digest(SUITE) != second.params_digest(SUITE)


def _forged(args: dict[str, Any]) -> dict[str, Any]:
    return {**args, "signature": "ab" * 64}


@pytest.mark.parametrize(
    ("signer", "mutate", "code"),
    [
        # A signature of the right form that no key made.
        ("credit1", _forged, "bad_signature"),
        # No signature at all, or not one of the suite's form.
        (
            "credit1",
            lambda args: {k: v for k, v in args.items() if k != "signature"},
            "bad_argument",
        ),
        ("credit1", lambda args: {**args, "signature": ""}, "bad_argument"),
        ("credit1", lambda args: {**args, "signature": "AB" * 64}, "bad_argument"),
        ("credit1", lambda args: {**args, "signature": args["signature"][:-2]}, "bad_argument"),
        # credit1's request signed by someone else: another member's account, another account
        # of bank-1, the gateway itself.
        ("credit2", lambda args: args, "bad_signature"),
        ("gw1", lambda args: args, "bad_signature"),
        ("gw0", lambda args: args, "bad_signature"),
        # The request's other fields missing or malformed.
        ("credit1", lambda args: {**args, "params_digest": "short"}, "bad_argument"),
        ("credit1", lambda args: {**args, "nonce": "00" * 17}, "bad_argument"),
        ("credit1", lambda args: {**args, "timestamp_ms": -1}, "bad_argument"),
    ],
)
def test_an_access_the_consumer_did_not_sign_is_refused(
    signer: str, mutate: Any, code: str
) -> None:
    chain, number = setup()
    request = signed_data_request(chain, "credit1", number, signer=signer)
    refused(chain, "gw0", "log_access", mutate(log_args(chain, request)), code)
    grant = datashare_state.read_grant(chain.engine.query, number)
    assert grant is not None and grant["accesses"] == 0  # accesses_max is not used up


def test_a_signature_over_other_parameters_is_refused() -> None:
    """The gateway keeps the consumer's signature but logs another query: with the query
    digest of the signed request, the digests disagree; with the other query's digest, the
    signature does not verify."""
    chain, number = setup()
    signed = signed_data_request(chain, "credit1", number, params={"firm": "firm-7"})
    other = signed_data_request(chain, "credit1", number, params={"firm": "firm-9"})
    args = log_args(chain, signed)
    swapped = {**args, "params_digest": other.params_digest(SUITE)}
    refused(chain, "gw0", "log_access", swapped, "query_digest_mismatch")
    other_query = log_args(chain, other)["query_digest"]
    refused(chain, "gw0", "log_access", {**swapped, "query_digest": other_query}, "bad_signature")


@pytest.mark.parametrize(
    "overrides",
    [
        {"query_digest": "a1" * 32},  # a digest of nothing signed
        {"nonce": "77" * 16},
        {"timestamp_ms": 1},
        {"consumer_account": "gw1"},  # another account of the consumer's member
    ],
)
def test_a_signed_request_cannot_be_logged_as_another(overrides: dict[str, Any]) -> None:
    chain, number = setup()
    args = access_args(chain, number)
    refused(chain, "gw0", "log_access", {**args, **overrides}, "query_digest_mismatch")


def test_a_request_cannot_be_logged_under_another_grant_of_the_consumer() -> None:
    chain, number = setup()
    other = granted(chain, purpose="another purpose")
    args = access_args(chain, number)
    refused(chain, "gw0", "log_access", {**args, "grant": other}, "query_digest_mismatch")


def test_a_replayed_request_is_refused_once_logged() -> None:
    chain, number = setup()
    args = access_args(chain, number)
    ok(send(chain, "gw0", "log_access", args))
    refused(chain, "gw0", "log_access", args, "already_logged")
    # Also by another gateway of the owner, once the owner names it.
    ok(send(chain, "ops0", "set_gateways", {"dataset": "firm-credit", "gateways": ["clerk0"]}))
    refused(chain, "clerk0", "log_access", args, "already_logged")


@pytest.mark.parametrize(
    ("offset_ms", "code"),
    [
        (-datashare_request.FRESHNESS_MS - 1, "stale_request"),
        (datashare_request.FRESHNESS_MS + 1, "stale_request"),
        (-datashare_request.FRESHNESS_MS, "ok"),
        (datashare_request.FRESHNESS_MS, "ok"),
    ],
)
def test_a_signed_request_is_logged_only_near_its_time(offset_ms: int, code: str) -> None:
    """A request signed, never logged and held back (or dated ahead) by a gateway is logged
    within the freshness window of the block's time, and never after it."""
    chain, number = setup()
    block_ms = 500_000
    request = signed_data_request(chain, "credit1", number, timestamp_ms=block_ms + offset_ms)
    before = snapshot(chain)
    receipt = send(chain, "gw0", "log_access", log_args(chain, request), time_ms=block_ms)
    assert receipt.code == code, receipt
    assert (snapshot(chain) == before) == (code != "ok")


def test_a_request_signed_with_a_replaced_key_is_refused() -> None:
    """credit1 replaced its signing key (the old one was stolen): a request signed with the old
    key, before or after the rotation, logs nothing; one with the new key does."""
    chain, number = setup()
    before_rotation = signed_data_request(chain, "credit1", number, sequence=1)
    old_private, _old_public = chain.keys["credit1"]
    new_private, new_public = key_for("credit1-rotated")
    rotate = chain.tx("credit1", "identity", "rotate_key", {"public_key": new_public.hex()})
    (receipt,) = chain.block(rotate)
    assert receipt.ok, receipt
    chain.keys["credit1"] = (new_private, new_public)
    chain.keys["thief"] = (old_private, _old_public)
    after_rotation = signed_data_request(chain, "credit1", number, sequence=2, signer="thief")
    for request in (before_rotation, after_rotation):
        refused(chain, "gw0", "log_access", log_args(chain, request), "bad_signature")
    ok(send(chain, "gw0", "log_access", access_args(chain, number, 3)))


def test_the_checks_are_charged_and_a_malformed_key_or_signature_is_false() -> None:
    """`Context.signature_valid` and `Context.hash` charge GAS_CRYPTO and a byte price first;
    malformed hex is an answer (False), not an error."""

    class Host:
        def signature_valid(self, public_key: bytes, message: bytes, signature: bytes) -> bool:
            return SUITE.verify(public_key, message, signature)

        def hash(self, data: bytes) -> bytes:
            return SUITE.hash(data)

    private_key, public_key = key_for("anyone")
    ctx = Context(Host(), "datashare", "a", "a", 1, 0, Meter(10**6))  # type: ignore[arg-type]
    signature = SUITE.sign(private_key, b"message").hex()
    assert ctx.signature_valid(public_key.hex(), b"message", signature)
    assert not ctx.signature_valid(public_key.hex(), b"other", signature)
    for key, sig in ((public_key.hex(), "zz"), ("abc", signature), ("", signature)):
        assert not ctx.signature_valid(key, b"message", sig)
    used = ctx.meter.used
    assert ctx.hash(b"x" * 100) == SUITE.hash(b"x" * 100).hex()
    assert ctx.meter.used - used == contract_module.GAS_CRYPTO + 100


# ---------------------------------------------------------------------- mutation


def _attack_codes() -> dict[str, str]:
    """The code of each attack above, in one run."""
    chain, number = setup()
    codes: dict[str, str] = {}
    forged = _forged(access_args(chain, number, 1))
    codes["forged"] = send(chain, "gw0", "log_access", forged).code
    other = signed_data_request(chain, "credit1", number, sequence=2, signer="credit2")
    codes["other_signer"] = send(chain, "gw0", "log_access", log_args(chain, other)).code
    other_digest = {**access_args(chain, number, 3), "query_digest": "a1" * 32}
    codes["other_digest"] = send(chain, "gw0", "log_access", other_digest).code
    stale = signed_data_request(chain, "credit1", number, sequence=4, timestamp_ms=0)
    late_ms = datashare_request.FRESHNESS_MS + 10_000
    codes["stale"] = send(chain, "gw0", "log_access", log_args(chain, stale), time_ms=late_ms).code
    return codes


EXPECTED = {
    "forged": "bad_signature",
    "other_signer": "bad_signature",
    "other_digest": "query_digest_mismatch",
    "stale": "stale_request",
}


def test_the_attack_scenarios_are_refused() -> None:
    assert _attack_codes() == EXPECTED


@pytest.mark.parametrize(
    ("dropped", "noticed"),
    [
        ("bad_signature", {"forged", "other_signer"}),
        ("query_digest_mismatch", {"other_digest"}),
        ("stale_request", {"stale"}),
    ],
)
def test_each_weakened_check_is_noticed(
    monkeypatch: pytest.MonkeyPatch, dropped: str, noticed: set[str]
) -> None:
    """The contract without one of its request checks (every `require` with that code passes)
    logs the scenarios that check refused."""
    require = Context.require

    def weakened(ctx: Context, condition: bool, code: str, message: str) -> None:
        if code != dropped:
            require(ctx, condition, code, message)

    monkeypatch.setattr(Context, "require", weakened)
    codes = _attack_codes()
    assert {name for name, code in codes.items() if code == "ok"} == noticed, codes
