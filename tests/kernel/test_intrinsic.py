"""sshd and ttyd: program lookup, command lines, ssh keys and the cluster's ssh config."""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from ai.backend.kernel.services.errors import ServiceStartError
from ai.backend.kernel.services.host import ServiceRequest
from ai.backend.kernel.services.intrinsic import (
    Dropbear,
    IntrinsicServices,
    SshFiles,
    add_cluster_config,
    choose_shell,
    find_program,
    lists_option,
    prepare_sshd,
    sshd_argv,
    ttyd_argv,
)

needs_dropbear = pytest.mark.skipif(
    shutil.which("dropbearkey") is None or shutil.which("dropbearconvert") is None,
    reason="dropbearkey/dropbearconvert are not installed (Debian: dropbear-bin; .ci/run has it)",
)


def executable(path: Path, text: str = "#!/bin/sh\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o755)
    return path


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ---- programs and command lines ----------------------------------------------------------


def test_find_program_prefers_the_agent_mounted_binary(tmp_path: Path) -> None:
    preferred = executable(tmp_path / "opt" / "ttyd")
    executable(tmp_path / "bin" / "ttyd")
    assert find_program("ttyd", preferred, str(tmp_path / "bin")) == str(preferred)


def test_find_program_falls_back_to_path(tmp_path: Path) -> None:
    on_path = executable(tmp_path / "bin" / "ttyd")
    assert find_program("ttyd", tmp_path / "opt" / "ttyd", str(tmp_path / "bin")) == str(on_path)


def test_find_program_says_where_it_looked(tmp_path: Path) -> None:
    (tmp_path / "opt").mkdir()
    (tmp_path / "opt" / "ttyd").write_text("not executable")
    with pytest.raises(ServiceStartError) as raised:
        find_program("ttyd", tmp_path / "opt" / "ttyd", "/nowhere:/neither")
    assert str(raised.value) == (
        f"ttyd not found: looked for {tmp_path}/opt/ttyd and on PATH (/nowhere:/neither)"
    )


# ---- dropbear, however the agent ships it --------------------------------------------------


def dropbear_layout(tmp_path: Path, *names: str) -> tuple[Path, Path]:
    """An agent-binary dir and a PATH dir; ``agent/NAME`` or ``path/NAME`` stubs for ``names``."""
    agent_bin, on_path = tmp_path / "agent", tmp_path / "path"
    agent_bin.mkdir()
    on_path.mkdir()
    for name in names:
        executable(tmp_path / name)
    return agent_bin, on_path


def test_dropbear_prefers_the_multi_call_binary(tmp_path: Path) -> None:
    agent_bin, on_path = dropbear_layout(
        tmp_path, "agent/dropbearmulti", "agent/dropbear", "agent/dropbearkey", "path/dropbear"
    )
    multi = str(agent_bin / "dropbearmulti")
    assert Dropbear.find(str(on_path), agent_bin) == Dropbear(
        (multi, "dropbear"), (multi, "dropbearkey"), (multi, "dropbearconvert")
    )


def test_dropbear_separate_programs_of_the_agent_then_path(tmp_path: Path) -> None:
    agent_bin, on_path = dropbear_layout(
        tmp_path, "agent/dropbear", "agent/dropbearkey", "path/dropbearkey", "path/dropbearconvert"
    )
    assert Dropbear.find(str(on_path), agent_bin) == Dropbear(
        (str(agent_bin / "dropbear"),),
        (str(agent_bin / "dropbearkey"),),
        (str(on_path / "dropbearconvert"),),
    )


def test_a_non_executable_dropbearmulti_is_passed_over(tmp_path: Path) -> None:
    agent_bin, on_path = dropbear_layout(
        tmp_path, "path/dropbear", "path/dropbearkey", "path/dropbearconvert"
    )
    (agent_bin / "dropbearmulti").write_text("not executable")
    assert Dropbear.find(str(on_path), agent_bin).server == (str(on_path / "dropbear"),)


def test_a_missing_dropbear_lists_every_place_looked_at(tmp_path: Path) -> None:
    agent_bin, on_path = dropbear_layout(tmp_path, "path/dropbear")
    with pytest.raises(ServiceStartError) as raised:
        Dropbear.find(str(on_path), agent_bin)
    assert str(raised.value) == (
        f"dropbearkey not found: looked for {agent_bin}/dropbearmulti (multi-call),"
        f" {agent_bin}/dropbearkey and on PATH ({on_path})"
    )


# A stand-in for the agent's dropbearmulti: the program is its first argument; only
# `dropbearmulti dropbear -h` prints the server's usage (with -e).
FAKE_MULTI = """#!/bin/sh
echo "$*" >> "$(dirname "$0")/calls"
program="$1"; shift
case "$program" in
  dropbearkey) for arg; do key="$arg"; done; echo key > "$key"; echo "Public key portion is:"
               echo "ssh-rsa AAAAfake root@host";;
  dropbearconvert) echo converted > "$4";;
  dropbear) [ "$1" = -h ] && printf 'Usage: dropbear [options]\n-e\t\tPass on environment\n';;
  *) echo "unknown program $program" >&2; exit 1;;
esac
"""


def test_sshd_runs_every_dropbear_program_through_dropbearmulti(tmp_path: Path) -> None:
    agent_bin = tmp_path / "agent"
    multi = executable(agent_bin / "dropbearmulti", FAKE_MULTI)
    files = ssh_files(tmp_path)
    env = {"PATH": "/usr/bin:/bin"}
    services = IntrinsicServices(files, env, agent_bin)
    spec = asyncio.run(services.sshd(ServiceRequest("sshd", 2200)))
    assert list(spec.command[:2]) == [str(multi), "dropbear"]
    assert "-e" in spec.command  # the usage probe asked `dropbearmulti dropbear -h`
    calls = (agent_bin / "calls").read_text().splitlines()
    assert [call.split()[0] for call in calls] == [
        "dropbearkey",
        "dropbearconvert",
        "dropbearkey",
        "dropbear",
    ]
    assert calls[-1] == "dropbear -h"
    assert files.authorized_keys.read_text() == "ssh-rsa AAAAfake root@host\n"
    assert files.id_container.read_text() == "converted\n"


def test_sshd_argv() -> None:
    assert sshd_argv(["/opt/kernel/dropbear"], Path("/k/host_key"), [2200], pass_env=False) == [
        "/opt/kernel/dropbear", "-r", "/k/host_key", "-E", "-F", "-g", "-w", "-K", "15",
        "-I", "0", "-p", "0.0.0.0:2200",
    ]  # fmt: skip
    argv = sshd_argv("dropbear", Path("/k"), [2200, 2201], pass_env=True)
    assert argv[-5:] == ["-e", "-p", "0.0.0.0:2200", "-p", "0.0.0.0:2201"]
    assert "-w" not in sshd_argv("dropbear", Path("/k"), [2200], False, allow_root=True)


def test_ttyd_argv_attaches_tmux_except_under_ash() -> None:
    tmux = "/opt/kernel/tmux"
    assert ttyd_argv("ttyd", 7681, "/bin/bash", tmux, writable=False) == [
        "ttyd", "-p", "7681", "/bin/bash",
        "-c", "export SHELL=/bin/bash; /opt/kernel/tmux -2 attach",
    ]  # fmt: skip
    assert ttyd_argv("ttyd", 7681, "/bin/ash", tmux, writable=False) == [
        "ttyd", "-p", "7681", "/bin/ash"
    ]  # fmt: skip
    assert ttyd_argv("t", 1, "/bin/zsh", None, writable=True) == ["t", "-p", "1", "-W", "/bin/zsh"]


def test_choose_shell(tmp_path: Path) -> None:
    assert choose_shell(tmp_path) == f"{tmp_path}/sh"
    executable(tmp_path / "ash")
    assert choose_shell(tmp_path) == f"{tmp_path}/ash"
    executable(tmp_path / "bash")
    assert choose_shell(tmp_path) == f"{tmp_path}/bash"


DROPBEAR_USAGE = """Dropbear server v2022.83 https://matt.ucc.asn.au/dropbear/dropbear.html
-F\t\tDon't fork into background
-e\t\tPass on server process environment to child process
-E\t\tLog to stderr rather than syslog
"""
TTYD_17_HELP = """    -p, --port              Port to listen (default: 7681)
    -W, --writable          Allow clients to write to the TTY (readonly by default)
"""
TTYD_16_HELP = "    -R, --readonly          Do not allow clients to write to the TTY\n"


def test_lists_option() -> None:
    assert lists_option(DROPBEAR_USAGE, "-e")
    assert not lists_option(DROPBEAR_USAGE.replace("-e\t", "-x\t"), "-e")
    assert lists_option(TTYD_17_HELP, "--writable")
    assert not lists_option(TTYD_16_HELP, "--writable")


def test_a_programs_usage_is_asked_once_and_sees_the_runners_later_environment(
    tmp_path: Path,
) -> None:
    calls = tmp_path / "calls"
    ttyd = executable(
        tmp_path / "ttyd", f'#!/bin/sh\necho "$LATE" >> {calls}\necho "  -W, --writable"\n'
    )
    runner_env = {"PATH": os.environ["PATH"]}
    services = IntrinsicServices(ssh_files(tmp_path), runner_env)
    runner_env["LATE"] = "set after construction"

    async def ask_twice() -> list[bool]:
        return [await services.documents([str(ttyd)], "--help", o) for o in ("-W", "-R")]

    assert asyncio.run(ask_twice()) == [True, False]
    assert calls.read_text() == "set after construction\n"


# ---- keys ---------------------------------------------------------------------------------


def ssh_files(tmp_path: Path) -> SshFiles:
    home, config = tmp_path / "home", tmp_path / "config"
    home.mkdir()
    config.mkdir()
    return SshFiles(home, config, tmp_path / "state")


def dropbear_tools() -> Dropbear:
    return Dropbear.find(os.environ["PATH"] + ":/usr/sbin")


@needs_dropbear
def test_prepare_sshd_makes_a_matching_key_pair_once(tmp_path: Path) -> None:
    files = ssh_files(tmp_path)
    asyncio.run(prepare_sshd(files, dropbear_tools(), os.environ))
    public = files.authorized_keys.read_text()
    assert public.startswith("ssh-rsa ") and public.count("\n") == 1
    assert files.id_container.read_text().startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert (mode(files.ssh_dir), mode(files.authorized_keys), mode(files.id_container)) == (
        0o700,
        0o600,
        0o600,
    )
    assert files.host_key.stat().st_size > 0
    if shutil.which("ssh-keygen"):  # the private key is the one authorized
        derived = subprocess.run(
            ["ssh-keygen", "-y", "-f", str(files.id_container)], capture_output=True, text=True
        )
        assert derived.stdout.split()[:2] == public.split()[:2]
    private, host_key = files.id_container.read_text(), files.host_key.read_bytes()
    asyncio.run(prepare_sshd(files, dropbear_tools(), os.environ))
    assert (files.authorized_keys.read_text(), files.id_container.read_text()) == (public, private)
    assert files.host_key.read_bytes() == host_key


@needs_dropbear
def test_prepare_sshd_keeps_existing_keys_and_fixes_their_modes(tmp_path: Path) -> None:
    files = ssh_files(tmp_path)
    files.ssh_dir.mkdir(mode=0o755)
    files.authorized_keys.write_text("ssh-ed25519 AAAA mine\n")
    files.authorized_keys.chmod(0o644)
    asyncio.run(prepare_sshd(files, dropbear_tools(), os.environ))
    assert files.authorized_keys.read_text() == "ssh-ed25519 AAAA mine\n"
    assert (mode(files.ssh_dir), mode(files.authorized_keys)) == (0o700, 0o600)
    assert not files.id_container.exists()


@needs_dropbear
def test_a_failed_key_step_does_not_stop_the_host_key(tmp_path: Path) -> None:
    files = SshFiles(tmp_path / "a-file", tmp_path, tmp_path / "state")
    files.home.write_text("not a directory: no ~/.ssh possible")
    asyncio.run(prepare_sshd(files, dropbear_tools(), os.environ))
    assert files.host_key.exists()


def test_a_failed_keygen_is_reported_with_its_status(tmp_path: Path) -> None:
    failing = executable(tmp_path / "keygen", "#!/bin/sh\necho 'no entropy' >&2\nexit 3\n")
    tools = Dropbear(("dropbear",), (str(failing),), (str(failing),))
    files = ssh_files(tmp_path)
    with pytest.raises(ServiceStartError) as raised:
        asyncio.run(prepare_sshd(files, tools, os.environ))
    assert str(raised.value) == (
        f"{failing} -t rsa -s 2048 -f {files.host_key} exited with status 3: no entropy"
    )
    assert not files.authorized_keys.exists()  # so that the next start tries again


# ---- cluster ssh config -------------------------------------------------------------------


def cluster_files(tmp_path: Path) -> SshFiles:
    files = ssh_files(tmp_path)
    (files.config_dir / "ssh").mkdir()
    files.cluster_key.write_text("PRIVATE")
    files.cluster_key.with_name("id_cluster.pub").write_text("ssh-rsa CLUSTER peers\n")
    return files


def test_cluster_config_from_replicas_once(tmp_path: Path) -> None:
    files = cluster_files(tmp_path)
    files.ssh_dir.mkdir()
    files.ssh_config.write_text("Host mine\n  User me")
    files.authorized_keys.write_text("ssh-rsa USER key\n")
    env = {"BACKENDAI_CLUSTER_REPLICAS": "main:1,sub:2"}
    for _ in range(2):  # a second runner start adds nothing
        add_cluster_config(files, env)
    identity = files.cluster_key
    assert files.ssh_config.read_text() == (
        "Host mine\n  User me\n"
        f"Host main*\n  Port 2200\n  StrictHostKeyChecking no\n  IdentityFile {identity}\n"
        f"Host sub*\n  Port 2200\n  StrictHostKeyChecking no\n  IdentityFile {identity}\n"
    )
    assert files.authorized_keys.read_text() == "ssh-rsa USER key\nssh-rsa CLUSTER peers\n"
    assert mode(files.ssh_config) == 0o600


def test_cluster_config_from_port_mapping(tmp_path: Path) -> None:
    files = cluster_files(tmp_path)
    files.port_mapping.write_text('{"main1": ["10.0.0.2", 32001], "sub1": ["10.0.0.3", 32002]}')
    add_cluster_config(files, {})
    identity = files.cluster_key
    assert files.ssh_config.read_text() == (
        "Host main1\n  HostName 10.0.0.2\n  Port 32001\n  StrictHostKeyChecking no\n"
        f"  IdentityFile {identity}\n"
        "Host sub1\n  HostName 10.0.0.3\n  Port 32002\n  StrictHostKeyChecking no\n"
        f"  IdentityFile {identity}\n"
    )
    assert files.authorized_keys.read_text() == "ssh-rsa CLUSTER peers\n"


def test_no_cluster_config_without_a_cluster_key(tmp_path: Path) -> None:
    files = ssh_files(tmp_path)
    add_cluster_config(files, {"BACKENDAI_CLUSTER_REPLICAS": "main:1"})
    assert not files.ssh_config.exists()


@pytest.mark.parametrize(
    "mapping, replicas, error",
    [
        ('{"main1": ["10.0.0.2"]}', "", "port-mapping.json: expected {host: [hostname, port]}"),
        (None, "main:1,,sub:1", "BACKENDAI_CLUSTER_REPLICAS: expected role:count,…"),
    ],
)
def test_bad_cluster_settings_are_named(
    tmp_path: Path, mapping: str | None, replicas: str, error: str
) -> None:
    files = cluster_files(tmp_path)
    if mapping is not None:
        files.port_mapping.write_text(mapping)
    with pytest.raises(ValueError, match=error.replace("{", r"\{").replace("[", r"\[")):
        add_cluster_config(files, {"BACKENDAI_CLUSTER_REPLICAS": replicas})
