"""sshd and ttyd in a running runner, driven by the agent's client.

sshd is real: Debian's dropbear (dropbear-bin) and OpenSSH's ssh (.ci/run installs them), with
the runner under nss_wrapper (tests.support.ssh).  When the runner's user is root, the runner
leaves out dropbear's ``-w`` (no root logins), because only root can use those keys then.

ttyd cannot be installed here: a stand-in program records its command line and listens.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from ai.backend.kernel.environment import DEFAULT_PATH
from ai.backend.kernel.protocol import Op, Record
from ai.backend.kernel.services.intrinsic import AGENT_BIN, TTYD_BIN, choose_shell, ttyd_argv
from tests.kernel.conftest import RunningKernel, StartKernel
from tests.support.ssh import assert_login_sees_environment, login_as_me, ssh_tools_missing

MARKER = "BAI_CONTAINER_MARKER=from-environ-txt"  # a line of environ.txt
BOOT_WAIT = 90.0  # seconds for a boot-time start (two RSA keys on a busy machine)


# The boot-time process: "started" when the request joins the boot-time start that is still
# probing the port, "running" after it (a second process would find the port taken).
UP = [{"status": "running"}, {"status": "started"}]


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def start_service(kernel: RunningKernel, name: str, port: int) -> dict[str, str]:
    request = {"name": name, "port": port, "ports": [port], "protocol": "tcp", "options": {}}
    kernel.agent.send(Op.START_SERVICE, json.dumps(request))
    (reply,) = kernel.agent.collect(Record.SERVICE_RESULT).json_payloads(Record.SERVICE_RESULT)
    assert isinstance(reply, dict)
    return reply


# ---- sshd -------------------------------------------------------------------------------


@pytest.mark.skipif(ssh_tools_missing() is not None, reason=str(ssh_tools_missing()))
def test_ssh_login_with_the_generated_key_sees_the_container_environment(
    start_kernel: StartKernel, tmp_path: Path, wait_until: Callable[..., bool]
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    # A failing start-up step must not keep the keys from being made.
    (home / "bootstrap.sh").write_text("echo failing on purpose >&2\nexit 3\n")
    user, env = login_as_me(tmp_path, home)
    files = {"config/environ.txt": f"{MARKER}\n"}
    kernel = start_kernel("git", "--work-dir", str(home), env=env, files=files)
    sshd_port = kernel.intrinsic_ports["sshd"]  # free ones, from the fixture

    assert wait_until(lambda: port_open(sshd_port), timeout=BOOT_WAIT), "sshd did not start"
    assert start_service(kernel, "sshd", sshd_port) in UP
    assert "bootstrap.sh failed: exit code 3" in kernel.agent.batch(exec="true").stderr

    assert_login_sees_environment(user, home, sshd_port, MARKER)


# ---- ttyd (a stand-in) --------------------------------------------------------------------

STANDIN_TTYD = """#!{python}
import json, os, socket, sys
if "--help" in sys.argv:
    print("    -W, --writable          Allow clients to write to the TTY (readonly by default)")
    sys.exit(0)
with open(os.environ["TTYD_ARGV_FILE"], "w") as f:
    json.dump(sys.argv, f)
server = socket.create_server(("0.0.0.0", int(sys.argv[sys.argv.index("-p") + 1])))
while True:
    server.accept()[0].close()
"""

needs_no_real_ttyd = pytest.mark.skipif(
    os.access(TTYD_BIN, os.X_OK), reason=f"{TTYD_BIN} exists: the test needs it absent"
)


@needs_no_real_ttyd
def test_ttyd_starts_at_boot_with_its_command_line(
    start_kernel: StartKernel, tmp_path: Path, wait_until: Callable[..., bool]
) -> None:
    standin = tmp_path / "bin" / "ttyd"
    standin.parent.mkdir()
    standin.write_text(STANDIN_TTYD.format(python=sys.executable))
    standin.chmod(0o755)
    argv_file = tmp_path / "ttyd-argv.json"
    path = f"{standin.parent}:{DEFAULT_PATH}"
    kernel = start_kernel(env={"PATH": path, "TTYD_ARGV_FILE": str(argv_file)})
    ttyd_port = kernel.intrinsic_ports["ttyd"]

    assert wait_until(lambda: port_open(ttyd_port), timeout=BOOT_WAIT), "ttyd did not start"
    assert start_service(kernel, "ttyd", ttyd_port) in UP
    tmux = AGENT_BIN / "tmux"
    tmux_path = str(tmux) if os.access(tmux, os.X_OK) else shutil.which("tmux", path=path)
    expected = ttyd_argv(str(standin), ttyd_port, choose_shell(), tmux_path, writable=True)
    assert json.loads(argv_file.read_text()) == expected


@needs_no_real_ttyd
def test_ttyd_missing_says_where_it_looked(start_kernel: StartKernel, tmp_path: Path) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    kernel = start_kernel(env={"PATH": str(empty)})
    reply = start_service(kernel, "ttyd", kernel.intrinsic_ports["ttyd"])
    assert reply["status"] == "failed"
    # The runner's PATH is the one it was given, after the directories it puts first.
    assert reply["error"].startswith(f"ttyd not found: looked for {TTYD_BIN} and on PATH (")
    assert reply["error"].endswith(f":{empty})")
