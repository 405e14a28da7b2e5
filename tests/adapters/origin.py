"""A small HTTP/1.1 origin server on a loopback address for fetcher and download tests.

Raw asyncio streams rather than a framework, so a test can make it misbehave exactly: lie about
Content-Length, drip bytes slowly, answer with any status, serve TLS for a chosen name. It records
every request (path and headers) and, with TLS, the SNI name each client sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field


@dataclass
class Reply:
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    chunked: bool = False          # send the body chunked, without Content-Length
    chunk_size: int = 64 * 1024
    delay_per_chunk: float = 0.0   # seconds between chunks (a slow drip)


@dataclass
class Seen:
    path: str
    headers: dict[str, str]


Route = Reply | Callable[["Seen"], Reply]


class Origin:
    def __init__(self, routes: dict[str, Route], *, host: str = "127.0.0.1", port: int = 0,
                 tls: ssl.SSLContext | None = None) -> None:
        self.routes = routes
        self.host = host
        self.port = port
        self.tls = tls
        self.requests: list[Seen] = []
        self.connections = 0
        self.sni: list[str | None] = []
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.host}:{self.port}"

    async def start(self) -> Origin:
        if self.tls is not None:
            self.tls.sni_callback = lambda _sock, name, _ctx: self.sni.append(name)  # type: ignore[assignment,misc]
        self._server = await asyncio.start_server(self._serve, self.host, self.port, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            lines = head.decode("latin-1").split("\r\n")
            _method, path, _version = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    name, value = line.split(":", 1)
                    headers[name.strip().lower()] = value.strip()
            seen = Seen(path=path, headers=headers)
            self.requests.append(seen)
            route = self.routes.get(path.split("?")[0], Reply(404, [("Content-Type", "text/plain")], b"nope"))
            reply = route(seen) if callable(route) else route
            await self._reply(writer, reply)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError, ssl.SSLError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    @staticmethod
    async def _reply(writer: asyncio.StreamWriter, reply: Reply) -> None:
        names = {name.lower() for name, _ in reply.headers}
        head = [f"HTTP/1.1 {reply.status} X"] + [f"{name}: {value}" for name, value in reply.headers]
        if reply.chunked:
            head.append("Transfer-Encoding: chunked")
        elif "content-length" not in names:
            head.append(f"Content-Length: {len(reply.body)}")
        head.append("Connection: close")
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        await writer.drain()
        for start in range(0, len(reply.body), reply.chunk_size):
            chunk = reply.body[start:start + reply.chunk_size]
            if reply.delay_per_chunk:
                await asyncio.sleep(reply.delay_per_chunk)
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if reply.chunked else chunk)
            await writer.drain()
        if reply.chunked:
            writer.write(b"0\r\n\r\n")
            await writer.drain()


@contextlib.asynccontextmanager
async def serving(routes: dict[str, Route], **kwargs: object) -> AsyncIterator[Origin]:
    origin = await Origin(routes, **kwargs).start()  # type: ignore[arg-type]
    try:
        yield origin
    finally:
        await origin.stop()
