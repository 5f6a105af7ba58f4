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

import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..protocol import MalformedMessage, decode_json
from .actions import InvalidAction, PrestartAction, parse_action
from .errors import ServiceStartError
from .health import HealthCheck, HealthMonitor, http_probe
from .host import ServiceHost, Watcher
from .spec import DEFAULT_SHELL, Command, InvalidField, ServiceSpec, parse_command, parse_shell
from .supervisor import failed

log = logging.getLogger(__name__)

StatusReport = Callable[[str, bool], Awaitable[None]]
"""Sends ``model-service-status`` for a model: its name and whether it is healthy."""


class InvalidModel(ServiceStartError):
    """A models[] entry that cannot be started; the message names the field."""


@dataclass(frozen=True)
class ModelService:
    name: str
    model_path: Path
    start_command: Command  # a str runs as [shell, "-c", start_command]
    port: int
    prestart_actions: tuple[PrestartAction, ...] = ()
    health_check: HealthCheck | None = None
    shell: str = DEFAULT_SHELL

    @property
    def service_name(self) -> str:
        """Its name among the services, as the agent lists it in the kernel's ports."""
        return f"{self.name}-{self.port}"

    def spec(self) -> ServiceSpec:
        """Its process: started in ``model_path`` with the model's variables and no port probe
        (the health check, if any, tells when the model is ready to serve)."""
        return ServiceSpec(
            name=self.service_name,
            command=self.start_command,
            shell=self.shell,
            owner=f"model {self.name}",
            command_field="start_command",
            given_env={"BACKEND_MODEL_NAME": self.name, "BACKEND_MODEL_PATH": str(self.model_path)},
            cwd=self.model_path,
            ports=(self.port,),
            prestart_actions=self.prestart_actions,
            precheck=self.check_model_path,
        )

    def check_model_path(self) -> None:
        if not self.model_path.is_dir():
            raise ServiceStartError(f"model_path {self.model_path} is not a directory")


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
    start_command, shell = _command(service, f"{where}: service")
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


def _command(service: Mapping[str, Any], where: str) -> tuple[Command, str]:
    """``start_command`` and its ``shell`` (null: the default)."""
    shell = service.get("shell")
    try:
        command = parse_command(service.get("start_command"), f"{where}.start_command")
        return command, parse_shell(DEFAULT_SHELL if shell is None else shell, f"{where}.shell")
    except InvalidField as e:
        raise InvalidModel(str(e)) from e


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
    """Starts model services through the service host and attaches their health monitors."""

    def __init__(self, host: ServiceHost, report: StatusReport) -> None:
        self.host = host
        self.report = report

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
        result = await self.host.start_service(model.spec())
        if model.health_check is not None:  # a start still under way gets it once it started
            self.host.attach(model.service_name, self._monitor(model, model.health_check))
        elif result.status == "started":
            await self.report(model.name, True)
        return result.as_reply()

    def _monitor(self, model: ModelService, check: HealthCheck) -> Watcher:
        monitor = HealthMonitor(
            model.name,
            check,
            http_probe(check, model.port),
            lambda healthy: self.report(model.name, healthy),
        )
        return monitor.run
