"""The services of every kernel: sshd (dropbear, its keys, the cluster's ssh config) and ttyd.

sshd: the login user's key pair is made once (``~/.ssh/authorized_keys`` holds the public key,
``~/id_container`` the private one, for the user to download), the host key once per runner.
In a cluster session (``/home/config/ssh/id_cluster``), ``~/.ssh/config`` gets one block per
peer and ``id_cluster.pub`` is authorized.  Each of these steps stands on its own: a failure is
logged and the others still happen; only the host key is required to start dropbear.
"""

from __future__ import annotations

import json
import logging
import os
import pwd
import re
import shutil
import stat
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..subprocesses import run_to_end
from .actions import write_atomically
from .errors import ServiceStartError
from .host import Launcher, ServiceRequest
from .spec import ServiceSpec, service_env

log = logging.getLogger(__name__)

SSHD_PORT = 2200
TTYD_PORT = 7681
AGENT_BIN = Path("/opt/kernel")
"""Where the agent mounts dropbear (``dropbearmulti`` since agent 24.9, the separate programs
before) and tmux; ``--agent-bin-dir`` moves it."""
TTYD_BIN = Path("/opt/backend.ai/bin/ttyd")
"""Where the krunner volume has ttyd."""
RSA_BITS = "2048"
TOOL_TIMEOUT = 60.0
SHELLS = ("zsh", "bash", "ash")
"""ttyd's shell: the first of these in /bin, else sh."""


def find_program(name: str, preferred: Path, path: str) -> str:
    """``preferred`` if it is an executable, else ``name`` on ``path``."""
    if os.access(preferred, os.X_OK):
        return str(preferred)
    found = shutil.which(name, path=path)
    if found is None:
        raise ServiceStartError(f"{name} not found: looked for {preferred} and on PATH ({path})")
    return found


async def run_tool(argv: Sequence[str], env: Mapping[str, str]) -> str:
    """Run a helper program to completion; its stdout, or an error quoting its stderr."""
    try:
        done = await run_to_end(argv, TOOL_TIMEOUT, env)
    except TimeoutError:
        raise ServiceStartError(f"{argv[0]} did not finish within {TOOL_TIMEOUT:g} s") from None
    if done.returncode != 0:
        message = done.err.decode(errors="replace").strip()[-500:]
        raise ServiceStartError(f"{' '.join(argv)} exited with status {done.returncode}: {message}")
    return done.out.decode(errors="replace")


def restrict_mode(path: Path, mode: int) -> None:
    """Drop group and other permissions, which make sshd ignore the file."""
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        path.chmod(mode)


DROPBEAR_PROGRAMS = ("dropbear", "dropbearkey", "dropbearconvert")


@dataclass(frozen=True)
class Dropbear:
    """How to run each dropbear program: an argv prefix, the program's arguments follow.

    Agents 24.9 and later mount one multi-call binary, ``dropbearmulti``, that is told the
    program as its first argument (``dropbearmulti dropbearkey -t rsa …``); agents 24.3 mount
    the separate programs; outside a container they are on PATH."""

    server: tuple[str, ...]
    keygen: tuple[str, ...]
    convert: tuple[str, ...]

    @classmethod
    def find(cls, path: str, agent_bin: Path = AGENT_BIN) -> Dropbear:
        """``agent_bin/dropbearmulti``, else ``agent_bin/dropbear{,key,convert}``, else each
        program on ``path``; the error of a missing program lists every place looked at."""
        multi = agent_bin / "dropbearmulti"
        if os.access(multi, os.X_OK):
            return cls(*((str(multi), name) for name in DROPBEAR_PROGRAMS))
        found: list[tuple[str, ...]] = []
        for name in DROPBEAR_PROGRAMS:
            separate = agent_bin / name
            if os.access(separate, os.X_OK):
                found.append((str(separate),))
            elif on_path := shutil.which(name, path=path):
                found.append((on_path,))
            else:
                raise ServiceStartError(
                    f"{name} not found: looked for {multi} (multi-call), {separate} and on"
                    f" PATH ({path})"
                )
        return cls(*found)


@dataclass(frozen=True)
class SshFiles:
    home: Path  # the login user's home (/home/work): .ssh/ and id_container
    config_dir: Path  # the agent's /home/config: ssh/id_cluster, ssh/port-mapping.json
    state_dir: Path  # private to this runner: the host key

    @property
    def ssh_dir(self) -> Path:
        return self.home / ".ssh"

    @property
    def authorized_keys(self) -> Path:
        return self.ssh_dir / "authorized_keys"

    @property
    def ssh_config(self) -> Path:
        return self.ssh_dir / "config"

    @property
    def id_container(self) -> Path:
        return self.home / "id_container"

    @property
    def host_key(self) -> Path:
        return self.state_dir / "dropbear_rsa_host_key"

    @property
    def cluster_key(self) -> Path:
        return self.config_dir / "ssh" / "id_cluster"

    @property
    def port_mapping(self) -> Path:
        return self.config_dir / "ssh" / "port-mapping.json"


def public_key_line(dropbearkey_output: str) -> str:
    """The ``ssh-rsa AAAA… user@host`` line that dropbearkey prints."""
    for line in dropbearkey_output.splitlines():
        if line.startswith("ssh-"):
            return line.strip()
    raise ServiceStartError(f"no public key in dropbearkey's output: {dropbearkey_output[:200]!r}")


async def set_up_user_key(files: SshFiles, tools: Dropbear, env: Mapping[str, str]) -> None:
    """Make the login key pair unless ``authorized_keys`` exists (then only fix its modes).
    ``authorized_keys`` is written last, so that a failed attempt is made again next time."""
    files.ssh_dir.mkdir(mode=0o700, exist_ok=True)
    restrict_mode(files.ssh_dir, 0o700)
    if files.authorized_keys.exists():
        restrict_mode(files.authorized_keys, 0o600)
        return
    with tempfile.TemporaryDirectory(dir=files.state_dir) as temp:
        dropbear_key, openssh_key = Path(temp) / "id_dropbear", Path(temp) / "id_container"
        output = await run_tool(
            [*tools.keygen, "-t", "rsa", "-s", RSA_BITS, "-f", str(dropbear_key)], env
        )
        public = public_key_line(output)
        await run_tool(
            [*tools.convert, "dropbear", "openssh", str(dropbear_key), str(openssh_key)], env
        )
        write_atomically(files.id_container, openssh_key.read_text())
    write_atomically(files.authorized_keys, f"{public}\n")
    log.info("sshd: made a key pair; the private key is %s", files.id_container)


async def ensure_host_key(files: SshFiles, tools: Dropbear, env: Mapping[str, str]) -> None:
    if not files.host_key.exists():
        await run_tool([*tools.keygen, "-t", "rsa", "-s", RSA_BITS, "-f", str(files.host_key)], env)


@dataclass(frozen=True)
class Peer:
    """One ``Host`` block of the cluster's ssh config."""

    pattern: str
    port: int
    hostname: str | None = None

    def block(self, identity: Path) -> str:
        lines = [f"Host {self.pattern}"]
        if self.hostname is not None:
            lines.append(f"  HostName {self.hostname}")
        lines += [f"  Port {self.port}", "  StrictHostKeyChecking no", f"  IdentityFile {identity}"]
        return "\n".join(lines) + "\n"


def cluster_peers(files: SshFiles, env: Mapping[str, str]) -> list[Peer]:
    """From ``port-mapping.json`` (``{host: [hostname, port]}``) if the agent wrote one, else one
    pattern per role of ``BACKENDAI_CLUSTER_REPLICAS`` (``role:count,…``) on port 2200."""
    if not files.port_mapping.exists():
        return role_peers(env.get("BACKENDAI_CLUSTER_REPLICAS", "main:1"))
    mapping = json.loads(files.port_mapping.read_text())
    if not isinstance(mapping, dict) or not all(_is_address(v) for v in mapping.values()):
        raise ValueError(f"{files.port_mapping}: expected {{host: [hostname, port]}}")
    return [Peer(host, port, hostname) for host, (hostname, port) in mapping.items()]


def role_peers(replicas: str) -> list[Peer]:
    roles = [item.partition(":")[0].strip() for item in replicas.split(",")]
    if not all(roles):
        raise ValueError(f"BACKENDAI_CLUSTER_REPLICAS: expected role:count,…, got {replicas!r}")
    return [Peer(f"{role}*", SSHD_PORT) for role in roles]


def _is_address(value: object) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], int)
    )


def configured_hosts(config_text: str) -> set[str]:
    """The patterns of the ``Host`` lines already in an ssh config."""
    hosts: set[str] = set()
    for line in config_text.splitlines():
        words = line.split()
        if len(words) > 1 and words[0].lower() == "host":
            hosts.update(words[1:])
    return hosts


def add_cluster_config(files: SshFiles, env: Mapping[str, str]) -> None:
    """Add the peers missing from ``~/.ssh/config`` and authorize ``id_cluster.pub``."""
    if not files.cluster_key.exists():
        return
    files.ssh_dir.mkdir(mode=0o700, exist_ok=True)
    config = files.ssh_config.read_text() if files.ssh_config.exists() else ""
    known = configured_hosts(config)
    blocks = [
        p.block(files.cluster_key) for p in cluster_peers(files, env) if p.pattern not in known
    ]
    if blocks:
        separator = "\n" if config and not config.endswith("\n") else ""
        write_atomically(files.ssh_config, config + separator + "".join(blocks))
    public_key = files.cluster_key.with_name("id_cluster.pub")
    if public_key.exists():
        authorize(files.authorized_keys, public_key.read_text().strip())


def authorize(authorized_keys: Path, key: str) -> None:
    """Add a key line unless it is there already."""
    text = authorized_keys.read_text() if authorized_keys.exists() else ""
    if key and key not in (line.strip() for line in text.splitlines()):
        separator = "\n" if text and not text.endswith("\n") else ""
        write_atomically(authorized_keys, f"{text}{separator}{key}\n")


async def prepare_sshd(files: SshFiles, tools: Dropbear, env: Mapping[str, str]) -> None:
    """Every key and config step; only a missing host key stops sshd from starting."""
    files.state_dir.mkdir(parents=True, exist_ok=True)
    try:
        await set_up_user_key(files, tools, env)
    except (ServiceStartError, OSError) as e:
        log.error("sshd: no login key pair: %s", e)
    try:
        add_cluster_config(files, env)
    except (OSError, ValueError) as e:
        log.error("sshd: no cluster ssh config: %s", e)
    await ensure_host_key(files, tools, env)


async def help_text(argv: Sequence[str], env: Mapping[str, str]) -> str:
    """What a program prints for its usage (either stream, whatever its exit status)."""
    try:
        return (await run_to_end(argv, TOOL_TIMEOUT, env, merge_stderr=True)).out.decode(
            errors="replace"
        )
    except TimeoutError:
        return ""


def sshd_argv(
    dropbear: Sequence[str],
    host_key: Path,
    ports: Sequence[int],
    pass_env: bool,
    allow_root: bool = False,
) -> list[str]:
    """Foreground, log to stderr, no root passwords, no root logins unless ``allow_root``, 15 s
    keepalive, no idle timeout; ``-e`` (dropbear 2022.82+) gives sessions the service's
    environment."""
    no_root = [] if allow_root else ["-w"]
    argv = [*dropbear, "-r", str(host_key), "-E", "-F", "-g", *no_root, "-K", "15", "-I", "0"]
    if pass_env:
        argv.append("-e")
    for port in ports:
        argv += ["-p", f"0.0.0.0:{port}"]
    return argv


def root_works_here(home: Path) -> bool:
    """Whether the user of ``home`` is root, the runner's own user: then only root can use the
    keys made there.  (In a container, the runner's root has its own home and the user is
    ``work``, so root logins stay off.)"""
    try:
        root_home = Path(pwd.getpwuid(0).pw_dir)
    except KeyError:
        return False
    return os.getuid() == 0 and root_home.resolve() == home.resolve()


def choose_shell(bin_dir: Path = Path("/bin")) -> str:
    for name in SHELLS:
        if (bin_dir / name).exists():
            return str(bin_dir / name)
    return str(bin_dir / "sh")


def ttyd_argv(ttyd: str, port: int, shell: str, tmux: str | None, writable: bool) -> list[str]:
    """The shell in one tmux session that every browser tab attaches to (the agent's
    ``.tmux.conf`` starts with ``new-session``), except under ash (Alpine's tmux problems).
    ``-W`` where ttyd knows it: since 1.7, terminals are read-only without it."""
    argv = [ttyd, "-p", str(port)]
    if writable:
        argv.append("-W")
    argv.append(shell)
    if tmux is not None and Path(shell).name != "ash":
        argv += ["-c", f"export SHELL={shell}; {tmux} -2 attach"]
    return argv


def lists_option(usage: str, option: str) -> bool:
    """Whether a usage text documents ``option`` at the start of one of its lines."""
    return any(option in re.split(r"[\s,]+", line.strip())[:2] for line in usage.splitlines())


class IntrinsicServices:
    """Describe sshd and ttyd to the service host for each start (boot-time and on request):
    the keys and usage probes their command needs, then their spec."""

    def __init__(
        self, files: SshFiles, env: Mapping[str, str], agent_bin: Path = AGENT_BIN
    ) -> None:
        self.files = files
        self.agent_bin = agent_bin  # where the agent mounts its binaries (/opt/kernel)
        self.runner_env = env  # the runner's own mapping: it changes until the runner is up
        self._usages: dict[tuple[str, ...], str] = {}  # (*program, help flag) -> usage text

    @property
    def env(self) -> dict[str, str]:
        return service_env(self.runner_env)

    def launchers(self) -> dict[str, Launcher]:
        return {"sshd": self.sshd, "ttyd": self.ttyd}

    async def documents(self, program: Sequence[str], help_flag: str, option: str) -> bool:
        """Whether the usage of ``program`` (an argv prefix: ``dropbearmulti dropbear -h``, not
        ``dropbearmulti -h``) lists ``option``; asked once per program, not per start."""
        key = (*program, help_flag)
        usage = self._usages.get(key) or await help_text([*program, help_flag], self.env)
        if usage:  # empty after a timeout: ask again next time
            self._usages[key] = usage
        return lists_option(usage, option)

    async def sshd(self, request: ServiceRequest) -> ServiceSpec:
        ports = _ports(request)
        tools = Dropbear.find(self.env.get("PATH", ""), self.agent_bin)
        await prepare_sshd(self.files, tools, self.env)
        pass_env = await self.documents(tools.server, "-h", "-e")
        allow_root = root_works_here(self.files.home)
        argv = sshd_argv(tools.server, self.files.host_key, ports, pass_env, allow_root)
        return _spec("sshd", argv, ports[0])

    async def ttyd(self, request: ServiceRequest) -> ServiceSpec:
        port = _ports(request)[0]
        path = self.env.get("PATH", "")
        ttyd = find_program("ttyd", TTYD_BIN, path)
        tmux = self.agent_bin / "tmux"
        tmux_path = str(tmux) if os.access(tmux, os.X_OK) else shutil.which("tmux", path=path)
        writable = await self.documents([ttyd], "--help", "--writable")
        return _spec("ttyd", ttyd_argv(ttyd, port, choose_shell(), tmux_path, writable), port)


def _spec(name: str, argv: list[str], port: int) -> ServiceSpec:
    """Their argv is final (paths, not templates); they run in the work directory with the
    runner's child environment and start timeout."""
    return ServiceSpec(name, tuple(argv), literal=True, probe_port=port)


def _ports(request: ServiceRequest) -> tuple[int, ...]:
    """The primary port first, then the others."""
    ports = tuple(dict.fromkeys(p for p in (request.port, *request.ports) if p is not None))
    if not ports:
        raise ServiceStartError(f"{request.name}: no port given")
    return ports
