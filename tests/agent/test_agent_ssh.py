# mypy: disable-error-code="no-untyped-call"
"""A real SSH login through the agent's own code: the agent's `start_service("sshd")` answered
by the runner installed from the wheel, then OpenSSH's ssh logs into its dropbear with the
key the runner generated and sees the container environment."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, cast

import pytest

from tests.agent.harness import RunnerChoice, open_session
from tests.support.processes import local_runner_command, wait_until
from tests.support.ssh import assert_login_sees_environment, login_as_me, ssh_tools_missing

MARKER = "BAI_CONTAINER_MARKER=from-environ-txt"  # a line of environ.txt
BOOT_WAIT = 90.0  # seconds for the boot-time start (two RSA keys on a busy machine)


@pytest.mark.skipif(ssh_tools_missing() is not None, reason=str(ssh_tools_missing()))
def test_ssh_login_through_the_agent(
    agent_loop: asyncio.AbstractEventLoop, runner_choice: RunnerChoice, tmp_path: Path
) -> None:
    if runner_choice.flavour == "upstream":
        pytest.skip("upstream's runner is driven at fixed container paths, not a private home")
    base = tmp_path / "runner"
    home = base / "work"  # local_runner_command's work dir, made the user's home
    home.mkdir(parents=True)
    user, ssh_env = login_as_me(tmp_path, home)
    (base / "config").mkdir()
    (base / "config" / "environ.txt").write_text(f"{MARKER}\n")
    env = {**runner_choice.env, **ssh_env}
    command = local_runner_command(runner_choice.python, base, env, "git")
    port = json.loads((base / "config" / "intrinsic-ports.json").read_text())["sshd"]
    session = open_session(agent_loop, command, tmp_path)
    try:
        sshd = {"name": "sshd", "protocol": "tcp", "container_ports": [port], "host_ports": [None]}
        session.kernel.service_ports = cast(Any, [{**sshd, "is_inference": False}])
        assert wait_until(lambda: (home / "id_container").exists(), BOOT_WAIT), "no key made"
        reply = session.run(session.kernel.start_service("sshd", {}), timeout=BOOT_WAIT)
        assert reply in ({"status": "started"}, {"status": "running"}), reply

        assert_login_sees_environment(user, home, port, MARKER)
    finally:
        session.stop()
