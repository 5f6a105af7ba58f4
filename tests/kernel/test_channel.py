"""The runner's sockets (channel.py): every op handed on in order, sends that wait for room."""

from __future__ import annotations

import asyncio

import zmq
import zmq.asyncio

from ai.backend.kernel.channel import SEND_HWM, AgentChannel
from tests.support.processes import free_ports

HOST = "127.0.0.1"


async def _ops_in_order(count: int) -> list[list[bytes]]:
    received: list[list[bytes]] = []
    channel = AgentChannel(received.append)
    in_port, out_port = free_ports()
    context = zmq.asyncio.Context()
    push = context.socket(zmq.PUSH)
    try:
        push.connect(f"tcp://{HOST}:{in_port}")
        for index in range(count // 2):  # queued before the runner binds
            await push.send_multipart([b"status", str(index).encode()])
        channel.bind(HOST, in_port, out_port)
        for index in range(count // 2, count):
            await push.send_multipart([b"status", str(index).encode()])
        async with asyncio.timeout(30):
            while len(received) < count:
                await asyncio.sleep(0.01)
    finally:
        channel.close()
        context.destroy(linger=0)
    return received


def test_every_op_arrives_in_order() -> None:
    received = asyncio.run(_ops_in_order(1000))
    assert received == [[b"status", str(i).encode()] for i in range(1000)]


async def _ops_after_a_failure() -> list[bytes]:
    seen: list[bytes] = []

    def handler(frames: list[bytes]) -> None:
        seen.append(frames[1])
        if frames[1] == b"bad":
            raise RuntimeError("a handler bug")

    channel = AgentChannel(handler)
    in_port, out_port = free_ports()
    channel.bind(HOST, in_port, out_port)
    context = zmq.asyncio.Context()
    push = context.socket(zmq.PUSH)
    try:
        push.connect(f"tcp://{HOST}:{in_port}")
        for payload in (b"bad", b"good"):
            await push.send_multipart([b"status", payload])
        async with asyncio.timeout(30):
            while len(seen) < 2:
                await asyncio.sleep(0.01)
    finally:
        channel.close()
        context.destroy(linger=0)
    return seen


def test_a_failing_handler_does_not_stop_receiving() -> None:
    assert asyncio.run(_ops_after_a_failure()) == [b"bad", b"good"]


async def _sends_wait_for_a_reader() -> tuple[int, list[bytes]]:
    """More records than the high-water mark, sent while no agent is connected."""
    channel = AgentChannel(lambda frames: None)
    in_port, out_port = free_ports()
    channel.bind(HOST, in_port, out_port)
    count = SEND_HWM * 3
    sends = [asyncio.create_task(channel.send([b"stdout", b"%d" % i])) for i in range(count)]
    context = zmq.asyncio.Context()
    try:
        await asyncio.sleep(0.2)
        waiting = sum(not send.done() for send in sends)
        pull = context.socket(zmq.PULL)
        pull.connect(f"tcp://{HOST}:{out_port}")
        async with asyncio.timeout(30):
            payloads = [(await pull.recv_multipart())[1] for _ in range(count)]
            await asyncio.gather(*sends)
    finally:
        channel.close()
        context.destroy(linger=0)
    return waiting, payloads


def test_sends_wait_at_the_high_water_mark_and_keep_their_order() -> None:
    waiting, payloads = asyncio.run(_sends_wait_for_a_reader())
    assert waiting == SEND_HWM * 3  # with no peer, a PUSH socket has no room at all
    assert payloads == [b"%d" % i for i in range(SEND_HWM * 3)]
