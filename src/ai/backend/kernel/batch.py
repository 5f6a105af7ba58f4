"""Batch mode: the ``clean``, ``build`` and ``exec`` ops, each a shell command or, for ``*``,
the first of the language's heuristics (``Step``) that applies in the work dir."""

from __future__ import annotations

from collections.abc import Sequence

from .context import ExecutionContext
from .languages import Step, choose_step, expand_argv, find_sources
from .protocol import Record

BATCH_MODE_ENV = "_BACKEND_BATCH_MODE"


class BatchMode:
    def __init__(self, context: ExecutionContext) -> None:
        self.context = context
        self.build_failed = False  # then the next exec is skipped with exit code 127

    @property
    def exec_env(self) -> dict[str, str]:
        return {**self.context.env, BATCH_MODE_ENV: "1"}

    async def clean(self, command: str) -> int:
        return await self._step(command, self.context.lang.clean, self.context.env)

    async def build(self, command: str) -> int:
        makefile = command == "*" and (self.context.work_dir / "Makefile").is_file()
        steps = (Step("", ("make",)),) if makefile else self.context.lang.build
        exit_code = await self._step(command, steps, self.context.env)
        self.build_failed = exit_code != 0
        return exit_code

    async def exec(self, command: str) -> int:
        if self.build_failed:
            self.build_failed = False
            return 127
        return await self._step(command, self.context.lang.exec, self.exec_env)

    async def _step(self, command: str, steps: Sequence[Step], env: dict[str, str]) -> int:
        context = self.context
        if command == "":
            return 0
        if command != "*":
            return await context.run(["/bin/sh", "-c", command], env)
        step = choose_step(steps, context.work_dir)
        if step is None:
            wanted = ", ".join(s.requires for s in steps) or "nothing"
            message = f"no {context.lang.key} heuristic applies here (looked for: {wanted})\n"
            await context.send(Record.STDERR, message.encode())
            return 127
        if not step.argv:
            return 0
        sources = find_sources(context.lang, context.work_dir)
        return await context.run(expand_argv(step.argv, context.values(), env, sources), env)
