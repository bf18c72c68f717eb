"""The node's drop and refusal reasons are closed sets: the execution votes `Attestations`
drops (`AttestationDropReason`, a metric's label) and the acks `Vouching` refuses
(`VouchingRefusal`). The reasons each module declares are exactly those its code uses (read
from the source, so a new reason cannot be counted without being declared, nor a declared one
left dead), and the metric of dropped votes lists only declared reasons."""

from __future__ import annotations

import ast
import inspect
from types import ModuleType, SimpleNamespace
from typing import Any

import msgspec

from consortia.node import attestation, certifier, vouching
from consortia.node.attestation import AHEAD, ATTESTATION_DROP_REASONS
from consortia.node.metrics import _certificate_metrics
from consortia.node.vouching import VOUCHING_REFUSALS
from tests.consensus_helpers import make_keys
from tests.unit.test_execution_certificates import KEYS, aggregator, header, vote
from tests.unit.test_vouching import node, validator_set


def _strings(node_: ast.AST) -> set[str]:
    return {
        n.value for n in ast.walk(node_) if isinstance(n, ast.Constant) and isinstance(n.value, str)
    }


def _reasons_used(module: ModuleType, calls: set[str], returning: set[str]) -> set[str]:
    """The string literals `module` passes to a call of one of `calls`, or returns from one of
    the functions `returning`."""
    tree = ast.parse(inspect.getsource(module))
    used: set[str] = set()
    for found in ast.walk(tree):
        if isinstance(found, ast.Call):
            func = found.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in calls:
                for argument in found.args:
                    used |= _strings(argument)
        if isinstance(found, ast.FunctionDef) and found.name in returning:
            for returned in ast.walk(found):
                if isinstance(returned, ast.Return) and returned.value is not None:
                    used |= _strings(returned.value)
    return used


def test_the_declared_attestation_drop_reasons_are_exactly_those_used() -> None:
    used = _reasons_used(attestation, {"_drop", "drop"}, {"_refusal"})
    used |= _reasons_used(certifier, {"drop"}, set())
    assert used == ATTESTATION_DROP_REASONS


def test_the_certifier_counts_drops_only_through_the_typed_method() -> None:
    """Only `AttestationCounters.drop` writes the counter by key: `x.dropped[...] += 1`
    anywhere else would bypass the one typed way in."""
    writes = []
    for module in (attestation, certifier):
        for found in ast.walk(ast.parse(inspect.getsource(module))):
            if isinstance(found, ast.AugAssign) and isinstance(found.target, ast.Subscript):
                target = found.target.value
                if isinstance(target, ast.Attribute) and target.attr == "dropped":
                    writes.append((module.__name__, ast.unparse(target)))
    assert writes == [("consortia.node.attestation", "self.dropped")]


def test_the_declared_vouching_refusals_are_exactly_those_used() -> None:
    assert _reasons_used(vouching, {"_refuse"}, set()) == VOUCHING_REFUSALS


def test_the_dropped_votes_metric_lists_only_declared_reasons() -> None:
    """Setup: an aggregator fed a duplicate, a conflicting, a forged, a relayed, a stranger's,
    another chain's and a far-ahead vote. Test: the metric's labels are exactly the reasons
    counted, every one declared."""
    attestations = aggregator()
    attestations.executed(header(1))
    head = header(2)
    first = vote(KEYS[0], head)
    attestations.add(first, KEYS[0].node_id)
    attestations.add(first, KEYS[0].node_id)
    attestations.add(vote(KEYS[0], header(2, root=3)), KEYS[0].node_id)
    forged = msgspec.structs.replace(vote(KEYS[1], head), signature=bytes(64))
    attestations.add(forged, KEYS[1].node_id)
    attestations.add(vote(KEYS[2], head), KEYS[3].node_id)
    outsider = make_keys(1, "outsider")[0]
    attestations.add(vote(outsider, head), outsider.node_id)
    elsewhere = vote(KEYS[1], msgspec.structs.replace(head, chain_id="elsewhere"))
    attestations.add(elsewhere, KEYS[1].node_id)
    attestations.add(vote(KEYS[1], header(AHEAD + 5)), KEYS[1].node_id)
    driver: Any = SimpleNamespace(certifier=SimpleNamespace(attestations=attestations))
    families = {family.name: family for family in _certificate_metrics(driver)}
    labels = {s.labels["reason"] for s in families["consortia_execution_votes_dropped"].samples}
    assert labels == {
        "duplicate",
        "conflicting",
        "bad_signature",
        "not_from_signer",
        "unknown_signer",
        "wrong_chain",
        "outside_window",
    }
    assert labels <= ATTESTATION_DROP_REASONS


def test_vouching_refusals_counted_are_declared() -> None:
    validators = validator_set([1, 1, 1, 1])
    waiting = vouching.Vouching(wait_ms=100)
    digest = b"d" * 32
    assert (
        waiting.on_batch(
            validators, own=node(2), sender=node(0), digest=digest, raws=[b"t"], now_ms=0
        )
        == "held"
    )
    waiting.on_ack(validators, node(0), digest)
    waiting.on_ack(validators, b"\x09" * 32, digest)
    assert set(waiting.counters.refused) == VOUCHING_REFUSALS
