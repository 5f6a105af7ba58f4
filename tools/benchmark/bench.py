"""Benchmark this repository's kernel runner against the published backend.ai-kernel 24.3.3.

Run as ``./pants run tools/benchmark:bench`` or ``PYTHONPATH=src python tools/benchmark/bench.py``
(needs pyzmq and msgpack, and this repository's ``ai.backend.kernel.protocol``; the runners need
jupyter-client and ipykernel in their own environments).

Both runners are driven the way the agent drives them: a PUSH socket for ops, a PULL socket for
records, two frames per message, stdout/stderr decoded with one incremental UTF-8 decoder per
stream (``errors="replace"``). The upstream runner is installed from PyPI into a virtualenv
cached under ``~/.cache/backend.ai-kernel-bench/`` and is started as in a container:
``python -m ai.backend.kernel python PYTHON`` with cwd ``/home/work`` on ports 2000/2001.
The runners are measured one after the other in the same run.

Each runner is first started once untimed (with PYTHONDONTWRITEBYTECODE removed from its
environment), so that every later start runs from compiled bytecode as an installed krunner
environment does; without that, a pex venv without .pyc files costs ~13 MB of RSS and start-up
time that the upstream virtualenv (compiled by pip) does not pay. Then, per runner: N starts
(median time to the first `status` reply), and in the last start a warm-up, idle memory, the
round trips (medians) and the 64 MiB streams (median run). The bare jupyter_client baseline
(a plain ipykernel, ``execute_interactive("pass")``, same python as this runner) is timed in
blocks taken in turns with this runner's queries, so that both see the same machine load.

Memory: "idle RSS, runner process" is the runner process alone (``VmRSS`` in
``/proc/PID/status``, after the warm-up and 1 s idle); "runner + children" adds every
descendant, which is mostly the Jupyter kernel.
"""

from __future__ import annotations

import argparse
import codecs
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import IO, Any

import zmq

from ai.backend.kernel.protocol import MalformedMessage, Op, Record, decode_exit, decode_status
from tools.benchmark.services_bench import (
    ServiceResults,
    format_table,
    image_definitions,
    measure_services,
    write_definitions,
)

UPSTREAM_VERSION = "24.3.3"
UPSTREAM_PORTS = (2000, 2001)
UPSTREAM_DIRS = (Path("/home/work"), Path("/home/config"))
CACHE_DIR = Path.home() / ".cache" / "backend.ai-kernel-bench"
STREAM_BYTES = 64 * 2**20
STREAM_LINE = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ+/"
STREAM_CMD = f"yes {STREAM_LINE} | head -c {STREAM_BYTES}"
START_TIMEOUT = 60.0
RUN_TIMEOUT = 60.0
STREAM_TIMEOUT = 600.0
SERVICE_SAMPLES = 20
INTERLEAVE_BLOCK = 20  # query samples per turn, runner and bare jupyter_client alternating
MB = 1e6

Frames = tuple[str, bytes]  # a record's type and payload, as received


class BenchError(Exception):
    """A measurement that could not be taken; reported in the table, never fatal."""


# --------------------------------------------------------------------------------------
# Statistics and /proc helpers
# --------------------------------------------------------------------------------------


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def repeat(action: Callable[[], object], count: int) -> list[float]:
    return [timed(action) for _ in range(count)]


def rss_bytes(pid: int) -> int | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return None


def parent_map() -> dict[int, int]:
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for pid, ppid in parent_map().items():
        children.setdefault(ppid, []).append(pid)
    found, stack = [], [root]
    while stack:
        kids = children.get(stack.pop(), [])
        found.extend(kids)
        stack.extend(kids)
    return found


def tree_rss_bytes(root: int) -> int | None:
    own = rss_bytes(root)
    if own is None:
        return None
    return own + sum(rss_bytes(pid) or 0 for pid in descendants(root))


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def wait_ports_free(ports: Sequence[int], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(port_is_free(port) for port in ports):
            return True
        time.sleep(0.1)
    return False


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------------------
# The agent side of the wire protocol
# --------------------------------------------------------------------------------------


class AgentClient:
    """PUSH ops to the runner, PULL records from it, as the agent does."""

    def __init__(self, ctx: zmq.Context[zmq.Socket[bytes]], in_port: int, out_port: int) -> None:
        self.push = ctx.socket(zmq.PUSH)
        self.pull = ctx.socket(zmq.PULL)
        for sock in (self.push, self.pull):
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.RECONNECT_IVL, 5)  # reach a runner within 5 ms of its bind
        self.push.connect(f"tcp://127.0.0.1:{in_port}")
        self.pull.connect(f"tcp://127.0.0.1:{out_port}")

    def send(self, op: Op, payload: str = "") -> None:
        self.push.send_multipart([op.encode(), payload.encode()])

    def recv(self, timeout: float) -> Frames | None:
        if not self.pull.poll(int(timeout * 1000)):
            return None
        frames = self.pull.recv_multipart()
        if len(frames) != 2:
            raise BenchError(f"record with {len(frames)} frames")
        return frames[0].decode(errors="replace"), frames[1]

    def wait_for(self, wanted: Record, timeout: float = RUN_TIMEOUT) -> bytes:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            record = self.recv(left)
            if record is not None and record[0] == wanted:
                return record[1]
        raise BenchError(f"no {wanted} record within {timeout:.0f} s")

    def drain(self, quiet: float = 0.2) -> None:
        """Discard records until none arrives for ``quiet`` seconds."""
        while self.recv(quiet) is not None:
            pass

    def close(self) -> None:
        self.push.close()
        self.pull.close()


def check_finished(payload: bytes, what: str) -> None:
    try:
        code = decode_exit(payload)
    except MalformedMessage as exc:
        raise BenchError(f"{what}: {exc}") from exc
    if code != 0:
        raise BenchError(f"{what} finished with exitCode {code}")


def status_round_trip(client: AgentClient) -> None:
    client.send(Op.STATUS)
    decode_status(client.wait_for(Record.STATUS))


def query_round_trip(client: AgentClient, code: str = "pass") -> None:
    client.send(Op.CODE, code)
    check_finished(client.wait_for(Record.FINISHED), f"query {code!r}")


def send_batch(client: AgentClient, exec_cmd: str) -> None:
    client.send(Op.CLEAN)
    client.send(Op.BUILD)
    client.send(Op.EXEC, exec_cmd)


def batch_round_trip(client: AgentClient, exec_cmd: str = "true") -> None:
    send_batch(client, exec_cmd)
    check_finished(client.wait_for(Record.FINISHED), f"batch exec {exec_cmd!r}")


@dataclass
class StreamResult:
    raw_bytes: int = 0
    replaced: int = 0
    seconds: float = 0.0


def receive_stream(client: AgentClient, result: StreamResult) -> bytes:
    """Decode stdout/stderr as the agent's read_output() does, until `finished`."""
    decoders: dict[str, codecs.IncrementalDecoder] = {
        Record.STDOUT: codecs.getincrementaldecoder("utf8")(errors="replace"),
        Record.STDERR: codecs.getincrementaldecoder("utf8")(errors="replace"),
    }
    deadline = time.monotonic() + STREAM_TIMEOUT
    while (left := deadline - time.monotonic()) > 0:
        record = client.recv(left)
        if record is None:
            break
        kind, payload = record
        if kind == Record.STDOUT:
            text = decoders[kind].decode(payload)
            result.raw_bytes += len(payload)
            result.replaced += text.count("\ufffd")
        elif kind == Record.STDERR:
            decoders[kind].decode(payload)
        elif kind == Record.FINISHED:
            return payload
    raise BenchError(f"stream did not finish within {STREAM_TIMEOUT:.0f} s")


def stream_throughput(client: AgentClient) -> StreamResult:
    result = StreamResult()
    start = time.perf_counter()
    send_batch(client, STREAM_CMD)
    check_finished(receive_stream(client, result), "64 MiB stream")
    result.seconds = time.perf_counter() - start
    if result.raw_bytes != STREAM_BYTES or result.replaced:
        raise BenchError(
            f"stream delivered {result.raw_bytes} bytes ({result.replaced} replaced chars), "
            f"expected {STREAM_BYTES}"
        )
    return result


def first_status(
    client: AgentClient, t0: float, proc: subprocess.Popen[bytes], timeout: float = START_TIMEOUT
) -> float:
    """Poll `status` every 20 ms from process start until one answers; return the delay."""
    sent = 0
    deadline = t0 + timeout
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"the runner exited with {proc.returncode} before answering")
        client.send(Op.STATUS)
        sent += 1
        record = client.recv(0.02)
        while record is not None:
            if record[0] == Record.STATUS:
                elapsed = time.perf_counter() - t0
                drain_status_replies(client, sent - 1)
                return elapsed
            record = client.recv(0)
    raise BenchError(f"no status reply within {timeout:.0f} s")


def drain_status_replies(client: AgentClient, pending: int, timeout: float = 10.0) -> None:
    """The polls that were queued before the runner listened are answered later: eat them."""
    deadline = time.monotonic() + timeout
    while pending > 0 and (left := deadline - time.monotonic()) > 0:
        record = client.recv(left)
        if record is not None and record[0] == Record.STATUS:
            pending -= 1
    client.drain(0.05)


# --------------------------------------------------------------------------------------
# Runner processes
# --------------------------------------------------------------------------------------


@dataclass
class RunnerCommand:
    label: str
    argv: list[str]
    cwd: Path
    env: dict[str, str]
    in_port: int
    out_port: int

    @property
    def fixed_ports(self) -> bool:
        """Upstream binds 2000/2001, whatever we ask for."""
        return self.label == "upstream"


@dataclass
class RunningRunner:
    command: RunnerCommand
    proc: subprocess.Popen[bytes]
    client: AgentClient
    started: float
    log: Path

    def log_tail(self, lines: int = 3) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return " | ".join(text.strip().splitlines()[-lines:])


def spawn(command: RunnerCommand, log: IO[bytes]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        command.argv,
        cwd=command.cwd,
        env=command.env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop_process(proc: subprocess.Popen[Any], grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL to what is left of the runner's group and descendants."""
    tree = descendants(proc.pid) if proc.poll() is None else []
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    for pid in [proc.pid, *tree]:
        kill_quietly(pid, group=pid == proc.pid)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        pass


def kill_quietly(pid: int, group: bool) -> None:
    try:
        if group:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


@contextmanager
def running(
    command: RunnerCommand, ctx: zmq.Context[zmq.Socket[bytes]], log_dir: Path
) -> Iterator[RunningRunner]:
    if command.fixed_ports and not wait_ports_free([command.in_port, command.out_port]):
        raise BenchError(f"ports {command.in_port}/{command.out_port} are in use")
    log_path = log_dir / f"{command.label}-{time.monotonic_ns()}.log"
    client = AgentClient(ctx, command.in_port, command.out_port)
    with open(log_path, "wb") as log:
        started = time.perf_counter()
        proc = spawn(command, log)
    try:
        yield RunningRunner(command, proc, client, started, log_path)
    finally:
        client.close()
        stop_process(proc)


# --------------------------------------------------------------------------------------
# Measuring one runner
# --------------------------------------------------------------------------------------


@dataclass
class RunnerResults:
    first_status: list[float] = field(default_factory=list)
    status_rtt: float | None = None
    query_rtt: float | None = None
    batch_rtt: float | None = None
    stream: StreamResult | None = None
    rss_idle: int | None = None
    rss_idle_tree: int | None = None
    rss_after_stream: int | None = None
    paired_jupyter_rtt: float | None = None  # bare jupyter_client, interleaved with queries
    errors: list[str] = field(default_factory=list)

    @property
    def first_status_median(self) -> float | None:
        return median(self.first_status) if self.first_status else None


def warm_up(runner: RunningRunner) -> None:
    """The first query may wait for the Jupyter kernel; then a few of each kind."""
    query_round_trip(runner.client)
    for _ in range(5):
        status_round_trip(runner.client)
        query_round_trip(runner.client)
        batch_round_trip(runner.client)
    runner.client.drain(0.3)


def attempt(results: RunnerResults, what: str, action: Callable[[], None]) -> None:
    try:
        action()
    except BenchError as exc:
        results.errors.append(f"{what}: {exc}")


def interleaved(
    ours: Callable[[int], list[float]], theirs: Callable[[int], list[float]], count: int
) -> tuple[list[float], list[float]]:
    """Samples of two measurements taken in alternating blocks."""
    mine: list[float] = []
    other: list[float] = []
    while len(mine) < count:
        block = min(INTERLEAVE_BLOCK, count - len(mine))
        mine.extend(ours(block))
        other.extend(theirs(block))
    return mine, other


def measure_round_trips(
    runner: RunningRunner, cfg: Config, results: RunnerResults, paired: JupyterBaseline | None
) -> None:
    client, iterations = runner.client, cfg.iterations

    def status() -> None:
        results.status_rtt = median(repeat(lambda: status_round_trip(client), iterations))

    def queries(count: int) -> list[float]:
        return repeat(lambda: query_round_trip(client), count)

    def query() -> None:
        if paired is None:
            results.query_rtt = median(queries(iterations))
            return
        mine, theirs = interleaved(queries, paired.samples, iterations)
        results.query_rtt, results.paired_jupyter_rtt = median(mine), median(theirs)

    def batch() -> None:
        results.batch_rtt = median(repeat(lambda: batch_round_trip(client), iterations))

    attempt(results, "status", status)
    attempt(results, "query", query)
    attempt(results, "batch", batch)


def measure_idle_rss(runner: RunningRunner, results: RunnerResults) -> None:
    time.sleep(1.0)
    results.rss_idle = rss_bytes(runner.proc.pid)
    results.rss_idle_tree = tree_rss_bytes(runner.proc.pid)


def measure_stream(runner: RunningRunner, runs: int, results: RunnerResults) -> None:
    def stream() -> None:
        samples = [stream_throughput(runner.client) for _ in range(runs)]
        results.stream = sorted(samples, key=lambda s: s.seconds)[len(samples) // 2]
        time.sleep(1.0)
        results.rss_after_stream = rss_bytes(runner.proc.pid)

    attempt(results, "stream", stream)


def measure_start(runner: RunningRunner, results: RunnerResults) -> bool:
    try:
        results.first_status.append(first_status(runner.client, runner.started, runner.proc))
    except BenchError as exc:
        results.errors.append(f"start: {exc}; log: {runner.log_tail()}")
        return False
    return True


def measure_everything(
    runner: RunningRunner, cfg: Config, results: RunnerResults, paired: JupyterBaseline | None
) -> None:
    try:
        warm_up(runner)
    except BenchError as exc:
        results.errors.append(f"warm-up: {exc}; log: {runner.log_tail()}")
        return
    measure_idle_rss(runner, results)
    measure_round_trips(runner, cfg, results, paired)
    measure_stream(runner, cfg.stream_runs, results)


def prime(command: RunnerCommand, ctx: zmq.Context[zmq.Socket[bytes]], cfg: Config) -> None:
    """One untimed start with a query and a batch, so that both runners (and their Jupyter
    kernels) run from compiled bytecode, as an installed krunner environment does."""
    with running(command, ctx, cfg.log_dir) as runner:
        try:
            first_status(runner.client, runner.started, runner.proc)
            warm_up(runner)
        except BenchError as exc:
            raise BenchError(f"priming: {exc}; log: {runner.log_tail()}") from exc


def bench_runner(
    command: RunnerCommand, cfg: Config, paired: JupyterBaseline | None = None
) -> RunnerResults:
    results = RunnerResults()
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        progress(f"{command.label}: priming (untimed start)")
        prime(command, ctx, cfg)
        for index in range(cfg.starts):
            progress(f"{command.label}: start {index + 1}/{cfg.starts}")
            with running(command, ctx, cfg.log_dir) as runner:
                if measure_start(runner, results) and index == cfg.starts - 1:
                    progress(f"{command.label}: round trips, stream, memory")
                    measure_everything(runner, cfg, results, paired)
    except BenchError as exc:
        results.errors.append(str(exc))
    finally:
        ctx.term()
    return results


# --------------------------------------------------------------------------------------
# Runner commands and the upstream virtualenv
# --------------------------------------------------------------------------------------


def repo_src() -> Path | None:
    src = Path(__file__).resolve().parents[2] / "src"
    return src if (src / "ai" / "backend" / "kernel").is_dir() else None


def runner_env() -> dict[str, str]:
    """This environment, but let the runners write bytecode caches (see prime())."""
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
    work = cfg.log_dir / "new-work"
    config = cfg.log_dir / "new-config"
    work.mkdir(exist_ok=True)
    config.mkdir(exist_ok=True)
    in_port, out_port = free_port(), free_port()
    argv = [
        cfg.new_python, "-m", "ai.backend.kernel",
        "--bind", "127.0.0.1",
        "--repl-in-port", str(in_port),
        "--repl-out-port", str(out_port),
        "--work-dir", str(work),
        "--config-dir", str(config),
        "python", cfg.new_python,
    ]  # fmt: skip
    env = new_runner_env(cfg.new_python_explicit)
    return RunnerCommand("new", argv, work, env, in_port, out_port)


def upstream_command(python: Path) -> RunnerCommand:
    argv = [str(python), "-m", "ai.backend.kernel", "python", str(python)]
    env = {k: v for k, v in runner_env().items() if k != "PYTHONPATH"}
    in_port, out_port = UPSTREAM_PORTS
    return RunnerCommand("upstream", argv, UPSTREAM_DIRS[0], env, in_port, out_port)


def upstream_venv_ok(python: Path) -> bool:
    probe = (
        "import importlib.metadata as m, ipykernel, ai.backend.kernel; "
        "print(m.version('backend.ai-kernel'))"
    )
    if not python.exists():
        return False
    out = subprocess.run([str(python), "-c", probe], capture_output=True, text=True)
    return out.returncode == 0 and out.stdout.strip() == UPSTREAM_VERSION


def run_quietly(argv: Sequence[str], timeout: float) -> None:
    out = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        tail = (out.stdout + out.stderr).strip().splitlines()[-8:]
        raise BenchError(f"`{' '.join(argv[:4])} ...` failed:\n    " + "\n    ".join(tail))


def create_upstream_venv(venv: Path, base_python: str) -> None:
    progress(f"creating {venv} (backend.ai-kernel=={UPSTREAM_VERSION} + ipykernel from PyPI)")
    run_quietly([base_python, "-m", "venv", "--clear", str(venv)], 300)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check"]
    run_quietly([*pip, f"backend.ai-kernel=={UPSTREAM_VERSION}", "ipykernel"], 900)


def ensure_upstream(cfg: Config) -> Path | None:
    venv = CACHE_DIR / f"upstream-{UPSTREAM_VERSION}"
    python = venv / "bin" / "python"
    if upstream_venv_ok(python):
        return python
    try:
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        create_upstream_venv(venv, cfg.base_python)
    except (BenchError, OSError, subprocess.TimeoutExpired) as exc:
        notice(f"cannot create the upstream virtualenv (no network?): {exc}")
        return None
    if not upstream_venv_ok(python):
        notice(f"the upstream virtualenv at {venv} does not import backend.ai-kernel")
        return None
    return python


def prepare_upstream_dirs() -> bool:
    try:
        for path in UPSTREAM_DIRS:
            path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        notice(f"upstream needs {UPSTREAM_DIRS[0]} and {UPSTREAM_DIRS[1]}: {exc}")
        return False
    return True


def describe_new_runner(command: RunnerCommand) -> str:
    probe = "import ai.backend.kernel as k; print(k.__file__)"
    out = subprocess.run(
        [command.argv[0], "-c", probe], capture_output=True, text=True, env=command.env
    )
    lines = (out.stdout or out.stderr).strip().splitlines()
    return lines[-1] if lines else f"exit {out.returncode}"


# --------------------------------------------------------------------------------------
# Baselines
# --------------------------------------------------------------------------------------

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
        stop_process(self.proc)


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


def spawn_baseline(iterations: int) -> float:
    return median(repeat(lambda: subprocess.run(["sh", "-c", "true"]), iterations))


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


def pipe_baseline(runs: int) -> float:
    return median([pipe_once() for _ in range(runs)])


def measure_baselines(cfg: Config, paired_jupyter: float | None) -> Baselines:
    base = Baselines(jupyter_rtt=paired_jupyter)
    if paired_jupyter is None:
        base.errors.append("jupyter_client baseline: not measured (see above)")
    progress("baselines: sh -c true, pipe")
    base.spawn = spawn_baseline(max(cfg.iterations, 50))
    base.pipe = pipe_baseline(cfg.stream_runs)
    return base


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------


@dataclass
class Row:
    metric: str
    upstream: float | None
    new: float | None
    unit: str  # "ms", "s", "MB/s", "MB"
    aim: str = ""


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "ms":
        return f"{value * 1000:.2f} ms"
    if unit == "s":
        return f"{value:.3f} s"
    if unit == "MB/s":
        return f"{value / MB:.1f} MB/s"
    return f"{value / MB:.1f} MB"


def ratio(new: float | None, upstream: float | None) -> str:
    if new is None or upstream is None or upstream == 0:
        return "n/a"
    return f"{new / upstream:.2f}"


def throughput(result: StreamResult | None) -> float | None:
    return None if result is None else result.raw_bytes / result.seconds


def query_aim(base: Baselines) -> str:
    if base.jupyter_rtt is None:
        return "<= 1.10 x jupyter_client"
    return f"<= {base.jupyter_rtt * 1.1 * 1000:.2f} ms (1.1 x jupyter_client)"


def build_rows(up: RunnerResults, new: RunnerResults, base: Baselines) -> list[Row]:
    rss_aim = f"< upstream ({fmt(up.rss_idle, 'MB')})" if up.rss_idle else "< upstream"
    return [
        Row("status round trip (median)", up.status_rtt, new.status_rtt, "ms"),
        Row("query `pass` round trip (median)", up.query_rtt, new.query_rtt, "ms", query_aim(base)),
        Row("batch exec `true` round trip (median)", up.batch_rtt, new.batch_rtt, "ms", "<= 5 ms"),
        Row("stdout 64 MiB via agent decoding", throughput(up.stream), throughput(new.stream),
            "MB/s", ">= 150 MB/s"),
        Row("process start -> first status (median)", up.first_status_median,
            new.first_status_median, "s", "<= 0.3 s"),
        Row("idle RSS, runner process", up.rss_idle, new.rss_idle, "MB", rss_aim),
        Row("idle RSS, runner + children", up.rss_idle_tree, new.rss_idle_tree, "MB"),
        Row("RSS, runner, after 64 MiB stream", up.rss_after_stream,
            new.rss_after_stream, "MB"),
    ]  # fmt: skip


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    aligns = ["<", *[">"] * (len(headers) - 1)]
    if len(headers) > 2:
        aligns[-1] = "<"  # the free-text last column

    def line(cells: Sequence[str]) -> str:
        parts = [f"{c:{a}{w}}" for c, a, w in zip(cells, aligns, widths, strict=True)]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def comparison_table(rows: Sequence[Row]) -> str:
    headers = ["metric", f"upstream {UPSTREAM_VERSION}", "this runner", "new/upstream", "aim"]
    cells = [
        [r.metric, fmt(r.upstream, r.unit), fmt(r.new, r.unit), ratio(r.new, r.upstream), r.aim]
        for r in rows
    ]
    return render_table(headers, cells)


def baseline_table(base: Baselines) -> str:
    rows = [
        ["bare jupyter_client execute `pass` (median, in turns)", fmt(base.jupyter_rtt, "ms")],
        ["bare `sh -c true` spawn (median)", fmt(base.spawn, "ms")],
        ["plain pipe, 64 MiB (median)", fmt(base.pipe, "MB/s")],
    ]
    return render_table(["baseline", "value"], rows)


def print_errors(label: str, errors: Sequence[str]) -> None:
    for error in errors:
        print(f"  ! {label}: {error}")


def report(cfg: Config, up: RunnerResults, new: RunnerResults, base: Baselines) -> None:
    print()
    print(
        f"iterations: {cfg.iterations} per round trip; stream runs: {cfg.stream_runs}; "
        f"starts: {cfg.starts} after an untimed priming start; CPUs: {os.cpu_count()}"
    )
    print(comparison_table(build_rows(up, new, base)))
    print()
    print(baseline_table(base))
    print("(ratio < 1 is better for times and memory, > 1 for throughput)")
    print_errors("upstream", up.errors)
    print_errors("this runner", new.errors)
    print_errors("baseline", base.errors)


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


@dataclass
class Config:
    iterations: int
    stream_runs: int
    starts: int
    skip_upstream: bool
    new_python: str
    new_python_explicit: bool
    base_python: str
    log_dir: Path


def progress(message: str) -> None:
    print(f"... {message}", file=sys.stderr, flush=True)


def notice(message: str) -> None:
    print(f"*** {message}", file=sys.stderr, flush=True)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--skip-upstream", action="store_true", help="measure only this runner")
    parser.add_argument(
        "--iterations", type=int, default=200, help="samples per round trip (default: %(default)s)"
    )
    parser.add_argument(
        "--stream-runs", type=int, default=3, help="64 MiB runs per runner (default: %(default)s)"
    )
    parser.add_argument(
        "--starts",
        type=int,
        default=3,
        help="timed process starts per runner (default: %(default)s)",
    )
    parser.add_argument(
        "--new-python",
        default=None,
        help="python that runs this repository's runner (default: this one, with this "
        "process's import path)",
    )
    parser.add_argument(
        "--base-python",
        default=None,
        help="python 3.12 used to create the upstream virtualenv (default: this one)",
    )
    return parser.parse_args(argv)


def make_config(args: argparse.Namespace, log_dir: Path) -> Config:
    return Config(
        iterations=max(1, args.iterations),
        stream_runs=max(1, args.stream_runs),
        starts=max(1, args.starts),
        skip_upstream=args.skip_upstream,
        new_python=args.new_python or sys.executable,
        new_python_explicit=args.new_python is not None,
        base_python=args.base_python or getattr(sys, "_base_executable", sys.executable),
        log_dir=log_dir,
    )


def bench_upstream(cfg: Config) -> RunnerResults:
    results = RunnerResults()
    if cfg.skip_upstream:
        results.errors.append("skipped (--skip-upstream)")
        return results
    python = ensure_upstream(cfg)
    if python is None or not prepare_upstream_dirs():
        results.errors.append("not measured: see the notice above")
        return results
    return bench_runner(upstream_command(python), cfg)


def bench_services_of(command: RunnerCommand, cfg: Config, stamps: Path) -> ServiceResults:
    progress(f"{command.label}: services")
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        with running(command, ctx, cfg.log_dir) as runner:
            first_status(runner.client, runner.started, runner.proc)
            return measure_services(runner.client, stamps, SERVICE_SAMPLES)
    except BenchError as exc:
        return ServiceResults(errors=[str(exc)])
    finally:
        ctx.term()


def bench_services(cfg: Config, new_command: RunnerCommand) -> dict[str, ServiceResults]:
    stamps = cfg.log_dir / "service-stamps"
    stamps.mkdir()
    results = {"upstream": ServiceResults(errors=["not measured"])}
    python = None if cfg.skip_upstream else ensure_upstream(cfg)
    if python is not None and prepare_upstream_dirs():
        with image_definitions(stamps) as written:
            if written:
                results["upstream"] = bench_services_of(upstream_command(python), cfg, stamps)
    defs = cfg.log_dir / "service-defs"
    write_definitions(defs, stamps)
    argv = [*new_command.argv[:-2], "--service-def-dir", str(defs), *new_command.argv[-2:]]
    command = RunnerCommand("new", argv, new_command.cwd, new_command.env, free_port(), free_port())
    command.argv[command.argv.index("--repl-in-port") + 1] = str(command.in_port)
    command.argv[command.argv.index("--repl-out-port") + 1] = str(command.out_port)
    results["this runner"] = bench_services_of(command, cfg, stamps)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bai-kernel-bench-") as tmp:
        cfg = make_config(args, Path(tmp))
        new_command = new_runner_command(cfg)
        print(f"this runner: {cfg.new_python} -m ai.backend.kernel "
              f"({describe_new_runner(new_command)})", flush=True)  # fmt: skip
        upstream = bench_upstream(cfg)
        progress("starting a bare jupyter_client kernel for the query baseline")
        with jupyter_baseline(cfg, new_command.env) as paired:
            new = bench_runner(new_command, cfg, paired)
        baselines = measure_baselines(cfg, new.paired_jupyter_rtt)
        services = bench_services(cfg, new_command)
        report(cfg, upstream, new, baselines)
        print()
        print(format_table(services))
        for label, result in services.items():
            print_errors(f"services, {label}", result.errors)
    return 0


if __name__ == "__main__":
    sys.exit(main())
