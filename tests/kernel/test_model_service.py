"""start-model-service: the models[] entry's checks and the runner's replies (fake agent)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from ai.backend.kernel.protocol import Op, Record
from ai.backend.kernel.services.health import HealthCheck
from ai.backend.kernel.services.model import InvalidModel, parse_model
from tests.kernel.conftest import RunningKernel, StartKernel
from tests.support.processes import free_ports, wait_until


def entry(**service: Any) -> dict[str, Any]:
    return {
        "name": "m",
        "model_path": "/models/m",
        "service": {"start_command": ["serve"], "port": 8000, **service},
    }


def test_parse_model_with_the_agents_defaults() -> None:
    model = parse_model(entry(health_check={"path": "health", "max_wait_time": None}))
    assert model is not None
    assert (model.service_name, model.model_path, model.start_command) == (
        "m-8000",
        Path("/models/m"),
        ("serve",),
    )
    assert model.health_check == HealthCheck("health", 10, 5.0, 200)


def test_parse_model_of_the_newer_agents_string_command_shell_and_interval() -> None:
    model = parse_model(
        entry(
            start_command="serve --port 8000",
            shell="/bin/sh",
            health_check={"path": "/h", "max_wait_time": 1, "interval": 4},
        )
    )
    assert model is not None
    assert (model.start_command, model.shell) == ("serve --port 8000", "/bin/sh")
    assert model.health_check == HealthCheck("/h", 10, 1.0, 200, interval=4.0)
    default = parse_model(entry(start_command="serve", shell=None))
    assert default is not None and default.shell == "bash"


def test_parse_model_without_a_service_is_nothing_to_start() -> None:
    assert parse_model({"name": "m", "model_path": "/models/m", "service": None}) is None


@pytest.mark.parametrize(
    "data, error",
    [
        ([], "model entry: expected an object, got list"),
        ({"model_path": "/m"}, "model entry: name: expected a non-empty string, got None"),
        (entry(port=0), "model m: service.port: expected an integer in 1..65535, got 0"),
        (entry(start_command=" "), "model m: service.start_command: expected a non-empty string"),
        (entry(start_command=[]), "model m: service.start_command: expected a list of strings"),
        (entry(start_command=["serve"], shell=3), "model m: service.shell: expected a program"),
        (
            entry(health_check={"path": "/h", "interval": "10"}),
            "model m: service.health_check.interval: expected seconds >= 0, got '10'",
        ),
        (
            entry(health_check={"path": "/h", "max_retries": 0}),
            "model m: service.health_check.max_retries: expected an integer in 1..1000000",
        ),
        (
            entry(health_check={"path": "/h", "max_wait_time": -1}),
            "model m: service.health_check.max_wait_time: expected seconds >= 0, got -1",
        ),
        (
            entry(pre_start_actions=[{"action": "fly"}]),
            "model m: service.pre_start_actions[0].action: 'fly' is not an action",
        ),
    ],
)
def test_parse_model_names_the_bad_field(data: object, error: str) -> None:
    with pytest.raises(InvalidModel) as raised:
        parse_model(data)
    assert str(raised.value).startswith(error)


def start_model(kernel: RunningKernel, model: object) -> list[Any]:
    """Send start-model-service; the model-service records up to its result."""
    kernel.agent.send(Op.START_MODEL_SERVICE, json.dumps(model))
    result = kernel.agent.collect(Record.MODEL_SERVICE_RESULT)
    return [
        (kind, json.loads(payload))
        for kind, payload in result.records
        if kind in (Record.MODEL_SERVICE_RESULT, Record.MODEL_SERVICE_STATUS)
    ]


def model_entry(model_path: Path, command: list[str], port: int) -> dict[str, Any]:
    service = {"start_command": command, "port": port, "pre_start_actions": None}
    return {"name": "m", "model_path": str(model_path), "service": service}


def test_model_without_health_check_is_healthy_once_started(
    start_kernel: StartKernel, tmp_path: Path
) -> None:
    # No service-definition directory at all: model services do not need one.
    kernel = start_kernel()
    (port,) = free_ports(1)
    model = model_entry(tmp_path, [sys.executable, "-c", "import time; time.sleep(60)"], port)
    kernel.agent.send(Op.START_MODEL_SERVICE, json.dumps(model))
    result = kernel.agent.collect(Record.MODEL_SERVICE_RESULT, Record.MODEL_SERVICE_STATUS)
    assert result.json_payloads(Record.MODEL_SERVICE_RESULT) == [{"status": "started"}]
    assert result.json_payloads(Record.MODEL_SERVICE_STATUS) == [
        {"model_name": "m", "is_healthy": True}
    ]


def test_a_string_start_command_runs_through_the_shell_with_templates(
    start_kernel: StartKernel, tmp_path: Path
) -> None:
    kernel = start_kernel()
    (port,) = free_ports(1)
    out = tmp_path / "out"
    command = f'echo "$0 $BACKEND_MODEL_NAME ${{{{ ports[0] }}}} {{ ports[0] }}" > {out}; sleep 60'
    model = model_entry(tmp_path, [], port)
    model["service"].update(start_command=command, shell="sh")
    kernel.agent.send(Op.START_MODEL_SERVICE, json.dumps(model))
    result = kernel.agent.collect(Record.MODEL_SERVICE_RESULT, Record.MODEL_SERVICE_STATUS)
    assert result.json_payloads(Record.MODEL_SERVICE_RESULT) == [{"status": "started"}]
    assert wait_until(lambda: out.exists() and out.read_text().endswith("\n"), 30)
    assert out.read_text() == f"sh m {port} {port}\n"


def test_model_failures_are_answered_with_their_cause(
    start_kernel: StartKernel, tmp_path: Path
) -> None:
    kernel = start_kernel()
    (port,) = free_ports(1)
    missing_dir = model_entry(tmp_path / "nowhere", ["serve"], port)
    assert start_model(kernel, missing_dir) == [
        (
            Record.MODEL_SERVICE_RESULT,
            {"status": "failed", "error": f"model_path {tmp_path / 'nowhere'} is not a directory"},
        )
    ]
    bad = {"name": "m", "model_path": str(tmp_path), "service": {"port": port}}
    assert start_model(kernel, bad) == [
        (
            Record.MODEL_SERVICE_RESULT,
            {
                "status": "failed",
                "error": "start-model-service: model m: service.start_command: expected a list"
                " of strings or a string, got None",
            },
        )
    ]


def test_model_with_null_service_gets_no_reply(start_kernel: StartKernel, tmp_path: Path) -> None:
    """The agent 24.3 fails on its side right after sending such an entry and never reads a
    reply, which would then be taken as the answer to its next start-model-service."""
    kernel = start_kernel()
    kernel.agent.send(
        Op.START_MODEL_SERVICE, json.dumps({"name": "m", "model_path": "/m"} | {"service": None})
    )
    # The next start's reply is the first one.
    missing_dir = model_entry(tmp_path / "nowhere", ["serve"], 8000)
    error = f"model_path {tmp_path / 'nowhere'} is not a directory"
    assert start_model(kernel, missing_dir) == [
        (Record.MODEL_SERVICE_RESULT, {"status": "failed", "error": error})
    ]


def test_shutdown_of_a_model_service_ends_its_health_checks(
    start_kernel: StartKernel, tmp_path: Path
) -> None:
    kernel = start_kernel()
    (port,) = free_ports(1)
    server = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    model = model_entry(tmp_path, server, port)
    model["service"]["health_check"] = {"path": "/", "max_retries": 1, "max_wait_time": 0.2}
    kernel.agent.send(Op.START_MODEL_SERVICE, json.dumps(model))
    result = kernel.agent.collect(Record.MODEL_SERVICE_RESULT)
    assert result.json_payloads(Record.MODEL_SERVICE_RESULT) == [{"status": "started"}]
    statuses = result.json_payloads(Record.MODEL_SERVICE_STATUS)
    up_by = time.monotonic() + 30
    while not statuses or not statuses[-1]["is_healthy"]:  # unhealthy until it listens
        assert time.monotonic() < up_by, statuses
        statuses += kernel.agent.collect(Record.MODEL_SERVICE_STATUS, timeout=30).json_payloads(
            Record.MODEL_SERVICE_STATUS
        )
    kernel.agent.send(Op.SHUTDOWN_SERVICE, json.dumps(f"m-{port}"))
    # With the monitor still running, the refused probes would report unhealthy within
    # a round or two (0.2 s each).
    reports: list[Any] = []
    deadline = time.monotonic() + 2.0
    while (left := deadline - time.monotonic()) > 0:
        if (record := kernel.agent.poll(left)) is not None:
            reports.append(record)
    assert [r for r in reports if r[0] == Record.MODEL_SERVICE_STATUS] == []
