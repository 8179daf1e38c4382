"""A TCP proxy in front of a real server that loses chosen answers: when a line from the server
matches `drop`, the proxy closes both sides instead of passing it on (the first `times` times).

That is what a client sees when a connection dies after its command reached the server: the
server did the work, the client never hears so. The proxy runs its own event loop in a thread,
so that a client in a subprocess (the CLI) can use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading


class DroppingProxy:
    def __init__(self, host: str, port: int, drop: bytes, times: int = 1) -> None:
        self.target = (host, port)
        self.drop = re.compile(drop, re.I | re.M)
        self.times = times
        self.dropped = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    def start(self) -> DroppingProxy:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", 0), self._loop).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        async def close() -> None:
            assert self._server is not None
            self._server.close()
        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)

        async def client_to_server() -> None:
            while data := await reader.read(65536):
                up_writer.write(data)
                await up_writer.drain()

        async def server_to_client() -> None:
            buffer = b""
            while data := await up_reader.read(65536):
                buffer += data
                if self.dropped < self.times and self.drop.search(buffer):
                    self.dropped += 1
                    return  # the answer is lost with the connection
                lines = buffer.split(b"\n")
                buffer = lines.pop()
                if lines:
                    writer.write(b"\n".join(lines) + b"\n")
                    await writer.drain()
            if buffer:
                writer.write(buffer)

        tasks = [asyncio.create_task(client_to_server()), asyncio.create_task(server_to_client())]
        with contextlib.suppress(Exception):
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in tasks:
            t.cancel()
        for w in (writer, up_writer):
            w.close()
