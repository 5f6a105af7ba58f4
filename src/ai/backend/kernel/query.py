"""Query mode: the ``code``, ``complete`` and (without a running process) ``interrupt`` ops.

A Jupyter runtime's kernel starts at the first query or completion, not at boot, so that a
session that never asks one never imports jupyter_client nor pays for the kernel's memory.
That first request waits for the kernel to start (about 1 s for ipykernel on a 2-core machine);
a kernel that cannot start is reported on every query, and not tried again.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from . import polly
from .context import ExecutionContext
from .input_relay import InputBroker
from .languages import Jupyter, NoQuery, Polly, Programs, expand_argv, query_stem
from .protocol import MalformedMessage, Record, decode_json

if TYPE_CHECKING:
    from .jupyter import JupyterKernel

log = logging.getLogger(__name__)


class QueryMode:
    def __init__(self, context: ExecutionContext, inputs: InputBroker, private_dir: Path) -> None:
        self.context = context
        self.lang = context.lang
        self.send = context.send
        self.inputs = inputs
        self.private_dir = private_dir  # snippets are written into directories of their own here
        self.jupyter: JupyterKernel | None = None
        self._jupyter_start: asyncio.Task[JupyterKernel] | None = None

    async def run(self, code: str) -> int:
        match self.lang.query:
            case Jupyter(kernelspec):
                kernel = await self._start_jupyter(kernelspec)
                if kernel is None:
                    return 127
                return await kernel.execute(code, self.send, self.inputs)
            case Programs() as programs:
                return await self._run_snippet(programs, code)
            case Polly():
                return await polly.speak(code, self.send)
            case NoQuery(reason):
                await self.send(Record.STDERR, f"{reason}\n".encode())
                return 127

    async def complete(self, payload: str) -> list[str]:
        """Completions from the Jupyter kernel (none for other runtimes or a bad request)."""
        if not isinstance(self.lang.query, Jupyter):
            return []
        try:
            request = decode_json(payload)
            if not isinstance(request, dict):
                return []
            kernel = await self._start_jupyter(self.lang.query.kernelspec, report=False)
            if kernel is None:
                return []
            cursor = request.get("cursor_pos")
            cursor_pos = cursor if isinstance(cursor, int) else None
            return await kernel.complete(str(request.get("code", "")), cursor_pos)
        except (MalformedMessage, TimeoutError) as e:
            log.info("completion gave no result: %s", e)
            return []

    async def interrupt(self, grace: float) -> None:
        if self.jupyter is not None:
            await self.jupyter.interrupt(grace)

    async def close(self) -> None:
        if self._jupyter_start is not None and not self._jupyter_start.done():
            self._jupyter_start.cancel()
            await asyncio.gather(self._jupyter_start, return_exceptions=True)
        if self.jupyter is not None:
            try:
                async with asyncio.timeout(5):
                    await self.jupyter.shutdown()
            except Exception as e:
                log.warning("the Jupyter kernel did not shut down cleanly: %r", e)

    async def _start_jupyter(self, kernelspec: str, report: bool = True) -> JupyterKernel | None:
        """The kernel, started by the first request that needs it (later ones wait for the
        same start); None, with the reason on stderr if ``report``, if it did not start."""
        if self._jupyter_start is None:
            self._jupyter_start = asyncio.create_task(self._launch_jupyter(kernelspec))
        try:
            # shield: a request cancelled while waiting must not cancel the shared start.
            return await asyncio.shield(self._jupyter_start)
        except Exception as e:
            if report:
                message = f"the Jupyter kernel did not start: {e}\n"
                await self.send(Record.STDERR, message.encode())
            return None

    async def _launch_jupyter(self, kernelspec: str) -> JupyterKernel:
        from .jupyter import JupyterKernel  # with jupyter_client: only for query mode

        is_python = kernelspec == "python"  # RUNTIME_PATH is then the kernel's interpreter
        context = self.context
        try:
            self.jupyter = await JupyterKernel.start(
                kernelspec, context.runtime_path, is_python, context.env, context.work_dir
            )
        except Exception as e:
            log.error("the Jupyter kernel did not start: %s", e)
            raise
        return self.jupyter

    async def _run_snippet(self, programs: Programs, code: str) -> int:
        """Compile and run a snippet in a private directory; the cwd stays the work dir."""
        snippet_dir = Path(tempfile.mkdtemp(dir=self.private_dir, prefix="query-"))
        try:
            stem = query_stem(self.lang, code)
            source = snippet_dir / f"{stem}{self.lang.suffix}"
            prelude = programs.prelude
            if prelude and code.lstrip().startswith(prelude.strip()):
                prelude = ""
            source.write_text(prelude + code, encoding="utf-8")
            values = self.context.values(
                src=str(source), bin=str(snippet_dir / "main"), dir=str(snippet_dir), stem=stem
            )
            env = self.context.env
            for template in programs.commands:
                exit_code = await self.context.run(expand_argv(template, values, env), env)
                if exit_code != 0:
                    return exit_code
            return 0
        finally:
            shutil.rmtree(snippet_dir, ignore_errors=True)
