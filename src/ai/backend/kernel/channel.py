"""The runner's two ZeroMQ sockets to the agent, driven straight from the event loop.

Ops arrive on a PULL socket, records leave on a PUSH socket (two frames each). The event loop
watches each socket's ``ZMQ_FD``, which becomes readable when the socket's events may have
changed; the runner then receives every waiting op at once (non-blocking) and hands it on
synchronously, and sends a record at once unless the high-water mark is reached, when senders
wait for room in the order they came. This costs a fraction of zmq.asyncio's futures per
message (see the kernel README's numbers), and leaves zmq.asyncio to query mode's
jupyter_client.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import cast

import zmq

log = logging.getLogger(__name__)

SEND_HWM = 64
"""Records buffered in ZeroMQ before sends wait: at most 64 x 256 KiB of output in memory."""
LINGER_MS = 100

FrameHandler = Callable[[list[bytes]], None]

# Plain ints: pyzmq's enum flags cost an enum object per operation on this hot path.
POLLIN, POLLOUT = int(zmq.POLLIN), int(zmq.POLLOUT)
NOBLOCK = int(zmq.NOBLOCK)
NOBLOCK_MORE = NOBLOCK | int(zmq.SNDMORE)


def _events(sock: zmq.Socket[bytes]) -> int:
    """``ZMQ_EVENTS``; reading it also re-arms the socket's ``ZMQ_FD``."""
    return cast(int, sock.get(zmq.EVENTS))


class AgentChannel:
    def __init__(self, on_frames: FrameHandler) -> None:
        """``on_frames`` gets the frames of each op, in the order they came; it must not
        block, and what it raises is logged."""
        self._on_frames = on_frames
        self._context = zmq.Context()
        self._in = self._context.socket(zmq.PULL)
        self._out = self._context.socket(zmq.PUSH)
        self._send_lock = asyncio.Lock()  # held by senders waiting for room, in order
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, host: str, in_port: int, out_port: int) -> None:
        """Bind both sockets and start receiving (in the running event loop)."""
        self._out.setsockopt(zmq.SNDHWM, SEND_HWM)
        for sock in (self._in, self._out):
            sock.setsockopt(zmq.LINGER, LINGER_MS)
        self._in.bind(f"tcp://{host}:{in_port}")
        self._out.bind(f"tcp://{host}:{out_port}")
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._in.FD, self._receive_waiting)
        self._receive_waiting()  # ops that came before the reader was added

    def _receive_waiting(self) -> None:
        # ZMQ_FD only says that events may have changed: receive until none is left, or
        # the descriptor would not wake the loop again for the ones still waiting.
        while _events(self._in) & POLLIN:
            frames = self._in.recv_multipart(NOBLOCK)
            try:
                self._on_frames(frames)
            except Exception:
                log.exception("an op could not be handled")

    async def send(self, frames: Sequence[bytes]) -> None:
        """Send one message; wait while the high-water mark is reached (backpressure)."""
        if not self._send_lock.locked() and self._try_send(frames):
            return
        async with self._send_lock:
            while not self._try_send(frames):
                await self._out_events_changed()

    def _try_send(self, frames: Sequence[bytes]) -> bool:
        *first, last = frames
        try:
            # Small frames are copied anyway; larger ones (output chunks) are not. Only the
            # first frame can meet the high-water mark: the others follow it (multipart).
            for frame in first:
                self._out.send(frame, NOBLOCK_MORE, copy=False)
            self._out.send(last, NOBLOCK, copy=False)
        except zmq.Again:
            return False
        return True

    async def _out_events_changed(self) -> None:
        """Return at once if there is room to send, else when there may be."""
        if _events(self._out) & POLLOUT:
            return
        loop = asyncio.get_running_loop()
        changed: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not changed.done():
                changed.set_result(None)

        loop.add_reader(self._out.FD, wake)
        try:
            await changed
        finally:
            loop.remove_reader(self._out.FD)

    def close(self) -> None:
        if self._loop is not None and not self._in.closed:
            self._loop.remove_reader(self._in.FD)
        self._context.destroy(linger=LINGER_MS)
