"""Ports and process trees for tests that start runners (stdlib only, Linux /proc)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


def free_ports(count: int = 2) -> list[int]:
    """``count`` distinct TCP ports that were free on 127.0.0.1 a moment ago."""
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in ports:  # the kernel may hand out a just-released port again
            ports.append(port)
    return ports


@dataclass(frozen=True)
class ProcStat:
    state: str  # "R", "S", "Z", ...
    ppid: int
    start_time: int  # clock ticks since boot: tells a reused pid apart


def proc_stat(pid: int) -> ProcStat | None:
    """The process's /proc/PID/stat, or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (2nd field) is in parentheses and may contain ") " itself.
    fields = stat.rsplit(")", 1)[1].split()
    return ProcStat(state=fields[0], ppid=int(fields[1]), start_time=int(fields[19]))


def is_running(pid: int) -> bool:
    """True for a live process; a zombie (exited, not yet reaped) is not."""
    stat = proc_stat(pid)
    return stat is not None and stat.state not in ("Z", "X")


def still_running(pids: list[int], timeout: float = 3.0) -> list[int]:
    """The pids that are still running after up to ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    left = [pid for pid in pids if is_running(pid)]
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [pid for pid in left if is_running(pid)]
    return left


def descendants_of(root: int) -> list[int]:
    """All live descendants of ``root``, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := proc_stat(int(entry))) is not None:
            children.setdefault(stat.ppid, []).append(int(entry))
    found: list[int] = []
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def _kill(pid: int, group: bool = False) -> None:
    try:
        if group:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def stop_process_tree(
    proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, grace: float = 10.0
) -> int | None:
    """Send ``sig``, wait up to ``grace`` seconds, then SIGKILL whatever is left of what was
    started: the process group of ``proc`` (started with ``start_new_session=True``) and every
    descendant seen before the signal, unless its pid has been reused since. Returns the exit
    status, or None if the process could not be reaped."""
    tree = [(pid, stat.start_time) for pid in descendants_of(proc.pid) if (stat := proc_stat(pid))]
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    _kill(proc.pid, group=True)
    for pid, started in tree:
        stat = proc_stat(pid)
        if stat is not None and stat.start_time == started:  # not a reused pid
            _kill(pid)
    try:
        return proc.wait(5)
    except subprocess.TimeoutExpired:
        return None
