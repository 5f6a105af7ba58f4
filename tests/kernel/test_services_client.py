"""The developer client's apps, start-service and stop-service commands."""

from __future__ import annotations

import json
from pathlib import Path

from tests.kernel.conftest import StartKernel
from tests.kernel.test_client import _client
from tests.support.processes import free_ports
from tests.support.service_programs import (
    listener_definition,
    records,
    wait_port_closed,
    without_image_service_defs,
    write_definitions,
)


@without_image_service_defs
def test_apps_start_and_stop(start_kernel: StartKernel, tmp_path: Path) -> None:
    record = tmp_path / "record"
    web = listener_definition(
        record, allowed_arguments=["--auth", "--tag"], allowed_envs=["PASSWORD"]
    )
    directory = write_definitions(tmp_path / "defs", web=web)
    kernel = start_kernel("git", "--service-def-dir", str(directory))
    kernel.agent.close()  # the client is the only peer of the runner's sockets
    done = _client(kernel, "apps")
    assert json.loads(done.stdout)["data"][0]["name"] == "web"
    [port] = free_ports(1)
    args = ["--arg", "--auth=none", "--arg", "--tag=a", "--arg", "--tag=b", "--env", "PASSWORD=pw"]
    done = _client(kernel, "start-service", "web", "--port", str(port), *args)
    assert (done.returncode, json.loads(done.stdout)) == (0, {"status": "started"})
    [started] = records(record)
    assert (started["argv"], started["password"]) == (["--auth", "none", "--tag", "a", "b"], "pw")
    assert _client(kernel, "stop-service", "web").returncode == 0
    assert wait_port_closed(port)
    done = _client(kernel, "start-service", "nothing", "--port", str(port))
    assert done.returncode == 1
    assert json.loads(done.stdout)["error"].startswith("unsupported service: nothing")
