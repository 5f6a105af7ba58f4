"""What the runners are compared with: a bare jupyter_client, a process spawn and a pipe."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import IO, TYPE_CHECKING

from tests.support.processes import stop_process_tree

from .client import repeat
from .config import STREAM_BYTES, STREAM_CMD, BenchError, Config, notice, progress

if TYPE_CHECKING:
    from .measure import RunnerResults

JUPYTER_BASELINE = """
import json, sys, time
from jupyter_client.manager import start_new_kernel
km, kc = start_new_kernel(kernel_name="python3")
def once():
    t0 = time.perf_counter()
    kc.execute_interactive("pass", timeout=30, output_hook=lambda msg: None)
    return time.perf_counter() - t0
try:
    for _ in range(10):
        once()
    print("ready", flush=True)
    for line in sys.stdin:
        print(json.dumps([once() for _ in range(int(line))]), flush=True)
finally:
    kc.stop_channels()
    km.shutdown_kernel(now=True)
"""


class JupyterBaseline:
    """A bare jupyter_client + ipykernel pair in a helper process, timed on request, so that
    its samples can be taken in turns with the runner's (the machine's load drifts)."""

    def __init__(self, python: str, env: dict[str, str], log: IO[bytes]) -> None:
        self.proc = subprocess.Popen(
            [python, "-c", JUPYTER_BASELINE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            env=env,
            start_new_session=True,
        )
        self.log_path = Path(log.name)

    def _readline(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode().strip()
        if not line:
            tail = self.log_path.read_text(errors="replace").strip().splitlines()[-1:]
            raise BenchError(f"jupyter_client helper failed: {' '.join(tail)}")
        return line

    def wait_ready(self) -> None:
        if self._readline() != "ready":
            raise BenchError("jupyter_client helper did not start")

    def samples(self, count: int) -> list[float]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{count}\n".encode())
        self.proc.stdin.flush()
        return [float(x) for x in json.loads(self._readline())]

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        stop_process_tree(self.proc)


@contextmanager
def jupyter_baseline(cfg: Config, env: dict[str, str]) -> Iterator[JupyterBaseline | None]:
    with open(cfg.log_dir / "jupyter-baseline.log", "wb") as log:
        helper = JupyterBaseline(cfg.new_python, env, log)
    try:
        helper.wait_ready()
    except BenchError as exc:
        notice(str(exc))
        helper.close()
        yield None
        return
    try:
        yield helper
    finally:
        helper.close()


@dataclass
class Baselines:
    jupyter_rtt: float | None = None
    spawn: float | None = None
    pipe: float | None = None  # bytes per second
    errors: list[str] = field(default_factory=list)


def spawn_samples(count: int) -> list[float]:
    return repeat(lambda: subprocess.run(["sh", "-c", "true"]), count)


def pipe_once() -> float:
    start = time.perf_counter()
    proc = subprocess.Popen(["sh", "-c", STREAM_CMD], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    total = 0
    fd = proc.stdout.fileno()
    while chunk := os.read(fd, 1 << 16):
        total += len(chunk)
    proc.wait()
    if total != STREAM_BYTES:
        raise BenchError(f"pipe delivered {total} bytes")
    return STREAM_BYTES / (time.perf_counter() - start)


def measure_baselines(cfg: Config, paired: RunnerResults) -> Baselines:
    """The baselines taken in turns with this runner's samples, else (when its measurement
    failed) on their own now."""
    base = Baselines(paired.paired_jupyter_rtt, paired.paired_spawn, paired.paired_pipe)
    if base.jupyter_rtt is None:
        base.errors.append("jupyter_client baseline: not measured (see above)")
    if base.spawn is None or base.pipe is None:
        progress("baselines: sh -c true, pipe")
        base.spawn = base.spawn or median(spawn_samples(max(cfg.iterations, 50)))
        base.pipe = base.pipe or median([pipe_once() for _ in range(cfg.stream_runs)])
    return base
