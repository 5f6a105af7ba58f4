"""Model services (``start-model-service``): one ``models[]`` entry of model-definition.yml.

The agent sends the entry as it validated it::

    {"name": "mymodel", "model_path": "/models/mymodel",
     "service": {"start_command": ["python", "serve.py"], "port": 8000,
                 "pre_start_actions": [{"action": "mkdir", "args": {"path": "/tmp/cache"}}],
                 "health_check": {"path": "/health", "max_retries": 10, "max_wait_time": 5.0,
                                  "expected_status_code": 200}}}

The newer agents' fields are read too: ``start_command`` may be one string, run as
``[shell, "-c", start_command]`` with the service's ``shell`` (default ``bash``), and
``health_check.interval`` sets the seconds from the start of one probe to the start of the next
(agent 25.x sends it; without it, a probe starts every ``max_wait_time`` s as before).

The process is the service ``<name>-<port>``, started in ``model_path`` with
``BACKEND_MODEL_NAME`` and ``BACKEND_MODEL_PATH`` set and without a port probe.  With a health
check, a monitor reports every change of its health as ``model-service-status``; without one,
the service is reported healthy once it has started.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..protocol import MalformedMessage, decode_json
from .actions import InvalidAction, PrestartAction, parse_action
from .definitions import DEFAULT_SHELL, command_argv
from .errors import ServiceStartError
from .health import HealthCheck, HealthMonitor, http_probe
from .host import ServiceHost
from .supervisor import LaunchSpec, failed

log = logging.getLogger(__name__)

StatusReport = Callable[[str, bool], Awaitable[None]]
"""Sends ``model-service-status`` for a model: its name and whether it is healthy."""


class InvalidModel(ServiceStartError):
    """A models[] entry that cannot be started; the message names the field."""


@dataclass(frozen=True)
class ModelService:
    name: str
    model_path: Path
    start_command: tuple[str, ...] | str  # a str runs as [shell, "-c", start_command]
    port: int
    prestart_actions: tuple[PrestartAction, ...] = ()
    health_check: HealthCheck | None = None
    shell: str = DEFAULT_SHELL

    @property
    def service_name(self) -> str:
        """Its name among the services, as the agent lists it in the kernel's ports."""
        return f"{self.name}-{self.port}"


def parse_model(entry: object) -> ModelService | None:
    """Check a models[] entry; None for ``"service": null`` (nothing to start)."""
    if not isinstance(entry, dict):
        raise InvalidModel(f"model entry: expected an object, got {type(entry).__name__}")
    name = _string(entry, "name", "model entry")
    where = f"model {name}"
    model_path = Path(_string(entry, "model_path", where))
    if "service" in entry and entry["service"] is None:
        return None
    service = entry.get("service")
    if not isinstance(service, dict):
        raise InvalidModel(f"{where}: service: expected an object, got {service!r}")
    command = service.get("start_command")
    if isinstance(command, str) and command.strip():
        start_command: tuple[str, ...] | str = command
    elif command and isinstance(command, list) and all(isinstance(c, str) for c in command):
        start_command = tuple(command)
    else:
        raise InvalidModel(
            f"{where}: service.start_command: expected a list of strings or a string,"
            f" got {command!r}"
        )
    shell = service.get("shell")
    if shell is None:
        shell = DEFAULT_SHELL
    elif not isinstance(shell, str) or not shell:
        raise InvalidModel(f"{where}: service.shell: expected a program name, got {shell!r}")
    port = _integer(service, "port", f"{where}: service", default=None, low=1, high=65535)
    try:
        actions = [
            parse_action(raw, f"{where}: service.pre_start_actions[{i}]")
            for i, raw in enumerate(service.get("pre_start_actions") or [])
        ]
    except InvalidAction as e:
        raise InvalidModel(str(e)) from e
    check = service.get("health_check")
    return ModelService(
        name,
        model_path,
        start_command,
        port,
        tuple(actions),
        None if check is None else _health_check(check, f"{where}: service.health_check"),
        shell,
    )


def _string(data: Mapping[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidModel(f"{where}: {key}: expected a non-empty string, got {value!r}")
    return value


def _integer(
    data: Mapping[str, Any], key: str, where: str, default: int | None, low: int, high: int
) -> int:
    value = data.get(key, default)
    if value is None and default is not None:  # an explicit null means the default
        value = default
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidModel(f"{where}.{key}: expected an integer in {low}..{high}, got {value!r}")
    return value


def _health_check(check: object, where: str) -> HealthCheck:
    if not isinstance(check, dict):
        raise InvalidModel(f"{where}: expected an object, got {check!r}")
    path = check.get("path")
    if not isinstance(path, str):
        raise InvalidModel(f"{where}.path: expected a string, got {path!r}")
    wait = _seconds(check, "max_wait_time", where)
    return HealthCheck(
        path,
        max_retries=_integer(check, "max_retries", where, HealthCheck.max_retries, 1, 10**6),
        max_wait_time=HealthCheck.max_wait_time if wait is None else wait,
        interval=_seconds(check, "interval", where),
        expected_status_code=_integer(
            check, "expected_status_code", where, HealthCheck.expected_status_code, 100, 599
        ),
    )


def _seconds(data: Mapping[str, Any], key: str, where: str) -> float | None:
    """A number of seconds >= 0; None if null or absent."""
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value < math.inf:
        raise InvalidModel(f"{where}.{key}: expected seconds >= 0, got {value!r}")
    return float(value)


class ModelServices:
    """Starts model services through the service host and keeps one health monitor each."""

    def __init__(self, host: ServiceHost, report: StatusReport) -> None:
        self.host = host
        self.report = report
        self.monitors: dict[str, asyncio.Task[None]] = {}
        host.on_stop(self._unwatch)  # a stopped model is no longer probed nor reported

    async def start(self, payload: str) -> dict[str, str] | None:
        """The ``model-service-result`` reply; None for an entry without a service, which the
        agent 24.3 crashes on right after sending (a reply would go to its next call)."""
        try:
            model = parse_model(decode_json(payload))
        except (MalformedMessage, InvalidModel) as e:
            log.warning("start-model-service: %s", e)
            return failed(f"start-model-service: {e}").as_reply()
        if model is None:
            log.info("start-model-service: the model has no service to start")
            return None
        result = await self.host.start_job(model.service_name, lambda: self._launch(model))
        if result.status == "failed" and not self.host.supervisor.is_running(model.service_name):
            self._unwatch(model.service_name)
        elif result.status == "started" and model.health_check is None:
            await self.report(model.name, True)
        return result.as_reply()

    async def _launch(self, model: ModelService) -> LaunchSpec:
        if not model.model_path.is_dir():
            raise ServiceStartError(f"model_path {model.model_path} is not a directory")
        scope = await self.host.prestart(model.service_name, model.prestart_actions, [model.port])
        argv = command_argv(
            model.start_command, model.shell, scope, "start_command", f"model {model.name}"
        )
        env = {
            **self.host.child_env(),
            "BACKEND_MODEL_NAME": model.name,
            "BACKEND_MODEL_PATH": str(model.model_path),
        }
        self._watch(model)  # from now on, even if the reply goes out before the spawn
        # No port probe: the health check, if any, tells when the model is ready to serve.
        return LaunchSpec(model.service_name, argv, env, model.model_path, None, 0.0)

    def _watch(self, model: ModelService) -> None:
        """Start the model's health monitor unless it has one."""
        running = self.monitors.get(model.service_name)
        if model.health_check is None or (running is not None and not running.done()):
            return
        monitor = HealthMonitor(
            model.name,
            model.health_check,
            http_probe(model.health_check, model.port),
            lambda healthy: self.report(model.name, healthy),
        )
        self.monitors[model.service_name] = asyncio.create_task(monitor.run())

    def _unwatch(self, service_name: str) -> None:
        task = self.monitors.pop(service_name, None)
        if task is not None:
            task.cancel()

    async def close(self) -> None:
        for task in self.monitors.values():
            task.cancel()
        if self.monitors:
            await asyncio.wait(self.monitors.values())
        self.monitors.clear()
