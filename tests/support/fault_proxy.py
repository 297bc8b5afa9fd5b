"""A TCP proxy in front of one Redis server that loses a reply on command.

It reproduces the one failure a retry cannot see through: Redis ran the request, and the connection broke
before its reply arrived. :meth:`FaultProxy.drop_reply` arms it; the next request that contains the given
bytes (a script's SHA1, say) is passed on to Redis, and when Redis answers, the proxy closes both sides of
that connection instead of passing the answer back. Every other byte goes through untouched.

A lost reply is recognised as the first bytes Redis sends after the armed request: the test must have no other
request in flight on that connection at that moment (the stores' tests run one operation at a time).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

__all__ = ["FaultProxy", "fault_proxy", "fault_proxy_thread"]

_CHUNK = 65_536


class FaultProxy:
    """Listens on a free local port and forwards each connection to ``target_port`` on 127.0.0.1."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._server: asyncio.Server | None = None
        #: Bytes marking the requests whose replies are to be lost, and how many more to lose.
        self._match = b""
        self._to_drop = 0
        self._meanwhile: Callable[[], Awaitable[None]] | None = None
        #: Replies lost so far.
        self.dropped = 0
        self._links: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)

    def drop_reply(
        self, match: bytes, *, times: int = 1, meanwhile: Callable[[], Awaitable[None]] | None = None
    ) -> None:
        """Lose the replies to the next ``times`` requests containing ``match`` (closing their connections).

        ``meanwhile`` runs once Redis has answered and before the connection is closed: what other clients
        do while the reply is lost.
        """
        self._match = match
        self._to_drop = times
        self._meanwhile = meanwhile

    def disarm(self) -> None:
        self._to_drop = 0
        self._meanwhile = None

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._links):
            task.cancel()
        await asyncio.gather(*self._links, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._links.add(task)
        try:
            await self._link(client_reader, client_writer)
        finally:
            self._links.discard(task)
            client_writer.close()

    async def _link(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            return
        #: Set once an armed request went through: the next reply on this connection is lost.
        losing = asyncio.Event()

        async def requests() -> None:
            while data := await client_reader.read(_CHUNK):
                if self._to_drop > 0 and self._match in data:
                    self._to_drop -= 1
                    losing.set()
                server_writer.write(data)
                await server_writer.drain()

        async def replies() -> None:
            while data := await server_reader.read(_CHUNK):
                if losing.is_set():
                    self.dropped += 1
                    if self._meanwhile is not None:
                        await self._meanwhile()
                    return  # closing both sides below: Redis has answered, the client never hears it
                client_writer.write(data)
                await client_writer.drain()

        pumps = [asyncio.create_task(requests()), asyncio.create_task(replies())]
        try:
            # Either side closing (or the reply being lost) ends the connection as a whole.
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            server_writer.close()
            client_writer.close()


@contextlib.asynccontextmanager
async def fault_proxy(target_port: int) -> AsyncIterator[FaultProxy]:
    """A started :class:`FaultProxy` to ``target_port``, closed afterwards."""
    proxy = FaultProxy(target_port)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


@contextlib.contextmanager
def fault_proxy_thread(target_port: int) -> Iterator[FaultProxy]:
    """A :class:`FaultProxy` on an event loop of its own in a thread, for a test whose server runs elsewhere.

    Arm it from the test's thread: :meth:`FaultProxy.drop_reply` only sets attributes its loop reads.
    """
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fault-proxy", daemon=True)
    thread.start()
    proxy = FaultProxy(target_port)
    try:
        asyncio.run_coroutine_threadsafe(proxy.start(), loop).result(timeout=10)
        yield proxy
    finally:
        asyncio.run_coroutine_threadsafe(proxy.close(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
