"""Fixtures that start runners on free ports, each driven by the agent side of the protocol."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ai.backend.kernel.agent_client import AgentClient
from tests.support import processes
from tests.support.processes import (
    free_ports,
    start_process,
    stop_process_tree,
    write_intrinsic_ports,
)

START_TIMEOUT = 60.0  # seconds until a runner must answer its first `status`
RECORD_TIMEOUT = 30.0  # seconds a test waits for any one record


@dataclass
class RunningKernel:
    agent: AgentClient
    process: subprocess.Popen[bytes]
    work_dir: Path
    private_tmp: Path
    in_port: int  # the runner's ops port (the agent's PUSH connects here)
    out_port: int  # the runner's records port
    intrinsic_ports: dict[str, int]  # its intrinsic-ports.json ("sshd", "ttyd", ...)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=20)

    def runner_alive(self) -> bool:
        return self.process.poll() is None


def hermetic_env(tmp: Path, private_tmp: Path) -> dict[str, str]:
    """The test's environment, with Jupyter state in temp dirs and a python3 kernelspec."""
    env = dict(os.environ)
    for name in ("JUPYTER_PATH", "JUPYTER_DATA_DIR", "JUPYTER_CONFIG_DIR", "IPYTHONDIR"):
        env[name] = str(tmp / name.lower())
    env["JUPYTER_RUNTIME_DIR"] = str(tmp / "jrt")
    # jedi's cache (IPython completion): parso rewrites it in place, so a kernel killed mid-write
    # leaves a truncated file on which every later completion from the shared cache answers [].
    env["XDG_CACHE_HOME"] = str(tmp / "cache")
    spec_dir = tmp / "jupyter_path" / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec = {"argv": argv, "display_name": "Python 3", "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    # The runner and its children must import what this test process imports (Pants sandbox).
    env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p) for p in sys.path if p)
    env["TMPDIR"] = str(private_tmp)
    return env


StartKernel = Callable[..., RunningKernel]


class KernelLauncher:
    """Starts runners under ``root`` and stops them all at teardown."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.started: list[RunningKernel] = []

    def __call__(
        self,
        runtime: str = "git",
        *extra: str,
        env: dict[str, str] | None = None,
        ports: bool = True,
        files: dict[str, str] | None = None,
        ready: bool = True,
    ) -> RunningKernel:
        """Start a runner; ``files`` maps paths relative to its dirs ("work/x") to contents,
        written before it starts. With ``ready``, return once it has answered `status`.
        Its sshd and ttyd get free ports in its intrinsic-ports.json (with its ops and records
        ports too unless ``ports``, which passes those as options)."""
        base = self.root / f"k{len(self.started)}"
        work_dir, config_dir = base / "work", base / "config"
        work_dir.mkdir(parents=True)
        config_dir.mkdir()
        in_port, out_port = free_ports()
        repl_ports = {} if ports else {"replin": in_port, "replout": out_port}
        intrinsic = write_intrinsic_ports(config_dir, **repl_ports)
        for relative, content in (files or {}).items():
            path = base / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
        # Short, so that Unix socket paths in the runner's private dir fit in sun_path.
        private_tmp = Path(tempfile.mkdtemp(prefix="bai-test-"))
        process_env = hermetic_env(base, private_tmp)
        process_env.update(env or {})
        argv = [sys.executable, "-s", "-m", "ai.backend.kernel", runtime]
        argv += ["--work-dir", str(work_dir), "--config-dir", str(config_dir)]
        argv += ["--bind", "127.0.0.1", "--input-socket", str(base / "input.sock")]
        if ports:
            argv += ["--repl-in-port", str(in_port), "--repl-out-port", str(out_port)]
        argv += extra  # options given by the test override the defaults above
        process = start_process(argv, cwd=work_dir, env=process_env)
        agent = AgentClient(in_port, out_port, timeout=RECORD_TIMEOUT)
        kernel = RunningKernel(agent, process, work_dir, private_tmp, in_port, out_port, intrinsic)
        agent.alive = kernel.runner_alive
        self.started.append(kernel)
        if ready:
            agent.first_status(START_TIMEOUT)
        return kernel

    def stop_all(self) -> None:
        for kernel in self.started:
            kernel.agent.close()
            # A runner that hangs must not leak its children (e.g. the Jupyter kernel).
            stop_process_tree(kernel.process, grace=20)
            shutil.rmtree(kernel.private_tmp, ignore_errors=True)


@pytest.fixture
def start_kernel(tmp_path: Path) -> Iterator[StartKernel]:
    launcher = KernelLauncher(tmp_path)
    yield launcher
    launcher.stop_all()


@pytest.fixture(scope="module")
def start_module_kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartKernel]:
    """For runners shared by a test module (e.g. one Jupyter kernel for many snippets)."""
    launcher = KernelLauncher(tmp_path_factory.mktemp("shared"))
    yield launcher
    launcher.stop_all()


@pytest.fixture
def wait_until() -> Callable[..., bool]:
    return processes.wait_until
