# mypy: disable-error-code="no-untyped-call"
"""A real SSH login through the agent's own code: the agent's `start_service("sshd")` answered
by the runner installed from the wheel, then OpenSSH's ssh logs into its dropbear with the
key the runner generated and sees the container environment.

dropbear is where the agent of the run mounts it (harness.agent_bin_dir): the separate
programs under agent 24.3, the real ``dropbearmulti`` of backend.ai-kernel-binary under 24.9
and 25.x, which every dropbear step (keys, conversion, usage probe, server) must go through."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import psutil
import pytest

from tests.agent.harness import MULTI_CALL_DROPBEAR, RunnerChoice, agent_bin_dir, open_session
from tests.support.processes import local_runner_command, wait_until
from tests.support.ssh import (
    assert_login_sees_environment,
    login_as_me,
    private_passwd_missing,
    ssh_tools_missing,
    with_private_passwd,
)


def cmdline(proc: psutil.Process) -> list[str]:
    """A process's argv; empty once it has exited (an ssh session's process may have)."""
    try:
        return proc.cmdline()
    except psutil.Error:
        return []


MARKER = "BAI_CONTAINER_MARKER=from-environ-txt"  # a line of environ.txt
BOOT_WAIT = 90.0  # seconds for the boot-time start (two RSA keys on a busy machine)


# The static dropbearmulti ignores nss_wrapper: it needs a private /etc/passwd.
MISSING = ssh_tools_missing(dropbear=not MULTI_CALL_DROPBEAR) or (
    private_passwd_missing() if MULTI_CALL_DROPBEAR else None
)


@pytest.mark.skipif(MISSING is not None, reason=str(MISSING))
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
    bin_dir = str(agent_bin_dir(tmp_path))
    command = local_runner_command(
        runner_choice.python, base, env, "--agent-bin-dir", bin_dir, "git"
    )
    if MULTI_CALL_DROPBEAR:
        command = replace(command, argv=with_private_passwd(tmp_path, command.argv))
    port = json.loads((base / "config" / "intrinsic-ports.json").read_text())["sshd"]
    session = open_session(agent_loop, command, tmp_path)
    try:
        sshd = {"name": "sshd", "protocol": "tcp", "container_ports": [port], "host_ports": [None]}
        session.kernel.service_ports = cast(Any, [{**sshd, "is_inference": False}])
        assert wait_until(lambda: (home / "id_container").exists(), BOOT_WAIT), "no key made"
        reply = session.run(session.kernel.start_service("sshd", {}), timeout=BOOT_WAIT)
        assert reply in ({"status": "started"}, {"status": "running"}), reply

        assert_login_sees_environment(user, home, port, MARKER)
        # The server (and a session's fork of it, if still there) is the agent's dropbear.
        argvs = [argv for argv in map(cmdline, session.runner.descendants()) if "-F" in argv]
        servers = {tuple(argv[:2] if MULTI_CALL_DROPBEAR else argv[:1]) for argv in argvs}
        if MULTI_CALL_DROPBEAR:
            assert servers == {(f"{bin_dir}/dropbearmulti", "dropbear")}, argvs
        else:
            assert servers == {(f"{bin_dir}/dropbear",)}, argvs
    finally:
        session.stop()
