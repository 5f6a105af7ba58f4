# mypy: disable-error-code="no-untyped-call"
"""Services through the agent's own code: a real Jupyter server, every failure's exact text,
upstream's definition defects fixed, and `status` answered while services start."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.agent.harness import AgentSession, RunnerChoice, open_session
from tests.support.processes import free_ports, local_runner_command
from tests.support.service_programs import (
    LISTENER,
    listener_definition,
    records,
    wait_port_closed,
    write_definitions,
)

STILL_STARTING = "is still starting; start it again to get its state"

# As the jupyter images write it (a config file of lines, braces doubled, then `-m APP`), with
# jupyter_server as the app and 127.0.0.1 instead of 0.0.0.0 to stay off the network.
JUPYTER = {
    "prestart": [
        {
            "action": "write_tempfile",
            "args": {
                "body": [
                    "c.ServerApp.allow_root = True\n",
                    'c.ServerApp.ip = "127.0.0.1"\n',
                    "c.ServerApp.port = {ports[0]}\n",
                    "c.ServerApp.port_retries = 0\n",
                    'c.ServerApp.token = ""\n',
                    "c.ServerApp.tornado_settings = {{'headers': {{'Content-Security-Policy':"
                    " \"frame-ancestors 'self' *\" }} }}\n",
                ]
            },
            "ref": "jupyter_cfg",
        }
    ],
    "command": [
        "{runtime_path}",
        "-m",
        "jupyter_server",
        "--no-browser",
        "--config",
        "{jupyter_cfg}",
    ],
    "url_template": "http://{host}:{port}/",
}


@dataclass
class ServiceKernel:
    session: AgentSession
    tmp: Path
    ports: dict[str, int]

    def start(self, name: str, **options: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.session.run(self.session.kernel.start_service(name, options))
        return result

    def start_until_known(self, name: str) -> dict[str, Any]:
        """Start again while the runner says it is still starting (a cold start may take
        longer than the agent's 10 s), as a user clicking again would."""
        while (result := self.start(name)).get("error", "").endswith(STILL_STARTING):
            pass
        return result

    def stop(self, name: str) -> None:
        self.session.run(self.session.kernel.shutdown_service(name))


def definitions(tmp: Path) -> dict[str, Any]:
    lines = tmp / "appended"
    not_executable = tmp / "not-executable"
    not_executable.write_text("#!/bin/sh\n")
    not_executable.chmod(0o644)
    return {
        "jupyter": JUPYTER,
        "missing": {"command": ["/nonexistent/program", "--port", "{ports[0]}"]},
        "noexec": {"command": [str(not_executable)]},
        "exits": {"command": ["sh", "-c", "echo first; echo 'second line' >&2; exit 3"]},
        "held": listener_definition(tmp / "held"),
        "slow": {"command": ["sleep", "60"], "start_timeout": 1},
        "broken": {"command": ["x"], "foo": 1},
        "shell": listener_definition(tmp / "shell"),
        "prestart": listener_definition(
            tmp / "prestart",
            prestart_actions=[
                {
                    "action": "run_command",
                    "args": {"command": ["sh", "-c", "echo value; exit 4"]},
                    "ref": "out",
                },
                {"action": "log", "args": {"body": "out is {out[out]}"}},
                {
                    "action": "write_file",
                    "args": {"filename": str(lines), "body": ["port {ports[0]}"], "append": True},
                },
            ],
        ),
        "leaky": listener_definition(tmp / "leaky"),
        "hangs_prestart": {
            "command": ["true"],
            "prestart": [
                {"action": "run_command", "args": {"command": ["sleep", "60"], "timeout": 0.5}}
            ],
        },
        "typed": listener_definition(
            tmp / "typed",
            allowed_arguments=["--auth"],
            allowed_envs=["PASSWORD"],
            default_arguments={
                "--workers": 3,
                "--verbose": True,
                "--quiet": False,
                "--auth": "none",
            },
        ),
        "noop": {"noop": True},
        "newer": newer_dialect_definition(tmp),
        **{f"quick{i}": listener_definition(tmp / f"quick{i}") for i in range(5)},
        "hangs": listener_definition(tmp / "hangs", str(tmp / "never")),
    }


def newer_dialect_definition(tmp: Path) -> dict[str, Any]:
    """LISTENER as an image for the newer runners (25.x) defines a service: one command string
    for the definition's shell, ``${{ }}`` and ``{ }`` templates, a templated default."""
    script = tmp / "listener.py"
    script.write_text(LISTENER)
    record = tmp / "newer"
    return {
        "command": f'exec "{sys.executable}" "{script}" ${{{{ ports[0] }}}} "{record}" -'
        ' "$0" "$1" { runtime_path }',
        "shell": "/bin/sh",
        "default_arguments": {"--marker": "m{ports[0]}"},
    }


def _fix_leaky_and_shell(defs: dict[str, Any]) -> None:
    # `shell`: shell syntax passes through; `leaky`: uses `out`, a result of another service.
    defs["shell"]["command"] += ["${HOME}", "$HOME", "${{HOME}}", "{{literal}}"]
    defs["leaky"]["command"] += ["{out[out]}"]
    defs["prestart"]["command"] += ["{out[out]}|{out[err]}|{out[exit_code]}"]


@pytest.fixture(scope="module")
def services(
    agent_loop: asyncio.AbstractEventLoop,
    runner_choice: RunnerChoice,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServiceKernel]:
    if runner_choice.flavour == "upstream":
        pytest.skip("upstream reads service definitions only from /etc/backend.ai/service-defs")
    tmp = tmp_path_factory.mktemp("services")
    defs = definitions(tmp)
    _fix_leaky_and_shell(defs)
    directory = write_definitions(tmp / "defs", **defs)
    env = dict(runner_choice.env)
    for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR"):
        env[name] = str(tmp / name.lower())
    # The runner's python (with jupyter_server) is the image's runtime: {runtime_path}.
    args = ["--service-def-dir", str(directory), "python", runner_choice.python]
    command = local_runner_command(runner_choice.python, tmp / "runner", env, *args)
    ports = dict(zip(defs, free_ports(len(defs)), strict=True))
    session = open_session(agent_loop, command, tmp)
    try:
        session.set_service_ports(ports)
        yield ServiceKernel(session, tmp, ports)
    finally:
        session.stop()  # the agent's sockets, then the runner and its services


def test_get_apps_merges_definitions(services: ServiceKernel) -> None:
    apps = services.session.run(services.session.kernel.get_service_apps())
    by_name = {app["name"]: app for app in apps["data"]}
    assert apps["status"] == "done" and "broken" not in by_name
    assert by_name["jupyter"] == {"name": "jupyter", "url_template": "http://{host}:{port}/"}
    assert by_name["typed"] == {
        "name": "typed",
        "allowed_arguments": ["--auth"],
        "allowed_envs": ["PASSWORD"],
    }


def test_real_jupyter_server_answers_http(services: ServiceKernel) -> None:
    port = services.ports["jupyter"]
    result = services.start_until_known("jupyter")
    assert result["status"] in ("started", "running"), result
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api", timeout=30) as response:
        assert response.status == 200
        assert "version" in json.loads(response.read())
    assert services.start("jupyter") == {"status": "running"}
    services.stop("jupyter")
    assert wait_port_closed(port)


def test_failures_say_the_real_cause(services: ServiceKernel) -> None:
    tmp, ports = services.tmp, services.ports
    expected = {
        "missing": "the program of missing is not found: /nonexistent/program",
        "noexec": f"the program of noexec is not executable: {tmp / 'not-executable'}"
        " (Permission denied)",
        "exits": f"exits exited with status 3 before opening port {ports['exits']};"
        " last output:\nfirst\nsecond line",
        "slow": f"slow did not open port {ports['slow']} on 127.0.0.1 within 1 s, so it was"
        " stopped; no output",
        "broken": f"service definition {tmp / 'defs' / 'broken.json'}: unknown field 'foo' (known:"
        " allowed_arguments, allowed_envs, command, default_arguments, env, noop, prestart,"
        " prestart_actions, shell, start_timeout, url_template)",
        "hangs_prestart": "prestart action 0 (run_command) of hangs_prestart: sleep did not"
        " finish in 0.5 s",
    }
    for name, error in expected.items():
        assert services.start(name) == {"status": "failed", "error": error}, name


def test_port_held_by_another_process(services: ServiceKernel) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", services.ports["held"]))
        holder.listen()
        assert services.start("held") == {
            "status": "failed",
            "error": f"port {services.ports['held']} of held is already in use by another process",
        }
    assert records(services.tmp / "held") == []  # never spawned


def test_disallowed_options(services: ServiceKernel) -> None:
    assert services.start("typed", arguments={"--bind": "0.0.0.0"}) == {
        "status": "failed",
        "error": "argument --bind is not allowed for service typed",
    }
    assert services.start("typed", envs={"LD_PRELOAD": "x"}) == {
        "status": "failed",
        "error": "environment variable LD_PRELOAD is not allowed for service typed",
    }


def test_typed_defaults_are_kept(services: ServiceKernel) -> None:
    options = {"arguments": {"--auth": "password"}, "envs": {"PASSWORD": "secret"}}
    assert services.start("typed", **options) == {"status": "started"}
    [started] = records(services.tmp / "typed")
    assert started["argv"] == ["--workers", "3", "--verbose", "--auth", "password"]
    assert started["password"] == "secret"
    services.stop("typed")


def test_shell_syntax_passes_through(services: ServiceKernel) -> None:
    assert services.start("shell") == {"status": "started"}
    [started] = records(services.tmp / "shell")
    assert started["argv"] == ["${HOME}", "$HOME", "${HOME}", "{literal}"]
    services.stop("shell")


def test_prestart_results_stay_with_their_start(services: ServiceKernel) -> None:
    port = services.ports["prestart"]
    assert services.start("prestart") == {"status": "started"}
    services.stop("prestart")
    assert wait_port_closed(port)
    assert services.start("prestart") == {"status": "started"}
    services.stop("prestart")
    # run_command: no trailing newline, its exit status; write_file appended both times.
    assert [r["argv"] for r in records(services.tmp / "prestart")] == [["value||4"]] * 2
    assert (services.tmp / "appended").read_text() == f"port {port}\n" * 2
    # `out` was a variable of those starts only, never of another service.
    assert services.start("leaky") == {
        "status": "failed",
        "error": "command[6] of leaky: unknown variable {out[out]} (known: ports, runtime_path)",
    }


def test_a_definition_of_the_newer_dialect(
    services: ServiceKernel, runner_choice: RunnerChoice
) -> None:
    port = services.ports["newer"]
    assert services.start("newer") == {"status": "started"}
    [started] = records(services.tmp / "newer")
    # bash -c's arguments after the command are $0, $1, ...: the default arguments.
    assert started["argv"] == ["--marker", f"m{port}", runner_choice.python]
    services.stop("newer")


def test_noop_is_started(services: ServiceKernel) -> None:
    assert services.start("noop") == {"status": "started"}


def test_status_answered_while_five_start_and_one_hangs(services: ServiceKernel) -> None:
    kernel = services.session.kernel
    names = [f"quick{i}" for i in range(5)] + ["hangs"]

    async def scenario() -> tuple[list[dict[str, Any]], int]:
        starts = [asyncio.ensure_future(kernel.start_service(name, {})) for name in names]
        statuses = 0
        while not all(task.done() for task in starts):
            status = await kernel.check_status()
            assert status is not None and "started_at" in status
            statuses += 1
            await asyncio.sleep(0.05)
        return [task.result() for task in starts], statuses

    results, statuses = services.session.run(scenario(), timeout=60)
    assert statuses > 1
    # The agent matches replies by arrival order: count them, not who got which.
    assert sorted(r["status"] for r in results) == ["failed"] + ["started"] * 5
    assert {"status": "failed", "error": f"hangs {STILL_STARTING}"} in results
    for name in names:
        services.stop(name)
