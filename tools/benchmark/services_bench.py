"""Service start-up as the agent sees it: start-service to `started`, and `status` meanwhile.

- "start-service → started": from sending start-service to receiving `started`, for a program
  that listens at once; "after the port opened" is the part of it after the program's
  ``listen()`` returned (it writes ``time.time()`` right after): the readiness poll's delay.
- "worst status RTT, 5 starting": five services that listen after 0.5 s are started at once
  and `status` is sent every 10 ms until all five replied; the slowest status round trip.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Protocol

from ai.backend.kernel.protocol import Op, Record

IMAGE_DEFS = Path("/etc/backend.ai/service-defs")  # the only directory upstream reads
QUICK = "bench-quick"
SLOW = [f"bench-slow{i}" for i in range(5)]
REPLY_TIMEOUT = 30.0
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


class Client(Protocol):
    def send(self, op: Op, payload: str = "") -> None: ...
    def recv(self, timeout: float) -> tuple[str, bytes] | None: ...


@dataclass
class ServiceResults:
    start_to_started: list[float] = field(default_factory=list)
    after_port_open: list[float] = field(default_factory=list)
    worst_status_rtt: float | None = None
    errors: list[str] = field(default_factory=list)

    def row(self) -> tuple[float | None, float | None, float | None]:
        start = median(self.start_to_started) if self.start_to_started else None
        after = median(self.after_port_open) if self.after_port_open else None
        return start, after, self.worst_status_rtt


def write_definitions(directory: Path, stamp_dir: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for name, delay in [(QUICK, 0.0), *((n, 0.5) for n in SLOW)]:
        argv = [sys.executable, "-c", LISTENER, "{ports[0]}", str(stamp_dir / name), str(delay)]
        (directory / f"{name}.json").write_text(json.dumps({"command": argv}))


@contextmanager
def image_definitions(stamp_dir: Path) -> Iterator[bool]:
    """The definitions in /etc/backend.ai/service-defs for upstream, if that does not exist."""
    created = IMAGE_DEFS.parent if not IMAGE_DEFS.parent.exists() else IMAGE_DEFS
    if IMAGE_DEFS.exists():
        yield False
        return
    try:
        write_definitions(IMAGE_DEFS, stamp_dir)
        yield True
    except OSError:
        yield False
    finally:
        shutil.rmtree(created, ignore_errors=True)


def format_table(rows: dict[str, ServiceResults]) -> str:
    def ms(value: float | None) -> str:
        return "n/a" if value is None else f"{value * 1000:.1f} ms"

    labels = [
        "start-service -> started (median)",
        "  of which after the port opened",
        "worst status RTT, 5 starting",
    ]
    lines = [f"{'services':<36}" + "".join(f"{name:>16}" for name in rows)]
    for index, label in enumerate(labels):
        lines.append(f"{label:<36}" + "".join(f"{ms(r.row()[index]):>16}" for r in rows.values()))
    return "\n".join(lines)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def request(name: str, port: int) -> str:
    service = {"name": name, "port": port, "ports": [port], "protocol": "http", "options": {}}
    return json.dumps(service)  # as the agent sends it (upstream needs "options")


def wait_record(client: Client, kind: str, on_other: Callable[[str], None] = print) -> bytes:
    deadline = time.monotonic() + REPLY_TIMEOUT
    while (left := deadline - time.monotonic()) > 0:
        record = client.recv(left)
        if record is None:
            break
        if record[0] == kind:
            return record[1]
        on_other(record[0])
    raise TimeoutError(f"no {kind} within {REPLY_TIMEOUT:g} s")


def measure_quick_start(client: Client, stamp_dir: Path, samples: int, out: ServiceResults) -> None:
    for _ in range(samples):
        (stamp_dir / QUICK).unlink(missing_ok=True)
        port = free_port()
        sent = time.perf_counter()
        sent_wall = time.time()
        client.send(Op.START_SERVICE, request(QUICK, port))
        reply = json.loads(wait_record(client, Record.SERVICE_RESULT, lambda _: None))
        elapsed, now = time.perf_counter() - sent, time.time()
        if reply.get("status") != "started":
            out.errors.append(f"{QUICK}: {reply}")
            return
        opened = read_stamp(stamp_dir / QUICK)
        out.start_to_started.append(elapsed)
        out.after_port_open.append(now - max(opened, sent_wall))
        client.send(Op.SHUTDOWN_SERVICE, json.dumps(QUICK))
        time.sleep(0.5)  # upstream: SIGTERM, then its watcher forgets the process


def read_stamp(path: Path) -> float:
    """The program's time after listen(); it may still be writing it when `started` arrives."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            return float(path.read_text())
        time.sleep(0.001)
    raise TimeoutError(f"{path} was never written")


def measure_status_while_starting(client: Client, out: ServiceResults) -> None:
    for name in SLOW:
        client.send(Op.START_SERVICE, request(name, free_port()))
    replies, worst = 0, 0.0

    def count(kind: str) -> None:
        nonlocal replies
        replies += kind == Record.SERVICE_RESULT

    while replies < len(SLOW):
        sent = time.perf_counter()
        client.send(Op.STATUS)
        wait_record(client, Record.STATUS, count)
        worst = max(worst, time.perf_counter() - sent)
        time.sleep(0.01)
    out.worst_status_rtt = worst
    for name in SLOW:
        client.send(Op.SHUTDOWN_SERVICE, json.dumps(name))


def measure_services(client: Client, stamp_dir: Path, samples: int) -> ServiceResults:
    out = ServiceResults()
    try:
        measure_quick_start(client, stamp_dir, samples, out)
        measure_status_while_starting(client, out)
    except (TimeoutError, OSError, ValueError) as exc:
        out.errors.append(str(exc))
    return out
