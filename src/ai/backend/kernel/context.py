"""What batch and query mode share: the language, its runtime, the work dir, the environment
of user processes, and how a user process is run with its output sent to the agent."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .execution import ProcessManager
from .languages import Language
from .protocol import RecordSink


@dataclass(frozen=True)
class ExecutionContext:
    lang: Language
    runtime_path: str
    work_dir: Path
    env: dict[str, str]
    """The runner's own dict: start-up adds the input relay's address before any op."""
    processes: ProcessManager
    send: RecordSink

    def values(self, **extra: str) -> dict[str, str]:
        """The placeholders of a language's argv templates."""
        return {
            "runtime": self.runtime_path,
            "runtime_dir": os.path.dirname(self.runtime_path),
            "work_dir": str(self.work_dir),
            **extra,
        }

    async def run(self, argv: Sequence[str], env: dict[str, str]) -> int:
        """Run ``argv`` in the work dir until it exits, streaming its output; its exit code."""
        return await self.processes.run(argv, env=env, cwd=self.work_dir, send=self.send)
