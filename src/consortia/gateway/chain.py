"""What the gateway asks of the chain: certified reads, and the access record written and
proven before an answer leaves.

`ChainAccess` is the whole conversation (the fetch pipeline depends on nothing else, so its
tests run against a fake chain). `CertifiedChain` holds it with a node: every read is a state
proof checked against an execution header certified by the validators, through the SDK's
light client started from the genesis (`Client.state_answer(..., verify=True)`), so a node
that lies about a grant, a dataset or a key is caught, not believed. The access record is a
`datashare.log_access` transaction signed by the gateway's account; the gateway waits for it
to commit and then for its receipt to be proven under a certified header: only a proven,
successful receipt lets the answer go.

State keys are the contracts' own (`identity_state`, `datashare_state`). Must never log a
key, and never report an access logged that is not proven.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Final, Protocol

from consortia.client import Client, ClientError, Signer, VerificationError
from consortia.client.sdk import poll_pauses
from consortia.gateway.errors import BAD_GATEWAY, BUSY, RefusedError

PROOF_WAIT_S: Final = 60.0  # how long the gateway waits for its access record's proof
POLL_S_FIRST: Final = 0.05  # then the SDK's back-off (`client.sdk.poll_pauses`)
WAITING_CODES: Final = frozenset({"not_certified", "not_committed", "not_found"})


@dataclass(frozen=True, slots=True)
class Certified:
    """A state value (None: proven absent) and the certified height it was read at."""

    value: Any
    height: int


class ChainAccess(Protocol):
    @property
    def chain_id(self) -> str: ...

    @property
    def genesis_hash(self) -> bytes: ...

    @property
    def account(self) -> str:
        """The gateway's own account."""
        ...

    def read(self, contract: str, key: str) -> Certified:
        """The value of `contract`'s `key`, proven under a certified state root."""
        ...

    def log_access(self, args: dict[str, Any]) -> dict[str, Any]:
        """Submit `datashare.log_access(args)` as the gateway, wait for its commit, and
        return its receipt once proven (`{"tx_hash", "height", "receipt": {"ok", "code",
        "message", "result", ...}}`)."""
        ...


class CertifiedChain:
    """`ChainAccess` through one node's API and a light client that trusts no node."""

    def __init__(self, client: Client, signer: Signer, *, proof_wait_s: float = PROOF_WAIT_S):
        assert client.light is not None, "certified reads need the light client"
        chain = client.chain()
        self.chain_id = chain.chain_id
        self.genesis_hash = chain.genesis_hash
        self.account = signer.account
        self._client = client
        self._signer = signer
        self._proof_wait_s = proof_wait_s
        self._submitting = threading.Lock()  # one log_access at a time: one nonce sequence

    def __repr__(self) -> str:
        return f"<certified chain as {self.account}>"

    def read(self, contract: str, key: str) -> Certified:
        try:
            answer = self._client.state_answer(contract, key, verify=True)
        except VerificationError as error:
            raise RefusedError("verification_failed", error.message, BAD_GATEWAY) from None
        except ClientError as error:
            raise RefusedError("chain_unavailable", error.code, BUSY) from None
        return Certified(answer["value"], int(answer["height"]))

    def log_access(self, args: dict[str, Any]) -> dict[str, Any]:
        with self._submitting:
            try:
                record = self._client.call(self._signer, "datashare", "log_access", args, wait=True)
                return self._proven(str(record["tx_hash"]))
            except VerificationError as error:
                raise RefusedError("verification_failed", error.message, BAD_GATEWAY) from None
            except ClientError as error:
                raise RefusedError("chain_unavailable", error.code, BUSY) from None

    def _proven(self, tx_hash: str) -> dict[str, Any]:
        """The transaction's receipt once proven against a certified header."""
        deadline = time.monotonic() + self._proof_wait_s
        pauses = poll_pauses(first_s=POLL_S_FIRST)
        while True:
            try:
                return self._client.transaction(tx_hash, verify=True)
            except ClientError as error:
                if error.code not in WAITING_CODES or time.monotonic() > deadline:
                    raise
            time.sleep(next(pauses))
