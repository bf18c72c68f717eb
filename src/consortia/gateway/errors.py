"""The gateway's refusals: a stable machine-readable code, a message for people and the HTTP
status it is answered with.

Grant refusals carry the contract's own codes (`datashare_state.grant_problem`,
`datashare.log_access`): a consumer sees the same code whether the gateway's certified read
or the chain refused. Must never put a row, a query parameter, a DSN or a key in a message.
"""

from __future__ import annotations

from typing import Final

BAD_REQUEST: Final = 400
UNAUTHORISED: Final = 401
FORBIDDEN: Final = 403
NOT_FOUND: Final = 404
CONFLICT: Final = 409
TOO_LARGE: Final = 413
BUSY: Final = 503
BAD_GATEWAY: Final = 502


class RefusedError(Exception):
    """A request the gateway does not serve, and why."""

    def __init__(self, code: str, message: str, status: int = FORBIDDEN) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.status = code, message, status

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}
