"""A service as the host starts it, whatever describes it: a definition file, sshd/ttyd, a model.

Each source describes its service as one ``ServiceSpec`` and hands it to
``ServiceHost.start_service``, which runs the spec's pre-check and prestart actions, expands its
templates (``build_argv``, ``build_env``) and starts it under the supervisor.  The command
fields of definition files and model definitions are read by one parser (``parse_command``,
``parse_shell``), whose errors name the field.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .actions import PrestartAction
from .templates import expand

DEFAULT_SHELL = "bash"
"""The shell of a string ``command`` (or a model's ``start_command``) without ``shell``."""
KRUNNER_LIB = "/opt/backend.ai/lib"

Command = tuple[str, ...] | str
"""An argv, or one shell command run as ``[shell, "-c", command]``."""
ArgValue = None | bool | int | float | str | list[str]
"""A command-line argument's value: None/true give the bare name, false omits it."""


class InvalidField(ValueError):
    """A field of a definition that cannot be used; the message names the field."""


def parse_command(value: object, where: str, *, empty_list_ok: bool = False) -> Command:
    """A list of strings (an argv), or one string for the shell; ``where`` names the field in
    errors ("field 'command'", "model m: service.start_command")."""
    if isinstance(value, str):
        if not value.strip():
            raise InvalidField(f"{where}: expected a non-empty string, got {value!r}")
        return value
    is_argv = isinstance(value, list) and all(isinstance(item, str) for item in value)
    if not is_argv or not (value or empty_list_ok):
        raise InvalidField(f"{where}: expected a list of strings or a string, got {value!r}")
    return tuple(value)  # type: ignore[arg-type]


def parse_shell(value: object, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidField(f"{where}: expected a program name, got {value!r}")
    return value


def is_arg_value(value: object) -> bool:
    if isinstance(value, list):
        return all(isinstance(item, str) for item in value)
    return value is None or isinstance(value, bool | int | float | str)


@dataclass(frozen=True)
class ServiceSpec:
    """One service, fully described: what to run, where, with what, and when it is up."""

    name: str  # the supervisor's key ("jupyter", "sshd", "mymodel-8000")
    command: Command  # templates, unless ``literal``
    shell: str = DEFAULT_SHELL  # runs a str command
    literal: bool = False  # the command is final: no templates (sshd's and ttyd's paths)
    owner: str = ""  # how expansion errors name the service ("model m"); default: its name
    command_field: str = "command"  # how expansion errors name the command
    default_arguments: Mapping[str, ArgValue] = field(default_factory=dict)  # templates
    arguments: Mapping[str, ArgValue] = field(default_factory=dict)  # the user's, as given
    env: Mapping[str, str] = field(default_factory=dict)  # templates, keys and values
    given_env: Mapping[str, str] = field(default_factory=dict)  # as given, set last
    cwd: Path | None = None  # None: the runner's work directory
    ports: tuple[int, ...] = ()  # the templates' {ports}
    probe_port: int | None = None  # the port that means "up"; None: up once spawned
    prestart_actions: tuple[PrestartAction, ...] = ()
    start_timeout: float | None = None  # None: the runner's --service-start-timeout
    precheck: Callable[[], None] | None = None  # raises ServiceStartError to refuse the start

    @property
    def label(self) -> str:
        return self.owner or self.name


def build_argv(spec: ServiceSpec, variables: Mapping[str, object]) -> list[str]:
    """The expanded command, then the default arguments (expanded) updated with the user's
    ones (as given)."""
    if not spec.literal:
        argv = command_argv(spec.command, spec.shell, variables, spec.command_field, spec.label)
    elif isinstance(spec.command, str):
        argv = [spec.shell, "-c", spec.command]
    else:
        argv = list(spec.command)
    defaults = {
        key: _expand_value(value, variables, f"default_arguments[{key}]", spec.label)
        for key, value in spec.default_arguments.items()
    }
    for key, value in {**defaults, **spec.arguments}.items():
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
    spec: ServiceSpec, variables: Mapping[str, object], base: Mapping[str, str]
) -> dict[str, str]:
    """The runner's child environment, the spec's ``env`` (expanded), then its ``given_env``."""
    env = service_env(base)
    for key, value in spec.env.items():
        where = f"env {key} of {spec.label}"
        env[expand(key, variables, where=where)] = expand(value, variables, where=where)
    env.update(spec.given_env)
    return env


def service_env(base: Mapping[str, str]) -> dict[str, str]:
    """The runner's child environment for a service: its own programs must not load krunner's
    libraries."""
    env = dict(base)
    if "LD_LIBRARY_PATH" in env:
        paths = env["LD_LIBRARY_PATH"].split(":")
        env["LD_LIBRARY_PATH"] = ":".join(p for p in paths if p.rstrip("/") != KRUNNER_LIB)
    return env
