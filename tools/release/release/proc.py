"""Running the external commands the release steps depend on."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from release.errors import ReleaseError


def run_unchecked(
    command: Sequence[str],
    what: str,
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Runs a command and returns its exit status and output, whatever the status.

    Only a command that cannot be started at all is an error (one line naming `what`).
    """
    try:
        return subprocess.run(
            list(command), cwd=cwd, env=env, capture_output=True, text=True, check=False
        )
    except OSError as error:
        raise ReleaseError(f"{what}: cannot run {command[0]}: {error.strerror}") from None


def run_captured(
    command: Sequence[str], cwd: Path, what: str, env: Mapping[str, str] | None = None
) -> str:
    """Runs a command for its output; a failure becomes one line naming `what` failed and why."""
    result = run_unchecked(command, what, cwd=cwd, env=env)
    if result.returncode != 0:
        raise ReleaseError(f"{what} failed (exit {result.returncode}): {_last_line(result)}")
    return result.stdout


def run_streamed(command: Sequence[str], cwd: Path, what: str) -> list[str]:
    """Runs a long command (tests, builds) with its output going straight to the terminal, and
    returns that output's lines (stdout and stderr together), for what the caller looks for.

    Its output goes to our stderr: our stdout carries only reports (diff, verify, changelog).
    """
    lines: list[str] = []
    try:
        with subprocess.Popen(
            list(command),
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        ) as child:
            assert child.stdout is not None
            for line in child.stdout:
                sys.stderr.write(line)
                sys.stderr.flush()
                lines.append(line.rstrip("\n"))
            returncode = child.wait()
    except OSError as error:
        raise ReleaseError(f"{what}: cannot run {command[0]}: {error.strerror}") from None
    if returncode != 0:
        raise ReleaseError(f"{what} failed (exit {returncode}): {shlex.join(command)}")
    return lines


def _last_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line.strip() for line in (result.stderr or result.stdout).splitlines()]
    return next((line for line in reversed(lines) if line), "no output")


class ModuleCommand(NamedTuple):
    """`python -m <module>` and the environment it must run in."""

    argv: list[str]
    env: dict[str, str]


def python_module(module: str) -> ModuleCommand:
    """How to run one of this tool's dependencies (towncrier, twine, pip) as a program."""
    return ModuleCommand([sys.executable, "-m", module], python_module_env())


def python_module_env() -> dict[str, str]:
    """Environment in which `python -m <dependency>` finds this tool's dependencies.

    Inside a PEX the dependencies are on sys.path only, not in the interpreter's site-packages.
    """
    env = dict(os.environ)
    # Absolute: the module may run in another directory.
    env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(entry) for entry in sys.path if entry)
    return env


def expand_command(template: str, dist_dir: str | None = None) -> list[str]:
    """Splits a configured command line and fills in `{dist}`, the output directory, if given."""
    try:
        words = shlex.split(template)
    except ValueError as error:
        raise ReleaseError(f"cannot split the command {template!r}: {error}") from None
    if not words:
        raise ReleaseError("a configured command is empty")
    if dist_dir is None:
        return words
    return [word.replace("{dist}", dist_dir) for word in words]
