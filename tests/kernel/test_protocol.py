"""The wire protocol, checked over real ZeroMQ sockets from the agent's side."""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ai.backend.kernel.protocol import Op, Record
from tests.support.processes import process, still_running

StartKernel = Callable[..., Any]


def gated_python_kernelspec(root: Path, gate: Path) -> Path:
    """A JUPYTER_PATH whose python3 kernel does not start before ``gate`` exists."""
    wait = f"while [ ! -e {shlex.quote(str(gate))} ]; do sleep 0.05; done"
    launch = f'{wait}; exec {shlex.quote(sys.executable)} -m ipykernel_launcher -f "$1"'
    spec = {"argv": ["sh", "-c", launch, "sh", "{connection_file}"], "language": "python"}
    spec_dir = root / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    return root


def test_status_is_msgpack_and_does_not_wait_for_the_jupyter_kernel(
    start_kernel: StartKernel, tmp_path: Path
) -> None:
    gate = tmp_path / "let-the-kernel-start"
    jupyter_path = gated_python_kernelspec(tmp_path / "jupyter", gate)
    kernel = start_kernel("python", env={"JUPYTER_PATH": str(jupyter_path)}, ready=False)
    reply = kernel.agent.status()  # the Jupyter kernel cannot have started: the gate is shut
    assert isinstance(reply["started_at"], float)
    gate.touch()
    assert kernel.agent.query("print('kernel up')").stdout == "kernel up\n"


def test_ports_from_intrinsic_ports_json(start_kernel: StartKernel) -> None:
    kernel = start_kernel("git", ports=False)
    assert "started_at" in kernel.agent.status()


def test_query_streams_output_and_exit_code(start_kernel: StartKernel) -> None:
    kernel = start_kernel("git")
    result = kernel.agent.query("echo out; echo err >&2; exit 3")
    assert result.stdout == "out\n"
    assert result.stderr == "err\n"
    assert result.exit_code() == 3


def test_batch_steps_always_finish(start_kernel: StartKernel) -> None:
    agent = start_kernel("git").agent
    result = agent.batch(clean="", build="", exec="echo $_BACKEND_BATCH_MODE")
    steps = (Record.CLEAN_FINISHED, Record.BUILD_FINISHED, Record.FINISHED)
    assert result.types() == list(steps)
    assert [result.exit_code(k) for k in steps] == [0, 0, 0]
    assert result.stdout == "1\n"


def test_failed_build_skips_exec_with_127(start_kernel: StartKernel) -> None:
    agent = start_kernel("git").agent
    result = agent.batch(build="exit 2", exec="echo must-not-run")
    assert result.exit_code(Record.BUILD_FINISHED) == 2
    assert result.exit_code() == 127
    assert "must-not-run" not in result.stdout
    # The failure is forgotten afterwards.
    assert agent.batch(exec="true").exit_code() == 0


def test_star_build_uses_makefile(start_kernel: StartKernel) -> None:
    kernel = start_kernel("git")
    (kernel.work_dir / "Makefile").write_text("all:\n\t@echo made\n")
    result = kernel.agent.batch(build="*", exec="")
    assert result.stdout == "made\n"
    assert result.exit_code(Record.BUILD_FINISHED) == 0


def test_star_without_heuristic_reports_127(start_kernel: StartKernel) -> None:
    result = start_kernel("git").agent.batch(exec="*")
    assert result.exit_code() == 127
    assert "heuristic" in result.stderr


def test_side_ops_always_answer(start_kernel: StartKernel) -> None:
    agent = start_kernel("git").agent
    agent.send(Op.COMPLETE, json.dumps({"code": "ec", "options": {}}))
    assert agent.recv() == (Record.COMPLETION, b"[]")
    agent.send(Op.GET_APPS, "")
    kind, payload = agent.recv()
    assert (kind, json.loads(payload)) == (Record.APPS_RESULT, {"status": "done", "data": []})
    agent.send(Op.START_SERVICE, json.dumps({"name": "jupyter", "port": 8080, "ports": [8080]}))
    kind, payload = agent.recv()
    assert kind == Record.SERVICE_RESULT
    assert json.loads(payload)["status"] == "failed"
    assert "jupyter" in json.loads(payload)["error"]
    agent.send(Op.START_MODEL_SERVICE, json.dumps({"name": "m", "service": {}}))
    kind, payload = agent.recv()
    assert (kind, json.loads(payload)["status"]) == (Record.MODEL_SERVICE_RESULT, "failed")
    # No reply for these, and the runner keeps answering.
    agent.send(Op.SHUTDOWN_SERVICE, '"jupyter"')
    agent.send(Op.EVENT, json.dumps({"type": "oom", "data": {}}))
    agent.send(Op.INTERRUPT, "")
    agent.send(Op.INPUT, "stale")
    assert "started_at" in agent.status()


def test_oom_event_is_shown_to_the_running_execution(start_kernel: StartKernel) -> None:
    agent = start_kernel("git", "--interrupt-grace", "0.5").agent
    agent.send(Op.CODE, "echo started; sleep 60")
    running = agent.collect_until_stdout("started\n")
    agent.send(Op.EVENT, json.dumps({"type": "oom", "data": {}}))
    agent.send(Op.INTERRUPT, "")
    rest = agent.collect(Record.FINISHED)  # the notice, if any, came before this execution ended
    assert rest.exit_code() != 0  # interrupted: the execution was running all along
    assert "out of memory" in running.stderr + rest.stderr


def test_malformed_messages_are_ignored(start_kernel: StartKernel) -> None:
    agent = start_kernel("git").agent
    agent.send_frames([b"status"])
    agent.send_frames([b"status", b"", b"extra"])
    agent.send_frames([b"\xff\xfe", b""])
    agent.send_frames([b"no-such-op", b""])
    agent.send_frames([b"code", b"\xff\xfe"])
    agent.send_frames([b"event", b"{not json"])
    agent.send_frames([b"complete", b"{not json"])
    assert agent.recv() == (Record.COMPLETION, b"[]")
    assert "started_at" in agent.status()
    assert agent.query("echo alive").stdout == "alive\n"


def test_large_output_streams_in_big_chunks(start_kernel: StartKernel) -> None:
    agent = start_kernel("git").agent
    size = 16 * 1024 * 1024
    result = agent.query(f"head -c {size} /dev/zero")
    chunks = [p for t, p in result.records if t == Record.STDOUT]
    assert sum(map(len, chunks)) == size
    assert max(map(len, chunks)) <= 256 * 1024
    assert len(chunks) < size // 8192  # far fewer records than 4 KiB pipe reads


def test_queries_never_touch_the_work_dir(start_kernel: StartKernel) -> None:
    kernel = start_kernel("git")
    (kernel.work_dir / "main").write_text("user data")
    result = kernel.agent.query('pwd; case "$0" in "$PWD"/*) echo inside;; esac')
    assert result.stdout.strip() == str(kernel.work_dir)
    assert (kernel.work_dir / "main").read_text() == "user data"
    sshd_keys = {".ssh", "id_container"}  # made at boot where dropbear is installed
    assert set(os.listdir(kernel.work_dir)) - sshd_keys == {"main"}


def test_environ_txt_bad_lines_are_skipped(start_kernel: StartKernel) -> None:
    environ = "GOOD1=one\nbroken line\nGOOD2=two=2\n"
    kernel = start_kernel("git", files={"config/environ.txt": environ})
    result = kernel.agent.query('echo "$GOOD1 $GOOD2"; echo "$PATH"')
    good, path = result.stdout.splitlines()
    assert good == "one two=2"
    assert path.split(":")[0] == str(kernel.work_dir / ".local" / "bin")


def test_interrupt_kills_the_whole_tree(
    start_kernel: StartKernel, wait_until: Callable[..., bool]
) -> None:
    kernel = start_kernel("git", "--interrupt-grace", "0.5")
    marker = kernel.work_dir / "pids"
    kernel.agent.send(Op.CODE, f"sh -c 'sleep 60 & echo $! > {marker}; sleep 60'")
    assert wait_until(lambda: marker.exists() and marker.read_text().strip() != "")
    background_sleep = process(int(marker.read_text()))
    assert background_sleep is not None
    kernel.agent.send(Op.INTERRUPT, "")
    result = kernel.agent.collect(Record.FINISHED)
    assert result.exit_code() != 0
    assert still_running([background_sleep], timeout=5) == []


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_stops_children(
    start_kernel: StartKernel, wait_until: Callable[..., bool], stop_signal: int
) -> None:
    kernel = start_kernel("git")
    marker = kernel.work_dir / "pid"
    kernel.agent.send(Op.CODE, f"sleep 60 & echo $! > {marker}; wait")
    assert wait_until(lambda: marker.exists() and marker.read_text().strip() != "")
    background_sleep = process(int(marker.read_text()))
    assert background_sleep is not None
    assert os.listdir(kernel.private_tmp) != []  # the runner's private temp dir
    assert kernel.stop(stop_signal) == 0
    assert still_running([background_sleep], timeout=5) == []
    assert os.listdir(kernel.private_tmp) == []


def test_two_runners_do_not_collide(start_kernel: StartKernel, tmp_path: Path) -> None:
    shared_socket = tmp_path / "shared.sock"
    first = start_kernel("git", "--input-socket", str(shared_socket))
    second = start_kernel("git", "--input-socket", str(shared_socket))
    first.agent.status()
    second.agent.status()
    paths = {
        first.agent.query("echo $BACKENDAI_USER_INPUT_SOCKET").stdout,
        second.agent.query("echo $BACKENDAI_USER_INPUT_SOCKET").stdout,
    }
    assert len(paths) == 2


def test_bootstrap_runs_before_executions_and_status_does_not_wait(
    start_kernel: StartKernel,
) -> None:
    bootstrap = "while [ ! -e go ]; do sleep 0.05; done; echo ready > boot.txt"
    kernel = start_kernel("git", files={"work/bootstrap.sh": bootstrap}, ready=False)
    assert "started_at" in kernel.agent.status()  # bootstrap.sh cannot end before `go` exists
    kernel.agent.send(Op.CODE, "cat boot.txt")
    (kernel.work_dir / "go").touch()
    result = kernel.agent.collect(Record.FINISHED)  # cat fails if it ran before bootstrap.sh
    assert (result.stdout, result.exit_code()) == ("ready\n", 0)


def test_bootstrap_failure_is_reported_once(start_kernel: StartKernel) -> None:
    kernel = start_kernel("git", files={"work/bootstrap.sh": "echo broken-step; exit 4"})
    first = kernel.agent.query("echo hi")
    assert "bootstrap.sh failed" in first.stderr
    assert "broken-step" in first.stderr
    assert first.stdout == "hi\n"
    assert first.exit_code() == 0
    assert kernel.agent.query("echo hi").stderr == ""


@pytest.mark.parametrize(
    "runtime, snippet, reason",
    [
        ("app", "print(1)", "no query mode"),
        ("vendor.aws_polly", '{"text": "hi", "voiceId": "Joanna"}', "boto3"),
    ],
)
def test_runtimes_without_query_mode_explain_why(
    start_kernel: StartKernel, runtime: str, snippet: str, reason: str
) -> None:
    if runtime == "vendor.aws_polly" and importlib.util.find_spec("boto3") is not None:
        pytest.skip("boto3 is installed; the request would go to AWS")
    result = start_kernel(runtime).agent.query(snippet)
    assert result.exit_code() == 127
    assert reason in result.stderr


def test_stale_input_socket_is_reused(start_kernel: StartKernel, tmp_path: Path) -> None:
    stale = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX) as leftover:  # bound, then closed: nobody listens
        leftover.bind(str(stale))
    kernel = start_kernel("git", "--input-socket", str(stale))
    assert kernel.agent.query("echo $BACKENDAI_USER_INPUT_SOCKET").stdout == f"{stale}\n"


def test_runner_without_input_relay_still_works(start_kernel: StartKernel, tmp_path: Path) -> None:
    deep = tmp_path / ("y" * 100) / ("z" * 100)  # socket paths in here exceed sun_path
    deep.mkdir(parents=True)
    too_long = str(deep / "input.sock")
    kernel = start_kernel("git", "--input-socket", too_long, env={"TMPDIR": str(deep)})
    result = kernel.agent.query('echo "[$BACKENDAI_USER_INPUT_SOCKET]"; read x; echo "$x"', ["in"])
    assert result.stdout == "[]\nin\n"
