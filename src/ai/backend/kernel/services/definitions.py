"""Service definitions: the ``*.json`` files images carry, their schema, argv and environment.

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
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .actions import InvalidAction, PrestartAction, parse_action
from .errors import ServiceStartError
from .templates import expand

log = logging.getLogger(__name__)

ArgValue = None | bool | int | float | str | list[str]
"""A command-line argument's value: None/true give the bare name, false omits it."""

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
KRUNNER_LIB = "/opt/backend.ai/lib"
DEFAULT_SHELL = "bash"
"""The shell of a string ``command`` (or a model's ``start_command``) without ``shell``."""


class InvalidDefinition(ValueError):
    """A definition file that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class ServiceDefinition:
    name: str
    source: Path
    command: tuple[str, ...] | str = ()  # a str runs as [shell, "-c", command]
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
    except (InvalidAction, InvalidDefinition) as e:
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
        command=_command(data, "command"),
        shell=_shell(data, "shell"),
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


def _command(data: Mapping[str, Any], key: str) -> tuple[str, ...] | str:
    """A list of strings (an argv), or one string for the shell."""
    value = data.get(key, [])
    if isinstance(value, str):
        if not value.strip():
            raise InvalidDefinition(f"field {key!r}: expected a non-empty string, got {value!r}")
        return value
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidDefinition(
            f"field {key!r}: expected a list of strings or a string, got {value!r}"
        )
    return tuple(value)


def _shell(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key, DEFAULT_SHELL)
    if not isinstance(value, str) or not value:
        raise InvalidDefinition(f"field {key!r}: expected a program name, got {value!r}")
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


def is_arg_value(value: object) -> bool:
    if isinstance(value, list):
        return all(isinstance(item, str) for item in value)
    return value is None or isinstance(value, bool | int | float | str)


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


def build_argv(
    definition: ServiceDefinition, variables: Mapping[str, object], arguments: Mapping[str, Any]
) -> list[str]:
    """The expanded command, then the default arguments (expanded) updated with the user's
    ones (as given)."""
    name = definition.name
    argv = command_argv(definition.command, definition.shell, variables, "command", name)
    defaults = {
        key: _expand_value(value, variables, f"default_arguments[{key}]", name)
        for key, value in definition.default_arguments.items()
    }
    for key, value in {**defaults, **arguments}.items():
        argv.extend(_argument_items(key, value))
    return argv


def _expand_value(
    value: ArgValue, variables: Mapping[str, object], field: str, owner: str
) -> ArgValue:
    if isinstance(value, str):
        return expand(value, variables, where=f"{field} of {owner}")
    if isinstance(value, list):
        return expand_items(value, variables, field, owner)
    return value


def command_argv(
    command: Sequence[str] | str,
    shell: str,
    variables: Mapping[str, object],
    field: str,
    owner: str,
) -> list[str]:
    """An argv command with each item expanded, or a string command expanded and run as
    ``[shell, "-c", command]``; errors name ``field[i] of owner`` or ``field of owner``."""
    if isinstance(command, str):
        return [shell, "-c", expand(command, variables, where=f"{field} of {owner}")]
    return expand_items(command, variables, field, owner)


def expand_items(
    items: Sequence[str], variables: Mapping[str, object], field: str, owner: str
) -> list[str]:
    """Each template of a command line expanded; errors name ``field[i] of owner``."""
    return [
        expand(item, variables, where=f"{field}[{i}] of {owner}") for i, item in enumerate(items)
    ]


def _argument_items(key: str, value: ArgValue) -> list[str]:
    if value is None or value is True:
        return [key]
    if value is False:
        return []
    if isinstance(value, list):
        return [key, *value]
    return [key, str(value)]


def build_env(
    definition: ServiceDefinition,
    variables: Mapping[str, object],
    envs: Mapping[str, str],
    base: Mapping[str, str],
) -> dict[str, str]:
    """The runner's child environment, the definition's ``env`` and the user's variables."""
    env = service_env(base)
    for key, value in definition.env.items():
        where = f"env {key} of {definition.name}"
        env[expand(key, variables, where=where)] = expand(value, variables, where=where)
    env.update(envs)
    return env


def service_env(base: Mapping[str, str]) -> dict[str, str]:
    """The runner's child environment for a service: its own programs must not load krunner's
    libraries."""
    env = dict(base)
    if "LD_LIBRARY_PATH" in env:
        paths = env["LD_LIBRARY_PATH"].split(":")
        env["LD_LIBRARY_PATH"] = ":".join(p for p in paths if p.rstrip("/") != KRUNNER_LIB)
    return env
