"""The agent's side of the wire protocol, for the developer client, the tests and the benchmark.

An ``AgentClient`` connects a PUSH socket to the runner's ops port and a PULL socket to its
records port, as ``AbstractCodeRunner`` of backend.ai-agent does, and sends ops as
``[type, payload]`` frames.  ``follow`` receives records until each awaited type has arrived
once, answering ``waiting-input`` requests; ``collect`` keeps what arrived as ``Records``.
Everything is synchronous: its users are a terminal program, pytest tests and a benchmark that
times single round trips.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import zmq

from .protocol import MalformedMessage, Op, Record, decode_exit, decode_status

Frames = tuple[str, bytes]
"""A record's type (as read from the wire, so possibly not a ``Record``) and its payload."""

RecordHandler = Callable[[str, bytes], None]
Answer = Callable[[bool], str | None]
"""Given whether a ``waiting-input`` asks for a password, the line to send, or None for none."""

BATCH_FINISHED = (Record.CLEAN_FINISHED, Record.BUILD_FINISHED, Record.FINISHED)
"""The records that end the three steps of a batch run."""

LINGER_MS = 100  # an op sent just before close() still leaves
RECONNECT_IVL_MS = 5  # reach a runner within a few ms of its bind
POLL_SLICE_S = 0.1  # how often a wait checks that the runner is still alive


class RunnerTimeout(TimeoutError):
    """No record arrived from the runner within the time allowed."""


class RunnerExited(RuntimeError):
    """The runner process exited while a record was awaited."""


@dataclass
class Records:
    """Records in the order they arrived."""

    records: list[Frames] = field(default_factory=list)

    def append(self, kind: str, payload: bytes) -> None:
        self.records.append((kind, payload))

    def text(self, kind: str) -> str:
        return b"".join(p for t, p in self.records if t == kind).decode()

    @property
    def stdout(self) -> str:
        return self.text(Record.STDOUT)

    @property
    def stderr(self) -> str:
        return self.text(Record.STDERR)

    def types(self) -> list[str]:
        """The record types other than output, e.g. ``["build-finished", "finished"]``."""
        return [t for t, _ in self.records if t not in (Record.STDOUT, Record.STDERR)]

    def exit_code(self, kind: str = Record.FINISHED) -> int:
        return decode_exit(self.payload(kind))

    def payload(self, kind: str) -> bytes:
        """The payload of the first record of ``kind``."""
        try:
            return next(p for t, p in self.records if t == kind)
        except StopIteration:
            raise LookupError(f"no {kind!r} record among {self.types()}") from None

    def json_payloads(self, kind: str) -> list[Any]:
        return [json.loads(p) for t, p in self.records if t == kind]

    def after(self, kind: str) -> Records:
        """The records that follow the first one of ``kind``, e.g. an exec step's output."""
        index = next(i for i, (t, _) in enumerate(self.records) if t == kind)
        return Records(self.records[index + 1 :])


@dataclass(frozen=True)
class FirstStatus:
    status: dict[str, Any]
    answered_at: float  # time.perf_counter() when the reply arrived


def is_password_request(payload: bytes) -> bool:
    """Whether a ``waiting-input`` payload (JSON, or empty from old runners) asks for a secret."""
    if not payload:
        return False
    try:
        request = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise MalformedMessage(f"bad waiting-input payload {payload[:80]!r}: {e}") from e
    return isinstance(request, dict) and bool(request.get("is_password"))


def answers(lines: Iterable[str]) -> Answer:
    """Answer input requests with ``lines`` in turn; later requests stay unanswered."""
    pending = list(lines)
    return lambda _is_password: pending.pop(0) if pending else None


class AgentClient:
    """One agent connection to a runner.

    ``timeout`` bounds every wait for a record (None waits forever); ``alive``, if given, is
    asked while waiting, so that a runner that died fails the wait at once."""

    def __init__(
        self,
        in_port: int,
        out_port: int,
        host: str = "127.0.0.1",
        *,
        timeout: float | None = 30.0,
        alive: Callable[[], bool] | None = None,
    ) -> None:
        self.timeout = timeout
        self.alive = alive
        self._context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self._push = self._context.socket(zmq.PUSH)
        self._pull = self._context.socket(zmq.PULL)
        for sock in (self._push, self._pull):
            sock.setsockopt(zmq.LINGER, LINGER_MS)
            sock.setsockopt(zmq.RECONNECT_IVL, RECONNECT_IVL_MS)
        self._push.connect(f"tcp://{host}:{in_port}")
        self._pull.connect(f"tcp://{host}:{out_port}")

    def send(self, op: Op, payload: str = "") -> None:
        self._push.send_multipart([op.encode(), payload.encode()])

    def send_frames(self, frames: list[bytes]) -> None:
        """Any frames at all, e.g. malformed messages."""
        self._push.send_multipart(frames)

    def poll(self, timeout: float) -> Frames | None:
        """The next record if one arrives within ``timeout`` seconds, else None."""
        if not self._pull.poll(int(timeout * 1000)):
            return None
        frames = self._pull.recv_multipart()
        if len(frames) != 2:
            raise MalformedMessage(f"a record of {len(frames)} frames, expected 2")
        return frames[0].decode(errors="replace"), frames[1]

    def recv(self, timeout: float | None = None) -> Frames:
        """The next record; waits up to ``timeout`` seconds (default: the client's)."""
        limit = self.timeout if timeout is None else timeout
        deadline = None if limit is None else time.monotonic() + limit
        while True:
            left = POLL_SLICE_S if deadline is None else deadline - time.monotonic()
            if (record := self.poll(max(0.0, min(left, POLL_SLICE_S)))) is not None:
                return record
            self._check_alive()
            if deadline is not None and time.monotonic() >= deadline:
                raise RunnerTimeout(f"no record from the runner within {limit} s")

    def _check_alive(self) -> None:
        if self.alive is not None and not self.alive():
            raise RunnerExited("the runner exited while a record was awaited")

    def follow(
        self,
        *until: str,
        on_record: RecordHandler | None = None,
        answer: Answer | None = None,
        timeout: float | None = None,
    ) -> dict[str, bytes]:
        """Receive records until each type in ``until`` has arrived once, passing each to
        ``on_record`` and answering ``waiting-input`` with ``answer``. Returns the payloads of
        the ``until`` records; ``timeout`` bounds the wait for each record."""
        remaining, found = list(until), dict[str, bytes]()
        while remaining:
            kind, payload = self.recv(timeout)
            if on_record is not None:
                on_record(kind, payload)
            if kind == Record.WAITING_INPUT and answer is not None:
                line = answer(is_password_request(payload))
                if line is not None:
                    self.send(Op.INPUT, line)
            if kind in remaining:
                remaining.remove(kind)
                found[kind] = payload
        return found

    def collect(self, *until: str, inputs: Iterable[str] = (), **kw: Any) -> Records:
        """``follow`` that keeps every record and answers input requests with ``inputs``."""
        result = Records()
        self.follow(*until, on_record=result.append, answer=answers(inputs), **kw)
        return result

    def collect_until_stdout(self, marker: str) -> Records:
        """Gather records until the stdout so far contains ``marker``, e.g. the line a snippet
        prints (flushed) once it runs, so that an interrupt sent next finds it running."""
        result = Records()
        while marker not in result.stdout:
            result.append(*self.recv())
        return result

    def status(self, timeout: float | None = None) -> dict[str, Any]:
        """Ask for the runner's status; other records before the reply are dropped, as the
        agent routes status replies to a queue of their own."""
        self.send(Op.STATUS)
        return decode_status(self.follow(Record.STATUS, timeout=timeout)[Record.STATUS])

    def first_status(self, timeout: float, interval: float = 0.02) -> FirstStatus:
        """The first status of a runner that may still be starting: ask every ``interval``
        seconds until one answers, then drop the replies to the other asks."""
        deadline, asked = time.monotonic() + timeout, 0
        while time.monotonic() < deadline:
            self._check_alive()
            self.send(Op.STATUS)
            asked += 1
            record = self.poll(interval)
            while record is not None:
                if record[0] == Record.STATUS:
                    answered_at = time.perf_counter()
                    self._drop_status_replies(asked - 1)
                    return FirstStatus(decode_status(record[1]), answered_at)
                record = self.poll(0)
        raise RunnerTimeout(f"no status reply within {timeout} s")

    def _drop_status_replies(self, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while count > 0 and (left := deadline - time.monotonic()) > 0:
            record = self.poll(left)
            if record is not None and record[0] == Record.STATUS:
                count -= 1

    def query(self, code: str, inputs: Iterable[str] = ()) -> Records:
        self.send(Op.CODE, code)
        return self.collect(Record.FINISHED, inputs=inputs)

    def query_interrupted(self, code: str, started: str) -> Records:
        """Send a query, interrupt it once its stdout shows ``started`` (printed and flushed
        when it runs), and collect every record to its end."""
        self.send(Op.CODE, code)
        result = self.collect_until_stdout(started)
        self.send(Op.INTERRUPT)
        result.records += self.collect(Record.FINISHED).records
        return result

    def start_batch(self, clean: str = "", build: str = "", exec: str = "") -> None:
        """Send the three steps of a batch run, as the agent does ("" skips a step)."""
        for op, command in ((Op.CLEAN, clean), (Op.BUILD, build), (Op.EXEC, exec)):
            self.send(op, command)

    def batch(self, clean: str = "", build: str = "", exec: str = "", **kw: Any) -> Records:
        self.start_batch(clean, build, exec)
        return self.collect(*BATCH_FINISHED, **kw)

    def drain(self, quiet: float) -> None:
        """Drop records until none arrives for ``quiet`` seconds."""
        while self.poll(quiet) is not None:
            pass

    def close(self) -> None:
        self._context.destroy(linger=LINGER_MS)
