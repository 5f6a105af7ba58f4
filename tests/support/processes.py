"""Ports and process trees of the runners that tests and the benchmark start (on psutil)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from pathlib import Path

import psutil

_handed_out: set[int] = set()
_handed_out_lock = threading.Lock()


def free_ports(count: int = 2, host: str = "127.0.0.1") -> list[int]:
    """``count`` TCP ports that were free on ``host`` a moment ago and that this process has
    never handed out before: each is held bound until all are chosen, so none repeats within
    one call, and a registry keeps later calls from getting a port already given to a runner."""
    with ExitStack() as held, _handed_out_lock:
        ports: list[int] = []
        while len(ports) < count:
            sock = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
            if port not in _handed_out:
                ports.append(port)
        _handed_out.update(ports)
        return ports


def write_intrinsic_ports(config_dir: Path, **ports: int) -> dict[str, int]:
    """Write a runner's ``intrinsic-ports.json`` (written atomically): free ports for the sshd
    and ttyd it starts at boot, so that runners running at once do not all ask for 2200 and
    7681, and ``ports`` (e.g. ``replin``) on top. Returns what it wrote."""
    sshd, ttyd = free_ports(2)
    chosen = {"sshd": sshd, "ttyd": ttyd, **ports}
    partial = config_dir / "intrinsic-ports.json.partial"
    partial.write_text(json.dumps(chosen))
    partial.replace(config_dir / "intrinsic-ports.json")
    return chosen


def port_is_free(port: int, host: str = "0.0.0.0") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def wait_until(
    condition: Callable[[], bool], timeout: float = 10.0, interval: float = 0.05
) -> bool:
    """Whether ``condition`` became true within ``timeout`` seconds, asked every ``interval``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


async def wait_until_async(
    condition: Callable[[], bool], what: str, timeout: float = 20.0, interval: float = 0.05
) -> None:
    """In a coroutine: wait for ``condition``, failing the test if ``what`` took longer."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        await asyncio.sleep(interval)


def wait_ports_free(ports: Iterable[int], timeout: float = 15.0) -> bool:
    """For runners on fixed ports (upstream's 2000/2001): whether the previous one let go."""
    return wait_until(lambda: all(port_is_free(p) for p in ports), timeout, interval=0.1)


def start_process(
    argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], log: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start a runner (or any server) in a session of its own, so that its whole group can
    be stopped; its stdout and stderr go to ``log``, or stay the caller's if None."""
    with ExitStack() as stack:
        out = None if log is None else stack.enter_context(open(log, "wb"))
        return subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=None if out is None else subprocess.STDOUT,
            start_new_session=True,
        )


class PortsInUse(RuntimeError):
    """A runner on fixed ports cannot start: another one still holds them."""


@dataclass(frozen=True)
class RunnerCommand:
    """How to start one runner: its command line, directory, environment and ports."""

    label: str  # for messages and log names, e.g. "new" or "upstream"
    argv: list[str]
    cwd: Path
    env: dict[str, str]
    in_port: int
    out_port: int
    fixed_ports: bool = False  # binds these whatever it is told (upstream's 2000/2001)


@dataclass
class RunnerProcess:
    command: RunnerCommand
    proc: subprocess.Popen[bytes]
    log: Path  # its stdout and stderr
    started: float  # time.perf_counter() just before it started

    def log_tail(self, limit: int = 6000) -> str:
        try:
            return self.log.read_text(errors="replace")[-limit:]
        except OSError:
            return "<no log>"

    def descendants(self) -> list[psutil.Process]:
        return descendants_of(self.proc.pid)

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM, wait, then SIGKILL whatever is left of what it started."""
        return stop_process_tree(self.proc, grace=grace)


def local_runner_command(
    python: str, base: Path, env: Mapping[str, str], *args: str
) -> RunnerCommand:
    """This repository's runner run by ``python`` on free ports of 127.0.0.1, with its work
    and config dirs under ``base`` (with free intrinsic ports); ``args`` are the runtime
    type and what follows it."""
    work, config = base / "work", base / "config"
    work.mkdir(parents=True, exist_ok=True)
    config.mkdir(parents=True, exist_ok=True)
    write_intrinsic_ports(config)
    in_port, out_port = free_ports()
    argv = [
        python, "-m", "ai.backend.kernel",
        "--bind", "127.0.0.1",
        "--repl-in-port", str(in_port),
        "--repl-out-port", str(out_port),
        "--work-dir", str(work),
        "--config-dir", str(config),
        *args,
    ]  # fmt: skip
    return RunnerCommand("new", argv, work, dict(env), in_port, out_port)


def start_runner(command: RunnerCommand, log_dir: Path) -> RunnerProcess:
    """Start a runner with its output in a log under ``log_dir``; one on fixed ports first
    waits for the previous one to let them go."""
    if command.fixed_ports and not wait_ports_free([command.in_port, command.out_port]):
        raise PortsInUse(f"ports {command.in_port}/{command.out_port} are still in use")
    log = log_dir / f"{command.label}-{command.in_port}-{time.monotonic_ns()}.log"
    started = time.perf_counter()
    proc = start_process(command.argv, cwd=command.cwd, env=command.env, log=log)
    return RunnerProcess(command, proc, log, started)


def is_running(proc: psutil.Process) -> bool:
    """True for a live process; a zombie (exited, not yet reaped) or a reused pid is not."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def pid_is_running(pid: int) -> bool:
    """Whether a live process has ``pid`` now, e.g. a pid that a test program wrote down."""
    proc = process(pid)
    return proc is not None and is_running(proc)


def still_running(procs: Iterable[psutil.Process], timeout: float = 3.0) -> list[psutil.Process]:
    """The processes that are still running after up to ``timeout`` seconds."""
    procs = list(procs)
    wait_until(lambda: not any(is_running(p) for p in procs), timeout)
    return [p for p in procs if is_running(p)]


def process(pid: int) -> psutil.Process | None:
    """The process ``pid`` now, or None if there is none."""
    try:
        return psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None


def descendants_of(pid: int) -> list[psutil.Process]:
    """Every live descendant of ``pid``."""
    root = process(pid)
    try:
        return [] if root is None else root.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def processes_matching(needle: str) -> list[psutil.Process]:
    """The processes (but this one) whose command line contains ``needle``."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if needle in cmdline and proc.pid != os.getpid():
            found.append(proc)
    return found


def rss_bytes(pid: int) -> int | None:
    """The resident memory of ``pid``, or None if it is gone."""
    try:
        return int(psutil.Process(pid).memory_info().rss)
    except psutil.Error:
        return None


def tree_rss_bytes(pid: int) -> int | None:
    """The resident memory of ``pid`` and all its descendants."""
    own = rss_bytes(pid)
    if own is None:
        return None
    return own + sum(rss_bytes(p.pid) or 0 for p in descendants_of(pid))


def _kill(procs: Iterable[psutil.Process], sig: int) -> None:
    """Signal each process unless it is gone or its pid now belongs to another process
    (psutil checks the start time before signalling)."""
    for proc in procs:
        try:
            proc.send_signal(sig)
        except psutil.Error:
            pass


def _exited_unreaped(proc: subprocess.Popen[bytes]) -> bool:
    """Whether ``proc`` exited, leaving it unreaped: its pid, the id of its process group,
    cannot be reused by another process while it is a zombie."""
    if proc.returncode is not None:
        return True
    try:
        return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG) is not None
    except ChildProcessError:
        return True


def stop_process_tree(
    proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, grace: float = 10.0
) -> int | None:
    """Stop what ``proc`` started: send ``sig`` to ``proc``, give it ``grace`` seconds to stop
    its own children, then SIGKILL what is left of its process group (it was started with
    ``start_new_session``) and of every descendant seen before the signal. Returns the exit
    status, or None if the process could not be reaped."""
    tree = descendants_of(proc.pid)
    if proc.returncode is None:
        # Not Popen.send_signal: it would reap an exited proc and free its pid for reuse.
        with suppress(ProcessLookupError):
            os.kill(proc.pid, sig)
        wait_until(lambda: _exited_unreaped(proc), grace)
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    _kill(tree, signal.SIGKILL)
    try:
        return proc.wait(5)
    except subprocess.TimeoutExpired:
        return None
