"""A TCP proxy of a test's own, to cut a real service off without touching it.

The machine's PostgreSQL is shared and must never be stopped; a test puts this proxy in front
of it and points the server at the proxy. :meth:`TcpProxy.cut` closes every connection through
it and stops listening (new connections are refused, as from a stopped server);
:meth:`TcpProxy.blackhole` keeps everything open but swallows every byte (a network dropping
packets: nothing is refused or reset, nothing answers); :meth:`TcpProxy.restore` ends either.
"""

from __future__ import annotations

import asyncio
import contextlib


class TcpProxy:
    def __init__(self, target_host: str, target_port: int, port: int) -> None:
        self.target = (target_host, target_port)
        self.port = port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.connections = 0  # accepted so far
        # Blackholed: bytes are swallowed both ways and new connections hang (a network that
        # drops packets: no reset, no refusal, nothing).
        self.blackholed = False

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", self.port, reuse_address=True
        )

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def restore(self) -> None:
        if self.blackholed:
            # What crossed meanwhile was lost, so every connection through it is broken (as
            # after a long partition): they are reset, and new ones go through again.
            await self.cut()
            self.blackholed = False
        await self.start()

    def blackhole(self) -> None:
        self.blackholed = True

    async def close(self) -> None:
        await self.cut()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.blackholed:
            self._writers.add(writer)
            return  # never answered; closed by cut() or close()
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}
        pipes = [
            asyncio.create_task(self._pipe(reader, up_writer)),
            asyncio.create_task(self._pipe(up_reader, writer)),
        ]
        self._tasks.update(pipes)
        try:
            # Either side ending ends the connection, as a plain TCP path would.
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pipe in pipes:
                pipe.cancel()
            self._tasks.difference_update(pipes)
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                if self.blackholed:
                    continue  # lost on the way
                writer.write(data)
                await writer.drain()
