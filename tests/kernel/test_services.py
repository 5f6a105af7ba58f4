"""start-service, shutdown-service and get-apps through the wire, with the agent's client."""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from ai.backend.kernel.agent_client import AgentClient
from ai.backend.kernel.protocol import Op, Record, decode_status
from tests.kernel.conftest import RunningKernel, StartKernel
from tests.support.processes import (
    free_ports,
    is_running,
    pid_is_running,
    process,
    wait_until,
)
from tests.support.service_programs import (
    listener_definition,
    port_accepts,
    records,
    wait_port_closed,
    without_image_service_defs,
    write_definitions,
)

STILL_STARTING = "is still starting; start it again to get its state"
WAIT_LIMIT = 60.0  # seconds any wait of these tests may last


def start_request(name: str, port: int, protocol: str = "http", **options: Any) -> str:
    request = {"name": name, "port": port, "ports": [port], "protocol": protocol}
    return json.dumps({**request, "options": options})


def wait_for(agent: AgentClient, kind: Record, others: list[tuple[str, bytes]]) -> bytes:
    """The payload of the next ``kind`` record; the records before it go to ``others``.
    Fails (RunnerTimeout) if none arrives within WAIT_LIMIT seconds."""
    deadline = time.monotonic() + WAIT_LIMIT
    while True:
        got, payload = agent.recv(timeout=max(0.0, deadline - time.monotonic()))
        if got == kind:
            return payload
        others.append((got, payload))


def start(agent: AgentClient, name: str, port: int, **kw: Any) -> dict[str, Any]:
    agent.send(Op.START_SERVICE, start_request(name, port, **kw))
    reply: dict[str, Any] = json.loads(wait_for(agent, Record.SERVICE_RESULT, []))
    return reply


def kernel_with(start_kernel: StartKernel, tmp_path: Path, **definitions: object) -> RunningKernel:
    directory = write_definitions(tmp_path / "defs", **definitions)
    return start_kernel("git", "--service-def-dir", str(directory))


@without_image_service_defs
def test_get_apps_lists_definitions_and_a_bad_file_is_reported_by_start(
    start_kernel: StartKernel, tmp_path: Path
) -> None:
    vscode = listener_definition(
        tmp_path / "r",
        allowed_arguments=["--auth"],
        allowed_envs=["PASSWORD"],
        default_arguments={"--auth": "none"},
        url_template="http://{host}:{port}/",
    )
    kernel = kernel_with(start_kernel, tmp_path, vscode=vscode, broken={"command": 5})
    kernel.agent.send(Op.GET_APPS, "")
    apps = json.loads(wait_for(kernel.agent, Record.APPS_RESULT, []))
    assert apps == {
        "status": "done",
        "data": [
            {
                "name": "vscode",
                "url_template": "http://{host}:{port}/",
                "allowed_arguments": ["--auth"],
                "allowed_envs": ["PASSWORD"],
            }
        ],
    }
    broken = tmp_path / "defs" / "broken.json"
    assert start(kernel.agent, "broken", 1) == {
        "status": "failed",
        "error": f"service definition {broken}: field 'command': expected a list of strings or"
        " a string, got 5",
    }
    assert start(kernel.agent, "nothing", 1)["error"].startswith("unsupported service: nothing")


def test_start_running_shutdown_and_start_again(start_kernel: StartKernel, tmp_path: Path) -> None:
    command = [sys.executable, "-m", "http.server", "{ports[0]}", "--bind", "127.0.0.1"]
    kernel = kernel_with(start_kernel, tmp_path, web={"command": command})
    [port] = free_ports(1)
    assert start(kernel.agent, "web", port) == {"status": "started"}
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/") as response:
        assert response.status == 200
    assert start(kernel.agent, "web", port) == {"status": "running"}
    kernel.agent.send(Op.SHUTDOWN_SERVICE, json.dumps("web"))
    assert wait_port_closed(port)
    assert start(kernel.agent, "web", port) == {"status": "started"}


def test_arguments_and_envs_reach_the_service(start_kernel: StartKernel, tmp_path: Path) -> None:
    record = tmp_path / "record"
    vscode = listener_definition(
        record,
        allowed_arguments=["--auth"],
        allowed_envs=["PASSWORD"],
        default_arguments={"--auth": "none", "--workers": 2},
    )
    kernel = kernel_with(start_kernel, tmp_path, vscode=vscode)
    [port] = free_ports(1)
    refused = start(kernel.agent, "vscode", port, arguments={"--bind-addr": "x"})
    assert refused == {
        "status": "failed",
        "error": "argument --bind-addr is not allowed for service vscode",
    }
    options = {"arguments": {"--auth": "password"}, "envs": {"PASSWORD": "pw"}}
    assert start(kernel.agent, "vscode", port, **options) == {"status": "started"}
    [started] = records(record)
    assert started["argv"] == ["--auth", "password", "--workers", "2"]
    assert started["password"] == "pw"
    assert started["cwd"] == str(kernel.work_dir)


def test_noop_preopen_and_pty(start_kernel: StartKernel, tmp_path: Path) -> None:
    kernel = kernel_with(start_kernel, tmp_path, noop={"noop": True})
    assert start(kernel.agent, "noop", 1) == {"status": "started"}
    assert start(kernel.agent, "anything", 1, protocol="preopen") == {"status": "started"}
    assert start(kernel.agent, "term", 1, protocol="pty") == {
        "status": "failed",
        "error": "pty services are not supported: term",
    }


def test_a_slow_start_is_answered_in_time_then_from_its_state(
    start_kernel: StartKernel, tmp_path: Path
) -> None:
    gate, record = tmp_path / "gate", tmp_path / "record"
    kernel = kernel_with(start_kernel, tmp_path, slow=listener_definition(record, str(gate)))
    [port] = free_ports(1)
    assert start(kernel.agent, "slow", port) == {
        "status": "failed",
        "error": f"slow {STILL_STARTING}",
    }
    gate.touch()

    def listening() -> bool:
        kernel.agent.status()  # answered meanwhile
        return port_accepts(port)

    assert wait_until(listening, WAIT_LIMIT), f"slow never opened port {port}"
    assert start(kernel.agent, "slow", port) == {"status": "running"}
    assert len(records(record)) == 1


def test_a_failure_after_the_reply_is_told_by_the_next_start(
    start_kernel: StartKernel, tmp_path: Path
) -> None:
    gate, record = tmp_path / "gate", tmp_path / "record"
    slow = listener_definition(record, str(gate), start_timeout=9)
    kernel = kernel_with(start_kernel, tmp_path, slow=slow)
    [port] = free_ports(1)
    assert start(kernel.agent, "slow", port)["error"] == f"slow {STILL_STARTING}"
    [pid] = [r["pid"] for r in records(record)]

    def stopped() -> bool:
        kernel.agent.status()  # answered meanwhile
        return not pid_is_running(pid)

    assert wait_until(stopped, WAIT_LIMIT), f"slow (pid {pid}) was never stopped"
    assert start(kernel.agent, "slow", port) == {
        "status": "failed",
        "error": f"slow did not open port {port} on 127.0.0.1 within 9 s, so it was stopped;"
        " last output:\nservice booting",
    }


def test_status_and_executions_answered_while_services_start_and_one_hangs(
    start_kernel: StartKernel, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    definitions = {f"s{i}": listener_definition(tmp_path / f"r{i}") for i in range(5)}
    definitions["hang"] = listener_definition(tmp_path / "rh", str(gate))
    kernel = kernel_with(start_kernel, tmp_path, **definitions)
    agent = kernel.agent
    ports = dict(zip(definitions, free_ports(len(definitions)), strict=True))
    for name, port in ports.items():
        agent.send(Op.START_SERVICE, start_request(name, port))
    replies: list[dict[str, Any]] = []
    statuses = 0
    agent.send(Op.CODE, "echo executed")
    deadline = time.monotonic() + WAIT_LIMIT
    while len(replies) < len(ports):
        assert time.monotonic() < deadline, f"only {replies} within {WAIT_LIMIT} s"
        others: list[tuple[str, bytes]] = []
        agent.send(Op.STATUS)
        assert "started_at" in decode_status(wait_for(agent, Record.STATUS, others))
        statuses += 1
        time.sleep(0.05)
        for kind, payload in others:
            if kind == Record.SERVICE_RESULT:
                replies.append(json.loads(payload))
    assert statuses > 1  # answered while the hanging one was still starting
    assert sorted(r["status"] for r in replies) == ["failed"] + ["started"] * 5
    assert {"status": "failed", "error": f"hang {STILL_STARTING}"} in replies
    assert all(port_accepts(port) for name, port in ports.items() if name != "hang")


def test_concurrent_starts_give_one_process(start_kernel: StartKernel, tmp_path: Path) -> None:
    record = tmp_path / "record"
    kernel = kernel_with(start_kernel, tmp_path, web=listener_definition(record))
    [port] = free_ports(1)
    for _ in range(3):
        kernel.agent.send(Op.START_SERVICE, start_request("web", port))
    replies = [json.loads(wait_for(kernel.agent, Record.SERVICE_RESULT, [])) for _ in range(3)]
    assert {r["status"] for r in replies} <= {"started", "running"}
    assert len(records(record)) == 1


def test_runner_shutdown_stops_services(start_kernel: StartKernel, tmp_path: Path) -> None:
    record = tmp_path / "record"
    kernel = kernel_with(start_kernel, tmp_path, web=listener_definition(record))
    [port] = free_ports(1)
    assert start(kernel.agent, "web", port) == {"status": "started"}
    [pid] = [r["pid"] for r in records(record)]
    service = process(pid)
    assert service is not None
    assert kernel.stop() == 0
    assert not is_running(service)


def test_unknown_shutdown_is_ignored(start_kernel: StartKernel) -> None:
    agent = start_kernel("git").agent
    agent.send(Op.SHUTDOWN_SERVICE, json.dumps("ghost"))
    agent.send(Op.SHUTDOWN_SERVICE, "not json")
    assert "started_at" in agent.status()
