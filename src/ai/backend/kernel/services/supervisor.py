"""Service processes: spawn in a session of their own, wait for the port, capture output, stop.

A service is ready once a TCP connect to 127.0.0.1:``probe_port`` succeeds.  Until then the
supervisor watches for the process exiting (the reply quotes its status and last output lines)
and for ``start_timeout`` (the whole tree is then stopped).  Its output goes to the runner's log
and the last lines to a bounded buffer for error messages.  One process per name: a start of a
name that is starting joins that start; a start of a name that is up (its port accepts, even
if the readiness poll has not seen it yet) answers ``running``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import logging
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..execution import terminate_sessions
from .errors import ServiceStartError

__all__ = ["LaunchSpec", "ServiceSupervisor", "StartResult"]

log = logging.getLogger(__name__)

STOP_GRACE = 3.0
"""Seconds between SIGTERM and SIGKILL when a service is stopped."""
FAST_POLL = 0.005
"""Interval between connect attempts during the first second: most services open by then."""
SLOW_POLL = 0.05
FAST_POLL_PERIOD = 1.0
CONNECT_TIMEOUT = 1.0
OUTPUT_LINES = 20
LINE_LIMIT = 500
READ_SIZE = 65536


@dataclass(frozen=True)
class LaunchSpec:
    name: str  # registry key ("jupyter", "sshd", "mymodel-8000")
    argv: Sequence[str]
    env: Mapping[str, str]  # complete environment of the child
    cwd: Path
    probe_port: int | None  # TCP port on 127.0.0.1 that means "ready"; None = no probe
    start_timeout: float  # seconds the port may take to open


@dataclass(frozen=True)
class StartResult:
    status: Literal["started", "running", "failed"]
    error: str | None = None

    def as_reply(self) -> dict[str, str]:
        if self.status == "failed":
            return {"status": "failed", "error": self.error or "unknown error"}
        return {"status": self.status}


STARTED = StartResult("started")
RUNNING = StartResult("running")


def failed(error: str) -> StartResult:
    return StartResult("failed", error)


@dataclass
class _Service:
    spec: LaunchSpec
    proc: asyncio.subprocess.Process
    output: collections.deque[str] = field(
        default_factory=lambda: collections.deque(maxlen=OUTPUT_LINES)
    )
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    readiness: asyncio.Task[StartResult] | None = None

    def last_output(self) -> str:
        if not self.output:
            return "no output"
        return "last output:\n" + "\n".join(self.output)


class ServiceSupervisor:
    """The registry of service processes, by name."""

    def __init__(self, stop_grace: float = STOP_GRACE) -> None:
        self._stop_grace = stop_grace
        self._services: dict[str, _Service] = {}
        self._locks: collections.defaultdict[str, asyncio.Lock] = collections.defaultdict(
            asyncio.Lock
        )

    def is_running(self, name: str) -> bool:
        """Whether a process of that name is alive (starting or up)."""
        service = self._services.get(name)
        return service is not None and service.proc.returncode is None

    def is_up(self, name: str) -> bool:
        """Whether that service is alive and has opened its port."""
        service = self._services.get(name)
        ready = service is not None and service.readiness is not None
        return ready and service.readiness.done() and self.is_running(name)  # type: ignore[union-attr]

    async def start(self, spec: LaunchSpec) -> StartResult:
        """Start ``spec`` unless a process of that name exists; answer once it is known."""
        async with self._locks[spec.name]:  # held only to decide and spawn, never to wait
            service = self._services.get(spec.name)
            if service is not None and await self.is_serving(spec.name):
                return RUNNING
            if service is None or service.proc.returncode is not None:
                try:
                    service = await self._spawn(spec)
                except ServiceStartError as e:
                    log.warning("service %s did not start: %s", spec.name, e)
                    return failed(str(e))
        assert service.readiness is not None
        try:
            return await asyncio.shield(service.readiness)
        except asyncio.CancelledError:
            if service.readiness.cancelled() and not cancelling():
                return failed(f"{spec.name} was stopped while starting")
            raise

    async def is_serving(self, name: str) -> bool:
        """Up, or alive with its port open before its readiness poll noticed (it polls)."""
        if self.is_up(name):
            return True
        service = self._services.get(name)
        if service is None or service.spec.probe_port is None or not self.is_running(name):
            return False
        return await port_accepts(service.spec.probe_port)

    async def _spawn(self, spec: LaunchSpec) -> _Service:
        if not spec.argv:
            raise ServiceStartError(f"{spec.name} has an empty command")
        if spec.probe_port is not None and await port_accepts(spec.probe_port):
            raise ServiceStartError(
                f"port {spec.probe_port} of {spec.name} is already in use by another process"
            )
        try:
            proc = await asyncio.create_subprocess_exec(
                *spec.argv,
                env=dict(spec.env),
                cwd=spec.cwd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as e:
            raise ServiceStartError(_spawn_error(spec, e)) from e
        log.info("service %s: started pid %d: %s", spec.name, proc.pid, list(spec.argv))
        service = _Service(spec, proc)
        self._services[spec.name] = service
        service.tasks.append(asyncio.create_task(self._pump(service)))
        service.readiness = asyncio.create_task(self._wait_ready(service))
        return service

    async def _pump(self, service: _Service) -> None:
        """Forward the service's output to the log, keeping its last lines."""
        assert service.proc.stdout is not None
        partial = b""
        while chunk := await service.proc.stdout.read(READ_SIZE):
            *lines, partial = (partial + chunk).split(b"\n")
            for line in lines:
                self._keep_line(service, line)
            if len(partial) > LINE_LIMIT:  # no newline for a long time: keep what we have
                self._keep_line(service, partial)
                partial = b""
        if partial:
            self._keep_line(service, partial)

    def _keep_line(self, service: _Service, raw: bytes) -> None:
        line = raw.decode("utf-8", errors="replace").rstrip("\r")[:LINE_LIMIT]
        service.output.append(line)
        log.info("[%s] %s", service.spec.name, line)

    async def _wait_ready(self, service: _Service) -> StartResult:
        spec, proc = service.spec, service.proc
        loop = asyncio.get_running_loop()
        started_at = loop.time()
        exited = asyncio.ensure_future(proc.wait())
        try:
            while True:
                if spec.probe_port is None or await port_accepts(spec.probe_port):
                    log.info("service %s is up (pid %d)", spec.name, proc.pid)
                    service.tasks.append(asyncio.create_task(self._watch(service, exited)))
                    return STARTED
                elapsed = loop.time() - started_at
                if elapsed > spec.start_timeout:
                    await self._terminate(service)
                    return self._give_up(service, _timeout_error(spec, service))
                delay = FAST_POLL if elapsed < FAST_POLL_PERIOD else SLOW_POLL
                await asyncio.wait([exited], timeout=delay)
                if exited.done():
                    await self._drain(service)
                    error = f"{spec.name} exited with status {proc.returncode} before opening"
                    error += f" port {spec.probe_port}; {service.last_output()}"
                    return self._give_up(service, error)
        except asyncio.CancelledError:
            exited.cancel()
            raise

    def _give_up(self, service: _Service, error: str) -> StartResult:
        log.warning("service %s failed to start: %s", service.spec.name, error)
        if self._services.get(service.spec.name) is service:
            del self._services[service.spec.name]
        return failed(error)

    async def _drain(self, service: _Service) -> None:
        """Let the pump read what the exited process wrote (a child may hold the pipe open)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await asyncio.gather(*service.tasks, return_exceptions=True)

    async def _watch(self, service: _Service, exited: asyncio.Future[int]) -> None:
        status = await exited
        if self._services.get(service.spec.name) is service:
            del self._services[service.spec.name]
            await self._drain(service)
            log.warning(
                "service %s exited with status %d; %s",
                service.spec.name,
                status,
                service.last_output(),
            )

    async def stop(self, name: str) -> None:
        """Stop the service's whole process tree: SIGTERM, a grace period, SIGKILL."""
        service = self._services.pop(name, None)
        if service is None:
            log.info("no service named %r to stop", name)
            return
        await self._terminate(service)
        log.info("service %s stopped (status %s)", name, service.proc.returncode)

    async def stop_all(self) -> None:
        await asyncio.gather(*(self.stop(name) for name in list(self._services)))

    async def _terminate(self, service: _Service) -> None:
        if service.readiness is not None and service.readiness is not asyncio.current_task():
            service.readiness.cancel()
        # Its own session: the leader's pid is the session id.
        await terminate_sessions([service.proc.pid], self._stop_grace)
        await service.proc.wait()
        await self._drain(service)
        for task in service.tasks:
            task.cancel()


def cancelling() -> bool:
    """Whether the current task itself is being cancelled (not just something it awaits)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def port_accepts(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:port."""
    loop = asyncio.get_running_loop()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setblocking(False)
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await loop.sock_connect(sock, ("127.0.0.1", port))
        except (OSError, TimeoutError):
            return False
    return True


def _spawn_error(spec: LaunchSpec, e: OSError) -> str:
    program = spec.argv[0]
    if not spec.cwd.is_dir():
        return f"the working directory of {spec.name} does not exist: {spec.cwd}"
    if e.errno == errno.ENOENT:
        return f"the program of {spec.name} is not found: {program}"
    if e.errno in (errno.EACCES, errno.ENOEXEC, errno.EPERM):
        return f"the program of {spec.name} is not executable: {program} ({e.strerror})"
    return f"cannot start {spec.name} ({program}): {e.strerror or e}"


def _timeout_error(spec: LaunchSpec, service: _Service) -> str:
    return (
        f"{spec.name} did not open port {spec.probe_port} on 127.0.0.1 within"
        f" {spec.start_timeout:g} s, so it was stopped; {service.last_output()}"
    )
