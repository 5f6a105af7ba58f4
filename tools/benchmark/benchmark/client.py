"""Round trips timed from the agent's side, on ``ai.backend.kernel.agent_client``."""

from __future__ import annotations

import codecs
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ai.backend.kernel.agent_client import AgentClient, RunnerExited, RunnerTimeout
from ai.backend.kernel.protocol import MalformedMessage, Op, Record, decode_exit

from .config import RUN_TIMEOUT, STREAM_BYTES, STREAM_CMD, STREAM_TIMEOUT, BenchError


@contextmanager
def as_bench_error(what: str) -> Iterator[None]:
    """The client's failures, as a measurement that could not be taken."""
    try:
        yield
    except (RunnerTimeout, RunnerExited, MalformedMessage) as exc:
        raise BenchError(f"{what}: {exc}") from exc


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def repeat(action: Callable[[], object], count: int) -> list[float]:
    return [timed(action) for _ in range(count)]


def check_finished(payload: bytes, what: str) -> None:
    with as_bench_error(what):
        code = decode_exit(payload)
    if code != 0:
        raise BenchError(f"{what} finished with exitCode {code}")


def status_round_trip(client: AgentClient) -> None:
    with as_bench_error("status"):
        client.status(RUN_TIMEOUT)


def query_round_trip(client: AgentClient, code: str = "pass") -> None:
    client.send(Op.CODE, code)
    with as_bench_error(f"query {code!r}"):
        payload = client.follow(Record.FINISHED, timeout=RUN_TIMEOUT)[Record.FINISHED]
    check_finished(payload, f"query {code!r}")


def batch_round_trip(client: AgentClient, exec_cmd: str = "true") -> None:
    client.start_batch(exec=exec_cmd)
    with as_bench_error(f"batch exec {exec_cmd!r}"):
        payload = client.follow(Record.FINISHED, timeout=RUN_TIMEOUT)[Record.FINISHED]
    check_finished(payload, f"batch exec {exec_cmd!r}")


@dataclass
class StreamResult:
    raw_bytes: int = 0
    replaced: int = 0
    seconds: float = 0.0


class AgentDecoding:
    """stdout/stderr decoded as the agent's read_output() does: one incremental UTF-8
    decoder per stream, errors replaced."""

    def __init__(self, result: StreamResult) -> None:
        self.result = result
        self.decoders: dict[str, codecs.IncrementalDecoder] = {
            Record.STDOUT: codecs.getincrementaldecoder("utf8")(errors="replace"),
            Record.STDERR: codecs.getincrementaldecoder("utf8")(errors="replace"),
        }

    def __call__(self, kind: str, payload: bytes) -> None:
        if kind not in self.decoders:
            return
        text = self.decoders[kind].decode(payload)
        if kind == Record.STDOUT:
            self.result.raw_bytes += len(payload)
            self.result.replaced += text.count("\ufffd")


def stream_throughput(client: AgentClient) -> StreamResult:
    result = StreamResult()
    start = time.perf_counter()
    client.start_batch(exec=STREAM_CMD)
    with as_bench_error("64 MiB stream"):
        found = client.follow(
            Record.FINISHED, on_record=AgentDecoding(result), timeout=STREAM_TIMEOUT
        )
    check_finished(found[Record.FINISHED], "64 MiB stream")
    result.seconds = time.perf_counter() - start
    if result.raw_bytes != STREAM_BYTES or result.replaced:
        raise BenchError(
            f"stream delivered {result.raw_bytes} bytes ({result.replaced} replaced chars), "
            f"expected {STREAM_BYTES}"
        )
    return result
