"""The runners under test: their command lines and environments, started and stopped."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ai.backend.kernel.agent_client import AgentClient
from tests.support.processes import (
    PortsInUse,
    RunnerCommand,
    RunnerProcess,
    local_runner_command,
    start_runner,
)

from .config import RUN_TIMEOUT, BenchError, Config


@dataclass
class RunningRunner:
    process: RunnerProcess
    client: AgentClient

    def log_tail(self, lines: int = 3) -> str:
        return " | ".join(self.process.log_tail().strip().splitlines()[-lines:])


@contextmanager
def running(command: RunnerCommand, log_dir: Path) -> Iterator[RunningRunner]:
    """The runner started, with a client connected before it binds, and stopped afterwards."""
    client = AgentClient(command.in_port, command.out_port, timeout=RUN_TIMEOUT)
    try:
        process = start_runner(command, log_dir)
    except PortsInUse as exc:
        client.close()
        raise BenchError(str(exc)) from exc
    client.alive = lambda: process.proc.poll() is None
    try:
        yield RunningRunner(process, client)
    finally:
        client.close()
        process.stop()


def repo_src() -> Path | None:
    src = Path(__file__).resolve().parents[3] / "src"
    return src if (src / "ai" / "backend" / "kernel").is_dir() else None


def runner_env() -> dict[str, str]:
    """This environment, but let the runners write bytecode caches (see measure.prime())."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def new_runner_env(explicit_python: bool) -> dict[str, str]:
    """With the default python (this one), give the runner this process's import path, so
    it finds the same ai.backend.kernel (a pex's, or the work tree's src/)."""
    env = runner_env()
    if explicit_python:
        return env
    paths = [p for p in sys.path if p]
    src = repo_src()
    if src is not None:  # run from the work tree: its runner, not an installed one
        paths.insert(0, str(src))
    if env.get("PYTHONPATH"):
        paths.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def new_runner_command(cfg: Config) -> RunnerCommand:
    env = new_runner_env(cfg.new_python_explicit)
    python = cfg.new_python
    return local_runner_command(python, cfg.log_dir / "new", env, "python", python)


def describe_new_runner(command: RunnerCommand) -> str:
    probe = "import ai.backend.kernel as k; print(k.__file__)"
    out = subprocess.run(
        [command.argv[0], "-c", probe], capture_output=True, text=True, env=command.env
    )
    lines = (out.stdout or out.stderr).strip().splitlines()
    return lines[-1] if lines else f"exit {out.returncode}"
