"""Model-service health checks: the HTTP probe and the state reports of the monitor."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager

import pytest

from ai.backend.kernel.services.health import (
    HealthCheck,
    HealthMonitor,
    http_probe,
    parse_status_line,
)

OK = None  # a healthy probe outcome
FAIL = "down"


async def monitor_reports(
    outcomes: Iterable[str | None | Exception],
    max_retries: int,
    report_errors: int = 0,
) -> list[bool]:
    """Run a monitor over scripted probe outcomes; the states it reported (an Exception
    outcome is raised by the probe; the first ``report_errors`` reports fail)."""
    script = list(outcomes)
    finished = asyncio.Event()
    reports: list[bool] = []

    async def probe() -> str | None:
        if not script:
            finished.set()
            await asyncio.Event().wait()  # until cancelled
        outcome = script.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def report(healthy: bool) -> None:
        nonlocal report_errors
        if report_errors:
            report_errors -= 1
            raise ConnectionError("agent socket gone")
        reports.append(healthy)

    check = HealthCheck("/health", max_retries=max_retries, max_wait_time=0)
    task = asyncio.create_task(HealthMonitor("m", check, probe, report).run())
    script_done = asyncio.create_task(finished.wait())
    done, _ = await asyncio.wait([task, script_done], return_when=asyncio.FIRST_COMPLETED)
    assert task not in done, f"the monitor stopped on its own: {task}"
    task.cancel()
    return reports


def test_healthy_first_then_unhealthy_after_max_retries_failures() -> None:
    outcomes = [FAIL, FAIL, OK, OK, FAIL, FAIL, OK, FAIL, FAIL, FAIL, OK]
    assert asyncio.run(monitor_reports(outcomes, max_retries=2)) == [
        False,  # two failures before the first success
        True,
        False,
        True,
        False,
        True,
    ]


def test_a_success_restarts_the_failure_count() -> None:
    # Upstream kept counting across healthy periods and reported these as unhealthy.
    outcomes = [OK, FAIL, FAIL, OK, FAIL, FAIL, OK, FAIL, FAIL]
    assert asyncio.run(monitor_reports(outcomes, max_retries=3)) == [True]


def test_no_report_while_failures_stay_below_max_retries() -> None:
    assert asyncio.run(monitor_reports([FAIL, FAIL], max_retries=3)) == []


def test_probe_errors_count_as_failures_and_never_end_the_checks() -> None:
    outcomes = [OK, ValueError("bad URL"), RuntimeError("anything"), OK]
    assert asyncio.run(monitor_reports(outcomes, max_retries=2)) == [True, False, True]


def test_a_failed_report_is_sent_again_next_round() -> None:
    assert asyncio.run(monitor_reports([OK, OK, OK], max_retries=1, report_errors=1)) == [True]


@pytest.mark.parametrize(
    "line, status",
    [(b"HTTP/1.1 200 OK\r\n", 200), (b"HTTP/1.0 503\r\n", 503), (b"HTTP/2 404 Not Found", 404)],
)
def test_parse_status_line(line: bytes, status: int) -> None:
    assert parse_status_line(line) == status


@pytest.mark.parametrize("line", [b"", b"SSH-2.0-dropbear\r\n", b"HTTP/1.1 OK\r\n"])
def test_parse_status_line_rejects_other_answers(line: bytes) -> None:
    with pytest.raises(ValueError, match="not an HTTP status line"):
        parse_status_line(line)


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


def answering(status: int, seen: list[bytes]) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readline())
        writer.write(f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n".encode())
        await writer.drain()
        writer.close()

    return handle


async def probe_once(handler: Handler, check: HealthCheck) -> str | None:
    async with serving(handler) as port:
        return await http_probe(check, port, host="127.0.0.1")()


def test_http_probe_healthy_and_a_path_without_leading_slash() -> None:
    seen: list[bytes] = []
    check = HealthCheck("v1/health?x=1", expected_status_code=204)
    assert asyncio.run(probe_once(answering(204, seen), check)) is None
    assert seen == [b"GET /v1/health?x=1 HTTP/1.1\r\n"]


def test_http_probe_unexpected_status() -> None:
    check = HealthCheck("/health")
    assert asyncio.run(probe_once(answering(503, []), check)) == "status 503, expected 200"


def test_http_probe_times_out_after_the_round() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never answers; the probe gives up and closes
        writer.close()

    check = HealthCheck("/health", max_wait_time=0.2)
    assert asyncio.run(probe_once(silent, check)) == "no answer within 0.2 s"


def test_http_probe_raises_on_a_closed_port() -> None:
    async def refused() -> str | None:
        async with serving(answering(200, [])) as port:
            pass  # closed again: nothing listens on the port now
        return await http_probe(HealthCheck("/"), port, host="127.0.0.1")()

    with pytest.raises(OSError):
        asyncio.run(refused())


async def probe_starts(check: HealthCheck, probe_takes: float, watch: float) -> list[float]:
    """When each probe of a monitor started, over ``watch`` seconds (each takes ``probe_takes``)."""
    loop = asyncio.get_running_loop()
    starts: list[float] = []

    async def probe() -> str | None:
        starts.append(loop.time())
        await asyncio.sleep(probe_takes)
        return OK

    async def report(healthy: bool) -> None:
        pass

    task = asyncio.create_task(HealthMonitor("m", check, probe, report).run())
    await asyncio.sleep(watch)
    task.cancel()
    return [start - starts[0] for start in starts]


def test_interval_is_from_the_start_of_one_probe_to_the_start_of_the_next() -> None:
    # Scaled down from agent 25.5.2's case: interval 4, max_wait_time 1, 13 s -> probes at
    # 0, 4, 8, 12 (one per max_wait_time before `interval` was read: 13).
    check = HealthCheck("/h", max_wait_time=0.1, interval=0.4)
    starts = asyncio.run(probe_starts(check, probe_takes=0.05, watch=1.3))
    assert 3 <= len(starts) <= 4, starts
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert all(0.39 <= gap < 0.6 for gap in gaps), gaps  # not 0.4 + the probe's 0.05


def test_without_interval_a_probe_starts_every_max_wait_time() -> None:
    check = HealthCheck("/h", max_wait_time=0.2)
    assert (check.round_seconds, check.probe_seconds) == (0.2, 0.2)
    starts = asyncio.run(probe_starts(check, probe_takes=0.05, watch=0.7))
    assert 3 <= len(starts) <= 4, starts


def test_interval_does_not_lengthen_a_probes_limit() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    check = HealthCheck("/health", max_wait_time=0.2, interval=10)
    assert asyncio.run(probe_once(silent, check)) == "no answer within 0.2 s"
