"""Stand-in service programs for the service tests, and service-definition helpers."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import wait_until

# The image's definitions, which the runner loads besides --service-def-dir (as
# ai.backend.kernel.server.IMAGE_SERVICE_DEFS, not importable from the agent's resolve).
IMAGE_SERVICE_DEFS = Path("/etc/backend.ai/service-defs")

without_image_service_defs = pytest.mark.skipif(
    IMAGE_SERVICE_DEFS.exists(),
    reason=f"{IMAGE_SERVICE_DEFS} exists: the runner would list its services too",
)
"""For tests that expect the services of the test's own definitions and no others."""

# A service: records its argv, PASSWORD and pid in RECORD (JSON lines), waits until the file
# GATE exists (if given), then listens on 0.0.0.0:PORT.
#   python -c LISTENER PORT RECORD [GATE] [extra arguments...]
LISTENER = """
import json, os, socket, sys, time
port, record, gate = int(sys.argv[1]), sys.argv[2], sys.argv[3]
with open(record, "a") as f:
    f.write(json.dumps({"argv": sys.argv[4:], "password": os.environ.get("PASSWORD"),
                        "pid": os.getpid(), "cwd": os.getcwd()}) + "\\n")
print("service booting", flush=True)
while gate != "-" and not os.path.exists(gate):
    time.sleep(0.01)
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port))
s.listen()
while True:
    s.accept()[0].close()
"""


def listener_definition(record: Path, gate: str = "-", **fields: Any) -> dict[str, Any]:
    """A definition running LISTENER on the service's port, with ``fields`` added."""
    script = LISTENER.replace("{", "{{").replace("}", "}}")  # commands are templates
    command = [sys.executable, "-c", script, "{ports[0]}", str(record), gate]
    return {"command": command, **fields}


def write_definitions(directory: Path, **definitions: object) -> Path:
    """``NAME.json`` for each keyword (a dict is dumped, a str written as it is)."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, body in definitions.items():
        text = body if isinstance(body, str) else json.dumps(body)
        (directory / f"{name}.json").write_text(text)
    return directory


def records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def port_accepts(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_port_closed(port: int, timeout: float = 20.0) -> bool:
    return wait_until(lambda: not port_accepts(port), timeout)
