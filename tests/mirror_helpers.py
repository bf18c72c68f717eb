"""A fake node for mirror tests: a chain built block by block with the project's engine and
signed with the test validators' keys, served through an httpx transport that answers the
four questions the mirror asks (status, a block's encoding, its certificate, epoch proofs).

Because the test holds the validators' keys it can also make a *certified* lie (a quorum
signing a wrong state root or receipts root, a proof of a made-up epoch), which no real
node can, and tamper with any answer on the way out (`FakeNode.edit`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from consortia.crypto import suite as get_suite
from consortia.execution.builtin import BUILTIN_CONTRACTS
from consortia.execution.engine import Engine
from consortia.execution.genesis import engine_from_genesis
from consortia.node.chain import genesis_block_of
from consortia.types.consensus import (
    Block,
    BlockHeader,
    CommitProof,
    EpochChangeResponse,
    EpochConfig,
    QuorumCertificate,
    SignerSignature,
    Validator,
    VoteData,
)
from consortia.types.encoding import encode
from consortia.types.execution import (
    ExecutionCertificate,
    ExecutionHeader,
    ExecutionSignature,
    receipt_leaf,
    receipts_root,
)
from consortia.types.genesis import Genesis, genesis_hash
from consortia.types.signing import SigningDomain, block_id, merkle_root, sign
from tests.node_helpers import validator_keys

SUITE = get_suite("intl")
Key = tuple[bytes, bytes, bytes]  # node id, public key, private key


def epoch_keys(epoch: int, count: int = 4) -> list[Key]:
    """Validator keys of a later epoch (epoch 0's are node_helpers.validator_keys)."""
    if epoch == 0:
        return validator_keys(count)
    keys = []
    for index in range(count):
        private = SUITE.hash(f"mirror-test/epoch-{epoch}/validator-{index}".encode())
        public = SUITE.public_key(private)
        keys.append((SUITE.hash(public), public, private))
    return sorted(keys)


def config_of(epoch: int, keys: list[Key]) -> EpochConfig:
    return EpochConfig(epoch, [Validator(node_id, public, 1) for node_id, public, _ in keys])


@dataclass
class FakeNode:
    genesis: Genesis
    engine: Engine = field(init=False)
    blocks: dict[int, Block] = field(default_factory=dict)
    certificates: dict[int, ExecutionCertificate] = field(default_factory=dict)
    roots: dict[int, bytes] = field(default_factory=dict)
    epoch_proofs: dict[int, EpochChangeResponse] = field(default_factory=dict)
    epoch: int = 0
    keys: list[Key] = field(default_factory=lambda: validator_keys(4))
    # (path, answer) -> answer: rewrites what the node says (a lying node).
    edit: Callable[[str, dict[str, Any]], dict[str, Any]] | None = None
    unreachable: bool = False
    requests: int = 0
    # Called with each request's path before it is answered (to change the chain meanwhile).
    on_request: Callable[[str], None] | None = None

    def __post_init__(self) -> None:
        self.engine = engine_from_genesis(self.genesis, BUILTIN_CONTRACTS)
        self.domain = SigningDomain(genesis_hash(self.genesis))
        self.tip_id = block_id(SUITE, genesis_block_of(self.genesis).header)
        self.round = 0

    @property
    def height(self) -> int:
        return len(self.blocks)

    # ------------------------------------------------------------------ the chain

    def add_block(
        self,
        payload: list[bytes],
        *,
        certify: bool = True,
        state_root: bytes | None = None,
        receipts_root_: bytes | None = None,
        next_epoch: EpochConfig | None = None,
    ) -> int:
        """Execute and append a block; certify it (with the roots given, to lie) unless
        told not to. Its height."""
        height = self.height + 1
        self.round += 1
        header = BlockHeader(
            chain_id=self.genesis.chain_id,
            protocol_version=1,
            epoch=self.epoch,
            round=self.round,
            height=height,
            parent_id=self.tip_id,
            justify=QuorumCertificate(self.epoch, self.round - 1, self.tip_id, height - 1, []),
            author=self.keys[0][0],
            timestamp_ms=1_700_000_000_000 + height * 1000,
            payload_root=merkle_root(SUITE, payload),
            payload_count=len(payload),
            next_epoch=next_epoch,
        )
        block = Block(header, payload)
        result = self.engine.execute_block(height, header.timestamp_ms, payload)
        root = self.engine.commit()
        leaves = [
            receipt_leaf(SUITE, encode(r.canonical(height, i)))
            for i, r in enumerate(result.receipts)
        ]
        new_id = block_id(SUITE, header)
        self.blocks[height], self.roots[height], self.tip_id = block, root, new_id
        if certify:
            self.certify(height, state_root or root, receipts_root_ or receipts_root(SUITE, leaves))
        return height

    def certify(
        self, height: int, state_root: bytes, receipts: bytes, keys: list[Key] | None = None
    ) -> None:
        block = self.blocks[height]
        header = ExecutionHeader(
            chain_id=self.genesis.chain_id,
            epoch=block.header.epoch,
            height=height,
            block_id=block_id(SUITE, block.header),
            state_root=state_root,
            receipts_root=receipts,
        )
        signers = sorted((keys or epoch_keys(block.header.epoch))[:3])
        self.certificates[height] = ExecutionCertificate(
            header,
            [
                ExecutionSignature(node_id, sign(SUITE, private, header, self.domain))
                for node_id, _, private in signers
            ],
        )

    def end_epoch(self, payload: list[bytes] | None = None) -> int:
        """A block handing over to the next epoch's validators (`epoch_keys`), the proof that
        it committed, and the switch; its height."""
        following = self.epoch + 1
        new_keys = epoch_keys(following)
        height = self.add_block(payload or [], next_epoch=config_of(following, new_keys))
        ending = self.blocks[height].header
        headers, parent = [], block_id(SUITE, ending)
        for step in (1, 2):
            header = BlockHeader(
                chain_id=self.genesis.chain_id,
                protocol_version=1,
                epoch=self.epoch,
                round=ending.round + step,
                height=height + step,
                parent_id=parent,
                justify=QuorumCertificate(
                    self.epoch, ending.round + step - 1, parent, height + step - 1, []
                ),
                author=self.keys[0][0],
                timestamp_ms=ending.timestamp_ms,
                payload_root=merkle_root(SUITE, []),
                payload_count=0,
            )
            headers.append(header)
            parent = block_id(SUITE, header)
        last = headers[-1]
        vote = VoteData(self.genesis.chain_id, self.epoch, last.round, parent, last.height)
        config = config_of(self.epoch, self.keys)
        index = {v.node_id: i for i, v in enumerate(config.validators)}
        signatures = sorted(
            (
                SignerSignature(index[node_id], sign(SUITE, private, vote, self.domain))
                for node_id, _, private in self.keys[:3]
            ),
            key=lambda s: s.index,
        )
        qc = QuorumCertificate(self.epoch, last.round, parent, last.height, signatures)
        self.epoch_proofs[self.epoch] = EpochChangeResponse(ending, CommitProof(headers, qc))
        self.epoch, self.keys = following, new_keys
        self.round = 0
        return height

    # ------------------------------------------------------------------ serving

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self._handle)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        if self.unreachable:
            raise httpx.ConnectError("connection refused", request=request)
        path = request.url.path
        if self.on_request is not None:
            self.on_request(path)
        status, answer = self._answer(path, dict(request.url.params))
        if self.edit is not None and status == 200:
            answer = self.edit(path, answer)
        return httpx.Response(status, json=answer)

    def _answer(self, path: str, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if path == "/v1/status":
            return 200, {"chain_id": self.genesis.chain_id, "height": self.height}
        if match := re.fullmatch(r"/v1/blocks/(\d+)", path):
            block = self.blocks.get(int(match[1]))
            if block is None:
                return _missing("not_found")
            answer: dict[str, Any] = {"height": block.header.height}
            if params.get("encoded") == "true":
                answer["encoded"] = encode(block).hex()
            return 200, answer
        if match := re.fullmatch(r"/v1/blocks/(\d+)/certificate", path):
            height = int(match[1])
            certificate = self.certificates.get(height)
            if certificate is None:
                return _missing("not_certified" if height in self.blocks else "not_found")
            return 200, {"height": height, "encoded": encode(certificate).hex()}
        if match := re.fullmatch(r"/v1/epochs/(\d+)/proof", path):
            proof = self.epoch_proofs.get(int(match[1]))
            if proof is None:
                return _missing("not_found")
            return 200, {"epoch": int(match[1]), "proof": encode(proof).hex()}
        return _missing("not_found")


def _missing(code: str) -> tuple[int, dict[str, Any]]:
    return 404, {"error": {"code": code, "message": code}}
