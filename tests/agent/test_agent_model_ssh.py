# mypy: disable-error-code="no-untyped-call"
"""Model services through the real agent (24.3, 24.9 or 25.5): ``start_model_service`` and
the ``model-service-status`` records, as the agent turns them into events; the model
definitions of both dialects (a string ``start_command`` with ``shell``, ``interval``)."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.support.processes import free_ports

if TYPE_CHECKING:
    from tests.agent.harness import AgentSession

HEALTHY, UNHEALTHY = "healthy", "unhealthy"  # ModelServiceStatus values
EVENT_WAIT = 60.0

# A model server whose /health answers with the status code in the file `health-status`.
MODEL_SERVER = """
import http.server, json, os, pathlib, sys
pathlib.Path("started-with.json").write_text(json.dumps({
    "cwd": os.getcwd(),
    "name": os.environ["BACKEND_MODEL_NAME"],
    "path": os.environ["BACKEND_MODEL_PATH"],
}))
class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with open("probes", "a") as probes:
            probes.write(self.path + "\\n")
        found = self.path == "/health"
        self.send_response(int(pathlib.Path("health-status").read_text()) if found else 404)
        self.end_headers()
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Health).serve_forever()
"""


class RecordingProducer:
    """The agent's event producer, keeping the model-service events."""

    def __init__(self) -> None:
        self.statuses: list[tuple[str, str]] = []

    async def produce_event(self, event: Any, *, source: str = "agent") -> None:
        if event.name == "model_service_status_updated":  # ModelServiceStatusEvent
            self.statuses.append((event.model_name, event.new_status.value))


def wait_for_statuses(agent: AgentSession, events: RecordingProducer, count: int) -> None:
    async def wait() -> None:
        deadline = time.monotonic() + EVENT_WAIT
        while len(events.statuses) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    agent.run(wait(), timeout=EVENT_WAIT + 5)
    assert len(events.statuses) >= count, f"only {events.statuses} within {EVENT_WAIT} s"


def model_entry(model_dir: Path, port: int) -> dict[str, Any]:
    return {
        "name": "tiny",
        "model_path": str(model_dir),
        "service": {
            "start_command": [sys.executable, "server.py", str(port)],
            "port": port,
            "pre_start_actions": [
                {
                    "action": "write_file",
                    "args": {"filename": str(model_dir / "health-status"), "body": ["503"]},
                }
            ],
            # No leading "/": accepted, as the agent's schema allows it.
            "health_check": {"path": "health", "max_retries": 2, "max_wait_time": 0.3},
        },
    }


def test_model_service_health_changes_reach_the_agent(agent: AgentSession) -> None:
    events = RecordingProducer()
    agent.kernel.runner.event_producer = events  # type: ignore[union-attr]
    model_dir = agent.work_dir / "model"
    model_dir.mkdir()
    (model_dir / "server.py").write_text(MODEL_SERVER)
    (port,) = free_ports(1)

    result = agent.run(agent.kernel.start_model_service(model_entry(model_dir, port)))
    assert result == {"status": "started"}
    # 503 (or not listening yet) twice: unhealthy; then each flip is reported once.
    expected = [UNHEALTHY]
    wait_for_statuses(agent, events, len(expected))
    for status_code, state in [("200", HEALTHY), ("503", UNHEALTHY), ("200", HEALTHY)]:
        (model_dir / "health-status").write_text(status_code)
        expected.append(state)
        wait_for_statuses(agent, events, len(expected))
    assert events.statuses == [("tiny", state) for state in expected]
    # Written by the server at its start (it has answered since).
    assert json.loads((model_dir / "started-with.json").read_text()) == {
        "cwd": str(model_dir),
        "name": "tiny",
        "path": str(model_dir),
    }

    # Started again while it runs: one process, one monitor, no new status.
    again = agent.run(agent.kernel.start_model_service(model_entry(model_dir, port)))
    assert again == {"status": "running"}
    assert events.statuses == [("tiny", state) for state in expected]


def test_model_service_failure_carries_its_cause(agent: AgentSession) -> None:
    events = RecordingProducer()
    agent.kernel.runner.event_producer = events  # type: ignore[union-attr]
    (port,) = free_ports(1)
    entry = model_entry(agent.work_dir, port)
    entry["service"]["start_command"] = ["/nonexistent/serve"]
    assert agent.run(agent.kernel.start_model_service(entry)) == {
        "status": "failed",
        "error": f"the program of tiny-{port} is not found: /nonexistent/serve",
    }


def test_model_service_of_the_newer_dialect_string_command_and_interval(
    agent: AgentSession,
) -> None:
    """What agent 25.x sends: a string start_command run by its shell, and a health interval
    (from one probe's start to the next's; not one probe per max_wait_time)."""
    events = RecordingProducer()
    agent.kernel.runner.event_producer = events  # type: ignore[union-attr]
    model_dir = agent.work_dir / "model"
    model_dir.mkdir()
    (model_dir / "server.py").write_text(MODEL_SERVER)
    (model_dir / "health-status").write_text("200")
    (port,) = free_ports(1)
    entry = model_entry(model_dir, port)
    entry["service"].update(
        start_command=f'exec "{sys.executable}" server.py ${{{{ ports[0] }}}}',
        shell="/bin/sh",
        pre_start_actions=[],
        health_check={"path": "/health", "max_retries": 1, "max_wait_time": 0.3, "interval": 1.0},
    )
    assert agent.run(agent.kernel.start_model_service(entry)) == {"status": "started"}
    wait_for_statuses(agent, events, 1)
    if events.statuses[-1][1] != HEALTHY:  # unhealthy until the server listens
        wait_for_statuses(agent, events, len(events.statuses) + 1)
    assert events.statuses[-1] == ("tiny", HEALTHY), events.statuses
    probes = model_dir / "probes"
    before = len(probes.read_text().splitlines())
    agent.run(asyncio.sleep(3.0))
    during = len(probes.read_text().splitlines()) - before
    assert 2 <= during <= 4, f"{during} probes in 3 s with interval 1 (max_wait_time 0.3)"
