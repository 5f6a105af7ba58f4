"""Query mode through a Jupyter kernel (jupyter_client's async API).

jupyter_client is imported in a worker thread when the kernel starts, so that importing it never
delays the runner's first ``status`` reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .input_relay import InputBroker
from .kernelspecs import KernelspecNotFound, find_kernelspec, launch_argv
from .protocol import Record, RecordSink, encode_json

if TYPE_CHECKING:
    from jupyter_client.asynchronous.client import AsyncKernelClient
    from jupyter_client.manager import AsyncKernelManager

log = logging.getLogger(__name__)

READY_TIMEOUT = 60.0
# ipykernel answers a completion only between executions, so one sent during a long run would
# wait forever; but a session's first completion loads jedi, which took 4-9 s on a busy 2-core
# machine, and an empty answer then looks to the user like nothing to complete.
COMPLETE_TIMEOUT = 15.0
ALIVE_CHECK_INTERVAL = 1.0
IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif")
DISPLAY_PREFERENCE = (*IMAGE_TYPES, "image/svg+xml", "text/html", "text/plain")


def display_record(data: Mapping[str, Any]) -> tuple[Record, bytes] | None:
    """Map a Jupyter MIME bundle to the record the agent renders best."""
    mime = next((m for m in DISPLAY_PREFERENCE if m in data), None)
    if mime is None:
        return None
    value = data[mime]
    if mime == "text/plain":
        return Record.STDOUT, f"{value}\n".encode()
    if mime in IMAGE_TYPES:
        value = f"data:{mime};base64,{''.join(str(value).split())}"
    return Record.MEDIA, encode_json({"type": mime, "data": value})


class JupyterKernel:
    def __init__(self, manager: AsyncKernelManager, client: AsyncKernelClient) -> None:
        self._manager = manager
        self._client = client
        self._replies: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._executing = False
        self._kill_at: float | None = None
        self._shell_reader = asyncio.create_task(self._read_shell())

    @classmethod
    async def start(
        cls, wanted: str, runtime: str, is_python: bool, env: Mapping[str, str], cwd: Path
    ) -> JupyterKernel:
        """Start the kernelspec named ``wanted``* that the runtime's installation provides."""
        spec = await find_kernelspec(wanted, runtime, is_python, env)
        kernelspec = await asyncio.to_thread(importlib.import_module, "jupyter_client.kernelspec")
        manager_module = await asyncio.to_thread(importlib.import_module, "jupyter_client.manager")
        # Only the chosen kernel's directory: jupyter_client's default search would look in the
        # runner's own prefix and could add the runner's interpreter as a native kernel.
        specs = kernelspec.KernelSpecManager(
            kernel_dirs=[str(spec.directory.parent)], ensure_native_kernel=False
        )
        manager: AsyncKernelManager = manager_module.AsyncKernelManager(
            kernel_name=spec.name, kernel_spec_manager=specs
        )
        loaded = await asyncio.to_thread(lambda: manager.kernel_spec)  # cached by the manager
        if loaded is None:
            raise KernelspecNotFound(f"jupyter_client cannot load {spec.directory}")
        loaded.argv = launch_argv(loaded.argv, runtime, is_python, env)
        try:
            await manager.start_kernel(env=dict(env), cwd=str(cwd))
            client = manager.client()
            client.start_channels()
            await client.wait_for_ready(timeout=READY_TIMEOUT)
        except BaseException:  # including cancellation by a shutdown during start-up
            if manager.has_kernel:
                await manager.shutdown_kernel(now=True)
            raise
        log.info("Jupyter kernel %s is ready: %s", spec.name, " ".join(loaded.argv))
        return cls(manager, client)

    async def _restart(self) -> None:
        """Restart a dead kernel with fresh channels (the old ones may have lost messages)."""
        await self._stop_channels()
        await self._manager.restart_kernel(now=True)
        self._client = self._manager.client()
        self._client.start_channels()
        await self._client.wait_for_ready(timeout=READY_TIMEOUT)
        self._shell_reader = asyncio.create_task(self._read_shell())

    async def _stop_channels(self) -> None:
        self._shell_reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._shell_reader
        self._client.stop_channels()

    async def _read_shell(self) -> None:
        while True:
            msg = await self._client.get_shell_msg()
            waiter = self._replies.pop(msg["parent_header"].get("msg_id", ""), None)
            if waiter is not None and not waiter.done():
                waiter.set_result(msg)

    def _expect_reply(self, msg_id: str) -> asyncio.Future[dict[str, Any]]:
        future = asyncio.get_running_loop().create_future()
        self._replies[msg_id] = future
        return future

    async def execute(self, code: str, send: RecordSink, inputs: InputBroker) -> int:
        msg_id: str = self._client.execute(code, allow_stdin=True, stop_on_error=True)
        reply = self._expect_reply(msg_id)
        answering = asyncio.create_task(self._answer_input(msg_id, send, inputs))
        self._executing = True
        try:
            if problem := await self._forward_output(msg_id, send):
                await send(Record.STDERR, f"{problem}; restarting it.\n".encode())
                answering.cancel()
                await self._restart()
                return 1
            status = (await reply)["content"].get("status")
            return 0 if status == "ok" else 1
        finally:
            self._executing = False
            self._kill_at = None
            self._replies.pop(msg_id, None)
            answering.cancel()
            await asyncio.gather(answering, return_exceptions=True)

    async def _forward_output(self, msg_id: str, send: RecordSink) -> str | None:
        """Forward output until the kernel is idle again, else say why it needs a restart."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                async with asyncio.timeout(self._until_next_check(loop.time())):
                    msg = await self._client.get_iopub_msg()
            except TimeoutError:
                if not await self._manager.is_alive():
                    return "The Jupyter kernel died"
                if self._kill_at is not None and loop.time() >= self._kill_at:
                    return "The Jupyter kernel did not stop after the interrupt"
                continue
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "status" and content.get("execution_state") == "idle":
                return None
            if kind == "stream":
                record = Record.STDERR if content["name"] == "stderr" else Record.STDOUT
                await send(record, content["text"].encode())
            elif kind == "error":
                await send(Record.STDERR, ("\n".join(content["traceback"]) + "\n").encode())
            elif kind in ("execute_result", "display_data") and (
                mapped := display_record(content.get("data", {}))
            ):
                await send(*mapped)

    def _until_next_check(self, now: float) -> float:
        if self._kill_at is None:
            return ALIVE_CHECK_INTERVAL
        return max(0.0, min(ALIVE_CHECK_INTERVAL, self._kill_at - now))

    async def _answer_input(self, msg_id: str, send: RecordSink, inputs: InputBroker) -> None:
        while True:
            msg = await self._client.get_stdin_msg()
            if msg["parent_header"].get("msg_id") != msg_id or msg["msg_type"] != "input_request":
                continue
            if prompt := msg["content"].get("prompt", ""):
                await send(Record.STDOUT, prompt.encode())
            text = await inputs.ask_line(bool(msg["content"].get("password", False)))
            self._client.input(text)

    async def complete(self, code: str, cursor_pos: int | None) -> list[str]:
        msg_id: str = self._client.complete(code, cursor_pos)
        try:
            async with asyncio.timeout(COMPLETE_TIMEOUT):
                reply = await self._expect_reply(msg_id)
        finally:
            self._replies.pop(msg_id, None)
        return [str(match) for match in reply["content"].get("matches", [])]

    async def interrupt(self, grace: float) -> None:
        """Interrupt the kernel; restart it if the execution is still running after ``grace``."""
        await self._manager.interrupt_kernel()
        if self._executing and self._kill_at is None:
            self._kill_at = asyncio.get_running_loop().time() + grace

    async def shutdown(self) -> None:
        await self._stop_channels()
        await self._manager.shutdown_kernel(now=True)
