"""Prestart actions of service definitions: write_file, write_tempfile, run_command, mkdir, log.

Each action is ``{"action": NAME, "args": {...}, "ref": VAR?}``.  Its arguments are checked when
the definition is loaded (``parse_action``), expanded as templates when it runs, and the result
of an action with a ``ref`` becomes a template variable of the later actions and the command
(``{jupyter_cfg}``, ``{out[out]}``) for this one start only.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..subprocesses import run_to_end
from .errors import ServiceStartError
from .templates import expand

log = logging.getLogger(__name__)

RUN_COMMAND_TIMEOUT = 60.0


class InvalidAction(ValueError):
    """A prestart action that does not follow the schema; the message names the field."""


@dataclass(frozen=True)
class Param:
    """One argument of an action: the JSON types it accepts and its default (None: required)."""

    types: tuple[type, ...]
    default: object = None


_STR = (str,)
_LINES = (list,)  # of str
_BOOL = (bool,)
_NUMBER = (int, float)

ACTION_PARAMS: dict[str, dict[str, Param]] = {
    "write_file": {
        "filename": Param(_STR),
        "body": Param(_LINES),
        "mode": Param(_STR, "644"),
        "append": Param(_BOOL, False),
    },
    # Images give the body as a list of lines, each with its own "\n".
    "write_tempfile": {"body": Param(_STR + _LINES), "mode": Param(_STR, "644")},
    "run_command": {
        "command": Param(_LINES),
        "echo": Param(_BOOL, False),
        "timeout": Param(_NUMBER, RUN_COMMAND_TIMEOUT),
    },
    "mkdir": {"path": Param(_STR)},
    "log": {"message": Param(_STR), "debug": Param(_BOOL, False)},
}
_ALIASES = {"log": {"body": "message"}}  # the documentation always called it `body`


@dataclass(frozen=True)
class PrestartAction:
    action: str
    args: Mapping[str, Any]  # complete: defaults filled in, aliases resolved
    ref: str | None = None


def parse_action(raw: object, where: str) -> PrestartAction:
    """Check one action of a definition file; ``where`` names it ("prestart_actions[0]")."""
    if not isinstance(raw, dict):
        raise InvalidAction(f"{where}: expected an object, got {type(raw).__name__}")
    unknown = set(raw) - {"action", "args", "ref"}
    if unknown:
        raise InvalidAction(f"{where}: unknown field {sorted(unknown)[0]!r}")
    name = raw.get("action")
    if name not in ACTION_PARAMS:
        known = ", ".join(ACTION_PARAMS)
        raise InvalidAction(f"{where}.action: {name!r} is not an action (known: {known})")
    ref = raw.get("ref")
    if ref is not None and not (isinstance(ref, str) and ref.isidentifier()):
        raise InvalidAction(f"{where}.ref: expected an identifier, got {ref!r}")
    args = raw.get("args", {})
    if not isinstance(args, dict):
        raise InvalidAction(f"{where}.args: expected an object, got {type(args).__name__}")
    return PrestartAction(name, _check_args(name, args, f"{where}.args"), ref)


def _check_args(action: str, args: dict[str, Any], where: str) -> dict[str, Any]:
    params = ACTION_PARAMS[action]
    aliases = _ALIASES.get(action, {})
    checked: dict[str, Any] = {}
    for key, value in args.items():
        key = aliases.get(key, key)
        param = params.get(key)
        if param is None:
            raise InvalidAction(f"{where}.{key}: not an argument of {action} ({', '.join(params)})")
        if not _has_type(value, param.types):
            wanted = " or ".join(
                "list of strings" if t is list else t.__name__ for t in param.types
            )
            raise InvalidAction(f"{where}.{key}: expected {wanted}, got {value!r}")
        checked[key] = value
    for key, param in params.items():
        if key not in checked:
            if param.default is None:
                raise InvalidAction(f"{where}.{key}: required by {action}")
            checked[key] = param.default
    if "mode" in checked and not _is_octal(checked["mode"]):
        raise InvalidAction(
            f"{where}.mode: expected octal digits like \"644\", got {checked['mode']!r}"
        )
    if action == "run_command" and not checked["command"]:
        raise InvalidAction(f"{where}.command: must not be empty")
    return checked


def _has_type(value: object, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool) and bool not in types:  # bool is an int, but not a timeout
        return False
    if isinstance(value, list):
        return list in types and all(isinstance(item, str) for item in value)
    return isinstance(value, types)


def _is_octal(mode: str) -> bool:
    return 0 < len(mode) <= 4 and all(c in "01234567" for c in mode)


async def run_prestart_actions(
    actions: Sequence[PrestartAction], variables: Mapping[str, object], *, service: str
) -> dict[str, object]:
    """Runs the actions in order; returns the variables for this one start (input copied, never
    mutated) extended with each action's ``ref`` result.  Raises ServiceStartError."""
    scope = dict(variables)
    for index, action in enumerate(actions):
        where = f"prestart action {index} ({action.action}) of {service}"
        args = _expand_args(action.args, scope, where)
        result = await _RUNNERS[action.action](args, where)
        if action.ref is not None:
            scope[action.ref] = result
    return scope


def _expand_args(
    args: Mapping[str, Any], scope: Mapping[str, object], where: str
) -> dict[str, Any]:
    def one(key: str, value: Any) -> Any:
        if isinstance(value, str):
            return expand(value, scope, where=f"{where}, {key}")
        if isinstance(value, list):
            return [expand(v, scope, where=f"{where}, {key}[{i}]") for i, v in enumerate(value)]
        return value

    return {key: one(key, value) for key, value in args.items()}


async def _write_file(args: dict[str, Any], where: str) -> None:
    path = Path(args["filename"])
    body = "".join(f"{line}\n" for line in args["body"])
    try:
        if args["append"]:
            with path.open("a", encoding="utf-8") as f:
                f.write(body)
        else:
            write_atomically(path, body)
        path.chmod(int(args["mode"], 8))
    except OSError as e:
        raise ServiceStartError(f"{where}: cannot write {path}: {e.strerror or e}") from e


def write_atomically(path: Path, body: str) -> None:
    """Replace ``path`` with ``body`` at once; the new file is private (0600) until chmod-ed."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(body)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


async def _write_tempfile(args: dict[str, Any], where: str) -> str:
    # Kept after the start: the service reads it (Jupyter's --config) whenever it likes.
    try:
        fd, path = tempfile.mkstemp(suffix=".py")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("".join(args["body"]))
        os.chmod(path, int(args["mode"], 8))
    except OSError as e:
        raise ServiceStartError(f"{where}: cannot write a temporary file: {e}") from e
    return path


async def _run_command(args: dict[str, Any], where: str) -> dict[str, object]:
    argv: list[str] = args["command"]
    try:  # a cancellation (the service shut down while starting) kills it too
        done = await run_to_end(argv, args["timeout"])
    except TimeoutError:  # before OSError, of which it is a subclass
        error = f"{where}: {argv[0]} did not finish in {args['timeout']} s"
        raise ServiceStartError(error) from None
    except OSError as e:
        raise ServiceStartError(f"{where}: cannot run {argv[0]}: {e.strerror or e}") from e
    result = {"out": _text(done.out), "err": _text(done.err), "exit_code": done.returncode}
    if args["echo"] or done.returncode != 0:
        log.info("%s: %s exited with status %s: %s", where, argv, done.returncode, result)
    return result


def _text(output: bytes) -> str:
    text = output.decode("utf-8", errors="replace")
    return text[:-1] if text.endswith("\n") else text


async def _mkdir(args: dict[str, Any], where: str) -> None:
    try:
        Path(args["path"]).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ServiceStartError(f"{where}: cannot create {args['path']}: {e.strerror or e}") from e


async def _log(args: dict[str, Any], where: str) -> None:
    log.log(logging.DEBUG if args["debug"] else logging.INFO, "%s: %s", where, args["message"])


_RUNNERS: dict[str, Callable[[dict[str, Any], str], Any]] = {
    "write_file": _write_file,
    "write_tempfile": _write_tempfile,
    "run_command": _run_command,
    "mkdir": _mkdir,
    "log": _log,
}
