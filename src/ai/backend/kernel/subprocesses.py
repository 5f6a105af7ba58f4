"""Short helper programs run to their end with their output captured (not user code: that is
``execution``).  Each runs in a session of its own, so that a timeout or a cancellation kills
everything it started, not only the program itself."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = ["Completed", "run_to_end"]


@dataclass(frozen=True)
class Completed:
    returncode: int
    out: bytes
    err: bytes  # empty when stderr was merged into out


async def run_to_end(
    argv: Sequence[str],
    timeout: float,
    env: Mapping[str, str] | None = None,
    *,
    merge_stderr: bool = False,
) -> Completed:
    """Run ``argv`` with stdin closed; OSError if it cannot start, TimeoutError after
    ``timeout`` seconds.  On timeout or cancellation its whole session is killed first."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        env=None if env is None else dict(env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT if merge_stderr else asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    try:
        async with asyncio.timeout(timeout):
            out, err = await proc.communicate()
    except (TimeoutError, asyncio.CancelledError):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        raise
    assert proc.returncode is not None
    return Completed(proc.returncode, out, err or b"")
