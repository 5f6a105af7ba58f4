"""Service definitions: the ``*.json`` files images carry, their schema, and the spec of a start.

A file ``NAME.json`` defines the service NAME::

    {"command": ["{runtime_path}", "-m", "jupyterlab", "--config", "{jupyter_cfg}"],
     "prestart_actions": [{"action": "write_tempfile", "args": {"body": "..."},
                           "ref": "jupyter_cfg"}],
     "url_template": "http://{host}:{port}/", "env": {}, "allowed_envs": ["PASSWORD"],
     "allowed_arguments": ["--auth"], "default_arguments": {"--auth": "none"},
     "noop": false, "start_timeout": 60}

The newer runners' dialect (25.x images) is read as well: ``"command"`` may be one string, run as
``[shell, "-c", command]`` with the definition's ``"shell"`` (default ``bash``), and templates
may be written ``${{ expr }}`` (templates.py).  Templates in ``default_arguments`` are expanded
(the user's ``options.arguments`` are not).  Where the dialects disagree, 24.3's behaviour
is kept: the user's ``options.envs`` win over the definition's ``env``.

A file that does not follow the schema disables that one service: the problem, naming the file
and the field, is logged at start-up and is the error of every start of that name.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Container, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .actions import InvalidAction, PrestartAction, parse_action
from .errors import ServiceStartError
from .spec import (
    DEFAULT_SHELL,
    ArgValue,
    Command,
    InvalidField,
    ServiceSpec,
    is_arg_value,
    parse_command,
    parse_shell,
)

log = logging.getLogger(__name__)

FIELDS = {
    "command",
    "shell",
    "noop",
    "url_template",
    "prestart_actions",
    "prestart",
    "env",
    "allowed_envs",
    "allowed_arguments",
    "default_arguments",
    "start_timeout",
}


class InvalidDefinition(ValueError):
    """A definition file that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class ServiceDefinition:
    name: str
    source: Path
    command: Command = ()  # a str runs as [shell, "-c", command]
    shell: str = DEFAULT_SHELL
    noop: bool = False
    url_template: str = ""
    prestart_actions: tuple[PrestartAction, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    allowed_envs: tuple[str, ...] = ()
    allowed_arguments: tuple[str, ...] = ()
    default_arguments: Mapping[str, ArgValue] = field(default_factory=dict)
    start_timeout: float | None = None  # None: the runner's --service-start-timeout

    def app_info(self) -> dict[str, object]:
        """The ``get-apps`` entry: the name, and the other keys only when not empty."""
        info: dict[str, object] = {"name": self.name}
        if self.url_template:
            info["url_template"] = self.url_template
        if self.allowed_arguments:
            info["allowed_arguments"] = list(self.allowed_arguments)
        if self.allowed_envs:
            info["allowed_envs"] = list(self.allowed_envs)
        return info

    def spec(
        self,
        ports: tuple[int, ...] = (),
        probe_port: int | None = None,
        arguments: Mapping[str, ArgValue] | None = None,
        envs: Mapping[str, str] | None = None,
    ) -> ServiceSpec:
        """This service as one start runs it, with the user's (checked) options."""
        return ServiceSpec(
            name=self.name,
            command=self.command,
            shell=self.shell,
            default_arguments=self.default_arguments,
            arguments=arguments or {},
            env=self.env,
            given_env=envs or {},
            ports=ports,
            probe_port=probe_port,
            prestart_actions=self.prestart_actions,
            start_timeout=self.start_timeout,
        )


@dataclass
class Catalog:
    """The loaded definitions by name, and the problem of each file that could not be used."""

    definitions: dict[str, ServiceDefinition] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)


def load_catalog(directories: Iterable[Path]) -> Catalog:
    """Read ``*.json`` of each directory in order; a later file of the same name wins."""
    catalog = Catalog()
    for directory in directories:
        for path in sorted(directory.glob("*.json")) if directory.is_dir() else ():
            name = path.stem
            catalog.definitions.pop(name, None)
            catalog.problems.pop(name, None)
            try:
                catalog.definitions[name] = parse_definition(path)
            except InvalidDefinition as e:
                log.error("service %s is disabled: %s", name, e)
                catalog.problems[name] = str(e)
    return catalog


def parse_definition(path: Path) -> ServiceDefinition:
    where = f"service definition {path}"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InvalidDefinition(f"{where}: cannot be read: {e}") from e
    if not isinstance(data, dict):
        raise InvalidDefinition(f"{where}: expected a JSON object, got {type(data).__name__}")
    try:
        return _definition(path, data)
    except (InvalidAction, InvalidDefinition, InvalidField) as e:
        raise InvalidDefinition(f"{where}: {e}") from e


def _definition(path: Path, data: dict[str, Any]) -> ServiceDefinition:
    for key in data:
        if key not in FIELDS:
            raise InvalidDefinition(f"unknown field {key!r} (known: {', '.join(sorted(FIELDS))})")
    if "prestart" in data and "prestart_actions" in data:
        raise InvalidDefinition("field 'prestart': give either 'prestart' or 'prestart_actions'")
    noop = _typed(data, "noop", bool, False)
    if "command" not in data and not noop:
        raise InvalidDefinition("field 'command': required (unless 'noop' is true)")
    actions = _typed(data, "prestart_actions", list, data.get("prestart", []))
    return ServiceDefinition(
        name=path.stem,
        source=path,
        command=parse_command(data.get("command", []), "field 'command'", empty_list_ok=True),
        shell=parse_shell(data.get("shell", DEFAULT_SHELL), "field 'shell'"),
        noop=noop,
        url_template=_typed(data, "url_template", str, ""),
        prestart_actions=tuple(
            parse_action(raw, f"field 'prestart_actions'[{i}]") for i, raw in enumerate(actions)
        ),
        env=_string_map(data, "env"),
        allowed_envs=tuple(_strings(data, "allowed_envs")),
        allowed_arguments=tuple(_strings(data, "allowed_arguments")),
        default_arguments=_arguments(data),
        start_timeout=_timeout(data),
    )


def _typed(data: Mapping[str, Any], key: str, kind: type, default: Any) -> Any:
    value = data.get(key, default)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise InvalidDefinition(f"field {key!r}: expected {kind.__name__}, got {value!r}")
    return value


def _strings(data: Mapping[str, Any], key: str) -> list[str]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidDefinition(f"field {key!r}: expected a list of strings, got {value!r}")
    return value


def _string_map(data: Mapping[str, Any], key: str) -> dict[str, str]:
    value = data.get(key, {})
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise InvalidDefinition(f"field {key!r}: expected an object of strings, got {value!r}")
    return value


def _arguments(data: Mapping[str, Any]) -> dict[str, ArgValue]:
    value = data.get("default_arguments", {})
    if not isinstance(value, dict):
        raise InvalidDefinition(f"field 'default_arguments': expected an object, got {value!r}")
    for name, item in value.items():
        if not is_arg_value(item):
            raise InvalidDefinition(
                f"field 'default_arguments', {name!r}: expected null, a boolean, a number,"
                f" a string or a list of strings, got {item!r}"
            )
    return value


def _timeout(data: Mapping[str, Any]) -> float | None:
    value = data.get("start_timeout")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < math.inf:
        raise InvalidDefinition(f"field 'start_timeout': expected seconds > 0, got {value!r}")
    return float(value)


def check_options(
    definition: ServiceDefinition,
    arguments: Mapping[str, object],
    envs: Mapping[str, object],
    frozen_envs: Container[str],
) -> None:
    """Refuse the user's arguments and variables that the definition does not allow; done
    before any prestart action runs, so that a refusal has no side effect."""
    name = definition.name
    for key, value in arguments.items():
        if key not in definition.allowed_arguments:
            raise ServiceStartError(f"argument {key} is not allowed for service {name}")
        if not is_arg_value(value):
            raise ServiceStartError(
                f"argument {key} of service {name}: expected null, a boolean, a number,"
                f" a string or a list of strings, got {value!r}"
            )
    for key, value in envs.items():
        if key not in definition.allowed_envs:
            raise ServiceStartError(f"environment variable {key} is not allowed for service {name}")
        if key in frozen_envs:
            raise ServiceStartError(
                f"environment variable {key} of service {name} can't be overwritten"
            )
        if not isinstance(value, str):
            raise ServiceStartError(
                f"environment variable {key} of service {name}: expected a string, got {value!r}"
            )
