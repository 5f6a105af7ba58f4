"""Health checks of model services: HTTP probes, and a report on every change of state."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import quote

log = logging.getLogger(__name__)

MIN_ROUND = 0.1
"""Seconds a probe round lasts at least, so that ``max_wait_time: 0`` does not spin."""
STATUS_LINE_LIMIT = 4096
# Characters a path may already carry (e.g. a query or %-escapes) that quote() must keep.
URL_SAFE = "/%?&=:@!$'()*+,;~"


@dataclass(frozen=True)
class HealthCheck:
    """The ``health_check`` of a model definition's service (the agent's defaults)."""

    path: str
    max_retries: int = 10
    max_wait_time: float = 5.0
    expected_status_code: int = 200
    interval: float | None = None  # agent 25.x: seconds from one probe's start to the next's

    @property
    def probe_seconds(self) -> float:
        """How long one probe may take."""
        return max(self.max_wait_time, MIN_ROUND)

    @property
    def round_seconds(self) -> float:
        """How often a probe starts: every ``interval`` s if given, else every probe's limit
        (a probe that takes longer than the interval is followed by the next at once)."""
        return self.probe_seconds if self.interval is None else max(self.interval, MIN_ROUND)


Probe = Callable[[], Awaitable[str | None]]
"""One health probe: None when healthy, else what was wrong."""
Report = Callable[[bool], Awaitable[None]]
"""Tells the agent the new state: True for healthy, False for unhealthy."""


def parse_status_line(line: bytes) -> int:
    """The status code of an HTTP response's first line."""
    parts = line.split(maxsplit=2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise ValueError(f"not an HTTP status line: {line[:80]!r}")
    return int(parts[1])


async def http_status(host: str, port: int, path: str) -> int:
    """GET ``http://host:port/path`` (a missing leading ``/`` is added); the status code."""
    target = quote(path if path.startswith("/") else f"/{path}", safe=URL_SAFE)
    request = (
        f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n"
        "User-Agent: backend.ai-kernel-health-check\r\n\r\n"
    )
    reader, writer = await asyncio.open_connection(host, port, limit=STATUS_LINE_LIMIT)
    try:
        writer.write(request.encode())
        await writer.drain()
        return parse_status_line(await reader.readline())
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def http_probe(check: HealthCheck, port: int, host: str = "localhost") -> Probe:
    """A probe of a model server's health endpoint, bounded by the round's length; other
    errors (refused, malformed answers) propagate to the monitor, which counts them."""

    async def probe() -> str | None:
        try:
            async with asyncio.timeout(check.probe_seconds):
                status = await http_status(host, port, check.path)
        except TimeoutError:
            return f"no answer within {check.probe_seconds:g} s"
        if status != check.expected_status_code:
            return f"status {status}, expected {check.expected_status_code}"
        return None

    return probe


class HealthMonitor:
    """Probes one model service each round and reports every change of its state: healthy at
    the first success, unhealthy after ``max_retries`` consecutive failures (a success starts
    the count afresh). Only cancellation ends it."""

    def __init__(self, name: str, check: HealthCheck, probe: Probe, report: Report) -> None:
        self.name = name
        self.check = check
        self.probe = probe
        self.report = report
        self.healthy: bool | None = None  # None until the first report
        self.failures = 0

    def next_state(self, problem: str | None) -> bool | None:
        """Count one probe's outcome; the state it leads to."""
        if problem is None:
            self.failures = 0
            return True
        self.failures += 1
        return False if self.failures >= self.check.max_retries else self.healthy

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            round_end = loop.time() + self.check.round_seconds
            problem = await self._probe()
            state = self.next_state(problem)
            if state is not None and state != self.healthy:
                await self._report(state, problem)
            await asyncio.sleep(max(0.0, round_end - loop.time()))

    async def _probe(self) -> str | None:
        try:
            return await self.probe()
        except Exception as e:  # any failure at all is an unhealthy round, never the end
            return f"{type(e).__name__}: {e}"

    async def _report(self, state: bool, problem: str | None) -> None:
        """Send the new state; if that fails, the next round tries again."""
        why = "" if problem is None else f" ({problem})"
        log.info("model service %s is %s%s", self.name, "healthy" if state else "unhealthy", why)
        try:
            await self.report(state)
        except Exception:
            log.exception("could not report the health of model service %s", self.name)
        else:
            self.healthy = state
