"""The runner: ZeroMQ sockets, the op dispatch table, the execution queue and start-up.

Each op is handled by one ``on_*`` method of ``Runner``; batch mode (``batch.py``), query mode
(``query.py``) and services (``services/``) do the work behind them.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import user_sitecustomize
from .batch import BatchMode
from .channel import AgentChannel
from .context import ExecutionContext
from .environment import build_child_env
from .execution import ProcessManager
from .input_relay import InputBroker, InputRelay
from .languages import Language, resolve_runtime
from .protocol import (
    MalformedMessage,
    Message,
    Op,
    Record,
    decode_json,
    encode_json,
    encode_status,
    exit_payload,
    parse_message,
)
from .query import QueryMode
from .services.definitions import load_catalog
from .services.host import START_TIMEOUT, ServiceHost, ServiceRequest
from .services.intrinsic import AGENT_BIN, SSHD_PORT, TTYD_PORT, IntrinsicServices, SshFiles

if TYPE_CHECKING:
    from .services.model import ModelServices

log = logging.getLogger(__name__)

SHUTDOWN_WAIT = 2.0
INIT_OUTPUT_TAIL = 4096
INPUT_SOCKET_ENV = "BACKENDAI_USER_INPUT_SOCKET"
IMAGE_SERVICE_DEFS = Path("/etc/backend.ai/service-defs")
OOM_NOTICE = b"[runner] out of memory: the kernel's OOM killer ended a process.\n"

Handler = Callable[[str], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class RunnerConfig:
    lang: Language
    runtime_path: str | None
    bind: str
    repl_in_port: int
    repl_out_port: int
    work_dir: Path
    config_dir: Path
    service_def_dir: Path
    input_socket: Path
    interrupt_grace: float
    service_start_timeout: float = START_TIMEOUT
    sshd_port: int = SSHD_PORT
    ttyd_port: int = TTYD_PORT
    agent_bin_dir: Path = AGENT_BIN


class Runner:
    def __init__(self, config: RunnerConfig) -> None:
        self.config = config
        self.lang = config.lang
        self.started_at = time.monotonic()
        self.private_dir = Path(tempfile.mkdtemp(prefix="bai-kernel-"))
        # On the PYTHONPATH of user processes: holds the sitecustomize that relays input().
        self.site_dir = self.private_dir / "pysite"
        self.inputs = InputBroker(self.send)
        self.processes = ProcessManager(self.inputs, config.interrupt_grace)
        self.relay = InputRelay(self.inputs)
        self.init_errors: list[str] = []
        self.ready = asyncio.Event()
        self.last_queued: asyncio.Task[None] | None = None  # the queue's tail
        self.background: set[asyncio.Task[None]] = set()
        self.channel = AgentChannel(self._receive)
        # The one place that says how each op is handled.  Queued ops run one at a time, in
        # order, once start-up is done; the others run at once as concurrent tasks.
        self.dispatch: dict[Op, Handler] = {
            Op.CLEAN: self.on_clean,
            Op.BUILD: self.on_build,
            Op.EXEC: self.on_exec,
            Op.CODE: self.on_code,
            Op.INPUT: self.on_input,
            Op.INTERRUPT: self.on_interrupt,
            Op.STATUS: self.on_status,
            Op.COMPLETE: self.on_complete,
            Op.EVENT: self.on_event,
            Op.START_SERVICE: self.on_start_service,
            Op.SHUTDOWN_SERVICE: self.on_shutdown_service,
            Op.GET_APPS: self.on_get_apps,
            Op.START_MODEL_SERVICE: self.on_start_model_service,
        }
        self.queued_ops = {Op.CLEAN, Op.BUILD, Op.EXEC, Op.CODE}
        # Ready before start(), so that everything that runs children can rely on them.
        self.env = self._make_env()
        self.runtime_path = config.runtime_path or resolve_runtime(self.lang, self.env["PATH"])
        # They hold self.env itself: start() adds the input relay's address before any op.
        context = ExecutionContext(
            self.lang, self.runtime_path, config.work_dir, self.env, self.processes, self.send
        )
        self.batch = BatchMode(context)
        self.query = QueryMode(context, self.inputs, self.private_dir)
        self.services = self._make_services()
        self.services.launchers.update(self._make_intrinsic().launchers())
        self._models: ModelServices | None = None  # model services load at their first op

    # ---- life cycle -------------------------------------------------------------------------

    async def start(self) -> None:
        self.env.update(await self._start_relay())
        self.channel.bind(self.config.bind, self.config.repl_in_port, self.config.repl_out_port)
        if not self.config.work_dir.is_dir():
            log.warning("the work directory %s does not exist", self.config.work_dir)
        log.info(
            "%s runner listening on %s:%d/%d (runtime %s)",
            self.lang.key,
            self.config.bind,
            self.config.repl_in_port,
            self.config.repl_out_port,
            self.runtime_path,
        )
        for job in (self._initialize(), self._start_intrinsic()):
            self._spawn(job)

    def _make_services(self) -> ServiceHost:
        # The same directory once (the default --service-def-dir is the image's).
        directories = list(dict.fromkeys([IMAGE_SERVICE_DEFS, self.config.service_def_dir]))
        catalog = load_catalog(directories)
        log.info("services: %s", ", ".join(sorted(catalog.definitions)) or "none")
        return ServiceHost(
            catalog,
            runtime_path=self.runtime_path,
            env=self.env,
            cwd=self.config.work_dir,
            start_timeout=self.config.service_start_timeout,
            searched=directories,
        )

    def _make_intrinsic(self) -> IntrinsicServices:
        config = self.config
        files = SshFiles(config.work_dir, config.config_dir, self.private_dir / "dropbear")
        return IntrinsicServices(files, self.env, config.agent_bin_dir)

    @property
    def models(self) -> ModelServices:
        if self._models is None:
            from .services.model import ModelServices  # only sessions that serve a model

            self._models = ModelServices(self.services, self.report_health)
        return self._models

    async def _start_intrinsic(self) -> None:
        """sshd and ttyd, started at boot as the agent would start them; failures are only
        logged (a later start-service of the name tries again and answers with the cause)."""
        ports = {"sshd": self.config.sshd_port, "ttyd": self.config.ttyd_port}
        requests = [ServiceRequest(name, port, (port,)) for name, port in ports.items()]
        await asyncio.gather(*(self.services.start_request(r) for r in requests))

    async def _start_relay(self) -> dict[str, str]:
        """Start the input relay; the environment variable that tells children where it is."""
        fallback = self.private_dir / "input.sock"
        try:
            path = await self.relay.start(self.config.input_socket, fallback)
        except OSError as e:  # e.g. a path too long for AF_UNIX; reading stdin still works
            log.error("no input relay: %s", e)
            return {}
        return {INPUT_SOCKET_ENV: str(path)}

    def _make_env(self) -> dict[str, str]:
        env = build_child_env(
            os.environ, self.lang, self.config.work_dir, self.config.config_dir, {}
        )
        pythonpath = [str(self.site_dir), env.get("PYTHONPATH")]
        env["PYTHONPATH"] = os.pathsep.join(filter(None, pythonpath))
        return env

    async def _install_sitecustomize(self) -> None:
        """Give user Python processes the input relay (the directory is on their PYTHONPATH)."""
        self.site_dir.mkdir()
        (self.site_dir / "sitecustomize.py").write_text(inspect.getsource(user_sitecustomize))

    async def close(self) -> None:
        for task in list(self.background):
            task.cancel()
        if self.background:  # let cancelled steps clean up, but never hang on a missing agent
            await asyncio.wait(self.background, timeout=SHUTDOWN_WAIT)
        await asyncio.gather(self.services.close(), self.processes.stop_all())
        await self.query.close()
        await self.relay.close()
        self.channel.close()
        shutil.rmtree(self.private_dir, ignore_errors=True)

    def _spawn(self, job: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        # Eager: a handler that needs no wait (e.g. status) is done before this returns.
        task = asyncio.Task(job, loop=asyncio.get_running_loop(), eager_start=True)
        if task.done():
            self._forget(task)
            return task
        self.background.add(task)
        task.add_done_callback(self._forget)
        return task

    def _forget(self, task: asyncio.Task[None]) -> None:
        self.background.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            if isinstance(error, MalformedMessage):
                log.warning("ignoring a malformed message: %s", error)
            else:
                log.error("a handler failed", exc_info=error)

    async def send(self, record: Record, payload: bytes) -> None:
        await self.channel.send((record.encode(), payload))

    # ---- receiving and queueing -------------------------------------------------------------

    def _receive(self, frames: list[bytes]) -> None:
        try:
            message = parse_message(frames)
        except MalformedMessage as e:
            log.warning("ignoring a malformed message: %s", e)
            return
        log.debug("op %s (%d chars)", message.op, len(message.payload))
        if message.op in self.queued_ops:
            self.last_queued = self._spawn(self._run_queued(message, self.last_queued))
            return
        try:  # a handler that fails at once must not stop receiving either
            self._spawn(self.dispatch[message.op](message.payload))
        except Exception:
            log.exception("%s failed", message.op)

    async def _run_queued(self, message: Message, previous: asyncio.Task[None] | None) -> None:
        """Queued ops run one at a time, in order, once start-up is done: each one waits for
        the one queued before it. Its task starts eagerly, so an op that waits for nothing runs
        inside the receive callback, without a turn of the event loop."""
        if previous is not None and not previous.done():
            await asyncio.wait([previous])
        await self.ready.wait()
        try:
            if self.init_errors:
                report = "".join(f"[runner start-up] {e}\n" for e in self.init_errors)
                self.init_errors.clear()
                await self.send(Record.STDERR, report.encode())
            await self.dispatch[message.op](message.payload)
        except Exception:
            log.exception("%s failed", message.op)

    async def _finish(self, record: Record, step: Awaitable[int]) -> None:
        """Run an execution step and always answer with its finished record."""
        exit_code = -1
        try:
            exit_code = await step
        except Exception as e:
            log.exception("internal error in %s", record)
            await self.send(Record.STDERR, f"runner internal error: {e!r}\n".encode())
        finally:
            await self.send(record, exit_payload(exit_code))

    # ---- start-up -------------------------------------------------------------------------

    async def _initialize(self) -> None:
        """Start-up steps run concurrently; a failure is reported, never fatal."""
        steps: list[tuple[str, Awaitable[None]]] = [("input relay", self._install_sitecustomize())]
        if self.lang.init and os.path.exists(self.lang.init[0]):
            steps.append((self.lang.init[0], self._run_init_command(self.lang.init)))
        bootstrap = self.config.work_dir / "bootstrap.sh"
        if bootstrap.is_file():
            steps.append(("bootstrap.sh", self._run_init_command(("/bin/sh", str(bootstrap)))))
        try:
            results = await asyncio.gather(*(job for _, job in steps), return_exceptions=True)
            for (name, _), result in zip(steps, results, strict=True):
                if isinstance(result, Exception):
                    log.error("start-up step %s failed: %s", name, result)
                    self.init_errors.append(f"{name} failed: {result}")
        finally:
            self.ready.set()

    async def _run_init_command(self, argv: Sequence[str]) -> None:
        """Run a start-up script; its output goes to the container log, its tail to errors."""
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=self.env,
            cwd=self.config.work_dir,
            start_new_session=True,
        )
        assert proc.stdout is not None
        tail = b""
        try:
            while chunk := await proc.stdout.read(65536):
                sys.stderr.buffer.write(chunk)
                tail = (tail + chunk)[-INIT_OUTPUT_TAIL:]
            sys.stderr.buffer.flush()
            exit_code = await proc.wait()
        finally:
            if proc.returncode is None:  # shutdown during start-up
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
        if exit_code != 0:
            output = tail.decode(errors="replace")
            raise RuntimeError(f"exit code {exit_code}; last output:\n{output}")

    # ---- executions (queued) ------------------------------------------------------------------

    async def on_clean(self, command: str) -> None:
        await self._finish(Record.CLEAN_FINISHED, self.batch.clean(command))

    async def on_build(self, command: str) -> None:
        await self._finish(Record.BUILD_FINISHED, self.batch.build(command))

    async def on_exec(self, command: str) -> None:
        await self._finish(Record.FINISHED, self.batch.exec(command))

    async def on_code(self, code: str) -> None:
        await self._finish(Record.FINISHED, self.query.run(code))

    # ---- other ops --------------------------------------------------------------------------

    async def on_input(self, text: str) -> None:
        self.inputs.feed(text)

    async def on_interrupt(self, _: str) -> None:
        if not self.processes.interrupt():
            await self.query.interrupt(self.config.interrupt_grace)

    async def on_status(self, _: str) -> None:
        await self.send(Record.STATUS, encode_status(self.started_at))

    async def on_complete(self, payload: str) -> None:
        matches: list[str] = []
        try:
            matches = await self.query.complete(payload)
        finally:
            await self.send(Record.COMPLETION, encode_json(matches))

    async def on_event(self, payload: str) -> None:
        event = decode_json(payload)
        kind = event.get("type") if isinstance(event, dict) else None
        if kind == "oom":
            log.warning("the agent reports that a process in this container was OOM-killed")
            # It concerns the user's execution, if one is running (the agent drops it otherwise).
            await self.send(Record.STDERR, OOM_NOTICE)
        else:
            log.info("agent event: %s", payload[:200])

    async def on_start_service(self, payload: str) -> None:
        result = await self.services.start(payload)
        await self.send(Record.SERVICE_RESULT, encode_json(result.as_reply()))

    async def on_shutdown_service(self, payload: str) -> None:
        try:  # the agent sends json.dumps(name)
            name = decode_json(payload)
        except MalformedMessage:
            name = payload
        await self.services.stop(str(name))

    async def on_get_apps(self, payload: str) -> None:
        apps = self.services.apps(payload.strip())
        await self.send(Record.APPS_RESULT, encode_json({"status": "done", "data": apps}))

    async def on_start_model_service(self, payload: str) -> None:
        reply = await self.models.start(payload)
        if reply is not None:
            await self.send(Record.MODEL_SERVICE_RESULT, encode_json(reply))

    async def report_health(self, model: str, healthy: bool) -> None:
        status = {"model_name": model, "is_healthy": healthy}
        await self.send(Record.MODEL_SERVICE_STATUS, encode_json(status))
