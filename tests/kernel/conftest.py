"""A fake agent written from the wire protocol, and a fixture that starts runners on free ports."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import zmq

from ai.backend.kernel.protocol import Op, Record, decode_exit, decode_status
from tests.support.processes import free_ports, stop_process_tree

RECV_TIMEOUT_MS = 30_000


@dataclass
class Result:
    """Records as they arrived; their types stay ``str``, as read from the wire."""

    records: list[tuple[str, bytes]] = field(default_factory=list)

    def text(self, kind: Record) -> str:
        return b"".join(p for t, p in self.records if t == kind).decode()

    @property
    def stdout(self) -> str:
        return self.text(Record.STDOUT)

    @property
    def stderr(self) -> str:
        return self.text(Record.STDERR)

    def types(self) -> list[str]:
        return [t for t, _ in self.records if t not in (Record.STDOUT, Record.STDERR)]

    def exit_code(self, kind: Record = Record.FINISHED) -> int:
        return decode_exit(next(p for t, p in self.records if t == kind))

    def json_payloads(self, kind: Record) -> list[Any]:
        return [json.loads(p) for t, p in self.records if t == kind]

    def after(self, kind: Record) -> Result:
        """The records that follow the first one of ``kind``, e.g. an exec step's output."""
        index = next(i for i, (t, _) in enumerate(self.records) if t == kind)
        return Result(self.records[index + 1 :])


class FakeAgent:
    """Talks to the runner like the agent's AbstractCodeRunner: PUSH ops, PULL records."""

    def __init__(self, in_port: int, out_port: int) -> None:
        self.context = zmq.Context()
        self.push = self.context.socket(zmq.PUSH)
        self.pull = self.context.socket(zmq.PULL)
        for sock in (self.push, self.pull):
            sock.setsockopt(zmq.LINGER, 50)
        self.push.connect(f"tcp://127.0.0.1:{in_port}")
        self.pull.connect(f"tcp://127.0.0.1:{out_port}")
        self.runner_alive: Callable[[], bool] = lambda: True

    def send(self, op: Op, payload: str = "") -> None:
        self.push.send_multipart([op.encode(), payload.encode()])

    def send_frames(self, frames: list[bytes]) -> None:
        """Any frames at all, e.g. malformed messages."""
        self.push.send_multipart(frames)

    def recv(self, timeout_ms: int = RECV_TIMEOUT_MS) -> tuple[str, bytes]:
        deadline = time.monotonic() + timeout_ms / 1000
        while not self.pull.poll(100):
            if not self.runner_alive():
                raise RuntimeError("the runner exited")
            if time.monotonic() > deadline:
                raise TimeoutError("no record from the runner")
        kind, payload = self.pull.recv_multipart()
        return kind.decode(), payload

    def collect(self, *until: Record, inputs: list[str] | None = None) -> Result:
        """Gather records until each type in ``until`` has arrived once, answering inputs."""
        remaining: list[str] = list(until)
        answers, result = list(inputs or []), Result()
        while remaining:
            kind, payload = self.recv()
            result.records.append((kind, payload))
            if kind == Record.WAITING_INPUT and answers:
                self.send(Op.INPUT, answers.pop(0))
            if kind in remaining:
                remaining.remove(kind)
        return result

    def collect_until_stdout(self, marker: str) -> Result:
        """Gather records until the stdout so far contains ``marker``, e.g. the line a snippet
        prints (flushed) once it runs, so that an interrupt sent next finds it running."""
        result = Result()
        while marker.encode() not in b"".join(p for t, p in result.records if t == Record.STDOUT):
            result.records.append(self.recv())
        return result

    def status(self, timeout_ms: int = RECV_TIMEOUT_MS) -> dict[str, Any]:
        self.send(Op.STATUS)
        kind, payload = self.recv(timeout_ms)
        # Like the agent, which routes status replies to their own queue.
        while kind != Record.STATUS:
            kind, payload = self.recv(timeout_ms)
        return decode_status(payload)

    def query(self, code: str, inputs: list[str] | None = None) -> Result:
        self.send(Op.CODE, code)
        return self.collect(Record.FINISHED, inputs=inputs)

    def start_batch(self, clean: str = "", build: str = "", exec: str = "") -> None:
        """Send the three steps of a batch run, as the agent does."""
        for op, command in ((Op.CLEAN, clean), (Op.BUILD, build), (Op.EXEC, exec)):
            self.send(op, command)

    def batch(self, clean: str = "", build: str = "", exec: str = "", **kw: Any) -> Result:
        self.start_batch(clean, build, exec)
        return self.collect(Record.CLEAN_FINISHED, Record.BUILD_FINISHED, Record.FINISHED, **kw)

    def close(self) -> None:
        self.context.destroy(linger=0)


@dataclass
class RunningKernel:
    agent: FakeAgent
    process: subprocess.Popen[bytes]
    work_dir: Path
    private_tmp: Path
    in_port: int  # the runner's ops port (the agent's PUSH connects here)
    out_port: int  # the runner's records port

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=20)


def hermetic_env(tmp: Path, private_tmp: Path) -> dict[str, str]:
    """The test's environment, with Jupyter state in temp dirs and a python3 kernelspec."""
    env = dict(os.environ)
    for name in ("JUPYTER_PATH", "JUPYTER_DATA_DIR", "JUPYTER_CONFIG_DIR", "IPYTHONDIR"):
        env[name] = str(tmp / name.lower())
    env["JUPYTER_RUNTIME_DIR"] = str(tmp / "jrt")
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
    ) -> RunningKernel:
        """Start a runner; ``files`` maps paths relative to its dirs ("work/x") to contents,
        written before it starts."""
        base = self.root / f"k{len(self.started)}"
        work_dir, config_dir = base / "work", base / "config"
        work_dir.mkdir(parents=True)
        config_dir.mkdir()
        for relative, content in (files or {}).items():
            path = base / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
        # Short, so that Unix socket paths in the runner's private dir fit in sun_path.
        private_tmp = Path(tempfile.mkdtemp(prefix="bai-test-"))
        process_env = hermetic_env(base, private_tmp)
        process_env.update(env or {})
        in_port, out_port = free_ports(2)
        argv = [sys.executable, "-s", "-m", "ai.backend.kernel", runtime]
        argv += ["--work-dir", str(work_dir), "--config-dir", str(config_dir)]
        argv += ["--bind", "127.0.0.1", "--input-socket", str(base / "input.sock")]
        if ports:
            argv += ["--repl-in-port", str(in_port), "--repl-out-port", str(out_port)]
        else:
            ports_file = config_dir / "intrinsic-ports.json"
            ports_file.write_text(json.dumps({"replin": in_port, "replout": out_port}))
        argv += extra  # options given by the test override the defaults above
        # A session of its own, so that stop_all() can kill what is left of the runner's group.
        process = subprocess.Popen(argv, env=process_env, cwd=work_dir, start_new_session=True)
        kernel = RunningKernel(
            FakeAgent(in_port, out_port), process, work_dir, private_tmp, in_port, out_port
        )
        kernel.agent.runner_alive = lambda: process.poll() is None
        self.started.append(kernel)
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


def _wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@pytest.fixture
def wait_until() -> Callable[..., bool]:
    return _wait_until
