"""Service processes: readiness, the real cause of failures, one process per name, tree stop."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ai.backend.kernel.services import supervisor as supervisor_module
from ai.backend.kernel.services.definitions import Catalog
from ai.backend.kernel.services.host import ServiceHost, ServiceRequest
from ai.backend.kernel.services.spec import ServiceSpec
from ai.backend.kernel.services.supervisor import LaunchSpec, ServiceSupervisor, StartResult
from tests.support.processes import free_ports, pid_is_running

# Prints, waits DELAY s, listens on PORT (0.0.0.0), writes its pid and a child's pid to PIDS.
SERVER = """
import os, socket, subprocess, sys, time
port, delay, pids = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
print("booting", flush=True)
time.sleep(delay)
child = subprocess.Popen(["sleep", "300"])
with open(pids, "a") as f:
    f.write(f"{os.getpid()} {child.pid}\\n")
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port))
s.listen()
print("listening", flush=True)
while True:
    s.accept()[0].close()
"""


@pytest.fixture
def port() -> int:
    return free_ports(1)[0]


@pytest.fixture
def pids_file(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "pids"
    yield path
    for line in path.read_text().splitlines() if path.exists() else []:
        for pid in map(int, line.split()):
            if pid_is_running(pid):
                os.kill(pid, 9)


def spec(
    name: str, argv: list[str], port: int | None, tmp: Path, timeout: float = 30.0
) -> LaunchSpec:
    return LaunchSpec(name, argv, dict(os.environ), tmp, port, timeout)


def server(port: int, pids: Path, delay: float = 0.0) -> list[str]:
    return [sys.executable, "-c", SERVER, str(port), str(delay), str(pids)]


def pids_of(path: Path) -> list[list[int]]:
    return [list(map(int, line.split())) for line in path.read_text().splitlines()]


def test_started_then_running_and_stop_ends_the_tree(
    tmp_path: Path, port: int, pids_file: Path
) -> None:
    async def scenario() -> tuple[StartResult, StartResult, bool, bool]:
        supervisor = ServiceSupervisor(stop_grace=2.0)
        launch = spec("web", server(port, pids_file, 0.3), port, tmp_path)
        first = await supervisor.start(launch)
        second = await supervisor.start(launch)
        up = supervisor.is_up("web")
        await supervisor.stop("web")
        return first, second, up, supervisor.is_running("web")

    first, second, up, still_running = asyncio.run(scenario())
    assert (first.as_reply(), second.as_reply()) == ({"status": "started"}, {"status": "running"})
    assert up and not still_running
    [[leader, child]] = pids_of(pids_file)
    assert not pid_is_running(leader) and not pid_is_running(child)


def test_a_start_after_the_port_opened_is_running_before_the_poll_sees_it(
    tmp_path: Path, port: int, pids_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The readiness poll looks once, then sleeps past the test: only the port can tell.
    monkeypatch.setattr(supervisor_module, "FAST_POLL", 60.0)
    monkeypatch.setattr(supervisor_module, "SLOW_POLL", 60.0)

    argv = server(port, pids_file, 0.3)
    web = spec("web", argv, port, tmp_path)

    async def describe(request: ServiceRequest) -> ServiceSpec:
        return ServiceSpec("web", tuple(argv), literal=True, probe_port=port)

    async def scenario() -> tuple[list[StartResult], bool, StartResult]:
        host = ServiceHost(Catalog(), runtime_path=None, env=dict(os.environ), cwd=tmp_path)
        host.launchers["web"] = describe
        request = json.dumps({"name": "web", "port": port})
        first = asyncio.create_task(host.start(request))
        while not await supervisor_module.port_accepts(port):
            await asyncio.sleep(0.02)
        # Through the host (the agent's path: joins the pending start) and the supervisor.
        again = [await host.start(request), await host.supervisor.start(web)]
        seen_by_poll = host.supervisor.is_up("web")
        await host.close()
        return again, seen_by_poll, await first

    again, seen_by_poll, first = asyncio.run(scenario())
    assert [result.as_reply() for result in again] == [{"status": "running"}] * 2
    assert not seen_by_poll
    assert first.as_reply() == {"status": "failed", "error": "web was stopped while starting"}
    assert len(pids_of(pids_file)) == 1


def test_concurrent_starts_give_one_process(tmp_path: Path, port: int, pids_file: Path) -> None:
    async def scenario() -> list[StartResult]:
        supervisor = ServiceSupervisor()
        launch = spec("web", server(port, pids_file, 0.5), port, tmp_path)
        try:
            return list(await asyncio.gather(*(supervisor.start(launch) for _ in range(3))))
        finally:
            await supervisor.stop_all()

    results = asyncio.run(scenario())
    assert [r.status for r in results] == ["started"] * 3
    assert len(pids_of(pids_file)) == 1


def start_once(launch: LaunchSpec) -> StartResult:
    async def scenario() -> StartResult:
        supervisor = ServiceSupervisor(stop_grace=1.0)
        try:
            return await supervisor.start(launch)
        finally:
            await supervisor.stop_all()

    return asyncio.run(scenario())


def test_missing_program(tmp_path: Path, port: int) -> None:
    result = start_once(spec("web", ["/nonexistent/prog", "-x"], port, tmp_path))
    assert result.as_reply() == {
        "status": "failed",
        "error": "the program of web is not found: /nonexistent/prog",
    }


def test_program_not_executable(tmp_path: Path, port: int) -> None:
    program = tmp_path / "prog"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o644)
    result = start_once(spec("web", [str(program)], port, tmp_path))
    assert result.error == f"the program of web is not executable: {program} (Permission denied)"


def test_missing_working_directory(tmp_path: Path, port: int) -> None:
    result = start_once(spec("web", ["true"], port, tmp_path / "gone"))
    assert result.error == f"the working directory of web does not exist: {tmp_path / 'gone'}"


def test_exit_reports_status_and_last_lines(tmp_path: Path, port: int) -> None:
    script = "for i in 1 2 3; do echo line $i; done; echo oops >&2; exit 7"
    result = start_once(spec("web", ["sh", "-c", script], port, tmp_path))
    assert result.error == (
        f"web exited with status 7 before opening port {port};"
        " last output:\nline 1\nline 2\nline 3\noops"
    )


def test_port_held_by_another_process(tmp_path: Path, port: int) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        result = start_once(spec("web", ["sleep", "30"], port, tmp_path))
    assert result.error == f"port {port} of web is already in use by another process"


def test_timeout_stops_the_tree(tmp_path: Path, port: int, pids_file: Path) -> None:
    launch = spec("web", server(port, pids_file, 60), port, tmp_path, timeout=0.5)
    result = start_once(launch)
    assert result.error == (
        f"web did not open port {port} on 127.0.0.1 within 0.5 s, so it was stopped;"
        " last output:\nbooting"
    )
    assert not pids_file.exists()  # killed during its sleep, before it spawned its child


def test_stop_while_starting(tmp_path: Path, port: int, pids_file: Path) -> None:
    async def scenario() -> StartResult:
        supervisor = ServiceSupervisor(stop_grace=1.0)
        start = asyncio.create_task(
            supervisor.start(spec("web", server(port, pids_file, 60), port, tmp_path))
        )
        while not supervisor.is_running("web"):
            await asyncio.sleep(0.01)
        await supervisor.stop("web")
        return await start

    assert asyncio.run(scenario()).error == "web was stopped while starting"


def test_no_probe_port_is_started_at_once(tmp_path: Path) -> None:
    async def scenario() -> tuple[StartResult, bool]:
        supervisor = ServiceSupervisor(stop_grace=1.0)
        result = await supervisor.start(spec("model", ["sleep", "30"], None, tmp_path))
        up = supervisor.is_up("model")
        await supervisor.stop_all()
        return result, up

    assert asyncio.run(scenario()) == (StartResult("started"), True)


def test_output_goes_to_the_log(
    tmp_path: Path, port: int, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="ai.backend.kernel.services"):
        start_once(spec("web", ["sh", "-c", "echo hello from web; exit 1"], port, tmp_path))
    assert "[web] hello from web" in caplog.text


def test_stopping_an_unknown_service_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="ai.backend.kernel.services"):
        asyncio.run(ServiceSupervisor().stop("ghost"))
    assert "no service named 'ghost' to stop" in caplog.text
