"""For tests of proven answers: an HTTP transport in front of a node's API that rewrites the
answers of `?proof=true` requests, as a lying node would."""

from __future__ import annotations

from typing import Any

import httpx


class Tampering(httpx.AsyncBaseTransport):
    """Passes requests to the node; while `edit` is set, rewrites proven answers with it."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.edit: Any = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if self.edit is None or "proof=true" not in str(request.url):
            return response
        await response.aread()
        return httpx.Response(response.status_code, json=self.edit(response.json()))
