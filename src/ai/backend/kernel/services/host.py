"""The runner's services: the ``start-service``, ``shutdown-service`` and ``get-apps`` ops.

Every start answers within ``reply_window`` seconds, because the agent 24.3.x waits 10 s and
hands a later reply to its next call.  A start runs as one job per name (prestart actions,
spawn, readiness) that concurrent starts of the name join; when the window closes first, the
reply says the service is still starting, the job goes on, and the next start of that name
answers from its state: ``running`` once up, or the failure that nobody has been told yet.

Every service comes in as one ``ServiceSpec`` (spec.py): a definition file's and sshd's or
ttyd's are described here per request (``start``), a model's by model.py (``start_service``).
A watcher attached to a service from outside (``attach``: a model's health monitor) runs from
its start until ``stop`` or ``close``.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..protocol import MalformedMessage, decode_json
from .actions import run_prestart_actions
from .definitions import Catalog, check_options
from .errors import ServiceStartError
from .spec import ServiceSpec, build_argv, build_env
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


Launcher = Callable[[ServiceRequest], Awaitable[ServiceSpec]]
"""Describes a service that is not defined by a file (e.g. the intrinsic sshd) for one start."""
Prepare = Callable[[], Awaitable[LaunchSpec | StartResult]]
Watcher = Callable[[], Coroutine[Any, Any, None]]
"""Watches a started service (e.g. its health) until cancelled."""


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
        self._watchers: dict[str, asyncio.Task[None]] = {}
        self._awaiting_start: dict[str, Watcher] = {}  # attached while its start runs

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
        return await self._start_job(request.name, lambda: self._describe_and_launch(request))

    async def start_service(self, spec: ServiceSpec) -> StartResult:
        """Start a fully described service: its pre-check, prestart actions, templates,
        environment, then the process, answering within the reply window."""
        return await self._start_job(spec.name, lambda: self._launch(spec))

    def attach(self, name: str, watcher: Watcher) -> None:
        """Run ``watcher()`` as the one task watching the service ``name`` from its start
        until ``stop`` or ``close``: at once if it is running, when its start succeeds if that
        is still under way, never if it failed.  A service that is watched keeps its watcher."""
        if (task := self._watchers.get(name)) is not None and not task.done():
            return
        if self.supervisor.is_running(name):
            self._watchers[name] = asyncio.create_task(watcher())
        elif name in self._jobs:
            self._awaiting_start.setdefault(name, watcher)

    async def _start_job(self, name: str, prepare: Prepare) -> StartResult:
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
        # Unless stop() let a new start of the name begin, whose watcher this is.
        watcher = None if name in self._jobs else self._awaiting_start.pop(name, None)
        if job.cancelled():
            return
        result = job.result()
        if result.status == "failed":
            log.warning("service %s failed to start: %s", name, result.error)
            if not self._waiting[name]:  # every start of it has been answered already
                self._untold[name] = result
        elif watcher is not None:
            self.attach(name, watcher)

    async def _describe_and_launch(self, request: ServiceRequest) -> LaunchSpec | StartResult:
        spec = await self._describe(request)
        return spec if isinstance(spec, StartResult) else await self._launch(spec)

    async def _describe(self, request: ServiceRequest) -> ServiceSpec | StartResult:
        """The spec of a requested service: an intrinsic one's, or its definition's with the
        user's options (checked before any prestart action runs: a refusal has no effect)."""
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
        envs = {key: str(value) for key, value in request.envs.items()}  # checked: strings
        return definition.spec(request.ports, request.port, request.arguments, envs)

    async def _launch(self, spec: ServiceSpec) -> LaunchSpec:
        """The one way a service is prepared for the supervisor, whatever described it."""
        if spec.precheck is not None:
            spec.precheck()
        variables = {"runtime_path": str(self._runtime_path), "ports": list(spec.ports)}
        scope = await run_prestart_actions(spec.prestart_actions, variables, service=spec.name)
        return LaunchSpec(
            name=spec.name,
            argv=build_argv(spec, scope),
            env=build_env(spec, scope, self._env),
            cwd=spec.cwd or self._cwd,
            probe_port=spec.probe_port,
            start_timeout=spec.start_timeout or self._start_timeout,
        )

    async def stop(self, name: str) -> None:
        """Handle ``shutdown-service``: the start in progress too, if any."""
        job = self._jobs.pop(name, None)
        if job is not None:
            job.cancel()
        self._untold.pop(name, None)
        self._awaiting_start.pop(name, None)
        if (watcher := self._watchers.pop(name, None)) is not None:
            watcher.cancel()  # a stopped service is no longer watched
        await self.supervisor.stop(name)

    async def close(self) -> None:
        for task in [*self._jobs.values(), *self._watchers.values()]:
            task.cancel()
        if self._watchers:
            await asyncio.wait(self._watchers.values())
        self._watchers.clear()
        await self.supervisor.stop_all()
