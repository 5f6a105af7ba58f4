"""The runner's services: the ``start-service``, ``shutdown-service`` and ``get-apps`` ops.

Every start answers within ``reply_window`` seconds, because the agent 24.3.x waits 10 s and
hands a later reply to its next call.  A start runs as one job per name (prestart actions,
spawn, readiness) that concurrent starts of the name join; when the window closes first, the
reply says the service is still starting, the job goes on, and the next start of that name
answers from its state: ``running`` once up, or the failure that nobody has been told yet.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..protocol import MalformedMessage, decode_json
from .actions import PrestartAction, run_prestart_actions
from .definitions import Catalog, build_argv, build_env, check_options, service_env
from .errors import ServiceStartError
from .supervisor import (
    RUNNING,
    STARTED,
    LaunchSpec,
    ServiceSupervisor,
    StartResult,
    cancelling,
    failed,
)

log = logging.getLogger(__name__)

REPLY_WINDOW = 8.0
"""Seconds within which every start is answered: the agent's 10 s, less a margin."""
START_TIMEOUT = 60.0
"""Default seconds a service may take to open its port (a cold JupyterLab needs ~10-30 s)."""


@dataclass(frozen=True)
class ServiceRequest:
    """A ``start-service`` payload: ``{"name", "port", "ports", "protocol", "options"}``."""

    name: str
    port: int | None
    ports: tuple[int, ...] = ()
    protocol: str = "http"
    arguments: Mapping[str, Any] = field(default_factory=dict)
    envs: Mapping[str, Any] = field(default_factory=dict)


def parse_request(payload: str) -> ServiceRequest:
    try:
        data = decode_json(payload)
    except MalformedMessage as e:
        raise ServiceStartError(f"start-service: {e}") from e
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        raise ServiceStartError(f"start-service: expected an object with a name, got {payload!r}")
    ports = data.get("ports") or []
    port = data.get("port", ports[0] if ports else None)
    if not isinstance(ports, list) or not all(_is_port(p) for p in [*ports, port]):
        raise ServiceStartError(f"start-service {data['name']}: bad port(s) in {payload!r}")
    options = data.get("options") or {}
    arguments, envs = options.get("arguments") or {}, options.get("envs") or {}
    if not isinstance(arguments, dict) or not isinstance(envs, dict):
        raise ServiceStartError(f"start-service {data['name']}: options must hold objects")
    protocol = str(data.get("protocol", "http"))
    return ServiceRequest(data["name"], port, tuple(ports), protocol, arguments, envs)


def _is_port(value: object) -> bool:
    return value is None or (isinstance(value, int) and not isinstance(value, bool))


Launcher = Callable[[ServiceRequest], Awaitable[LaunchSpec]]
"""Builds the launch of a service that is not defined by a file (e.g. the intrinsic sshd)."""
Prepare = Callable[[], Awaitable[LaunchSpec | StartResult]]


class ServiceHost:
    def __init__(
        self,
        catalog: Catalog,
        *,
        runtime_path: str | None,
        env: Mapping[str, str],
        cwd: Path,
        start_timeout: float = START_TIMEOUT,
        reply_window: float = REPLY_WINDOW,
        searched: Sequence[Path] = (),
    ) -> None:
        self.catalog = catalog
        self.supervisor = ServiceSupervisor()
        self.launchers: dict[str, Launcher] = {}
        self._runtime_path = runtime_path
        self._env = env
        self._cwd = cwd
        self._start_timeout = start_timeout
        self._reply_window = reply_window
        self._searched = ", ".join(map(str, searched)) or "no directory"
        self._jobs: dict[str, asyncio.Task[StartResult]] = {}
        self._waiting: collections.Counter[str] = collections.Counter()
        self._untold: dict[str, StartResult] = {}
        self._stop_hooks: list[Callable[[str], None]] = []

    def on_stop(self, hook: Callable[[str], None]) -> None:
        """Call ``hook(name)`` when ``shutdown-service`` stops a service (e.g. to end what
        watches it), before its process is stopped."""
        self._stop_hooks.append(hook)

    def apps(self, selected: str = "") -> list[dict[str, object]]:
        """The ``get-apps`` data: every loaded definition, or only ``selected`` if it exists."""
        definitions = self.catalog.definitions
        names = [selected] if selected in definitions else sorted(definitions)
        return [definitions[name].app_info() for name in names]

    async def start(self, payload: str) -> StartResult:
        """Handle one ``start-service`` payload."""
        try:
            request = parse_request(payload)
        except ServiceStartError as e:
            return failed(str(e))
        return await self.start_request(request)

    async def start_request(self, request: ServiceRequest) -> StartResult:
        if request.protocol == "preopen":  # the user runs it; nothing to spawn
            return STARTED
        if request.protocol == "pty":
            return failed(f"pty services are not supported: {request.name}")
        return await self.start_job(request.name, lambda: self._prepare(request))

    async def start_job(self, name: str, prepare: Prepare) -> StartResult:
        """Run ``prepare`` and start what it returns, answering within the reply window."""
        if (untold := self._untold.pop(name, None)) is not None:
            return untold
        if await self.supervisor.is_serving(name):  # even while its start is still polling
            return RUNNING
        job = self._jobs.get(name)
        if job is None:
            job = asyncio.create_task(self._run(prepare))
            self._jobs[name] = job
            job.add_done_callback(lambda done: self._job_done(name, done))
        self._waiting[name] += 1
        try:
            async with asyncio.timeout(self._reply_window):
                return await asyncio.shield(job)
        except TimeoutError:
            error = f"{name} is still starting; start it again to get its state"
            log.info("service %s: replied before it was ready: %s", name, error)
            return failed(error)
        except asyncio.CancelledError:
            if job.cancelled() and not cancelling():
                return failed(f"{name} was stopped while starting")
            raise
        finally:
            self._waiting[name] -= 1

    async def _run(self, prepare: Prepare) -> StartResult:
        try:
            launch = await prepare()
        except ServiceStartError as e:
            return failed(str(e))
        if isinstance(launch, StartResult):
            return launch
        return await self.supervisor.start(launch)

    def _job_done(self, name: str, job: asyncio.Task[StartResult]) -> None:
        if self._jobs.get(name) is job:
            del self._jobs[name]
        if job.cancelled():
            return
        result = job.result()
        if result.status == "failed":
            log.warning("service %s failed to start: %s", name, result.error)
            if not self._waiting[name]:  # every start of it has been answered already
                self._untold[name] = result

    async def _prepare(self, request: ServiceRequest) -> LaunchSpec | StartResult:
        name = request.name
        if name in self.launchers:
            return await self.launchers[name](request)
        definition = self.catalog.definitions.get(name)
        if definition is None:
            problem = self.catalog.problems.get(name)
            raise ServiceStartError(
                problem or f"unsupported service: {name} (no definition in {self._searched})"
            )
        check_options(definition, request.arguments, request.envs, self._env)
        if definition.noop:
            return STARTED
        scope = await self.prestart(name, definition.prestart_actions, request.ports)
        return LaunchSpec(
            name=name,
            argv=build_argv(definition, scope, request.arguments),
            env=build_env(definition, scope, request.envs, self._env),
            cwd=self._cwd,
            probe_port=request.port,
            start_timeout=definition.start_timeout or self._start_timeout,
        )

    async def prestart(
        self, name: str, actions: Sequence[PrestartAction], ports: Sequence[int]
    ) -> dict[str, object]:
        """A start's template scope: ``runtime_path``, ``ports`` and the actions' results."""
        variables = {"runtime_path": str(self._runtime_path), "ports": list(ports)}
        return await run_prestart_actions(actions, variables, service=name)

    def child_env(self) -> dict[str, str]:
        """The runner's environment as a service process gets it."""
        return service_env(self._env)

    async def stop(self, name: str) -> None:
        """Handle ``shutdown-service``: the start in progress too, if any."""
        job = self._jobs.pop(name, None)
        if job is not None:
            job.cancel()
        self._untold.pop(name, None)
        for hook in self._stop_hooks:
            hook(name)
        await self.supervisor.stop(name)

    async def close(self) -> None:
        for job in self._jobs.values():
            job.cancel()
        await self.supervisor.stop_all()
