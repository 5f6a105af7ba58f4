"""What the services benchmark starts and measures, whichever client drives the runner: the
stand-in services, their definitions and the results (services.py through this repository's
agent client, agent_services.py through each agent generation's own code)."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.processes import free_ports

from .config import BenchError, median_or_none

QUICK = "bench-quick"
SLOW = [f"bench-slow{i}" for i in range(5)]
SAMPLES = 20
LISTENER = """
import socket, sys, time
time.sleep(float(sys.argv[3]))
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen()
with open(sys.argv[2], "w") as f:
    f.write(repr(time.time()))
while True:
    s.accept()[0].close()
"""


@dataclass
class ServiceResults:
    start_to_started: list[float] = field(default_factory=list)
    after_port_open: list[float] = field(default_factory=list)
    worst_status_rtt: float | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def start_median(self) -> float | None:
        return median_or_none(self.start_to_started)

    @property
    def after_open_median(self) -> float | None:
        return median_or_none(self.after_port_open)


def write_definitions(directory: Path, stamp_dir: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, delay in [(QUICK, 0.0), *((n, 0.5) for n in SLOW)]:
        argv = [sys.executable, "-c", LISTENER, "{ports[0]}", str(stamp_dir / name), str(delay)]
        (directory / f"{name}.json").write_text(json.dumps({"command": argv}))


def read_stamp(path: Path) -> float:
    """The program's time after listen(); it may still be writing it when `started` arrives."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            return float(path.read_text())
        time.sleep(0.001)
    raise BenchError(f"{path} was never written")


def time_quick_starts(
    start: Callable[[int], Mapping[str, Any]],
    stop: Callable[[], None],
    stamp_dir: Path,
    out: ServiceResults,
) -> None:
    """SAMPLES starts of QUICK, each on a new port: ``start(port)`` returns the reply to its
    start-service, ``stop()`` shuts it down."""
    for _ in range(SAMPLES):
        (stamp_dir / QUICK).unlink(missing_ok=True)
        (port,) = free_ports(1)
        sent, sent_wall = time.perf_counter(), time.time()
        reply = start(port)
        elapsed, now = time.perf_counter() - sent, time.time()
        if reply.get("status") != "started":
            raise BenchError(f"{QUICK}: {reply}")
        opened = read_stamp(stamp_dir / QUICK)
        out.start_to_started.append(elapsed)
        out.after_port_open.append(now - max(opened, sent_wall))
        stop()
        time.sleep(0.5)  # upstream: SIGTERM, then its watcher forgets the process
