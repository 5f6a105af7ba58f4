# mypy: disable-error-code="no-untyped-call"
"""The agent tests' harness: a kernel runner subprocess driven by the real agent's code.

The same tests run once per agent generation in the field, each in a resolve of its own
(tests/agent/BUILD): backend.ai-agent 24.3.11 (``agent``), 24.9.14 (``agent-24_9``) and 25.5.2
(``agent-25_5``).  What differs between them is handled here, in one place each:
``kernel_args`` (25.x builds its kernel objects from ``KernelOwnershipData`` and a network;
its code runner wraps the sockets in ``RobustSocket``, which the harness never touches) and
``agent_bin_dir`` (the ``/opt/kernel`` that generation mounts: the separate dropbear programs
under 24.3, the multi-call ``dropbearmulti`` of backend.ai-kernel-binary since 24.9), given to
the runner with ``--agent-bin-dir``.

The runner under test is started as a subprocess and talked to only through the classes of
the agent: ``AbstractCodeRunner`` (subclassed here with the two abstract
address getters, exactly what the Docker backend does) and ``DockerKernel`` (only its
``create_code_runner`` is replaced, so ``execute``, ``check_status``, ``get_completions``,
``interrupt_kernel``, ``start_service`` and ``get_service_apps`` are the agent's own).

Which runner is driven (first match):

1. ``BACKEND_KERNEL_UPSTREAM_PYTHON=/path/to/python`` (a python with the published
   backend.ai-kernel and ipykernel): the upstream runner, started as in a container
   (``python -m ai.backend.kernel python PYTHON``, cwd ``/home/work``, fixed ports 2000/2001).
   Used to validate this harness; upstream fails the tests of the defects the rewrite fixes.
2. ``BACKEND_KERNEL_PYTHON=/path/to/python``: this repository's runner run by that python.
3. A ``backend_ai_kernel-*.whl`` in the working directory (what Pants puts in a test
   sandbox for ``runtime_package_dependencies``), installed by ``tests.built_wheels`` into a
   fresh virtualenv that borrows the test environment's third-party packages.
4. ``sys.executable``.

This repository's runner is started as ``PYTHON -m ai.backend.kernel --bind 127.0.0.1
--repl-in-port P1 --repl-out-port P2 --work-dir TMP --config-dir TMP2 python``. If that python
has no ``ai.backend.kernel`` with this repository's command line (``--repl-in-port`` in
``--help``), every test is skipped with the reason, unless ``BACKEND_KERNEL_REQUIRE_RUNNER=1``
turns the skip into a failure. Once the command line is there, a runner that does not start
or does not answer ``status`` fails the tests, never skips them.

Note that backend.ai-agent depends on the published backend.ai-kernel, so in the agent's own
environment ``python -m ai.backend.kernel`` is upstream's runner: point BACKEND_KERNEL_PYTHON
at a python where this repository's runner (and ipykernel) is installed.

Readiness is the agent's own probe (``check_status``) over the agent's sockets: a second
client on the runner's PUSH socket would receive some of the agent's records round-robin.

Tests are plain functions: the ``agent`` fixture (conftest.py) runs coroutines on one event
loop for the whole session (the agent's zmq context and sockets must stay on one loop). By
default a test's ``agent`` drives a fresh runner process, stopped afterwards (SIGTERM, then
SIGKILL to what is left). Tests that leave the runner as they found it (status, completion,
service apps, queries and batch runs that finish) are marked ``shared_runner`` and share one
runner per module, replaced after a test that fails or kills it.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest

from tests.built_wheels import create_venv_with_wheels, wheels_by_project
from tests.support.processes import (
    RunnerCommand,
    RunnerProcess,
    local_runner_command,
    start_runner,
)
from tests.support.ssh import SEARCH_PATH

with warnings.catch_warnings():
    # ai.backend.agent.agent imports pkg_resources, which warns on import.
    warnings.simplefilter("ignore", DeprecationWarning)
    from ai.backend.agent.docker.kernel import DockerKernel
    from ai.backend.agent.kernel import AbstractCodeRunner, NextResult
    from ai.backend.agent.types import AgentEventData

T = TypeVar("T")

AGENT_VERSION = importlib.metadata.version("backend.ai-agent")
AGENT_GENERATION = tuple(int(part) for part in AGENT_VERSION.split(".")[:2])
"""(24, 3), (24, 9) or (25, 5): the agent of this test run's resolve."""
MULTI_CALL_DROPBEAR = AGENT_GENERATION >= (24, 9)
"""Agents since 24.9 mount one ``dropbearmulti`` instead of the separate dropbear programs."""
DROPBEAR_PROGRAMS = ("dropbear", "dropbearkey", "dropbearconvert")

START_TIMEOUT = 60.0  # seconds until the runner must answer its first `status`
STOP_TIMEOUT = 10.0  # seconds the runner gets to exit after SIGTERM
CALL_TIMEOUT = 30.0  # default limit for one agent-level call in a test
API_VERSION = 4  # what the agents use (default_api_version)
FLUSH_TIMEOUT = 2.0  # the agent's continuation flush timeout
AGENT_DROPS_STEP_RECORDS = AGENT_GENERATION == (24, 9)
"""Agent 24.9.14 ends a run's output queue on clean-finished/build-finished and drops every
record that arrives before the client's `continue` (test_agent_runner.py marks the tests that
meet it). The `continue` then only ever answers an empty `continued`."""
DROPPED_RECORDS_EVIDENCE = 2
"""Under that agent: this many empty `continued` answers in a row (FLUSH_TIMEOUT each) to the
`continue` after a step ended show that the next step's records were dropped."""
STEP_ENDS = ("clean-finished", "build-finished")

# The agent's service-port list for the test kernel. `not-a-service` passes the agent's own
# name check and must be refused by the runner (it is in no service definition).
SERVICE_PORTS: list[dict[str, Any]] = [
    {"name": "not-a-service", "protocol": "http", "container_ports": [8091], "host_ports": [None]},
]


# --------------------------------------------------------------------------------------
# Runner subprocess
# --------------------------------------------------------------------------------------


@dataclass
class RunnerChoice:
    """Which runner the session drives, and how its python is run."""

    flavour: str  # "new" or "upstream"
    python: str
    env: dict[str, str]
    origin: str  # where the choice came from, for messages


def _base_child_env() -> dict[str, str]:
    """The test environment minus what would change how the runner's python starts."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEX_")}
    env.pop("PYTHONSTARTUP", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def choose_runner(tmp_factory: pytest.TempPathFactory) -> RunnerChoice:
    env = _base_child_env()
    if upstream := os.environ.get("BACKEND_KERNEL_UPSTREAM_PYTHON"):
        return RunnerChoice("upstream", upstream, env, "BACKEND_KERNEL_UPSTREAM_PYTHON")
    if python := os.environ.get("BACKEND_KERNEL_PYTHON"):
        return RunnerChoice("new", python, env, "BACKEND_KERNEL_PYTHON")
    # A wheel Pants built for this test (runtime_package_dependencies) is in a test sandbox.
    if wheel := wheels_by_project(Path.cwd()).get("backend-ai-kernel"):
        return wheel_runner(wheel, tmp_factory.mktemp("runner-venv") / "venv")
    return RunnerChoice("new", sys.executable, env, "sys.executable")


def wheel_runner(wheel: Path, venv: Path) -> RunnerChoice:
    """This repository's runner installed from ``wheel`` into a new virtualenv ``venv`` (also
    the benchmark's, tools/benchmark/benchmark/agent_services.py)."""
    env = _base_child_env()
    env.pop("PYTHONPATH", None)  # the runner must come from the wheel alone
    python = str(create_venv_with_wheels(venv, [wheel]))
    return RunnerChoice("new", python, env, f"built wheel {wheel.name}")


def _unavailable(reason: str) -> None:
    if os.environ.get("BACKEND_KERNEL_REQUIRE_RUNNER", "") not in ("", "0"):
        pytest.fail(f"runner required (BACKEND_KERNEL_REQUIRE_RUNNER) but {reason}")
    pytest.skip(reason)


def _check_new_runner_cli(choice: RunnerChoice) -> None:
    """Skip (with the reason) if the python has no runner with this repository's CLI."""
    python = choice.python
    if not Path(python).exists():
        _unavailable(f"runner python {python!r} ({choice.origin}) does not exist")
    try:
        out = subprocess.run(
            [python, "-m", "ai.backend.kernel", "--help"],
            capture_output=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
            env=choice.env,
        )
    except subprocess.TimeoutExpired:
        _unavailable(f"`{python} -m ai.backend.kernel --help` did not return within 60 s")
        return
    text = (out.stdout + out.stderr).decode(errors="replace")
    if out.returncode != 0 or "--repl-in-port" not in text:
        lines = text.strip().splitlines() or [""]
        summary = lines[0] if lines[0] == lines[-1] else f"{lines[0]} ... {lines[-1]}"
        _unavailable(
            f"ai.backend.kernel cannot be started yet with {python} ({choice.origin}); set "
            f"BACKEND_KERNEL_PYTHON to a python that has this repository's runner, or give the "
            f"tests its wheel. `-m ai.backend.kernel --help` exited {out.returncode} without "
            f"--repl-in-port: {summary[:300]}"
        )


def upstream_runner_command(choice: RunnerChoice) -> RunnerCommand:
    work, config = Path("/home/work"), Path("/home/config")
    work.mkdir(parents=True, exist_ok=True)
    config.mkdir(parents=True, exist_ok=True)
    argv = [choice.python, "-m", "ai.backend.kernel", "python", choice.python]
    return RunnerCommand("upstream", argv, work, dict(choice.env), 2000, 2001, fixed_ports=True)


# --------------------------------------------------------------------------------------
# The agent side
# --------------------------------------------------------------------------------------


class LocalCodeRunner(AbstractCodeRunner):
    """The agent's code runner, pointed at a runner listening on 127.0.0.1."""

    def __init__(self, *args: Any, in_port: int, out_port: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.in_port = in_port
        self.out_port = out_port

    async def get_repl_in_addr(self) -> str:
        return f"tcp://127.0.0.1:{self.in_port}"

    async def get_repl_out_addr(self) -> str:
        return f"tcp://127.0.0.1:{self.out_port}"


class LocalKernel(DockerKernel):
    """The agent's Docker kernel object without Docker: only the code runner is local."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Agent 24.9.14 makes a kernel's set of running executions (`_tasks`, which execute()
        # uses) only when it restores the kernel from its pickled registry (__setstate__).
        if AGENT_GENERATION == (24, 9) and not hasattr(self, "_tasks"):
            setattr(self, "_tasks", set())  # noqa: B010 (not every generation declares it)

    async def create_code_runner(
        self, event_producer: Any, *, client_features: frozenset[str], api_version: int
    ) -> AbstractCodeRunner:
        return await LocalCodeRunner.new(
            self.kernel_id,
            self.session_id,
            event_producer,
            in_port=self.data["repl_in_port"],
            out_port=self.data["repl_out_port"],
            exec_timeout=0,
            client_features=client_features,
        )


class DiscardingEventProducer:
    """Stands in for the agent's event bus (used for model-service health events)."""

    async def produce_event(self, event: Any, *, source: str = "agent") -> None:
        pass


@dataclass
class RunResult:
    """What the API client would see for one run, all continuations merged."""

    status: str
    exit_code: int | None
    options: Mapping[str, Any] | None
    console: list[tuple[str, Any]]

    def text(self, stream: str) -> str:
        return "".join(str(data) for kind, data in self.console if kind == stream)

    @property
    def stdout(self) -> str:
        return self.text("stdout")

    @property
    def stderr(self) -> str:
        return self.text("stderr")

    def media(self) -> list[tuple[str, str]]:
        return [(str(data[0]), str(data[1])) for kind, data in self.console if kind == "media"]


def _has_output(result: NextResult) -> bool:
    """Whether an answer carries any output: `console` (API v2+) or the v1 fields."""
    return any(result.get(field) for field in ("console", "stdout", "stderr", "media", "html"))


def _merge(results: Sequence[NextResult]) -> RunResult:
    console: list[tuple[str, Any]] = []
    for res in results:
        console.extend((kind, data) for kind, data in res.get("console") or [])
    last = results[-1]
    return RunResult(
        status=str(last["status"]),
        exit_code=last.get("exitCode"),
        options=last.get("options"),
        console=console,
    )


class AgentSession:
    """One runner subprocess plus the agent objects that drive it."""

    def __init__(self, loop: asyncio.AbstractEventLoop, runner: RunnerProcess) -> None:
        self.loop = loop
        self.runner = runner
        self.step_ended: set[str] = set()  # runs whose last answer was one of STEP_ENDS
        self.kernel = self._make_kernel()
        self.run(self.kernel.init(cast(Any, DiscardingEventProducer())))
        self.run(self._wait_ready(), timeout=START_TIMEOUT + 5)

    async def _wait_ready(self) -> None:
        """The agent's readiness probe (check_status), bounded, while watching the process.

        The probe goes through the agent's own sockets: a second client connected to the
        runner's PUSH socket would get some of the agent's records round-robin."""
        task = self.loop.create_task(self.kernel.check_status())
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            done, _ = await asyncio.wait({task}, timeout=0.1)
            if done:
                result = task.result()
                assert isinstance(result, dict) and "started_at" in result, result
                return
            if self.runner.proc.poll() is not None:
                break
        task.cancel()
        rc = self.runner.proc.poll()
        what = f"exited with {rc}" if rc is not None else f"gave no answer in {START_TIMEOUT} s"
        pytest.fail(f"runner {what} before answering `status`:\n{self.runner.log_tail()}")

    def _make_kernel(self) -> LocalKernel:
        return LocalKernel(
            *kernel_args(),
            agent_config={},
            resource_spec=None,
            service_ports=SERVICE_PORTS,
            environ={},
            data={
                "repl_in_port": self.runner.command.in_port,
                "repl_out_port": self.runner.command.out_port,
            },
        )

    @property
    def work_dir(self) -> Path:
        return self.runner.command.cwd

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = CALL_TIMEOUT) -> T:
        return self.loop.run_until_complete(self._bounded(coro, timeout))

    async def _bounded(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        # asyncio.wait, not wait_for: several agent calls swallow CancelledError and
        # return a placeholder, which would hide a timeout.
        task = self.loop.create_task(coro)
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if not done:
            task.cancel()
            await asyncio.wait({task}, timeout=5)
            pytest.fail(
                f"no answer within {timeout} s (the agent would wait here).\n"
                f"runner log:\n{self.runner.log_tail()}"
            )
        return task.result()

    async def execute_once(
        self,
        run_id: str,
        mode: str,
        text: str = "",
        opts: Mapping[str, Any] | None = None,
        api_version: int = API_VERSION,
    ) -> NextResult:
        return await self.kernel.execute(
            run_id,
            mode,  # type: ignore[arg-type]
            text,
            opts=opts or {},
            api_version=api_version,
            flush_timeout=FLUSH_TIMEOUT,
        )

    async def execute_results(
        self,
        run_id: str,
        mode: str,
        text: str = "",
        opts: Mapping[str, Any] | None = None,
        api_version: int = API_VERSION,
    ) -> list[NextResult]:
        """One API request and its `continue`s until it returns something else than
        `continued`, as the API client does; the agent's answers as they are.

        Under agent 24.9 (AGENT_DROPS_STEP_RECORDS), a `continue` after a step ended that gets
        only empty `continued` answers fails the test as soon as DROPPED_RECORDS_EVIDENCE of
        them show the defect, rather than when the call's time limit runs out."""
        after_step_end = mode == "continue" and run_id in self.step_ended
        self.step_ended.discard(run_id)
        results = [await self.execute_once(run_id, mode, text, opts, api_version)]
        while results[-1]["status"] == "continued":
            if (
                AGENT_DROPS_STEP_RECORDS
                and after_step_end
                and len(results) >= DROPPED_RECORDS_EVIDENCE
                and not any(_has_output(result) for result in results)
            ):
                pytest.fail(
                    f"agent {AGENT_VERSION} dropped the records of run {run_id} after its last "
                    f"step ended: {len(results)} empty `continued` answers in a row"
                )
            results.append(await self.execute_once(run_id, "continue", api_version=api_version))
        if results[-1]["status"] in STEP_ENDS:
            self.step_ended.add(run_id)
        return results

    async def execute_until_status(
        self, run_id: str, mode: str, text: str = "", opts: Mapping[str, Any] | None = None
    ) -> RunResult:
        """Like execute_results, with the answers merged."""
        return _merge(await self.execute_results(run_id, mode, text, opts))

    async def start_exec(self, run_id: str, command: str) -> asyncio.Future[RunResult]:
        """A batch run with only an exec step, up to that step: `batch`, `continue` past the
        clean and build steps, and the pending `continue` that waits for the exec result."""
        opts = {"clean": "", "build": "", "exec": command}
        steps = [await self.execute_until_status(run_id, "batch", opts=opts)]
        steps.append(await self.execute_until_status(run_id, "continue"))
        assert [s.status for s in steps] == ["clean-finished", "build-finished"], steps
        return asyncio.ensure_future(self.execute_until_status(run_id, "continue"))

    def execute(
        self,
        run_id: str,
        mode: str,
        text: str = "",
        opts: Mapping[str, Any] | None = None,
        timeout: float = CALL_TIMEOUT,
    ) -> RunResult:
        return self.run(self.execute_until_status(run_id, mode, text, opts), timeout)

    def query(self, code: str, timeout: float = CALL_TIMEOUT) -> RunResult:
        return self.execute(new_run_id(), "query", code, timeout=timeout)

    def batch(
        self, clean: str, build: str, exec_: str, timeout: float = CALL_TIMEOUT
    ) -> tuple[str, list[RunResult]]:
        """Clean/build/exec as the client does it: `batch`, then `continue` after each
        clean-finished/build-finished, until `finished`. Returns the run id and each
        status-ending step."""
        run_id = new_run_id()
        opts = {"clean": clean, "build": build, "exec": exec_}
        steps = [self.execute(run_id, "batch", opts=opts, timeout=timeout)]
        while steps[-1].status in ("clean-finished", "build-finished"):
            steps.append(self.execute(run_id, "continue", timeout=timeout))
        return run_id, steps

    def notify_event(self, type_: str, data: Mapping[str, Any] | None = None) -> None:
        self.run(self.kernel.notify_event(AgentEventData(type_, dict(data or {}))))

    def set_service_ports(self, ports: Mapping[str, int]) -> None:
        """The kernel's service ports, one http port per name, as the agent lists them (its
        ``start_service`` looks the port up there)."""
        self.kernel.service_ports = cast(
            Any,
            [
                {
                    "name": name,
                    "protocol": "http",
                    "container_ports": [port],
                    "host_ports": [None],
                    "is_inference": False,
                }
                for name, port in ports.items()
            ],
        )

    def stop(self) -> None:
        """Close the agent's sockets, then stop the runner and what it started."""
        try:
            self.run(self.kernel.runner.close(), timeout=10)  # type: ignore[union-attr]
        finally:
            self.runner.stop(grace=STOP_TIMEOUT)


def kernel_args() -> tuple[Any, ...]:
    """The positional arguments of the agent's kernel object: (kernel id, session id, agent id,
    image, version) up to 24.9; (ownership data, network id, image, version, network driver)
    in 25.x."""
    kernel_id, session_id, agent_id = uuid.uuid4(), uuid.uuid4(), "i-test"
    if AGENT_GENERATION < (25, 0):
        return (kernel_id, session_id, agent_id, None, 1)
    types = importlib.import_module("ai.backend.agent.types")
    ownership = types.KernelOwnershipData(kernel_id, session_id, agent_id)
    return (ownership, "test-network", None, 1, "bridge")


def agent_bin_dir(tmp: Path) -> Path:
    """``/opt/kernel`` as this test run's agent lays it out, in ``tmp``: the multi-call
    ``dropbearmulti`` of backend.ai-kernel-binary (24.9 and later), else the separate dropbear
    programs (24.3; Debian's dropbear-bin stands in for the agent's per-distro builds, and the
    directory stays empty without it)."""
    target = tmp / "opt-kernel"
    target.mkdir(parents=True, exist_ok=True)
    if MULTI_CALL_DROPBEAR:
        multi = target / "dropbearmulti"
        if not multi.exists():
            shutil.copyfile(dropbearmulti_binary(), multi)
            multi.chmod(0o755)
        return target
    for name in DROPBEAR_PROGRAMS:
        found = shutil.which(name, path=SEARCH_PATH)
        if found is not None and not (target / name).exists():
            (target / name).symlink_to(found)
    return target


def dropbearmulti_binary() -> Path:
    """The agent's ``dropbearmulti.<arch>.bin``, from the installed backend.ai-kernel-binary."""
    name = f"dropbearmulti.{platform.machine()}.bin"
    for file in importlib.metadata.files("backend.ai-kernel-binary") or []:
        if file.name == name:
            return Path(str(file.locate()))
    pytest.fail(f"backend.ai-kernel-binary {AGENT_VERSION} has no {name}")


def new_run_id() -> str:
    return uuid.uuid4().hex


def checked_runner_choice(tmp_factory: pytest.TempPathFactory) -> RunnerChoice:
    """The runner under test, after checking that it can be started at all."""
    choice = choose_runner(tmp_factory)
    if choice.flavour == "upstream":
        if not Path(choice.python).exists():
            pytest.fail(f"BACKEND_KERNEL_UPSTREAM_PYTHON={choice.python!r} does not exist")
    else:
        _check_new_runner_cli(choice)
    return choice


def runner_command_for(choice: RunnerChoice, tmp: Path, *runner_args: str) -> RunnerCommand:
    """The runner's command; ``runner_args`` (e.g. ``--service-def-dir DIR``) go to this
    repository's runner only."""
    if choice.flavour == "upstream":
        return upstream_runner_command(choice)
    # RUNTIME_PATH, as the agent gives it: user code and the Jupyter kernel run on it.
    env = python_kernelspec(tmp, choice.env)
    bin_dir = str(agent_bin_dir(tmp))
    return local_runner_command(
        choice.python, tmp, env, "--agent-bin-dir", bin_dir, *runner_args, "python", choice.python
    )


def python_kernelspec(tmp: Path, env: Mapping[str, str]) -> dict[str, str]:
    """``env`` with a JUPYTER_PATH holding Jupyter's usual python3 kernelspec (a bare
    ``python``, which the runner replaces by RUNTIME_PATH), as an image registers it."""
    spec_dir = tmp / "jupyter" / "kernels" / "python3"
    spec_dir.mkdir(parents=True, exist_ok=True)
    argv = ["python", "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec = {"argv": argv, "display_name": "Python 3", "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    # A private jedi cache, as in tests/kernel/conftest.py's hermetic_env.
    return {**env, "JUPYTER_PATH": str(tmp / "jupyter"), "XDG_CACHE_HOME": str(tmp / "cache")}


def start_session(loop: asyncio.AbstractEventLoop, choice: RunnerChoice, tmp: Path) -> AgentSession:
    """A runner started in ``tmp`` (or upstream's fixed place) with the agent driving it."""
    return open_session(loop, runner_command_for(choice, tmp), tmp)


def open_session(
    loop: asyncio.AbstractEventLoop, command: RunnerCommand, log_dir: Path
) -> AgentSession:
    """``command``'s runner with the agent driving it; stopped again if it never gets ready."""
    proc = start_runner(command, log_dir)
    try:
        return AgentSession(loop, proc)
    except BaseException:
        proc.stop(grace=STOP_TIMEOUT)
        raise


class SharedRunner:
    """One runner and agent session for the tests that leave it as they found it, started
    on first use and again after stop()."""

    def __init__(self, loop: asyncio.AbstractEventLoop, choice: RunnerChoice, base: Path) -> None:
        self.loop = loop
        self.choice = choice
        self.base = base
        self.session: AgentSession | None = None
        self.starts = 0

    def get(self) -> AgentSession:
        if self.session is None:
            tmp = self.base / f"shared-{self.starts}"
            tmp.mkdir()
            self.starts += 1
            self.session = start_session(self.loop, self.choice, tmp)
        return self.session

    def stop(self) -> None:
        session, self.session = self.session, None
        if session is not None:
            session.stop()
