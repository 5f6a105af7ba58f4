"""User input: one broker pairs each ``waiting-input`` record with the next ``input`` op.

Requests come from three places: Jupyter's stdin channel, the stdin-pipe watcher of a batch
process, and the Unix-socket relay used by the shipped ``sitecustomize`` (and any program that
speaks its protocol: connect, read the text until EOF).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path

from .protocol import Record, RecordSink, encode_json

log = logging.getLogger(__name__)


class InputBroker:
    def __init__(self, send: RecordSink) -> None:
        self._send = send
        self._lock = asyncio.Lock()
        self._pending: asyncio.Future[str] | None = None

    async def ask(self, waiting_payload: bytes) -> str:
        """Announce that input is needed and wait for the next ``input`` op."""
        async with self._lock:
            self._pending = asyncio.get_running_loop().create_future()
            try:
                await self._send(Record.WAITING_INPUT, waiting_payload)
                return await self._pending
            finally:
                self._pending = None

    async def ask_line(self, is_password: bool = False) -> str:
        return await self.ask(encode_json({"is_password": is_password}))

    def feed(self, text: str) -> None:
        if self._pending is None or self._pending.done():
            # Nobody asked: a late answer to an interrupted prompt must not feed the next one.
            log.info("dropping an input that no program is waiting for")
            return
        self._pending.set_result(text)


def socket_is_live(path: Path) -> bool:
    """Whether some process has a socket bound to ``path``.

    It reads /proc/net/unix instead of connecting: a connection would be taken as an input
    request by the runner that owns the socket.
    """
    try:
        with open("/proc/net/unix") as table:
            next(table)  # header
            return any(line.rstrip("\n").split(None, 7)[7:] == [str(path)] for line in table)
    except (OSError, StopIteration):
        return True  # cannot tell: do not take the path away from anyone


class InputRelay:
    """A Unix stream server; each connection receives the text of one ``input`` op."""

    def __init__(self, broker: InputBroker) -> None:
        self._broker = broker
        self._server: asyncio.Server | None = None
        self._path: Path | None = None

    async def start(self, preferred: Path, fallback: Path) -> Path:
        """Listen on ``preferred`` unless another runner owns it; return the path used."""
        if preferred.exists() and socket_is_live(preferred):
            log.warning("%s belongs to another runner; relaying via %s", preferred, fallback)
            return await self._listen(fallback)
        with contextlib.suppress(OSError):  # a stale socket left by a runner that died
            preferred.unlink()
        try:
            return await self._listen(preferred)
        except OSError as e:
            log.warning("cannot listen on %s (%s); relaying via %s", preferred, e, fallback)
            return await self._listen(fallback)

    async def _listen(self, path: Path) -> Path:
        self._server = await asyncio.start_unix_server(self._serve, path=str(path))
        self._path = path
        return path

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        answer = asyncio.ensure_future(self._broker.ask(b""))
        # The client sends nothing: EOF means it died (e.g. interrupted) and must stop waiting.
        client_gone = asyncio.ensure_future(reader.read(1))
        try:
            await asyncio.wait({answer, client_gone}, return_when=asyncio.FIRST_COMPLETED)
            if answer.done():
                writer.write(answer.result().encode("utf-8"))
                await writer.drain()
        except ConnectionError:
            log.debug("an input-relay client went away")
        finally:
            answer.cancel()
            client_gone.cancel()
            writer.close()

    async def close(self) -> None:
        if self._server is None or self._path is None:
            return
        self._server.close()
        with contextlib.suppress(OSError):
            os.unlink(self._path)
