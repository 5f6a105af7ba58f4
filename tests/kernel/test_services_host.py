"""ServiceHost.start_service, the one way in for every service, and watchers attached to one."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from ai.backend.kernel.services.actions import parse_action
from ai.backend.kernel.services.definitions import Catalog, load_catalog
from ai.backend.kernel.services.host import ServiceHost, ServiceRequest
from ai.backend.kernel.services.intrinsic import IntrinsicServices, SshFiles
from ai.backend.kernel.services.model import parse_model
from ai.backend.kernel.services.spec import ServiceSpec
from tests.support.processes import free_ports, wait_until_async
from tests.support.service_programs import write_definitions

# Records its argv, cwd and some variables in RECORD, then listens on PORT ("-": never).
#   python RECORDER RECORD PORT [arguments...]
RECORDER = """
import json, os, socket, sys, time
record, port = sys.argv[1], sys.argv[2]
names = ("LD_LIBRARY_PATH", "PASSWORD", "BACKEND_MODEL_NAME", "FROM_DEF")
with open(record, "w") as f:
    json.dump({"argv": sys.argv[3:], "cwd": os.getcwd(),
               "env": {n: os.environ[n] for n in names if n in os.environ}}, f)
if port == "-":
    time.sleep(300)
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(port)))
s.listen()
while True:
    s.accept()[0].close()
"""
RUNNER_ENV = {"PATH": os.environ["PATH"], "LD_LIBRARY_PATH": "/opt/backend.ai/lib:/usr/lib"}


@asynccontextmanager
async def service_host(cwd: Path, reply_window: float = 8.0) -> AsyncIterator[ServiceHost]:
    host = ServiceHost(
        Catalog(), runtime_path="/py", env=RUNNER_ENV, cwd=cwd, reply_window=reply_window
    )
    try:
        yield host
    finally:
        await host.close()


def recorder(tmp_path: Path) -> Path:
    program = tmp_path / "recorder.py"
    program.write_text(RECORDER)
    return program


def recorded(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())  # type: ignore[no-any-return]


async def written(path: Path) -> dict[str, Any]:
    await wait_until_async(lambda: path.exists() and path.stat().st_size > 0, f"{path} written")
    await asyncio.sleep(0.05)  # the writer may still be flushing
    return recorded(path)


def test_a_definition_files_spec(tmp_path: Path) -> None:
    """Prestart results, templates, the user's options and the runner's environment."""
    (port,) = free_ports(1)
    record = tmp_path / "record"
    body = {
        "prestart": [{"action": "write_tempfile", "args": {"body": "x"}, "ref": "cfg"}],
        "command": [sys.executable, str(recorder(tmp_path)), str(record), "{ports[0]}", "{cfg}"],
        "env": {"FROM_DEF": "{runtime_path}"},
        "allowed_arguments": ["--n"],
        "default_arguments": {"--n": "{ports[0]}", "--d": "{runtime_path}"},
        "allowed_envs": ["PASSWORD"],
    }
    catalog = load_catalog([write_definitions(tmp_path / "defs", web=body)])
    spec = catalog.definitions["web"].spec((port,), port, {"--n": "{x}"}, {"PASSWORD": "pw"})

    async def scenario() -> tuple[dict[str, str], bool]:
        async with service_host(tmp_path) as host:
            result = (await host.start_service(spec)).as_reply()
            return result, await host.supervisor.is_serving("web")

    assert asyncio.run(scenario()) == ({"status": "started"}, True)
    seen = recorded(record)
    cfg = seen["argv"][0]  # it listens on {ports[0]}: it was started
    assert seen["argv"] == [cfg, "--n", "{x}", "--d", "/py"]
    assert Path(cfg).read_text() == "x"
    assert seen["cwd"] == str(tmp_path)
    assert seen["env"] == {"LD_LIBRARY_PATH": "/usr/lib", "PASSWORD": "pw", "FROM_DEF": "/py"}


def test_a_model_definitions_spec_and_its_precheck(tmp_path: Path) -> None:
    record, model_dir = tmp_path / "record", tmp_path / "model"
    model_dir.mkdir()
    prestart = {"action": "write_file", "args": {"filename": str(tmp_path / "p"), "body": ["p"]}}
    command = f"exec {sys.executable} {recorder(tmp_path)} {record} - {{ports[0]}} $0"
    service: dict[str, Any] = {"start_command": command, "shell": "sh", "port": 8123}
    entry = {"name": "m", "model_path": str(model_dir), "service": service}
    missing = {
        "name": "n",
        "model_path": str(tmp_path / "nowhere"),
        "service": {**service, "pre_start_actions": [prestart]},
    }
    model, absent = parse_model(entry), parse_model(missing)
    assert model is not None and absent is not None

    async def scenario() -> tuple[list[dict[str, str]], dict[str, Any]]:
        async with service_host(tmp_path) as host:
            replies = [(await host.start_service(m.spec())).as_reply() for m in (model, absent)]
            return replies, await written(record)  # no port probe: it may not have written yet

    replies, seen = asyncio.run(scenario())
    assert replies == [
        {"status": "started"},
        {"status": "failed", "error": f"model_path {tmp_path / 'nowhere'} is not a directory"},
    ]
    assert not (tmp_path / "p").exists()  # the pre-check comes before any prestart action
    assert (seen["argv"], seen["cwd"]) == (["8123", "sh"], str(model_dir))
    assert seen["env"] == {"LD_LIBRARY_PATH": "/usr/lib", "BACKEND_MODEL_NAME": "m"}


def test_an_intrinsic_services_spec_is_final_not_a_template(tmp_path: Path) -> None:
    """ttyd's argv is made of paths: a brace in one is no template."""
    (port,) = free_ports(1)
    record, bin_dir = tmp_path / "record", tmp_path / "bin{x}"
    bin_dir.mkdir()
    ttyd = bin_dir / "ttyd"
    serve = f"exec {sys.executable} {recorder(tmp_path)} {record} {port}"
    ttyd.write_text(f'#!/bin/sh\n[ "$1" = --help ] && exit 0\n{serve}\n')
    ttyd.chmod(0o755)
    env = {**RUNNER_ENV, "PATH": f"{bin_dir}:{RUNNER_ENV['PATH']}"}
    files = SshFiles(tmp_path, tmp_path, tmp_path / "state")
    intrinsic = IntrinsicServices(files, env, agent_bin=tmp_path / "no-agent-bin")

    async def scenario() -> tuple[ServiceSpec, dict[str, str]]:
        spec = await intrinsic.ttyd(ServiceRequest("ttyd", port))
        async with service_host(tmp_path) as host:
            return spec, (await host.start_service(spec)).as_reply()

    spec, result = asyncio.run(scenario())
    assert spec.command[:3] == (str(ttyd), "-p", str(port))
    assert result == {"status": "started"}
    assert recorded(record)["cwd"] == str(tmp_path)


def sleeper(name: str, tmp_path: Path, *prestart: dict[str, Any]) -> ServiceSpec:
    actions = tuple(parse_action(raw, f"a[{i}]") for i, raw in enumerate(prestart))
    return ServiceSpec(name, ("sleep", "300"), cwd=tmp_path, prestart_actions=actions)


class Watching:
    """A watcher that says when it runs and when it was cancelled."""

    def __init__(self) -> None:
        self.runs = 0
        self.cancelled = 0

    async def watch(self) -> None:
        self.runs += 1
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise


def test_a_watcher_runs_from_the_start_until_the_stop(tmp_path: Path) -> None:
    first, second = Watching(), Watching()

    async def scenario() -> list[tuple[int, int]]:
        async with service_host(tmp_path) as host:
            assert (await host.start_service(sleeper("s", tmp_path))).status == "started"
            host.attach("s", first.watch)
            host.attach("s", second.watch)  # watched already: kept
            await wait_until_async(lambda: first.runs == 1, "the watcher's start")
            await host.stop("s")
            await wait_until_async(lambda: first.cancelled == 1, "the watcher's end")
            host.attach("s", second.watch)  # stopped: nothing to watch
            await asyncio.sleep(0.1)
            return [(first.runs, first.cancelled), (second.runs, second.cancelled)]

    assert asyncio.run(scenario()) == [(1, 1), (0, 0)]


def test_a_watcher_of_a_start_still_under_way_runs_once_it_started(tmp_path: Path) -> None:
    slow = {"action": "run_command", "args": {"command": ["sleep", "0.5"]}}
    failing = {"action": "run_command", "args": {"command": ["sleep", "30"], "timeout": 0.1}}
    slow_watch, failed_watch = Watching(), Watching()

    async def scenario() -> list[str]:
        async with service_host(tmp_path, reply_window=0.1) as host:
            replies = [
                await host.start_service(sleeper("slow", tmp_path, slow)),
                await host.start_service(sleeper("bad", tmp_path, slow, failing)),
            ]
            host.attach("slow", slow_watch.watch)
            host.attach("bad", failed_watch.watch)
            assert slow_watch.runs == 0
            await wait_until_async(lambda: slow_watch.runs == 1, "the watcher's start")
            await wait_until_async(lambda: host.supervisor.is_running("slow"), "the start")
            await asyncio.sleep(0.6)  # "bad" has failed by now
            assert failed_watch.runs == 0
        assert slow_watch.cancelled == 1  # by close
        return [str(reply.error) for reply in replies]

    assert asyncio.run(scenario()) == [
        "slow is still starting; start it again to get its state",
        "bad is still starting; start it again to get its state",
    ]
