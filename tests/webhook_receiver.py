"""A webhook receiver for tests: a bare HTTP/1.1 server that records each request and answers
from a script (status codes in order, then 200; ``None`` hangs until the connection closes)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from standardwebhooks.webhooks import Webhook


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def verify(self, secret: str) -> dict[str, object]:
        """The official package's check: signature, and timestamp within its 5-minute tolerance."""
        result: dict[str, object] = Webhook(secret).verify(self.body, self.headers)
        return result


@dataclass
class Receiver:
    answers: list[int | None] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            path = lines[0].split(" ")[1]
            headers = {k.strip().lower(): v.strip() for k, v in
                       (line.split(":", 1) for line in lines[1:] if ":" in line)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.received.append(Received(path, headers, body))
            self._arrived.set()
            status = self.answers.pop(0) if self.answers else 200
            if status is None:
                await reader.read()  # hang until the sender gives up or dies
                return
            reply = b"ok" if status < 300 else b"x" * 5000
            extra = b"Location: http://127.0.0.1:1/elsewhere\r\n" if 300 <= status < 400 else b""
            writer.write(b"HTTP/1.1 %d X\r\nContent-Length: %d\r\nConnection: close\r\n%s\r\n%s"
                         % (status, len(reply), extra, reply))
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def wait_for(self, count: int, timeout: float = 20.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(self.received)} of {count} deliveries arrived")
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), 0.2)
            except TimeoutError:
                pass
        return self.received
