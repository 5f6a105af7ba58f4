"""Service start-up as the agent sees it: start-service to `started`, and `status` meanwhile.

- "start-service -> started": from sending start-service to receiving `started`, for a program
  that listens at once; "after the port opened" is the part of it after the program's
  ``listen()`` returned (it writes ``time.time()`` right after): the readiness poll's delay.
- "worst status RTT, 5 starting": five services that listen after 0.5 s are started at once
  and `status` is sent every 10 ms until all five replied; the slowest status round trip.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ai.backend.kernel.agent_client import AgentClient, RecordHandler
from ai.backend.kernel.protocol import Op, Record
from tests.support.processes import RunnerCommand, free_ports, local_runner_command

from .client import as_bench_error
from .config import RUN_TIMEOUT, BenchError, Config, notice, progress
from .measure import first_status
from .runners import new_runner_env, running
from .service_load import QUICK, SLOW, ServiceResults, time_quick_starts, write_definitions
from .upstream import ensure_upstream, prepare_upstream_dirs, upstream_command

IMAGE_DEFS = Path("/etc/backend.ai/service-defs")  # the only directory upstream reads


@contextmanager
def image_definitions(stamp_dir: Path) -> Iterator[str | None]:
    """The definitions written to /etc/backend.ai/service-defs for upstream, only if that does
    not exist, and removed afterwards; yields why not, or None when written."""
    if IMAGE_DEFS.exists():
        yield f"{IMAGE_DEFS} exists; not touched"
        return
    created = IMAGE_DEFS if IMAGE_DEFS.parent.exists() else IMAGE_DEFS.parent
    try:
        write_definitions(IMAGE_DEFS, stamp_dir)
        why_not = None
    except OSError as exc:
        why_not = f"cannot write {IMAGE_DEFS}: {exc}"
    try:
        yield why_not
    finally:
        shutil.rmtree(created, ignore_errors=True)


def request(name: str, port: int) -> str:
    service = {"name": name, "port": port, "ports": [port], "protocol": "http", "options": {}}
    return json.dumps(service)  # as the agent sends it (upstream needs "options")


def wait_record(client: AgentClient, kind: str, on_record: RecordHandler | None = None) -> bytes:
    """The payload of the next ``kind`` record; every record received goes to ``on_record``."""
    with as_bench_error(f"waiting for {kind}"):
        return client.follow(kind, on_record=on_record, timeout=RUN_TIMEOUT)[kind]


def measure_quick_start(client: AgentClient, stamp_dir: Path, out: ServiceResults) -> None:
    def start(port: int) -> dict[str, Any]:
        client.send(Op.START_SERVICE, request(QUICK, port))
        return json.loads(wait_record(client, Record.SERVICE_RESULT))  # type: ignore[no-any-return]

    def stop() -> None:
        client.send(Op.SHUTDOWN_SERVICE, json.dumps(QUICK))

    time_quick_starts(start, stop, stamp_dir, out)


def measure_status_while_starting(client: AgentClient, out: ServiceResults) -> None:
    for name, port in zip(SLOW, free_ports(len(SLOW)), strict=True):
        client.send(Op.START_SERVICE, request(name, port))
    replies, worst = 0, 0.0

    def count(kind: str, _: bytes) -> None:
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


def services_of(command: RunnerCommand, cfg: Config, stamp_dir: Path) -> ServiceResults:
    progress(f"{command.label}: services")
    out = ServiceResults()
    try:
        with running(command, cfg.log_dir) as runner:
            first_status(runner)
            try:
                measure_quick_start(runner.client, stamp_dir, out)
                measure_status_while_starting(runner.client, out)
            except BenchError as exc:
                raise BenchError(f"{exc}; log: {runner.log_tail()}") from exc
    except (BenchError, OSError, ValueError) as exc:
        out.errors.append(str(exc))
    return out


def upstream_services(cfg: Config, stamp_dir: Path) -> ServiceResults:
    if cfg.skip_upstream:
        return ServiceResults(errors=["skipped (--skip-upstream)"])
    python = ensure_upstream(cfg)
    if python is None or not prepare_upstream_dirs():
        return ServiceResults(errors=["not measured: see the notice above"])
    with image_definitions(stamp_dir) as why_not:
        if why_not is not None:
            notice(f"upstream's services not measured: {why_not}")
            return ServiceResults(errors=[f"not measured: {why_not}"])
        return services_of(upstream_command(python), cfg, stamp_dir)


def new_services(cfg: Config, stamp_dir: Path) -> ServiceResults:
    defs = cfg.log_dir / "service-defs"
    write_definitions(defs, stamp_dir)
    env = new_runner_env(cfg.new_python_explicit)
    python = cfg.new_python
    args = ("--service-def-dir", str(defs), "python", python)
    command = local_runner_command(python, cfg.log_dir / "new-services", env, *args)
    return services_of(command, cfg, stamp_dir)


def bench_services(cfg: Config) -> tuple[ServiceResults, ServiceResults]:
    """Upstream's results and this runner's, upstream first, so that its definitions in
    /etc/backend.ai/service-defs are gone before this runner (which reads them too) starts."""
    stamp_dir = cfg.log_dir / "service-stamps"
    stamp_dir.mkdir()
    upstream = upstream_services(cfg, stamp_dir)
    return upstream, new_services(cfg, stamp_dir)
