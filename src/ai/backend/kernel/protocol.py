"""Names and encodings of the messages exchanged with the Backend.AI agent.

Every message is two ZeroMQ frames, ``[type, payload]``.  Ops arrive on the PULL socket, records
leave through the PUSH socket.  Payloads are UTF-8 text or JSON, except the raw bytes of
``stdout``/``stderr`` and the msgpack-encoded ``status`` reply the agent expects.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import msgpack


class Op(StrEnum):
    CLEAN = "clean"
    BUILD = "build"
    EXEC = "exec"
    CODE = "code"
    INPUT = "input"
    INTERRUPT = "interrupt"
    STATUS = "status"
    COMPLETE = "complete"
    EVENT = "event"
    START_SERVICE = "start-service"
    SHUTDOWN_SERVICE = "shutdown-service"
    GET_APPS = "get-apps"
    START_MODEL_SERVICE = "start-model-service"


class Record(StrEnum):
    STDOUT = "stdout"
    STDERR = "stderr"
    MEDIA = "media"
    WAITING_INPUT = "waiting-input"
    FINISHED = "finished"
    CLEAN_FINISHED = "clean-finished"
    BUILD_FINISHED = "build-finished"
    STATUS = "status"
    COMPLETION = "completion"
    SERVICE_RESULT = "service-result"
    APPS_RESULT = "apps-result"
    MODEL_SERVICE_RESULT = "model-service-result"
    MODEL_SERVICE_STATUS = "model-service-status"


RecordSink = Callable[[Record, bytes], Awaitable[None]]
"""Sends one record to the agent, waiting while the socket's high-water mark is reached."""


class MalformedMessage(ValueError):
    """An incoming message that does not follow the framing rules."""


@dataclass(frozen=True)
class Message:
    op: Op
    payload: str


def parse_message(frames: list[bytes]) -> Message:
    """Validate and decode one incoming multipart message."""
    if len(frames) != 2:
        raise MalformedMessage(f"expected 2 frames, got {len(frames)}")
    raw_type, raw_payload = frames
    try:
        op = Op(raw_type.decode("ascii"))
    except (UnicodeDecodeError, ValueError) as e:
        raise MalformedMessage(f"unknown op {raw_type[:40]!r}") from e
    try:
        payload = raw_payload.decode("utf-8")
    except UnicodeDecodeError as e:
        raise MalformedMessage(f"payload of {op} is not UTF-8") from e
    return Message(op, payload)


def decode_json(payload: str) -> Any:
    try:
        return json.loads(payload)
    except json.JSONDecodeError as e:
        raise MalformedMessage(f"bad JSON payload: {e}") from e


def encode_json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8")


def encode_status(started_at: float) -> bytes:
    packed: bytes = msgpack.packb({"started_at": started_at})
    return packed


def decode_status(payload: bytes) -> dict[str, Any]:
    unpacked: dict[str, Any] = msgpack.unpackb(payload)
    return unpacked


def exit_payload(exit_code: int) -> bytes:
    return encode_json({"exitCode": exit_code})


def decode_exit(payload: bytes) -> int:
    """The exit code of a ``finished``/``clean-finished``/``build-finished`` record."""
    try:
        value = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise MalformedMessage(f"bad exit payload: {e}") from e
    code = value.get("exitCode") if isinstance(value, dict) else None
    if not isinstance(code, int) or isinstance(code, bool):
        raise MalformedMessage(f"no integer exitCode in {payload[:80]!r}")
    return code
