"""The node the mirror follows, as a source of unverified answers.

Four questions, over the node's HTTP API: its tip (`/v1/status`), a block's canonical
encoding (`/v1/blocks/{h}?encoded=true`), a block's execution certificate
(`/v1/blocks/{h}/certificate`) and the proof that an epoch ended (`/v1/epochs/{e}/proof`).
"Not there yet" (404 `not_found`, `not_certified`) is an answer (None); a node that does not
answer, or answers 5xx, is `NodeUnreachableError`, which the follower retries with back-off;
any other refusal, or an answer that is not what was asked for, is a verification failure.
Answers are read up to `ANSWER_BYTES_MAX`, never further.

Owns the HTTP conversation. Must never vouch for anything it returns: every answer goes
through `replay.Replayer` before the mirror writes it.
"""

from __future__ import annotations

from typing import Any, Final

import httpx
import msgspec

from consortia.client.light import VerificationError, decode_certificate
from consortia.mirror.errors import MirrorError, MirrorVerificationError
from consortia.types.execution import ExecutionCertificate

# The most bytes one answer may have (a block's encoding in hex, at the node's block limits,
# is far below): a node sending more is refused, not buffered.
ANSWER_BYTES_MAX: Final = 96 * 1024 * 1024
TIMEOUT_S_DEFAULT: Final = 30.0
_NOT_YET: Final = frozenset({"not_found", "not_certified"})


class NodeUnreachableError(MirrorError):
    """The node did not answer (or answered 5xx): retried with back-off."""

    code = "node_unavailable"


class NodeSource:
    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = TIMEOUT_S_DEFAULT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url
        self._http = httpx.Client(base_url=base_url, timeout=timeout_s, transport=transport)

    def close(self) -> None:
        self._http.close()

    def status(self) -> dict[str, Any]:
        """The node's `/v1/status` (unverified: its height paces the mirror, nothing more)."""
        answer = self._get("/v1/status")
        if answer is None or not isinstance(answer.get("height"), int):
            raise MirrorVerificationError("status", "the node's status names no height")
        return answer

    def block(self, height: int) -> bytes | None:
        """The canonical encoding of committed block `height`, or None while there is none."""
        answer = self._get(f"/v1/blocks/{height}?encoded=true")
        if answer is None:
            return None
        try:
            return bytes.fromhex(str(answer["encoded"]))
        except (KeyError, ValueError):
            raise MirrorVerificationError(
                "block",
                "the answer holds no block encoding (a node older than the mirror?)",
                height,
            ) from None

    def certificate(self, height: int) -> ExecutionCertificate | None:
        """Block `height`'s execution certificate (unchecked), or None while the node holds
        none."""
        answer = self._get(f"/v1/blocks/{height}/certificate")
        if answer is None:
            return None
        try:
            return decode_certificate(answer.get("encoded"))
        except VerificationError as error:
            raise MirrorVerificationError(error.what, error.message, height) from None

    def epoch_proof(self, epoch: int) -> bytes | None:
        """The canonical encoding of the proof that `epoch` ended, or None without one."""
        answer = self._get(f"/v1/epochs/{epoch}/proof")
        if answer is None:
            return None
        try:
            return bytes.fromhex(str(answer["proof"]))
        except (KeyError, ValueError):
            raise MirrorVerificationError("epoch_proof", f"no proof of epoch {epoch}") from None

    def _get(self, path: str) -> dict[str, Any] | None:
        try:
            with self._http.stream("GET", path) as response:
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > ANSWER_BYTES_MAX:
                        raise MirrorVerificationError(
                            "answer", f"{path}: more than {ANSWER_BYTES_MAX} bytes"
                        )
                status = response.status_code
        except httpx.HTTPError as error:
            detail = f"{type(error).__name__}: {error}".rstrip(": ")
            raise NodeUnreachableError(f"{self.base_url}{path}: {detail}") from None
        if status >= 500:
            raise NodeUnreachableError(f"{self.base_url}{path}: HTTP {status}")
        try:
            payload = msgspec.json.decode(bytes(body))
        except msgspec.DecodeError:
            raise MirrorVerificationError("answer", f"{path}: not JSON (HTTP {status})") from None
        if not isinstance(payload, dict):
            raise MirrorVerificationError("answer", f"{path}: not a JSON object")
        refusal = payload.get("error")
        code = refusal.get("code") if isinstance(refusal, dict) else None
        if status == 404 and code in _NOT_YET:
            return None
        if status >= 400:
            raise MirrorVerificationError("answer", f"{path}: the node refused ({status} {code})")
        return payload
