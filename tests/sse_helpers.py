"""An httpx transport that serves an ASGI app and streams its responses (httpx's own
ASGITransport buffers a whole response, so it cannot read an endless stream), and a reader of
server-sent event streams for tests: one message at a time, with a timeout as a safety net."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx

SAFETY_S = 10.0  # a stream that says nothing for this long has failed the test


class _Body(httpx.AsyncByteStream):
    def __init__(
        self, chunks: asyncio.Queue[bytes | None], gone: asyncio.Event, task: asyncio.Task[None]
    ) -> None:
        self._chunks, self._gone, self._task = chunks, gone, task
        self.dropped = False

    def drop(self) -> None:
        """The connection breaks: what is in flight is lost, the reader gets an error."""
        self.dropped = True
        if self._chunks.empty():
            self._chunks.put_nowait(b"")

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            chunk = await self._chunks.get()
            if self.dropped:
                raise httpx.ReadError("the connection broke")
            if chunk is None:
                return
            yield chunk

    async def aclose(self) -> None:
        self._gone.set()
        await asyncio.wait_for(self._task, SAFETY_S)


class StreamingASGI(httpx.AsyncBaseTransport):
    """Serves requests from an ASGI app and hands the body over chunk by chunk, holding at
    most one chunk (a client that stops reading holds the app up, as TCP would). Records the
    headers of every request."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.requests: list[httpx.Request] = []
        self.refuse = 0  # the next `refuse` requests fail to connect
        self.bodies: list[_Body] = []

    def drop(self) -> None:
        """Break every open connection."""
        for body in self.bodies:
            body.drop()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.refuse:
            self.refuse -= 1
            raise httpx.ConnectError("refused by the test", request=request)
        body = await request.aread()
        chunks: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=1)
        gone = asyncio.Event()
        started: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                started.set_result(message)
            elif message["type"] == "http.response.body":
                if gone.is_set():
                    return  # as uvicorn does: a body sent after the client left goes nowhere
                if message.get("body"):
                    await chunks.put(message["body"])
                if not message.get("more_body", False):
                    await chunks.put(None)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": request.method,
            "scheme": "http",
            "path": request.url.path,
            "raw_path": request.url.raw_path.split(b"?")[0],
            "query_string": request.url.query,
            "headers": [(k.lower(), v) for k, v in request.headers.raw],
            "server": ("node", 80),
            "client": ("test", 1),
            "root_path": "",
        }

        async def run() -> None:
            try:
                await self.app(scope, receive, send)
            except BaseException as error:
                if not started.done():
                    started.set_exception(error)
                raise

        task = asyncio.create_task(run())
        start = await asyncio.wait_for(started, SAFETY_S)
        stream = _Body(chunks, gone, task)
        self.bodies.append(stream)
        return httpx.Response(start["status"], headers=start.get("headers", []), stream=stream)


class Stream:
    """One open subscription, read message by message."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._lines = response.aiter_lines()
        self.comments: list[str] = []

    async def next(self) -> tuple[str, str, dict[str, Any]]:
        """(id, event, data) of the next message; comments are kept aside."""

        async def read() -> tuple[str, str, dict[str, Any]]:
            fields: dict[str, str] = {}
            async for line in self._lines:
                if line.startswith(":"):
                    self.comments.append(line)
                elif line:
                    name, _, value = line.partition(": ")
                    fields[name] = value
                elif "data" in fields:
                    return fields["id"], fields["event"], json.loads(fields["data"])
            raise AssertionError("the stream ended")

        return await asyncio.wait_for(read(), SAFETY_S)

    async def next_comment(self) -> str:
        async def read() -> str:
            async for line in self._lines:
                if line.startswith(":"):
                    return line
            raise AssertionError("the stream ended")

        return await asyncio.wait_for(read(), SAFETY_S)

    async def ended(self) -> bool:
        async def read() -> bool:
            async for line in self._lines:
                if line.startswith("data"):
                    return False
            return True

        return await asyncio.wait_for(read(), SAFETY_S)
