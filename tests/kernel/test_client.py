"""The developer client, run as a subprocess against a runner."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from typing import Any


def _client(kernel: Any, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "ai.backend.kernel.client"]
    argv += ["--in-port", str(kernel.in_port), "--out-port", str(kernel.out_port), *args]
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=60)


def test_run_batch_and_input(start_kernel: Callable[..., Any]) -> None:
    kernel = start_kernel("git")
    kernel.agent.close()  # the client is the only peer of the runner's sockets
    done = _client(kernel, "run", "echo out; echo err >&2; exit 5")
    assert (done.returncode, done.stdout.splitlines()[0], done.stderr) == (5, "out", "err\n")
    done = _client(kernel, "run", 'read x; echo "got $x"', stdin="abc\n")
    assert "got abc" in done.stdout
    done = _client(kernel, "batch", "--build", "exit 1", "--exec", "echo never")
    assert done.returncode == 127
    assert "never" not in done.stdout
    done = _client(kernel, "status")
    assert "started_at" in done.stdout
